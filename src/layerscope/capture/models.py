"""Build the model a command needs: from a ``pkg.module:factory`` spec or a Hugging Face config.

Both are used by ``layerscope layers`` and ``layerscope sweep`` (``--model`` / ``--hf-config``).
Neither downloads anything: a spec imports local code, and a config builds a randomly initialised
model of that architecture (a sweep then loads each checkpoint's weights into it).

Every failure is a :mod:`layerscope.errors` error whose message names the value and says what to
do, so the CLI prints it as one line.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import importlib.util
import inspect
import json
import os
import re
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
import torch.nn as nn

from .._io import refuse_special_file
from ..errors import ConfigError, NotFoundError

_ATTR_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*\Z")
_MODULE_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*\Z")


def _err(e: BaseException) -> str:
    """An exception as ``Type: message`` on one line, without a trailing period (ours follows)."""
    text = " ".join(str(e).split()).rstrip(".")
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


# The name a spec's .py file is imported under (not importable by that name: it names the file's hash).
FILE_MODULE_PREFIX = "_layerscope_model_"


def callable_name(fn: Any) -> str:
    """``pkg.module:fn``, or ``path/to/file.py:fn`` for a function imported from a file (as
    ``--probe-fn`` does): how a run's config names the function it was recorded with."""
    module = getattr(fn, "__module__", None) or "?"
    if module.startswith(FILE_MODULE_PREFIX):  # a .py file imported by load_function
        code = getattr(fn, "__code__", None)
        module = code.co_filename if code is not None else module
    return f"{module}:{getattr(fn, '__qualname__', type(fn).__name__)}"


_SPEC_HELP = (
    "pass 'package.module:factory' (e.g. 'layerscope.testing:tiny_gpt') or 'path/to/file.py:factory', "
    "where factory is a callable that returns a torch.nn.Module"
)


@contextlib.contextmanager
def _on_sys_path(folder: str) -> Iterator[None]:
    """Put ``folder`` first on ``sys.path`` for the import and the factory call (their lazy imports)."""
    added = folder not in sys.path
    if added:
        sys.path.insert(0, folder)
    try:
        yield
    finally:
        if added:
            with contextlib.suppress(ValueError):
                sys.path.remove(folder)


def _split_spec(spec: str, what: str = "model spec", help: str = _SPEC_HELP) -> tuple[str, str]:
    if not isinstance(spec, str) or spec.count(":") < 1:
        raise ConfigError(f"{what} {spec!r} has no ':'; {help}.")
    target, _, attr = spec.rpartition(":")
    if not target or not _ATTR_RE.match(attr):
        raise ConfigError(f"{what} {spec!r} is not of the form MODULE:{_attr_kind(what)}; {help}.")
    return target, attr


def _attr_kind(what: str) -> str:
    return "FACTORY" if what == "model spec" else "FUNCTION"


def _is_file_target(target: str) -> bool:
    return target.endswith(".py") or "/" in target or os.sep in target


def _import_file(path: Path, spec: str, what: str = "model spec") -> ModuleType:
    if not path.is_file():
        raise NotFoundError(f"{what} {spec!r}: file {str(path)!r} does not exist; check the path.")
    name = f"{FILE_MODULE_PREFIX}{abs(hash(str(path.resolve())))}"
    mspec = importlib.util.spec_from_file_location(name, path)
    if mspec is None or mspec.loader is None:
        raise ConfigError(f"{what} {spec!r}: {str(path)!r} cannot be imported as Python; pass a .py file.")
    module = importlib.util.module_from_spec(mspec)
    sys.modules[name] = module  # dataclasses and pickling look the module up by name
    try:
        mspec.loader.exec_module(module)
    except Exception as e:
        sys.modules.pop(name, None)
        raise ConfigError(
            f"{what} {spec!r}: importing {str(path)!r} raised {_err(e)}; fix that file "
            "(LAYERSCOPE_DEBUG=1 shows the traceback)."
        ) from e
    return module


