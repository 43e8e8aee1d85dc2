"""Per-head attention and output-logit statistics: sufficient statistics that merge exactly.

Both kinds keep the same four numbers per head (attention) or per model (logits), a row of a
``(k, 4)`` float32 tensor on the device:

====  ==============================================  =======
col   attention (``attn`` site, per head)             logits
====  ==============================================  =======
0     max attention logit over allowed positions      max logit
1     sum over query rows of the attention entropy    sum of log Z (logsumexp) per row
2     sum over query rows of the share on the first   sum of the entropy per row
      allowed key position (the "sink")
3     number of query rows                            number of rows
====  ==============================================  =======

Column 0 merges by ``max`` and columns 1..3 by ``+`` (micro-batches, steps of a window, ranks),
exactly; the values (a max, two means) are derived only when reading (:func:`head_values`).
A NaN anywhere in the logits makes column 0 NaN (``torch.maximum`` propagates it), so a
diverging run shows up. Everything here runs on the device, with no host sync.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

N_HEAD_STATE = 4
ATTN_METRICS = ("max_logit", "entropy", "sink")
LOGITS_METRICS = ("max_logit", "log_z", "entropy")


def empty_heads(k: int, device: torch.device | None = None) -> torch.Tensor:
    """The neutral state of ``k`` heads: max -inf, sums 0."""
    s = torch.zeros(k, N_HEAD_STATE, dtype=torch.float32, device=device)
    s[:, 0] = -math.inf
    return s


def merge_heads(state: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
    """``state`` with ``new`` folded in, in place: max of column 0, sum of the others."""
    state[:, 0] = torch.maximum(state[:, 0], new[:, 0].to(state.dtype))
    state[:, 1:] += new[:, 1:].to(state.dtype)
    return state


def attention_partials(
    logits: torch.Tensor, allowed: torch.Tensor, softcap: float | None = None
) -> torch.Tensor:
    """The ``(H, 4)`` state of one batch of attention logits.

    ``logits``: ``(B, H, Q, K)`` (float32 or wider) for Q query rows; ``allowed``: a bool tensor
    broadcastable to it, False where a key is masked (causal, padding) or the query row is padding.
    ``softcap``: a model that soft-caps logits (``c * tanh(l / c)``) gets its entropy and sink from
    the capped logits; the max logit stays the raw one (what QK-clip and capping act on).

    >>> import torch
    >>> l = torch.tensor([[[[0.0, 1.0], [2.0, -5.0]]]])  # (B=1, H=1, Q=2, K=2)
    >>> causal = torch.tensor([[True, False], [True, True]])
    >>> attention_partials(l, causal)[0, 0].item()  # the masked 1.0 does not count
    2.0
    """
    B, H, Q, K = logits.shape
    # Masked keys get the most negative finite value rather than -inf: exp() of them is 0 and
    # 0 * value is 0, so a fully masked (padding) row stays finite without another pass to zero it
    # (its weight w is 0 below). Each line below is one pass over the (B, H, Q, K) logits, fewer
    # than a textbook softmax -> p -> -p log p (this runs on every recorded step's forward).
    neg = torch.finfo(logits.dtype).min
    lm = logits.masked_fill(~allowed, neg)  # the mask broadcasts: never expanded to (B, H, Q, K)
    mx = lm.amax(dim=(0, 2, 3))  # NaN logits propagate here
    mx = mx.masked_fill(mx == neg, -math.inf)  # a head with no allowed key: the neutral -inf
    if softcap:
        lm = (torch.tanh(logits / softcap) * softcap).masked_fill(~allowed, neg)
    lsm = torch.log_softmax(lm, dim=-1)  # log p
    ent = -(lsm.exp() * lsm).sum(-1)  # (B, H, Q): -sum p log p
    row_ok = allowed.any(-1)  # over the mask's own (broadcast) shape, not the logits'
    first = allowed.to(torch.uint8).argmax(-1, keepdim=True)  # the first allowed key of each row
    sink = lsm.gather(-1, first.expand(B, H, Q, 1)).squeeze(-1).exp()  # p there: Q values, not K
    w = row_ok.to(logits.dtype).expand(B, H, Q)
    return torch.stack([mx, (ent * w).sum((0, 2)), (sink * w).sum((0, 2)), w.sum((0, 2))], dim=-1).float()


def logits_partials(logits: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """The ``(1, 4)`` state of output logits ``(N, V)`` (rows are token positions).

    ``valid``: ``(N,)`` bool, False for padding rows (left out), or None (every row counts).

    >>> import torch
    >>> s = logits_partials(torch.zeros(3, 4))
    >>> [round(float(v), 4) for v in s[0]]  # max 0, log Z = log 4 per row, entropy = log 4 per row
    [0.0, 4.1589, 4.1589, 3.0]
    """
    x = logits.float()
    lse = torch.logsumexp(x, dim=-1)  # (N,)
    p = torch.exp(x - lse[:, None])
    ent = lse - (p * x).sum(-1)  # entropy of softmax(x): log Z - E_p[x]
    rmax = x.amax(-1)
    if valid is not None:
        w = valid.to(x.dtype)
        rmax = rmax.masked_fill(~valid, -math.inf)
        lse, ent = lse * w, ent * w
        n = w.sum()
    else:
        n = torch.tensor(float(x.shape[0]), device=x.device)
    return torch.stack([rmax.amax(), lse.sum(), ent.sum(), n]).reshape(1, N_HEAD_STATE)


def head_values(state: np.ndarray, kind: str) -> dict[str, np.ndarray]:
    """The derived values of host states ``(..., 4)``: metric name -> ``(...)`` float64 array.

    ``kind`` is ``"attn"`` (max_logit, entropy, sink) or ``"logits"`` (max_logit, log_z, entropy).
    Where no row was seen (count 0) every value is NaN.

    >>> import numpy as np
    >>> head_values(np.array([[3.0, 2.0, 1.0, 4.0]]), "attn")["entropy"]
    array([0.5])
    """
    s = np.asarray(state, dtype=np.float64)
    n = s[..., 3]
    seen = n > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        mean1 = np.where(seen, s[..., 1] / np.where(seen, n, 1.0), np.nan)
        mean2 = np.where(seen, s[..., 2] / np.where(seen, n, 1.0), np.nan)
    mx = np.where(seen, s[..., 0], np.nan)
    names = ATTN_METRICS if kind == "attn" else LOGITS_METRICS
    return {names[0]: mx, names[1]: mean1, names[2]: mean2}


def reduce_heads_across_ranks(state: torch.Tensor, group: Any = None) -> torch.Tensor:
    """Merge ``(..., 4)`` states of all ranks in place: one MAX and one SUM all-reduce (a collective)."""
    import torch.distributed as dist

    if dist.get_world_size(group) == 1:
        return state
    mx = state[..., 0].contiguous()
    sums = state[..., 1:].contiguous()
    dist.all_reduce(mx, op=dist.ReduceOp.MAX, group=group)
    dist.all_reduce(sums, op=dist.ReduceOp.SUM, group=group)
    state[..., 0] = mx
    state[..., 1:] = sums
    return state


__all__ = [
    "ATTN_METRICS",
    "LOGITS_METRICS",
    "N_HEAD_STATE",
    "attention_partials",
    "empty_heads",
    "head_values",
    "logits_partials",
    "merge_heads",
    "reduce_heads_across_ranks",
]
