// layerscope views: the helpers the offline HTML pages and the dashboard share.
//
// - reduceRows: the spike-preserving reduction of layerscope.render.reduce (each block of rows
//   shows, per column, the value farthest from the block's median; +-inf always, NaN never unless
//   the whole block is missing), so a zoom can redraw the visible steps exactly;
// - niceTicks / stepTicks: round step ticks (1-2-2.5-5 strides, integers only) for step axes;
// - wirePage(): on an HTML page written by layerscope.plot, links the heatmap, the step slider
//   and the profile (value against depth) that follows the slider and the hover.
//
// Every string shown comes from the page's JSON (already escaped for plotly) or is a number.
'use strict';

(function (root) {
  function b64f64(s) {
    const bin = atob(s);
    const buf = new ArrayBuffer(bin.length);
    const u8 = new Uint8Array(buf);
    for (let i = 0; i < bin.length; i += 1) u8[i] = bin.charCodeAt(i);
    return new Float64Array(buf); // little-endian, as written (every browser is little-endian)
  }

  function valueText(v) {
    if (Number.isNaN(v)) return 'missing / NaN';
    if (v === Infinity) return '+inf';
    if (v === -Infinity) return '\u2212inf';
    return String(v); // JavaScript's shortest round-trip text, like Python's repr
  }

  /** Exact step text (text that names a step never rounds). */
  function fmtStep(s) {
    return s === null || s === undefined ? '–' : String(s);
  }

  /** Short axis label: 30k, 1.2M (axis labels only). */
  function stepLabel(s) {
    const a = Math.abs(s);
    for (const [div, suf] of [[1e9, 'B'], [1e6, 'M'], [1e3, 'k']]) {
      if (a >= div) {
        const v = s / div;
        return (Math.abs(v) < 100 ? v.toFixed(1).replace(/\.0$/, '') : v.toFixed(0)) + suf;
      }
    }
    return String(s);
  }

  /** At most maxTicks integer ticks: lo, round multiples of a 1-2-2.5-5 stride, hi (as labels.nice_ticks). */
  function niceTicks(lo, hi, maxTicks) {
    lo = Math.round(lo); hi = Math.round(hi);
    if (hi <= lo) return [lo];
    maxTicks = Math.max(2, maxTicks | 0);
    const minimum = (hi - lo) / Math.max(1, maxTicks - 1);
    for (let k = 0; k < 20; k += 1) {
      for (const m of [1, 2, 2.5, 5]) {
        const s = m * 10 ** k;
        if (s !== Math.floor(s) || s < minimum) continue;
        const inner = [];
        for (let t = Math.ceil(lo / s) * s; t <= hi; t += s) if (t - lo >= 0.75 * s && hi - t >= 0.75 * s) inner.push(t);
        const ticks = [lo, ...inner, hi];
        if (ticks.length <= maxTicks) return ticks;
      }
    }
    return [lo, hi];
  }

  function roundness(step) {
    let s = Math.abs(step); let k = 0;
    if (!s) return 99;
    while (s % 10 === 0) { s /= 10; k += 1; }
    return k;
  }

  /**
   * Ticks for rows r0..r1 (inclusive) of a step axis drawn in row units, first and last included.
   * Evenly recorded steps get round steps at a 1-2-2.5-5 stride that lands on recorded steps;
   * uneven ones, evenly spread rows each moved to the roundest step near it (as labels.row_axis).
   */
  function stepTicks(steps, r0, r1, maxTicks) {
    if (r1 < r0) return { vals: [], text: [] };
    maxTicks = Math.max(2, maxTicks | 0);
    let rows = null;
    if (r1 - r0 + 1 <= maxTicks) {
      rows = [];
      for (let r = r0; r <= r1; r += 1) rows.push(r);
    } else {
      const d = steps[r0 + 1] - steps[r0];
      let even = d > 0;
      for (let r = r0 + 1; even && r < r1; r += 1) if (steps[r + 1] - steps[r] !== d) even = false;
      const lo = steps[r0]; const hi = steps[r1];
      if (even) {
        const minimum = (hi - lo) / (maxTicks - 1);
        for (let k = 0; k < 20 && !rows; k += 1) {
          for (const m of [1, 2, 2.5, 5]) {
            const st = m * 10 ** k;
            if (st !== Math.floor(st) || st < minimum || st % d !== 0) continue;
            const inner = [];
            for (let t = Math.ceil(lo / st) * st; t < hi; t += st) {
              if ((t - lo) % d === 0 && t - lo >= 0.75 * st && hi - t >= 0.75 * st) inner.push(r0 + (t - lo) / d);
            }
            if (inner.length + 2 <= maxTicks) { rows = [r0, ...inner, r1]; break; }
          }
        }
      }
      if (!rows) {
        const n = r1 - r0 + 1;
        const half = Math.max(0, Math.floor((n - 1) / (maxTicks - 1) / 2) - 1);
        rows = [r0];
        for (let i = 1; i < maxTicks - 1; i += 1) {
          const base = r0 + Math.round((i * (n - 1)) / (maxTicks - 1));
          const a = Math.max(rows[rows.length - 1] + 1, base - half);
          const e = Math.min(r1 - 1, base + half);
          if (a > e) continue;
          let best = a;
          for (let r = a; r <= e; r += 1) {
            const better = roundness(steps[r]) > roundness(steps[best])
              || (roundness(steps[r]) === roundness(steps[best]) && Math.abs(r - base) < Math.abs(best - base));
            if (better) best = r;
          }
          rows.push(best);
        }
        rows.push(r1);
      }
    }
    return { vals: rows, text: rows.map((r) => stepLabel(steps[r])) };
  }

  /** Rows r0..r1-1 of an (n x L) row-major matrix, in blocks of k = ceil(rows / maxRows). */
  function reduceRows(vals, L, r0, r1, maxRows) {
    const n = r1 - r0;
    const k = maxRows > 0 && n > maxRows ? Math.ceil(n / maxRows) : 1;
    const nb = Math.ceil(n / k);
    const values = new Float64Array(nb * L);
    const src = new Int32Array(nb * L);
    const starts = new Int32Array(nb);
    const stops = new Int32Array(nb);
    const col = new Float64Array(k);
    for (let b = 0; b < nb; b += 1) {
      const a = r0 + b * k;
      const e = Math.min(a + k, r1);
      starts[b] = a; stops[b] = e;
      for (let j = 0; j < L; j += 1) {
        if (k === 1) { values[b * L + j] = vals[a * L + j]; src[b * L + j] = a; continue; }
        let m = 0;
        for (let i = a; i < e; i += 1) { const v = vals[i * L + j]; if (Number.isFinite(v)) col[m++] = v; }
        let med = 0;
        if (m) {
          const s = Array.from(col.subarray(0, m)).sort((x, y) => x - y);
          med = m % 2 ? s[(m - 1) >> 1] : (s[m / 2 - 1] + s[m / 2]) / 2;
        }
        let best = -2; let bi = a;
        for (let i = a; i < e; i += 1) {
          const v = vals[i * L + j];
          const d = Number.isNaN(v) ? -1 : (Number.isFinite(v) ? Math.abs(v - med) : Infinity);
          if (d > best) { best = d; bi = i; }
        }
        values[b * L + j] = vals[bi * L + j]; src[b * L + j] = bi;
      }
    }
    return { values, src, starts, stops, factor: k, L };
  }

  function transform(v, kind, lt) {
    if (!Number.isFinite(v)) return null;
    if (kind === 'log') return v > 0 ? Math.log10(v) : null;
    if (kind === 'symlog') return Math.sign(v) * Math.log10(1 + Math.abs(v) / (lt || 1));
    return v;
  }

  // -----------------------------------------------------------------------------------------
  // An offline page: heatmap + slider + profile
  // -----------------------------------------------------------------------------------------

  function profileY(v, p) {
    if (!Number.isFinite(v) || (p.scale === 'log' && v <= 0)) return null;
    return p.scale === 'symlog' ? transform(v, 'symlog', p.linthresh) : v;
  }

  function linkFigure(cfg) {
    const prof = document.getElementById(cfg.profile);
    const heat = cfg.heat ? document.getElementById(cfg.heat) : null;
    const slider = document.getElementById(`${cfg.profile}-step`);
    const out = document.getElementById(`${cfg.profile}-step-out`);
    if (!prof || !root.Plotly || typeof prof.on !== 'function') return;
    const panels = cfg.panels.map((p) => ({ ...p, vals: null, index: null }));
    let active = 0;
    const data = (p) => {
      if (!p.vals) {
        p.vals = b64f64(p.values);
        p.index = new Map(p.steps.map((s, i) => [String(s), i]));
      }
      return p.vals;
    };
    const currentTrace = () => prof.data.findIndex((t) => t.uid === 'current');

    function showRow(row) {
      const p = panels[active];
      const v = data(p);
      const L = p.layers.length;
      const y = []; const cd = [];
      for (let j = 0; j < L; j += 1) { y.push(profileY(v[row * L + j], p)); cd.push(valueText(v[row * L + j])); }
      const t = currentTrace();
      const name = `selected: step ${fmtStep(p.steps[row])}`;
      if (t >= 0) root.Plotly.restyle(prof, { y: [y], customdata: [cd], name: [name], meta: [fmtStep(p.steps[row])] }, [t]);
      if (out) out.textContent = fmtStep(p.steps[row]);
      prof.dataset.step = String(p.steps[row]);
    }
    const sliderRow = () => (slider ? Number(slider.value) : panels[active].steps.length - 1);
    if (slider) slider.addEventListener('input', () => showRow(sliderRow()));
    prof.dataset.step = String(panels[0].steps[panels[0].steps.length - 1]);
    if (!heat || typeof heat.on !== 'function') return;

    heat.on('plotly_hover', (ev) => {
      const pt = ev.points && ev.points[0];
      const p = panels[active];
      if (!pt || pt.curveNumber !== p.trace) return;
      const i = pt.pointNumber[0];
      const j = pt.pointNumber[1];
      const t = heat.data[p.trace];
      data(p);
      let row = null;
      if (t.text && p.drawnFactor !== 1 && Array.isArray(t.text[i])) row = p.index.get(String(t.text[i][j]));
      if (row === null || row === undefined) row = (p.drawnStart || 0) + i;
      showRow(row);
    });
    heat.on('plotly_unhover', () => showRow(sliderRow()));
    heat.on('plotly_buttonclicked', (ev) => {
      if (typeof ev.active !== 'number' || !panels[ev.active]) return;
      active = ev.active;
      const p = panels[active];
      if (slider) { slider.max = String(p.steps.length - 1); slider.value = slider.max; }
      rebuildProfile(p);
      showRow(sliderRow());
    });
    heat.on('plotly_relayout', (ev) => {
      const p = panels[active];
      if (!(p.factor > 1) || p.trace === null) return;
      const hasRange = 'yaxis.range[0]' in ev || 'yaxis.range' in ev;
      if (!hasRange && !ev['yaxis.autorange']) return;
      const v = data(p);
      const n = p.steps.length;
      let r0 = 0; let r1 = n;
      if (hasRange) {
        const rg = ev['yaxis.range'] || [ev['yaxis.range[0]'], ev['yaxis.range[1]']];
        const lo = Math.min(rg[0], rg[1]); const hi = Math.max(rg[0], rg[1]);
        r0 = p.steps.findIndex((s) => s >= lo); if (r0 < 0) r0 = n;
        r1 = n; for (let i = n - 1; i >= 0; i -= 1) if (p.steps[i] <= hi) { r1 = i + 1; break; }
        r0 = Math.max(0, r0 - 1); r1 = Math.min(n, r1 + 1); // a row of margin: no gap at the edges
      }
      if (r1 <= r0) return;
      const red = reduceRows(v, p.layers.length, r0, r1, cfg.maxRows || 1000);
      redraw(p, red);
    });

    function redraw(p, red) {
      const L = red.L;
      const z = []; const cd = []; const tx = []; const y = [];
      for (let b = 0; b < red.starts.length; b += 1) {
        const zr = []; const cr = []; const tr = [];
        for (let j = 0; j < L; j += 1) {
          const x = red.values[b * L + j];
          zr.push(transform(x, p.ztransform, p.linthresh)); cr.push(valueText(x)); tr.push(String(p.steps[red.src[b * L + j]]));
        }
        z.push(zr); cd.push(cr); tx.push(tr);
        y.push((p.steps[red.starts[b]] + p.steps[red.stops[b] - 1]) / 2);
      }
      p.drawnFactor = red.factor;
      p.drawnStart = red.starts.length ? red.starts[0] : 0;
      const hover = heat.data[p.trace].hovertemplate.replace('step %{y:d}', 'step %{text}');
      root.Plotly.restyle(heat, { z: [z], y: [y], customdata: [cd], text: [tx], hovertemplate: [hover] }, [p.trace]);
      heat.dataset.rows = String(red.starts.length);
      heat.dataset.factor = String(red.factor);
    }

    function rebuildProfile(p) {
      const v = data(p);
      const L = p.layers.length;
      const traces = prof.data.map((t) => ({ ...t }));
      const cur = currentTrace();
      // Reference lines: the same steps picked for the new metric (they share the steps), new values.
      for (let k = 0; k < traces.length; k += 1) {
        if (k === cur) continue;
        const m = /step (-?\d+)/.exec(traces[k].name || '');
        const row = m ? p.index.get(m[1]) : undefined;
        if (row === undefined) continue;
        const y = []; const cd = [];
        for (let j = 0; j < L; j += 1) { y.push(profileY(v[row * L + j], p)); cd.push(valueText(v[row * L + j])); }
        traces[k].y = y; traces[k].customdata = cd;
        traces[k].hovertemplate = traces[k].hovertemplate.replace(/<br>[^<]* = %\{customdata\}/, `<br>${p.label} = %{customdata}`);
      }
      root.Plotly.react(prof, traces, { ...prof.layout, yaxis: { ...prof.layout.yaxis, title: { text: p.label } } });
    }
  }

  function wirePage() {
    for (const s of document.querySelectorAll('script[type="application/json"][data-layerscope-link]')) {
      try { linkFigure(JSON.parse(s.textContent)); } catch (e) { if (root.console) root.console.error('layerscope:', e); }
    }
  }

  root.LayerscopeViews = { b64f64, valueText, fmtStep, stepLabel, niceTicks, stepTicks, reduceRows, transform, wirePage };
})(window);