def _import_module(target: str, spec: str, what: str = "model spec", help: str = _SPEC_HELP) -> ModuleType:
    if not _MODULE_RE.match(target):
        raise ConfigError(f"{what} {spec!r}: {target!r} is not a module name; {help}.")
    try:
        return importlib.import_module(target)
    except ModuleNotFoundError as e:
        parts = target.split(".")
        if e.name in {".".join(parts[: i + 1]) for i in range(len(parts))}:
            raise NotFoundError(
                f"{what} {spec!r}: no module named {e.name!r} (searched the current folder and sys.path); "
                "check the spelling, install the package, or pass a file such as 'path/to/model.py:factory'."
            ) from e
        raise ConfigError(
            f"{what} {spec!r}: importing {target!r} failed because it imports {e.name!r}, which is not "
            "installed; install it in this environment."
        ) from e
    except Exception as e:
        raise ConfigError(
            f"{what} {spec!r}: importing {target!r} raised {_err(e)}; fix that module "
            "(LAYERSCOPE_DEBUG=1 shows the traceback)."
        ) from e


def _callables(module: ModuleType) -> list[str]:
    """The public callables a module offers: its ``__all__``, else those defined in it (or in its
    sub-modules, for a package that re-exports them)."""
    public = getattr(module, "__all__", None)
    names = (
        list(public)
        if isinstance(public, (list, tuple))
        else [
            n
            for n, v in vars(module).items()
            if not n.startswith("_") and (getattr(v, "__module__", None) or "").startswith(module.__name__)
        ]
    )
    return [n for n in names if callable(getattr(module, n, None))]


def load_model_spec(spec: str, kwargs: Mapping[str, Any] | None = None) -> nn.Module:
    """Import and call a model factory: ``"package.module:factory"`` or ``"path/to/file.py:factory"``.

    ``factory`` may be a dotted attribute (``"mypkg.models:GPT.from_config"``), a function, or an
    ``nn.Module`` class; it is called with ``kwargs`` and must return an ``nn.Module``. An
    ``nn.Module`` instance at that name is returned as it is. The current folder (or the file's
    folder) is searched first, so a ``model.py`` next to the user's training script is found.

    >>> model = load_model_spec("layerscope.testing:tiny_gpt", {"n_layer": 2, "n_embd": 16, "n_head": 2})
    >>> type(model).__name__, len(model.h)
    ('TinyGPT', 2)

    Raises:
        ConfigError: the spec is malformed, importing it fails, the factory needs arguments that
            were not given or raises, or it returns something that is not an ``nn.Module``.
        NotFoundError: the module, file or attribute does not exist.
    """
    target, attr = _split_spec(spec)
    kwargs = dict(kwargs or {})
    with _on_sys_path(_spec_folder(target)):
        obj = _resolve_attr(spec, target, attr, "model spec", _SPEC_HELP)
        if isinstance(obj, nn.Module):
            if kwargs:
                raise ConfigError(
                    f"model spec {spec!r} names a module instance, which takes no arguments "
                    f"(got {sorted(kwargs)}); point it at a factory function instead."
                )
            return obj
        if not callable(obj):
            raise ConfigError(
                f"model spec {spec!r} names a {type(obj).__name__}, not a callable; {_SPEC_HELP}."
            )
        _check_arguments(obj, kwargs, spec)
        try:
            model = obj(**kwargs)
        except Exception as e:
            raise ConfigError(
                f"model spec {spec!r}: calling {attr}({', '.join(f'{k}={v!r}' for k, v in kwargs.items())}) "
                f"raised {_err(e)} (LAYERSCOPE_DEBUG=1 shows the traceback)."
            ) from e
    if not isinstance(model, nn.Module):
        raise ConfigError(
            f"model spec {spec!r}: {attr}() returned a {type(model).__name__}, not a torch.nn.Module; make the "
            "factory return the model itself (not a tuple, a state dict or a config)."
        )
    return model


def _spec_folder(target: str) -> str:
    return str(Path(target).expanduser().resolve().parent) if _is_file_target(target) else os.getcwd()


def _resolve_attr(spec: str, target: str, attr: str, what: str, help: str) -> Any:
    """Import ``target`` (a module or a .py file) and return its (dotted) attribute ``attr``."""
    if _is_file_target(target):
        module = _import_file(Path(target).expanduser(), spec, what)
    else:
        module = _import_module(target, spec, what, help)
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            have = _callables(module)
            close = difflib.get_close_matches(attr, have, n=1)
            raise NotFoundError(
                f"{what} {spec!r}: {target!r} has no attribute {attr!r}; "
                + (f"did you mean {target}:{close[0]}? " if close else "")
                + (
                    f"callables defined there: {', '.join(have[:12])}."
                    if have
                    else "it defines no callables."
                )
            )
        obj = getattr(obj, part)
    return obj


_FN_HELP = (
    "pass 'package.module:function' or 'path/to/file.py:function', where function takes (model, batch) "
    "and runs the model on the batch"
)


def load_function(spec: str, what: str = "--probe-fn", n_args: int = 2) -> Callable[..., Any]:
    """Import (without calling) the function a ``"package.module:fn"`` or ``"path/to/file.py:fn"`` spec
    names, and check that it can be called with ``n_args`` positional arguments.

    >>> load_function("layerscope.batch:run_forward").__name__
    'run_forward'

    Raises:
        ConfigError: the spec is malformed, importing it fails, or it names something that is not a
            function of ``n_args`` arguments.
        NotFoundError: the module, file or attribute does not exist.
    """
    target, attr = _split_spec(spec, what, _FN_HELP)
    with _on_sys_path(_spec_folder(target)):
        fn = _resolve_attr(spec, target, attr, what, _FN_HELP)
    if not callable(fn) or isinstance(fn, type):
        raise ConfigError(f"{what} {spec!r} names a {type(fn).__name__}, not a function; {_FN_HELP}.")
    try:
        inspect.signature(fn).bind(*([None] * n_args))
    except TypeError:
        raise ConfigError(
            f"{what} {spec!r}: {attr}{inspect.signature(fn)} cannot be called with {n_args} arguments; "
            f"{_FN_HELP}."
        ) from None
    except ValueError:  # no signature (a builtin): let the call decide
        pass
    return fn


def _check_arguments(fn: Any, kwargs: Mapping[str, Any], spec: str) -> None:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):  # builtins and some C extensions have no signature: just call
        return
    try:
        sig.bind(**kwargs)
    except TypeError:
        required = [
            n
            for n, p in sig.parameters.items()
            if p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY, p.POSITIONAL_ONLY)
        ]
        missing = [n for n in required if n not in kwargs]
        unknown = [
            k
            for k in kwargs
            if k not in sig.parameters and not any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
        ]
        what = (
            f"needs {', '.join(missing)}"
            if missing
            else f"takes no argument {', '.join(unknown)}"
            if unknown
            else "does not accept these arguments"
        )
        raise ConfigError(
            f"model spec {spec!r}: the factory {what} (signature {sig}); point the spec at a function "
            "that builds the model with no required arguments."
        ) from None


# -- Hugging Face configs ----------------------------------------------------------------------------
# Architecture-name suffix -> the Auto class that builds it, for architectures that transformers
# does not export by that name (a fork's class): the Auto class picks the right head.
_HF_SUFFIX_TO_AUTO = (
    (("ForCausalLM", "LMHeadModel"), "AutoModelForCausalLM"),
    (("ForMaskedLM",), "AutoModelForMaskedLM"),
    (("ForSequenceClassification",), "AutoModelForSequenceClassification"),
    (("ForTokenClassification",), "AutoModelForTokenClassification"),
    (("ForQuestionAnswering",), "AutoModelForQuestionAnswering"),
    (("ForImageClassification",), "AutoModelForImageClassification"),
    (("ForSpeechSeq2Seq",), "AutoModelForSpeechSeq2Seq"),
    (("ForPreTraining",), "AutoModelForPreTraining"),
)


def _read_config(path: str | os.PathLike[str]) -> tuple[Path, dict[str, Any]]:
    p = Path(path).expanduser()
    refuse_special_file(p, "Hugging Face config")  # a FIFO would block forever
    if p.is_dir():
        p = p / "config.json"
        refuse_special_file(p, "Hugging Face config")
        if not p.is_file():
            raise NotFoundError(
                f"no config.json in folder {str(path)!r}; pass a Hugging Face config.json or "
                "the model folder that holds it."
            )
    elif not p.is_file():
        raise NotFoundError(
            f"Hugging Face config {str(path)!r} does not exist; pass a config.json or the model "
            "folder that holds it."
        )
    try:
        cfg = json.loads(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise ConfigError(
            f"{str(p)!r} is not a text file ({e.reason}); pass a Hugging Face config.json."
        ) from e
    except json.JSONDecodeError as e:
        raise ConfigError(
            f"{str(p)!r} is not valid JSON (line {e.lineno}, column {e.colno}: {e.msg}); pass a "
            "Hugging Face config.json."
        ) from e
    if not isinstance(cfg, dict) or not isinstance(cfg.get("model_type"), str) or not cfg["model_type"]:
        raise ConfigError(
            f'{str(p)!r} has no "model_type"; a Hugging Face config.json names its architecture '
            'there (e.g. "gpt2", "llama").'
        )
    return p, cfg


def _import_transformers() -> ModuleType:
    try:
        import transformers
    except ImportError as e:
        raise ConfigError(
            "building a model from a Hugging Face config needs transformers, which is not "
            "installed; pip install 'layerscope[hf]' (or pass --model PKG.MODULE:FACTORY)."
        ) from e
    return transformers


def hf_model_class(config: Any) -> Any:
    """The transformers class a config builds: the first of its ``architectures`` that transformers
    exports; else the Auto class for that architecture's suffix (``...ForCausalLM`` ->
    ``AutoModelForCausalLM``, ...); else ``AutoModelForSeq2SeqLM`` for an encoder-decoder and
    ``AutoModel`` otherwise. An Auto class is returned as such; ``from_config`` picks the model.
    """
    tf = _import_transformers()
    archs = [a for a in (getattr(config, "architectures", None) or []) if isinstance(a, str)]
    for arch in archs:
        cls = getattr(tf, arch, None)
        if isinstance(cls, type) and issubclass(cls, tf.PreTrainedModel):
            return cls
    candidates: list[str] = []
    for arch in archs:
        for suffixes, auto_name in _HF_SUFFIX_TO_AUTO:
            if arch.endswith(suffixes):
                candidates.append(auto_name)
        if arch.endswith("ForConditionalGeneration"):
            candidates.append(
                "AutoModelForSeq2SeqLM"
                if getattr(config, "is_encoder_decoder", False)
                else "AutoModelForImageTextToText"
            )
    if getattr(config, "is_encoder_decoder", False):
        candidates.append("AutoModelForSeq2SeqLM")
    candidates.append("AutoModel")
    for cand in candidates:
        auto = getattr(tf, cand, None)
        if auto is not None and _auto_supports(auto, config):
            return auto
    return tf.AutoModel


def _auto_supports(auto: Any, config: Any) -> bool:
    mapping = getattr(auto, "_model_mapping", None)
    try:
        return mapping is None or type(config) in mapping
    except Exception:  # noqa: BLE001 - a lazy mapping that cannot answer: let from_config decide
        return True


def model_from_hf_config(
    path: str | os.PathLike[str],
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
) -> nn.Module:
    """A randomly initialised Hugging Face model built from a ``config.json`` (a file, or a folder
    holding one). Nothing is downloaded and no remote code runs.

    The class is chosen by the config's ``architectures`` (see :func:`hf_model_class`), so a
    ``GPT2LMHeadModel`` config gives that model with its ``transformer.h`` stack, a T5
    ``ForConditionalGeneration`` config the seq2seq model. ``device="meta"`` builds the structure
    without allocating weights (instant, even for a 70B config: enough for ``layerscope layers``).
    ``dtype`` casts the parameters (default: float32).

    >>> import json, tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "config.json").write_text(json.dumps({"model_type": "gpt2", "n_layer": 2, "n_embd": 32,
    ...     "n_head": 2, "vocab_size": 64, "architectures": ["GPT2LMHeadModel"]}))
    >>> model = model_from_hf_config(folder, device="meta")
    >>> type(model).__name__, len(model.transformer.h)
    ('GPT2LMHeadModel', 2)

    Raises:
        NotFoundError: the file or folder (or its config.json) does not exist.
        ConfigError: the file is not JSON or has no ``model_type``; transformers is not installed or
            does not know the model type; the config needs custom code; building the model fails.
    """
    p, raw = _read_config(path)
    return model_from_hf_dict(raw, source=str(p), device=device, dtype=dtype)


def read_hf_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The dict of a Hugging Face ``config.json`` (a file, or a folder holding one), checked to name
    a ``model_type``; for callers that change sizes before :func:`model_from_hf_dict`."""
    return _read_config(path)[1]


def model_from_hf_dict(
    raw: dict[str, Any],
    *,
    source: str = "config",
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
) -> nn.Module:
    """:func:`model_from_hf_config` for a config already read into a dict (``source`` names it in
    messages): a coord-check scales its sizes first."""
    p = source
    tf = _import_transformers()
    model_type = raw["model_type"]
    try:
        config_cls = tf.CONFIG_MAPPING[model_type]
    except KeyError:
        hint = (
            ' It names custom code ("auto_map"), which layerscope never runs; import the model '
            "yourself and pass --model PKG.MODULE:FACTORY."
            if "auto_map" in raw
            else " Upgrade transformers, or pass --model PKG.MODULE:FACTORY."
        )
        raise ConfigError(
            f"{str(p)!r}: transformers {tf.__version__} does not know model_type {model_type!r}." + hint
        ) from None
    raw = dict(raw)
    if raw.get("use_pretrained_backbone"):
        raw["use_pretrained_backbone"] = False  # a timm/torchvision backbone would download weights
    verbosity = tf.utils.logging.get_verbosity()
    tf.utils.logging.set_verbosity_error()  # config sanity warnings are not the user's business here
    try:
        try:
            config = config_cls.from_dict(raw)
        except Exception as e:
            raise ConfigError(f"{str(p)!r} is not a valid {config_cls.__name__}: {_err(e)}.") from e
        cls = hf_model_class(config)
        try:
            with torch.device(device) if device is not None else contextlib.nullcontext():
                model = cls.from_config(config) if cls.__name__.startswith("Auto") else cls(config)
        except Exception as e:
            raise ConfigError(
                f"building {cls.__name__} from {str(p)!r} failed: {_err(e)}; check the config's "
                "sizes (or pass --model PKG.MODULE:FACTORY)."
            ) from e
    finally:
        tf.utils.logging.set_verbosity(verbosity)
    if dtype is not None:
        model = model.to(dtype)
    return model


def dist_info(group: Any = None) -> tuple[int, int, str | None]:
    """(rank, world size, backend) of ``group`` (default: the world), or (0, 1, None) without one."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        import torch.distributed as dist

        return dist.get_rank(group), dist.get_world_size(group), str(dist.get_backend(group))
    return 0, 1, None


def is_compiled(model: nn.Module) -> bool:
    """Whether ``model`` or any sub-module went through ``torch.compile`` (whole or per block)."""
    for m in model.modules():
        if type(m).__name__ == "OptimizedModule" or getattr(m, "_compiled_call_impl", None) is not None:
            return True
    return False
