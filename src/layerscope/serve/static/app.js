// layerscope dashboard: polls the JSON API and draws with the locally served plotly.js.
//
// Safety: every user string (run, layer, metric, site names, the report) reaches the DOM through
// textContent / DOM nodes, never innerHTML; the report's server-made HTML is rebuilt node by node.
// Strings handed to plotly (titles, hover, legend) go through ptext(), because plotly renders a
// subset of HTML in them.
'use strict';

(() => {
  const POLL_MS = Math.max(100, Number(document.body.dataset.pollMs) || 1500);
  // While a run grows the report is re-read at most every REPORT_EVERY_MS, and never more often
  // than REPORT_COST_FACTOR times its own reading time: the server then spends at most 1/50 of
  // one core on reports, however long the run (a report reads the whole matrix).
  const REPORT_EVERY_MS = 10000;
  const REPORT_COST_FACTOR = 50;
  const FULL_RELOAD_MS = 5000;   // throttle for re-reading a whole matrix after an out-of-order step

  // Colour scales (matplotlib's magma and viridis, as plotly's python package lists them).
  const MAGMA = ['#000004', '#180f3d', '#440f76', '#721f81', '#9e2f7f', '#cd4071', '#f1605d', '#fd9668', '#feca8d', '#fcfdbf'];
  const VIRIDIS = ['#440154', '#482878', '#3e4989', '#31688e', '#26828e', '#1f9e89', '#35b779', '#6ece58', '#b5de2b', '#fde725'];
  const DIVERGING = ['#2166ac', '#4393c3', '#92c5de', '#d1e5f0', '#f7f7f7', '#fddbc7', '#f4a582', '#d6604d', '#b2182b'];
  const scale = (cols) => cols.map((c, i) => [i / (cols.length - 1), c]);

  const $ = (id) => document.getElementById(id);

  // ---------------------------------------------------------------------------------------------
  // Small helpers
  // ---------------------------------------------------------------------------------------------

  /** Text for plotly: it renders <b>, <br>, <a> ... in labels, and decodes &lt; back to "<". */
  function ptext(s) {
    return String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
  }

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  /** A step named in text: exact (axis labels round, through LayerscopeViews.stepLabel). */
  function fmtStep(s) {
    return s === null || s === undefined ? '–' : String(s);
  }

  function fmtValue(v) {
    if (v === null || v === undefined || Number.isNaN(v)) return 'no value';
    if (v === Infinity) return 'inf';
    if (v === -Infinity) return '-inf';
    if (v === 0) return '0';
    const a = Math.abs(v);
    return (a >= 1e4 || a < 1e-3) ? v.toExponential(3) : String(Number(v.toPrecision(4)));
  }

  function sampleScale(cols, t) {
    const x = Math.min(1, Math.max(0, t)) * (cols.length - 1);
    const i = Math.min(cols.length - 2, Math.floor(x));
    const f = x - i;
    const a = cols[i].match(/\w\w/g).map((h) => parseInt(h, 16));
    const b = cols[i + 1].match(/\w\w/g).map((h) => parseInt(h, 16));
    return `rgb(${a.map((v, k) => Math.round(v + (b[k] - v) * f)).join(',')})`;
  }

  function setOptions(select, values, selected) {
    const key = JSON.stringify(values);
    if (select.dataset.key !== key) {
      select.replaceChildren(...values.map((v) => {
        const o = el('option', null, v);
        o.value = v;
        return o;
      }));
      select.dataset.key = key;
    }
    if (selected !== null && selected !== undefined && values.includes(selected)) select.value = selected;
  }

  class ApiError extends Error {
    constructor(message, status) {
      super(message);
      this.status = status;
    }
  }

  async function api(path, params) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params || {})) if (v !== null && v !== undefined) q.set(k, String(v));
    const qs = q.toString();
    let res;
    try {
      res = await fetch(`/api/${path}${qs ? `?${qs}` : ''}`, { cache: 'no-store', headers: { Accept: 'application/json' } });
    } catch (e) {
      throw new ApiError('cannot reach the layerscope server (was it stopped?)', 0);
    }
    let body = null;
    try { body = await res.json(); } catch (e) { body = null; }
    if (!res.ok) throw new ApiError(body && body.error ? body.error : `${res.status} ${res.statusText}`, res.status);
    return body;
  }

  // ---------------------------------------------------------------------------------------------
  // State (mirrored in the URL hash so a reload or a shared link shows the same view)
  // ---------------------------------------------------------------------------------------------

  const S = {
    store: '', status: 'connecting', runs: [], byName: new Map(), prevSteps: new Map(), grewAt: new Map(),
    view: 'run', run: null, metric: null, site: null, log: false, focus: null,
    info: null, // /api/run of the selected run
    hm: null, // the selected matrix, grown in place by polling
    profile: { follow: true, token: 0 }, // the step slider follows the newest step until moved
    hist: null, // the histograms shown when the metric is 'hist'
    seq: 0, // bumped on every selection change: answers to older requests are dropped
    report: { at: 0, step: null, busy: false, key: '', timer: null, every: 10000 },
    cmp: { a: null, b: null, metric: null, site: null, mode: 'absolute', key: '', data: null, at: 0, stamp: '' },
    infos: new Map(), // run -> {id, withSteps, info}
    alerts: { run: null, list: [], stamp: '' }, // the selected run's watch alerts (/api/events), newest first
    paused: false, timer: null, polling: false, lastOk: null, retryStamp: '',
  };

  function readHash() {
    const h = new URLSearchParams(location.hash.slice(1));
    S.view = h.get('view') === 'compare' ? 'compare' : 'run';
    S.run = h.get('run');
    S.metric = h.get('metric');
    S.site = h.get('site');
    S.log = h.get('log') === '1';
    S.cmp.a = h.get('a');
    S.cmp.b = h.get('b');
    S.cmp.mode = h.get('mode') === 'relative' ? 'relative' : 'absolute';
  }

  function writeHash() {
    const h = new URLSearchParams();
    h.set('view', S.view);
    if (S.run) h.set('run', S.run);
    if (S.metric) h.set('metric', S.metric);
    if (S.site) h.set('site', S.site);
    if (S.log) h.set('log', '1');
    if (S.view === 'compare') {
      if (S.cmp.a) h.set('a', S.cmp.a);
      if (S.cmp.b) h.set('b', S.cmp.b);
      if (S.cmp.mode !== 'absolute') h.set('mode', S.cmp.mode);
    }
    history.replaceState(null, '', `#${h.toString()}`);
  }

  // ---------------------------------------------------------------------------------------------
  // Status line
  // ---------------------------------------------------------------------------------------------

  function setStatus(state, text) {
    const box = $('status');
    box.dataset.state = state;
    $('status-text').textContent = text;
  }

  function showLiveStatus() {
    if (S.paused) return setStatus('paused', 'paused');
    const t = S.lastOk ? S.lastOk.toLocaleTimeString() : '–';
    setStatus('live', `live · every ${(POLL_MS / 1000).toFixed(POLL_MS % 1000 ? 1 : 0)} s · checked ${t}`);
  }

  // ---------------------------------------------------------------------------------------------
  // Run list
  // ---------------------------------------------------------------------------------------------

  async function refreshRuns() {
    const d = await api('runs');
    S.store = d.store;
    S.status = d.status;
    const now = Date.now();
    for (const r of d.runs) {
      const prev = S.prevSteps.get(r.run);
      if (prev && (prev.id !== r.id || r.steps > prev.steps)) S.grewAt.set(r.run, now);
      S.prevSteps.set(r.run, { id: r.id, steps: r.steps });
    }
    S.runs = d.runs;
    S.byName = new Map(d.runs.map((r) => [r.run, r]));
    renderRunList();
    renderEmpty();
  }

  function renderRunList() {
    const list = $('run-list');
    const now = Date.now();
    const key = JSON.stringify([S.runs, S.run, S.view, S.cmp.a, S.cmp.b,
      S.runs.map((r) => now - (S.grewAt.get(r.run) || 0) < 30000)]);
    $('run-count').textContent = S.runs.length ? String(S.runs.length) : '';
    if (list.dataset.key === key) return;
    list.dataset.key = key;
    const items = S.runs.map((r) => {
      const li = el('li');
      const b = el('button', 'run-item');
      b.type = 'button';
      b.dataset.run = r.run;
      b.title = r.run;
      const selected = S.view === 'compare' ? (r.run === S.cmp.a || r.run === S.cmp.b) : r.run === S.run;
      if (selected) b.classList.add('selected');
      if (S.view === 'compare' && r.run === S.cmp.a) b.append(el('span', 'badge badge-a', 'A'));
      if (S.view === 'compare' && r.run === S.cmp.b) b.append(el('span', 'badge badge-b', 'B'));
      const live = now - (S.grewAt.get(r.run) || 0) < 30000;
      const name = el('span', 'run-name', r.run);
      if (live) name.prepend(el('span', 'live-dot'));
      b.append(name);
      const range = r.steps ? `${fmtStep(r.first_step)}–${fmtStep(r.last_step)}` : 'no steps yet';
      b.append(el('span', 'run-meta', `${r.steps} step${r.steps === 1 ? '' : 's'} · ${range} · ${r.layers} layers · ${r.source}`));
      b.addEventListener('click', () => onRunClick(r.run));
      li.append(b);
      return li;
    });
    if (!items.length) items.push(el('li', 'muted run-none', 'none yet'));
    list.replaceChildren(...items);
  }

  function renderEmpty() {
    const none = S.runs.length === 0;
    $('empty').hidden = !none;
    $('view-run').hidden = none || S.view !== 'run';
    $('view-compare').hidden = none || S.view !== 'compare';
    if (!none) return;
    const what = { missing: 'does not exist yet.', empty: 'has no runs yet.', ok: 'has no runs yet.' }[S.status] || 'has no runs yet.';
    $('empty-title').textContent = S.status === 'missing' ? 'Waiting for the store' : 'Waiting for runs';
    const p = $('empty-text');
    p.replaceChildren('The store ', el('code', null, S.store), ` ${what}`);
    $('empty-snippet').textContent = [
      'import layerscope',
      `with layerscope.Recorder(model, ${JSON.stringify(S.store)}, run="baseline") as rec:`,
      '    for step in range(1, n_steps + 1):',
      '        ...  # forward, backward, optimizer step',
      '        rec.step(step)',
    ].join('\n');
  }

  function onRunClick(name) {
    if (S.view === 'compare') {
      // In the compare view a click picks B (or A, when B already is this run).
      if (name === S.cmp.b) S.cmp.a = name; else S.cmp.b = name;
      if (S.cmp.a === S.cmp.b) S.cmp.a = S.runs.map((r) => r.run).find((n) => n !== name) || name;
      selectCompare();
      return;
    }
    if (name === S.run) return;
    S.run = name;
    S.focus = null;
    selectRun();
  }

  // ---------------------------------------------------------------------------------------------
  // The run view: pickers, heatmap, per-layer lines, report
  // ---------------------------------------------------------------------------------------------

  async function runInfo(name) {
    const summary = S.byName.get(name);
    const cached = S.infos.get(name);
    const withSteps = summary ? summary.steps > 0 : false;
    if (cached && summary && cached.id === summary.id && cached.withSteps === withSteps) return cached.info;
    const info = await api('run', { run: name });
    S.infos.set(name, { id: info.id, withSteps: info.steps > 0, info });
    return info;
  }

  function pickPair(pairs, metric, site) {
    const metrics = [...new Set(pairs.map((p) => p[0]))].sort();
    const m = metric && metrics.includes(metric) ? metric : (metrics.includes('rms') ? 'rms' : metrics[0] || null);
    const sites = [...new Set(pairs.filter((p) => p[0] === m).map((p) => p[1]))].sort();
    const s = site && sites.includes(site) ? site : (sites.includes('output') ? 'output' : sites[0] || null);
    return { metrics, sites, metric: m, site: s };
  }

  function showRunError(msg) {
    const b = $('run-error');
    b.hidden = !msg;
    b.textContent = msg || '';
  }

  async function selectRun() {
    const seq = ++S.seq;
    S.hm = null;
    S.hist = null;
    clearTimeout(S.report.timer);
    S.report = { at: 0, step: null, busy: false, key: '', timer: null, every: REPORT_EVERY_MS };
    writeHash();
    renderRunList();
    const summary = S.byName.get(S.run);
    $('run-title').textContent = S.run || '';
    if (!summary) {
      clearRunCharts();
      showRunError(S.run ? `run ${S.run} is not in the store (any more).` : '');
      return;
    }
    $('run-sub').textContent = [summary.model || null, `${summary.layers} layers`, summary.source,
      summary.created ? `created ${summary.created.slice(0, 16).replace('T', ' ')}` : null].filter(Boolean).join(' · ');
    let info;
    try {
      info = await runInfo(S.run);
    } catch (e) {
      if (seq === S.seq) showRunError(e.message);
      return;
    }
    if (seq !== S.seq) return;
    S.info = info;
    const histSites = info.hist_sites || [];
    const metrics = [...new Set(info.pairs.map((p) => p[0]))].sort();
    if (S.metric === 'hist' && histSites.length) {
      // Histograms: their own view (bins x steps per layer), at the sites that recorded them.
      S.site = histSites.includes(S.site) ? S.site : (histSites.includes('output') ? 'output' : histSites[0]);
      setOptions($('metric'), [...metrics, 'hist'], 'hist');
      setOptions($('site'), histSites, S.site);
      writeHash();
      await loadHist(seq);
      return;
    }
    const pick = pickPair(info.pairs, S.metric === 'hist' ? null : S.metric, S.site);
    S.metric = pick.metric;
    S.site = pick.site;
    setOptions($('metric'), histSites.length ? [...pick.metrics, 'hist'] : pick.metrics, S.metric);
    setOptions($('site'), pick.sites, S.site);
    writeHash();
    if (!S.metric) {
      clearRunCharts();
      showRunError('');
      setStepCount(0, null, null, 'waiting for the first recorded step…');
      return;
    }
    await loadMatrix(seq);
    if (seq === S.seq) loadReport(false);
    if (seq === S.seq) await loadAlerts(true);
  }

  // -- the watch's alerts (alerts.js draws them) ---------------------------------------------

  const LA = window.LayerscopeAlerts;

  /** Read the selected run's alerts when the run has grown (or `force`); redraw if they changed. */
  async function loadAlerts(force) {
    const summary = S.byName.get(S.run);
    if (!summary || !LA) return;
    const stamp = `${S.run}\u0000${summary.id}:${summary.steps}:${summary.last_step}`;
    if (!force && S.alerts.stamp === stamp) return;
    const seq = S.seq;
    let d;
    try {
      d = await api('events', { run: S.run });
    } catch (e) {
      return; // the next poll tries again; the heatmap is drawn without markers meanwhile
    }
    if (seq !== S.seq) return;
    const before = JSON.stringify(S.alerts.run === S.run ? S.alerts.list : null);
    S.alerts = { run: S.run, list: d.alerts, stamp };
    LA.renderList($('alerts-card'), $('alert-list'), $('alerts-meta'), d.alerts, pickAlert);
    if (before !== JSON.stringify(d.alerts) && S.hm && S.metric !== 'hist') drawRun();
  }

  /** A click on a listed alert shows its metric and site (the marker is then on the map). */
  function pickAlert(a) {
    if (S.view !== 'run' || !S.info) return;
    if (!S.info.pairs.some((p) => p[0] === a.metric && p[1] === a.site)) return;
    if (a.metric === S.metric && a.site === S.site) return;
    S.metric = a.metric;
    S.site = a.site;
    S.focus = null;
    selectRun();
  }

  function clearRunCharts() {
    for (const id of ['heatmap', 'lines', 'profile', 'hist']) if (window.Plotly) Plotly.purge($(id));
    delete $('heatmap').dataset.wired; // purge removed its event handlers
    $('report').replaceChildren();
    $('report-meta').textContent = '';
    setStepCount(0, null, null);
  }

  function setStepCount(n, first, last, text) {
    const e = $('step-count');
    e.dataset.steps = String(n);
    e.dataset.lastStep = last === null || last === undefined ? '' : String(last);
    e.textContent = text || (n ? `${n} step${n === 1 ? '' : 's'} · ${fmtStep(first)} → ${fmtStep(last)}` : 'no steps');
  }

  // ---------------------------------------------------------------------------------------------
  // The matrix: an overview sized to the screen (blocks of steps, spikes kept), rows appended as
  // they are recorded, the zoomed range in detail, exact rows for the profile
  // ---------------------------------------------------------------------------------------------

  const V = window.LayerscopeViews;
  const PROFILE_COLORS = ['#0d0887', '#6a00a8', '#b12a90', '#e16462', '#fca636', '#f0f921'];

  /** Rows the heatmap can show: one per pixel row of its plot area (more would be dropped again). */
  function rowBudget() {
    const h = $('heatmap').clientHeight || 480;
    return Math.max(100, Math.round(h - 90));
  }

  /** Blocks of an /api/heatmap?max_rows answer: {r0, r1, v (values per layer), src (rows)}. */
  function decodeBlocks(d) {
    const L = d.layers.length;
    const vals = V.b64f64(d.values);
    const bin = atob(d.src);
    const u8 = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i += 1) u8[i] = bin.charCodeAt(i);
    // Offsets of the shown value's row inside its block: uint8 for blocks of up to 256 steps.
    const src = d.src_dtype === 'u1' ? u8 : (d.src_dtype === '<u2' ? new Uint16Array(u8.buffer) : new Int32Array(u8.buffer));
    const out = [];
    for (let b = 0; b < d.n_rows; b += 1) {
      const r0 = d.row0 + d.starts[b];
      const r1 = d.row0 + (b + 1 < d.n_rows ? d.starts[b + 1] : d.steps.length);
      const s = new Int32Array(L);
      for (let j = 0; j < L; j += 1) s[j] = r0 + src[b * L + j];
      out.push({ r0, r1, v: vals.subarray(b * L, (b + 1) * L), src: s });
    }
    return out;
  }

  /** Read the overview of the selected run/metric/site. */
  async function loadMatrix(seq) {
    let d;
    const budget = rowBudget();
    try {
      d = await api('heatmap', { run: S.run, metric: S.metric, site: S.site, max_rows: budget });
    } catch (e) {
      if (seq !== S.seq) return;
      clearRunCharts();
      showRunError(e.message);
      return;
    }
    if (seq !== S.seq) return;
    showRunError('');
    const summary = S.byName.get(S.run);
    const L = d.layers.length;
    const refVals = V.b64f64(d.ref_values);
    S.hm = {
      key: `${S.run}\u0000${S.metric}\u0000${S.site}`, runId: summary ? summary.id : null,
      layers: d.layers, names: d.layer_names, steps: d.steps.slice(), blocks: decodeBlocks(d),
      factor: d.factor, budget, view: null, fullAt: Date.now(), rows: new Map(), pending: null,
      ref: d.ref_rows.map((r, k) => ({ row: r, v: refVals.subarray(k * L, (k + 1) * L) })),
    };
    for (const r of S.hm.ref) S.hm.rows.set(r.row, r.v);
    for (const b of S.hm.blocks) if (b.r1 - b.r0 === 1) S.hm.rows.set(b.r0, b.v);
    S.profile.follow = true;
    drawRun();
  }

  function appendRows(d) {
    const hm = S.hm;
    const base = hm.steps.length;
    const blocks = decodeBlocks({ ...d, row0: base });
    for (const s of d.steps) hm.steps.push(s);
    for (const b of blocks) {
      hm.blocks.push(b);
      if (b.r1 - b.r0 === 1) hm.rows.set(b.r0, b.v);
    }
    if (d.layer_names.length !== hm.names.length) hm.names = d.layer_names;
  }

  /** Poll: fetch the rows recorded since the last step on the page (or all, after a restart). */
  async function syncMatrix() {
    if (S.metric === 'hist') { await syncHist(); return; }
    const hm = S.hm;
    const summary = S.byName.get(S.run);
    if (!summary) {
      if (S.run) {
        S.hm = null;
        clearRunCharts();
        showRunError(`run ${S.run} is not in the store any more.`);
      }
      return;
    }
    if (!hm || !S.metric) {
      // Nothing drawn yet (no step recorded, or the last read failed): try again once the run grows.
      const stamp = `${summary.id}:${summary.steps}`;
      if (summary.steps > 0 && S.retryStamp !== stamp) {
        S.retryStamp = stamp;
        await selectRun();
      }
      return;
    }
    const last = hm.steps.length ? hm.steps[hm.steps.length - 1] : null;
    const restarted = summary.id !== hm.runId || summary.steps < hm.steps.length
      || (last !== null && (summary.last_step === null || summary.last_step < last));
    if (restarted) {
      await loadMatrix(S.seq);
      loadReport(true);
      return;
    }
    if (summary.steps === hm.steps.length && summary.last_step === last) return; // nothing new
    const seq = S.seq;
    const d = await api('heatmap', { run: S.run, metric: S.metric, site: S.site, since_step: last, max_rows: hm.budget });
    if (seq !== S.seq || S.hm !== hm) return;
    if (d.steps.length) {
      appendRows(d);
      // Appended rows are drawn one each; once they outgrow the screen, read a fresh overview.
      if (hm.blocks.length > 1.5 * hm.budget && Date.now() - hm.fullAt > FULL_RELOAD_MS) {
        await loadMatrix(seq);
      } else {
        drawRun();
      }
      loadReport(false);
    }
    // A step written out of order (a sweep, a resumed run) is not after `last`: read it all again.
    if (summary.steps > hm.steps.length && Date.now() - hm.fullAt > FULL_RELOAD_MS) await loadMatrix(seq);
  }

  function shownBlocks(hm) {
    return hm.view ? hm.view.blocks : hm.blocks;
  }

  function plotValues(blocks) {
    // z for plotly: null where absent, +-inf drawn at the ends of the finite range, log10 if asked.
    let lo = Infinity;
    let hi = -Infinity;
    const tr = (v) => (Number.isNaN(v) ? null : (S.log ? (v > 0 && Number.isFinite(v) ? Math.log10(v) : (v === Infinity ? Infinity : null)) : v));
    const z = blocks.map((b) => Array.from(b.v, (v) => {
      const x = tr(v);
      if (x !== null && Number.isFinite(x)) { if (x < lo) lo = x; if (x > hi) hi = x; }
      return x;
    }));
    for (const row of z) {
      for (let j = 0; j < row.length; j += 1) {
        if (row[j] === Infinity) row[j] = Number.isFinite(hi) ? hi : null;
        else if (row[j] === -Infinity) row[j] = Number.isFinite(lo) ? lo : null;
      }
    }
    return z;
  }

  function hoverTexts(hm, blocks) {
    // Per cell: the layer name (escaped) and the exact step the shown value came from.
    const names = hm.names.map((n) => ptext(n));
    const text = [];
    const steps = [];
    for (const b of blocks) {
      const t = names.slice();
      const s = new Array(b.v.length);
      for (let j = 0; j < b.v.length; j += 1) {
        s[j] = String(hm.steps[b.src[j]]);
        if (b.v[j] === Infinity || b.v[j] === -Infinity) t[j] = `${names[j]} · value ${b.v[j] > 0 ? '+inf' : '-inf'} (drawn at the end of the scale)`;
      }
      if (b.r1 - b.r0 > 1) for (let j = 0; j < t.length; j += 1) t[j] = `${t[j]} · most extreme of steps ${fmtStep(hm.steps[b.r0])}–${fmtStep(hm.steps[b.r1 - 1])}`;
      text.push(t);
      steps.push(s);
    }
    return { text, steps };
  }

  const PLOT_CONFIG = { displaylogo: false, responsive: true, modeBarButtonsToRemove: ['lasso2d', 'select2d'] };

  function baseLayout(title) {
    return {
      title: { text: title, font: { size: 14 }, x: 0.01, xanchor: 'left' },
      margin: { l: 64, r: 16, t: 40, b: 48 },
      paper_bgcolor: 'rgba(0,0,0,0)',
      plot_bgcolor: '#fbfbfd',
      font: { family: 'system-ui, -apple-system, Segoe UI, Roboto, sans-serif', size: 12, color: '#23262f' },
      hoverlabel: { bgcolor: '#1f2330', bordercolor: '#1f2330', font: { color: '#fff' } },
    };
  }

  /** A step axis in row units: round steps as ticks (never 2.5), first step at the top. */
  function rowAxis(steps, r0, r1, title) {
    const t = V.stepTicks(steps, r0, Math.max(r0, r1 - 1), 10);
    return { title: { text: title }, type: 'linear', autorange: 'reversed', showgrid: false, zeroline: false,
      tickvals: t.vals, ticktext: t.text };
  }

  function drawRun() {
    const hm = S.hm;
    if (!hm || !window.Plotly) return;
    showKind('matrix');
    const n = hm.steps.length;
    setStepCount(n, hm.steps[0], hm.steps[n - 1]);
    const blocks = shownBlocks(hm);
    const label = S.log ? `log10 ${S.metric}` : S.metric;
    const uirev = `${hm.key}\u0000${S.log}`;
    const L = hm.layers.length;
    const ht = hoverTexts(hm, blocks);
    const heat = {
      type: 'heatmap', x: hm.layers, y: blocks.map((b) => (b.r0 + b.r1 - 1) / 2), z: plotValues(blocks), text: ht.text,
      customdata: ht.steps, colorscale: scale(MAGMA), hoverongaps: false,
      hovertemplate: `step %{customdata}<br>layer %{x} · %{text}<br>${ptext(label)} %{z:.4~g}<extra></extra>`,
      colorbar: { title: { text: ptext(label), side: 'top' }, thickness: 12, outlinewidth: 0 },
    };
    const r0 = blocks.length ? blocks[0].r0 : 0;
    const r1 = blocks.length ? blocks[blocks.length - 1].r1 : 0;
    const layout = {
      ...baseLayout(`${ptext(S.metric)} at ${ptext(S.site)} · ${ptext(S.run)}`),
      uirevision: uirev,
      xaxis: { title: { text: 'layer (depth)' }, dtick: L <= 24 ? 1 : undefined, zeroline: false, showgrid: false },
      yaxis: rowAxis(hm.steps, hm.view ? r0 : 0, hm.view ? r1 : n, 'step'),
    };
    if (S.focus !== null) {
      layout.shapes = [{ type: 'rect', xref: 'x', yref: 'paper', x0: S.focus - 0.5, x1: S.focus + 0.5, y0: 0, y1: 1,
        line: { color: '#38bdf8', width: 2 }, fillcolor: 'rgba(0,0,0,0)' }];
    }
    const marks = LA && S.alerts.run === S.run ? LA.traces(S.alerts.list, hm, S.metric, S.site, ptext) : [];
    for (const t of marks) if (t.meta) t.showlegend = true;
    if (marks.length) {
      // Plotly pads an autoranged axis for the markers' size (a grey band past a marked last row).
      layout.yaxis.autorange = false;
      layout.yaxis.range = [(hm.view ? r1 : n) - 0.5, (hm.view ? r0 : 0) - 0.5];
      layout.showlegend = true;
      layout.legend = { orientation: 'h', x: 1, xanchor: 'right', y: 1.0, yanchor: 'bottom', font: { size: 11 },
        bgcolor: 'rgba(0,0,0,0)' };
    }
    const div = $('heatmap');
    div.dataset.rows = String(blocks.length);
    div.dataset.factor = String(blocks.reduce((m, b) => Math.max(m, b.r1 - b.r0), 1));
    div.dataset.alerts = String(marks.filter((t) => t.meta).reduce((n, t) => n + t.x.length, 0));
    Plotly.react(div, [heat, ...marks], layout, PLOT_CONFIG);
    if (!div.dataset.wired) { // plotly adds .on() to the div on its first draw
      div.dataset.wired = '1';
      wireHeatmapEvents(div);
    }
    drawLines();
    drawProfile();
  }

  function drawLines() {
    const hm = S.hm;
    const L = hm.layers.length;
    const blocks = hm.blocks;
    const few = blocks.length <= 40;
    const traces = hm.layers.map((layer, j) => {
      // Absent and infinite cells break the line (the heatmap and its hover show the infinities).
      const y = blocks.map((b) => {
        const v = b.v[j];
        return !Number.isFinite(v) || (S.log && v <= 0) ? null : v;
      });
      const focused = S.focus === null || S.focus === layer;
      return {
        type: 'scatter', mode: few ? 'lines+markers' : 'lines', x: blocks.map((b) => hm.steps[b.src[j]]), y,
        name: `${layer} ${ptext(hm.names[j])}`,
        line: { color: sampleScale(VIRIDIS, L > 1 ? (0.92 * j) / (L - 1) : 0), width: S.focus === layer ? 3 : 1.6 },
        marker: { size: 4 }, opacity: focused ? 1 : 0.18,
        hovertemplate: `layer %{fullData.name}<br>step %{x}<br>${ptext(S.metric)} %{y:.4~g}<extra></extra>`,
      };
    });
    const n = hm.steps.length;
    const ticks = n ? V.niceTicks(hm.steps[0], hm.steps[n - 1], 8) : [];
    const layout = {
      ...baseLayout(`${ptext(S.metric)} per layer`),
      uirevision: `${hm.key}\u0000${S.log}`,
      showlegend: L <= 16,
      legend: { font: { size: 10 }, itemclick: 'toggle', itemdoubleclick: 'toggleothers' },
      xaxis: { title: { text: 'step' }, zeroline: false, tickvals: ticks, ticktext: ticks.map(V.stepLabel) },
      yaxis: { title: { text: ptext(S.metric) }, type: S.log ? 'log' : 'linear', zeroline: false,
        ...(S.log ? { dtick: 1, exponentformat: 'power' } : {}) }, // log: one label per decade
      hovermode: 'closest',
    };
    Plotly.react($('lines'), traces, layout, PLOT_CONFIG);
    $('lines-caption').textContent = S.focus === null
      ? 'One line per layer, coloured by depth (dark: first layers, light: last). Click a heatmap column to pick one out.'
      : `Layer ${S.focus} (${hm.names[hm.layers.indexOf(S.focus)] || ''}) picked out; click it again to show all.`;
  }

  // -- the profile at a step -----------------------------------------------------------------

  /** The exact values of row `row` (a step) of the selected matrix: from the page, or one small read. */
  async function rowValues(row) {
    const hm = S.hm;
    if (hm.rows.has(row)) return hm.rows.get(row);
    const s = hm.steps[row];
    const d = await api('heatmap', { run: S.run, metric: S.metric, site: S.site, step_min: s, step_max: s, max_rows: 1 });
    if (S.hm !== hm || !d.n_rows) return null;
    const v = decodeBlocks(d)[0].v;
    hm.rows.set(row, v);
    return v;
  }

  function profileTrace(hm, row, v, bold, color) {
    return {
      type: 'scatter', mode: 'lines+markers', x: hm.layers,
      y: Array.from(v, (x) => (!Number.isFinite(x) || (S.log && x <= 0) ? null : x)),
      name: `${bold ? 'selected: ' : ''}step ${fmtStep(hm.steps[row])}`,
      line: { color, width: bold ? 3 : 1.3 }, marker: { size: bold ? 6 : 3, color }, opacity: bold ? 1 : 0.7,
      text: hm.names.map((nm) => ptext(nm)),
      hovertemplate: `step ${fmtStep(hm.steps[row])}<br>layer %{x} · %{text}<br>${ptext(S.metric)} %{y:.4~g}<extra></extra>`,
    };
  }

  async function drawProfile(row) {
    const hm = S.hm;
    if (!hm || !window.Plotly) return;
    const n = hm.steps.length;
    const slider = $('step-slider');
    slider.max = String(Math.max(0, n - 1));
    if (S.profile.follow) slider.value = slider.max;
    const r = row === undefined ? Number(slider.value) : row;
    if (!n) return;
    const token = (S.profile.token = (S.profile.token || 0) + 1);
    let v = null;
    try { v = await rowValues(r); } catch (e) { v = null; }
    if (token !== S.profile.token || S.hm !== hm || !v) return;
    const traces = hm.ref.map((ref, k) => profileTrace(hm, ref.row, ref.v, false, PROFILE_COLORS[k % PROFILE_COLORS.length]));
    traces.push(profileTrace(hm, r, v, true, '#111'));
    const layout = {
      ...baseLayout(`${ptext(S.metric)} across depth`),
      uirevision: `${hm.key}\u0000${S.log}`,
      xaxis: { title: { text: 'layer (depth)' }, dtick: hm.layers.length <= 24 ? 1 : undefined, zeroline: false },
      yaxis: { title: { text: ptext(S.metric) }, type: S.log ? 'log' : 'linear', zeroline: false },
      legend: { font: { size: 10 } }, hovermode: 'closest',
    };
    Plotly.react($('profile'), traces, layout, PLOT_CONFIG);
    $('step-out').textContent = fmtStep(hm.steps[r]);
    $('profile').dataset.step = String(hm.steps[r]);
    $('step-follow').hidden = !S.profile.follow;
  }

  function wireHeatmapEvents(div) {
    div.on('plotly_hover', (ev) => {
      const p = ev.points && ev.points[0];
      const hm = S.hm;
      if (!p || !hm) return;
      if (p.data.type !== 'heatmap') { // an alert marker: say its alerts
        if (p.data.meta && p.customdata) $('readout').textContent = String(p.customdata).split('\n').join(' | ');
        return;
      }
      const b = shownBlocks(hm)[p.pointNumber[0]];
      const j = p.pointNumber[1];
      if (!b) return;
      const v = b.v[j];
      const row = b.src[j];
      const range = b.r1 - b.r0 > 1 ? ` (most extreme of steps ${fmtStep(hm.steps[b.r0])}–${fmtStep(hm.steps[b.r1 - 1])})` : '';
      $('readout').textContent = `step ${fmtStep(hm.steps[row])} · layer ${hm.layers[j]} ${hm.names[j]} · ${S.metric} = ${fmtValue(v)}${range}`;
      drawProfile(row);
    });
    div.on('plotly_unhover', () => drawProfile());
    div.on('plotly_click', (ev) => {
      const p = ev.points && ev.points[0];
      if (!p || !S.hm || p.data.type !== 'heatmap') return;
      const layer = S.hm.layers[p.pointNumber[1]];
      S.focus = S.focus === layer ? null : layer;
      drawRun();
    });
    div.on('plotly_relayout', (ev) => {
      const hm = S.hm;
      if (!hm) return;
      if (ev['yaxis.autorange']) { hm.view = null; drawRun(); return; }
      if (!('yaxis.range[0]' in ev)) return;
      const a = Math.min(ev['yaxis.range[0]'], ev['yaxis.range[1]']);
      const b = Math.max(ev['yaxis.range[0]'], ev['yaxis.range[1]']);
      // A reset of a map with alert markers (whose range is fixed) comes as the whole range.
      if (a <= -0.5 && b >= hm.steps.length - 0.5) { if (hm.view) { hm.view = null; drawRun(); } return; }
      zoomRows(Math.max(0, Math.floor(a)), Math.min(hm.steps.length, Math.ceil(b) + 1));
    });
  }

  /** A zoom into rows r0..r1-1: read that step range in detail (reduced to the screen if still long). */
  async function zoomRows(r0, r1) {
    const hm = S.hm;
    if (r1 <= r0) return;
    const coarse = hm.blocks.some((b) => b.r1 - b.r0 > 1 && b.r1 > r0 && b.r0 < r1);
    if (!coarse) { if (hm.view) { hm.view = null; drawRun(); } return; }
    const seq = S.seq;
    const d = await api('heatmap', { run: S.run, metric: S.metric, site: S.site, max_rows: hm.budget,
      step_min: hm.steps[r0], step_max: hm.steps[r1 - 1] });
    if (seq !== S.seq || S.hm !== hm) return;
    hm.view = { r0, r1, blocks: decodeBlocks({ ...d, row0: r0 }) };
    for (const b of hm.view.blocks) if (b.r1 - b.r0 === 1) hm.rows.set(b.r0, b.v);
    drawRun();
  }

  // -- histograms ----------------------------------------------------------------------------

  function showKind(kind) {
    $('charts-main').hidden = kind !== 'matrix';
    $('hist-box').hidden = kind !== 'hist';
    $('report-card').hidden = kind === 'hist';
  }

  async function loadHist(seq) {
    let d;
    const layers = $('hist-layers').value;
    try {
      d = await api('hist', { run: S.run, site: S.site, layers: layers && layers !== 'spread' ? layers : null, max_rows: 240 });
    } catch (e) {
      if (seq === S.seq) { showRunError(e.message); }
      return;
    }
    if (seq !== S.seq) return;
    showRunError('');
    S.hist = { data: d, at: Date.now(), steps: d.steps.length };
    const all = d.all_layers;
    const opts = ['spread', 'all', ...all.map(String)];
    const sel = $('hist-layers');
    if (sel.dataset.key !== JSON.stringify(opts)) {
      sel.replaceChildren(...opts.map((v) => {
        const o = el('option', null, v === 'spread' ? (all.length > 16 ? '12 spread over the depth' : 'all') : (v === 'all' ? `all ${all.length}` : `layer ${v}`));
        o.value = v === 'all' ? all.join(',') : v;
        return o;
      }));
      sel.dataset.key = JSON.stringify(opts);
    }
    drawHist();
  }

  async function syncHist() {
    const summary = S.byName.get(S.run);
    if (!summary || !S.hist) return;
    if (summary.steps !== S.hist.steps && Date.now() - S.hist.at > FULL_RELOAD_MS) await loadHist(S.seq);
  }

  function drawHist() {
    const d = S.hist && S.hist.data;
    if (!d || !window.Plotly) return;
    showKind('hist');
    setStepCount(d.steps.length, d.steps[0], d.steps[d.steps.length - 1]);
    const [R, L, B] = d.shape;
    const counts = V.b64f64(d.counts);
    const ncols = L === 1 ? 1 : (L <= 4 ? 2 : (L <= 9 ? 3 : 4));
    const nrows = Math.ceil(L / ncols);
    const gx = ncols > 1 ? 0.05 / (ncols - 1) : 0;
    const gy = nrows > 1 ? 0.1 / (nrows - 1) : 0;
    const w = (1 - gx * (ncols - 1)) / ncols;
    const h = (1 - gy * (nrows - 1)) / nrows;
    let zmax = 0;
    for (const c of counts) if (c > zmax) zmax = c;
    zmax = zmax > 1 ? Math.log10(zmax) : 1;
    const edge = (x) => (x === null ? '∞' : String(Number(x.toPrecision(2))));
    const binText = d.bins.map(([a, b]) => `[${a === null ? '−∞' : edge(a)}, ${b === null ? '∞' : edge(b)})`);
    const rowSteps = d.starts.map((a, k) => {
      const e = k + 1 < d.starts.length ? d.starts[k + 1] : d.steps.length;
      return e - a > 1 ? `${fmtStep(d.steps[a])}–${fmtStep(d.steps[e - 1])}` : fmtStep(d.steps[a]);
    });
    const tickRows = V.stepTicks(d.starts.map((a) => d.steps[a]), 0, R - 1, 6);
    const traces = [];
    const layout = { ...baseLayout(`histograms at ${ptext(S.site)} · ${ptext(S.run)}`), annotations: [],
      plot_bgcolor: MAGMA[0], height: Math.max(300, 70 + nrows * 220), margin: { l: 64, r: 16, t: 50, b: 40 } };
    for (let k = 0; k < L; k += 1) {
      const z = []; const cd = [];
      for (let r = 0; r < R; r += 1) {
        const zr = []; const cr = [];
        for (let b = 0; b < B; b += 1) {
          const c = counts[(r * L + k) * B + b];
          zr.push(c > 0 ? Math.log10(c) : null); cr.push(String(Number(c.toPrecision(6))));
        }
        z.push(zr); cd.push(cr);
      }
      const ax = k === 0 ? '' : String(k + 1);
      const row = Math.floor(k / ncols); const col = k % ncols;
      const x0 = col * (w + gx); const y1 = 1 - row * (h + gy);
      const name = `layer ${d.layers[k]}${String(d.layer_names[k]) !== String(d.layers[k]) ? ` (${d.layer_names[k]})` : ''}`;
      traces.push({ type: 'heatmap', z, customdata: cd, xaxis: `x${ax}`, yaxis: `y${ax}`, zmin: 0, zmax,
        colorscale: scale(MAGMA), showscale: k === 0, hoverongaps: false,
        text: rowSteps.map((s) => binText.map((bt) => `${s} · ${bt}`)),
        colorbar: { title: { text: 'values in the bin', side: 'top' }, thickness: 10, outlinewidth: 0,
          tickvals: [...Array(Math.floor(zmax) + 1).keys()], ticktext: [...Array(Math.floor(zmax) + 1).keys()].map((p) => String(10 ** p)) },
        hovertemplate: `${ptext(name)}<br>step %{text}<br>%{customdata} values<extra></extra>` });
      const bottom = k + ncols >= L;
      layout[`xaxis${ax}`] = { domain: [x0, x0 + w], anchor: `y${ax}`, showgrid: false, zeroline: false,
        tickvals: d.ticks.cols, ticktext: bottom ? d.ticks.text : d.ticks.cols.map(() => ''), tickfont: { size: 10 } };
      layout[`yaxis${ax}`] = { domain: [Math.max(0, y1 - h), y1], anchor: `x${ax}`, autorange: 'reversed', showgrid: false,
        zeroline: false, tickvals: tickRows.vals, ticktext: col === 0 ? tickRows.text : tickRows.vals.map(() => '') };
      layout.annotations.push({ text: ptext(name), xref: 'paper', yref: 'paper', x: x0 + w / 2, y: y1, yanchor: 'bottom', showarrow: false, font: { size: 11 } });
    }
    const div = $('hist');
    div.style.height = `${layout.height}px`;
    Plotly.react(div, traces, layout, PLOT_CONFIG);
    div.dataset.layers = d.layers.join(',');
  }

  // -- report --------------------------------------------------------------------------------

  // The report comes as HTML from the server's one Markdown converter (the offline bundle's too),
  // which escapes every name. It is still rebuilt node by node: only these tags, no attribute, and
  // text through text nodes, so nothing in it can become a script, a link or a handler.
  const REPORT_TAGS = new Set(['H1', 'H2', 'H3', 'H4', 'H5', 'H6', 'P', 'UL', 'OL', 'LI', 'CODE', 'STRONG', 'EM', 'BR']);

  function copyReportNodes(from, to) {
    for (const n of from.childNodes) {
      if (n.nodeType === Node.TEXT_NODE) {
        to.append(n.textContent);
      } else if (n.nodeType === Node.ELEMENT_NODE) {
        if (REPORT_TAGS.has(n.tagName)) {
          const e = el(n.tagName.toLowerCase());
          copyReportNodes(n, e);
          to.append(e);
        } else {
          copyReportNodes(n, to); // any other element: its text only
        }
      }
    }
  }

  function showReport(html, box) {
    const doc = new DOMParser().parseFromString(String(html), 'text/html'); // inert: nothing runs
    const frag = document.createDocumentFragment();
    copyReportNodes(doc.body, frag);
    box.replaceChildren(frag);
  }

  async function loadReport(force) {
    const hm = S.hm;
    if (!hm || !hm.steps.length) return;
    const r = S.report;
    const last = hm.steps[hm.steps.length - 1];
    const key = `${hm.key}`;
    const fresh = r.key === key && r.step === last;
    if (r.busy || (!force && fresh)) return;
    const wait = r.key === key ? r.at + r.every - Date.now() : 0;
    if (!force && wait > 0) {
      // Throttled: come back when the interval is over, so the last steps of a run are covered too.
      if (!r.timer) r.timer = setTimeout(() => { r.timer = null; if (S.report === r) loadReport(false); }, wait);
      return;
    }
    r.busy = true;
    const seq = S.seq;
    $('report-meta').textContent = r.key === key ? `as of step ${fmtStep(r.step)} · updating…` : 'reading…';
    try {
      const t0 = performance.now();
      const d = await api('report', { run: S.run, metric: S.metric, site: S.site });
      r.every = Math.max(REPORT_EVERY_MS, REPORT_COST_FACTOR * (performance.now() - t0));
      if (seq !== S.seq) return;
      showReport(d.html, $('report'));
      r.key = key;
      r.step = d.last_step;
      r.at = Date.now();
      const growing = Date.now() - (S.grewAt.get(S.run) || 0) < 30000;
      $('report-meta').textContent = `as of step ${fmtStep(d.last_step)} (${d.n_steps} step${d.n_steps === 1 ? '' : 's'})`
        + (growing ? ` · updated every ${Math.round(r.every / 1000)} s while the run grows` : '');
    } catch (e) {
      if (seq === S.seq) {
        $('report').replaceChildren(el('p', 'muted', e.message));
        $('report-meta').textContent = '';
      }
    } finally {
      r.busy = false;
    }
  }

  // ---------------------------------------------------------------------------------------------
  // The compare view
  // ---------------------------------------------------------------------------------------------

  function showCmpError(msg) {
    const b = $('cmp-error');
    b.hidden = !msg;
    b.textContent = msg || '';
  }

  async function selectCompare() {
    const seq = ++S.seq;
    const names = S.runs.map((r) => r.run);
    if (!names.includes(S.cmp.a)) S.cmp.a = names.includes(S.run) ? S.run : names[0] || null;
    if (!names.includes(S.cmp.b) || S.cmp.b === S.cmp.a) S.cmp.b = names.find((n) => n !== S.cmp.a) || S.cmp.a;
    setOptions($('cmp-a'), names, S.cmp.a);
    setOptions($('cmp-b'), names, S.cmp.b);
    $('cmp-mode').value = S.cmp.mode;
    writeHash();
    renderRunList();
    if (!S.cmp.a || !S.cmp.b) return;
    let ia;
    let ib;
    try {
      [ia, ib] = await Promise.all([runInfo(S.cmp.a), runInfo(S.cmp.b)]);
    } catch (e) {
      if (seq === S.seq) showCmpError(e.message);
      return;
    }
    if (seq !== S.seq) return;
    const inB = new Set(ib.pairs.map((p) => `${p[0]}\u0000${p[1]}`));
    const common = ia.pairs.filter((p) => inB.has(`${p[0]}\u0000${p[1]}`));
    const pick = pickPair(common, S.cmp.metric || S.metric, S.cmp.site || S.site);
    S.cmp.metric = pick.metric;
    S.cmp.site = pick.site;
    setOptions($('cmp-metric'), pick.metrics, pick.metric);
    setOptions($('cmp-site'), pick.sites, pick.site);
    if (!pick.metric) {
      purgeCompare();
      showCmpError(S.cmp.a === S.cmp.b ? 'Pick two different runs.' : `runs ${S.cmp.a} and ${S.cmp.b} have no metric and site in common yet.`);
      return;
    }
    await loadCompare(seq);
  }

  function purgeCompare() {
    S.cmp.data = null;
    if (!window.Plotly) return;
    for (const id of ['cmp-plot-a', 'cmp-plot-b', 'cmp-plot-diff']) Plotly.purge($(id));
    $('cmp-notes').replaceChildren();
    const c = $('cmp-count');
    c.textContent = '';
    c.dataset.steps = '0';
  }

  function compareStamp() {
    const a = S.byName.get(S.cmp.a);
    const b = S.byName.get(S.cmp.b);
    return JSON.stringify([a && [a.id, a.steps, a.last_step], b && [b.id, b.steps, b.last_step]]);
  }

  async function loadCompare(seq) {
    let d;
    const stamp = compareStamp();
    try {
      d = await api('compare', { run_a: S.cmp.a, run_b: S.cmp.b, metric: S.cmp.metric, site: S.cmp.site, mode: S.cmp.mode });
    } catch (e) {
      if (seq === S.seq) { purgeCompare(); showCmpError(e.message); }
      return;
    }
    if (seq !== S.seq) return;
    showCmpError('');
    S.cmp.data = d;
    S.cmp.stamp = stamp;
    S.cmp.at = Date.now();
    drawCompare();
  }

  async function syncCompare() {
    const stamp = compareStamp();
    if (stamp === S.cmp.stamp || Date.now() - S.cmp.at < Math.max(POLL_MS, 2000)) return;
    if (!S.cmp.data) {
      // Nothing drawn yet (a run without steps, no metric in common): look again now that a run changed.
      S.cmp.stamp = stamp;
      S.cmp.at = Date.now();
      await selectCompare();
      return;
    }
    await loadCompare(S.seq);
  }

  function drawCompare() {
    const d = S.cmp.data;
    if (!d || !window.Plotly) return;
    const n = d.steps.length;
    const c = $('cmp-count');
    c.dataset.steps = String(n);
    c.textContent = n ? `${n} common step${n === 1 ? '' : 's'} · ${fmtStep(d.steps[0])} → ${fmtStep(d.steps[n - 1])} · ${d.layers.length} layers`
      : 'no common steps yet';
    $('cmp-notes').replaceChildren(...d.notes.map((t) => el('li', null, t)));
    $('cmp-summary').replaceChildren(...d.summary.map((t) => el('li', null, t)));
    if (!n) {
      for (const id of ['cmp-plot-a', 'cmp-plot-b', 'cmp-plot-diff']) Plotly.purge($(id));
      return;
    }
    let lo = Infinity;
    let hi = -Infinity;
    for (const m of [d.a, d.b]) for (const row of m) for (const v of row) if (v !== null) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
    let amax = 0;
    for (const row of d.diff) for (const v of row) if (v !== null) amax = Math.max(amax, Math.abs(v));
    const y = d.steps.map((_, i) => i);
    const names = d.layer_names.map(ptext);
    const text = d.steps.map(() => names);
    const m = ptext(d.metric);
    const common = { type: 'heatmap', x: d.layers, y, text, hoverongaps: false };
    const axes = {
      xaxis: { title: { text: 'layer' }, dtick: d.layers.length <= 24 ? 1 : undefined, showgrid: false, zeroline: false },
      yaxis: rowAxis(d.steps, 0, n, 'step'),
    };
    const cd = d.steps.map((s) => d.layers.map(() => String(s)));
    common.customdata = cd;
    const uirev = `${d.run_a}\u0000${d.run_b}\u0000${d.metric}\u0000${d.site}`;
    const bar = { thickness: 10, outlinewidth: 0 };
    const rng = Number.isFinite(lo) ? { zmin: lo, zmax: hi } : {};
    Plotly.react($('cmp-plot-a'), [{ ...common, z: d.a, colorscale: scale(MAGMA), ...rng, colorbar: bar,
      hovertemplate: `A · step %{customdata}<br>layer %{x} · %{text}<br>${m} %{z:.4~g}<extra></extra>` }],
    { ...baseLayout(`A: ${ptext(d.run_a)}`), ...axes, uirevision: uirev }, PLOT_CONFIG);
    Plotly.react($('cmp-plot-b'), [{ ...common, z: d.b, colorscale: scale(MAGMA), ...rng, colorbar: bar,
      hovertemplate: `B · step %{customdata}<br>layer %{x} · %{text}<br>${m} %{z:.4~g}<extra></extra>` }],
    { ...baseLayout(`B: ${ptext(d.run_b)}`), ...axes, uirevision: uirev }, PLOT_CONFIG);
    const relative = d.mode === 'relative';
    const label = relative ? 'relative change (%)' : 'B − A';
    Plotly.react($('cmp-plot-diff'), [{ ...common, z: d.diff, colorscale: scale(DIVERGING), zmid: 0,
      zmin: -(amax || 1), zmax: amax || 1, colorbar: bar,
      hovertemplate: `step %{customdata}<br>layer %{x} · %{text}<br>${label} %{z:.4~g}${relative ? '%' : ''}<extra></extra>` }],
    { ...baseLayout(`${label} · ${m} at ${ptext(d.site)}`), ...axes, uirevision: `${uirev}\u0000${d.mode}` }, PLOT_CONFIG);
  }

  // ---------------------------------------------------------------------------------------------
  // Views, controls, polling
  // ---------------------------------------------------------------------------------------------

  function setView(view) {
    S.view = view;
    for (const t of document.querySelectorAll('.tab')) {
      const on = t.dataset.view === view;
      t.classList.toggle('active', on);
      t.setAttribute('aria-selected', String(on));
    }
    renderEmpty();
    if (!S.runs.length) { writeHash(); return; }
    if (view === 'run') {
      if (!S.run || !S.byName.has(S.run)) S.run = S.cmp.a || S.runs[0].run;
      selectRun();
    } else {
      selectCompare();
    }
    // Plotly sizes to its container; a container that was hidden had no size.
    requestAnimationFrame(() => {
      if (!window.Plotly) return;
      for (const e of document.querySelectorAll('.chart')) if (e.data) Plotly.Plots.resize(e);
    });
  }

  function wireControls() {
    for (const t of document.querySelectorAll('.tab')) t.addEventListener('click', () => setView(t.dataset.view));
    $('metric').addEventListener('change', () => { S.metric = $('metric').value; S.site = null; S.focus = null; selectRun(); });
    $('site').addEventListener('change', () => { S.site = $('site').value; selectRun(); });
    $('log').addEventListener('change', () => { S.log = $('log').checked; writeHash(); if (S.metric !== 'hist') drawRun(); });
    $('step-slider').addEventListener('input', () => {
      const sl = $('step-slider');
      S.profile.follow = sl.value === sl.max;
      drawProfile();
    });
    $('hist-layers').addEventListener('change', () => loadHist(S.seq));
    $('report-refresh').addEventListener('click', () => loadReport(true));
    $('cmp-a').addEventListener('change', () => { S.cmp.a = $('cmp-a').value; selectCompare(); });
    $('cmp-b').addEventListener('change', () => { S.cmp.b = $('cmp-b').value; selectCompare(); });
    $('cmp-metric').addEventListener('change', () => { S.cmp.metric = $('cmp-metric').value; S.cmp.site = null; selectCompare(); });
    $('cmp-site').addEventListener('change', () => { S.cmp.site = $('cmp-site').value; selectCompare(); });
    $('cmp-mode').addEventListener('change', () => { S.cmp.mode = $('cmp-mode').value; writeHash(); loadCompare(S.seq); });
    $('pause').addEventListener('click', () => {
      S.paused = !S.paused;
      $('pause').textContent = S.paused ? 'Resume' : 'Pause';
      $('pause').setAttribute('aria-pressed', String(S.paused));
      if (S.paused) setStatus('paused', 'paused'); else pollNow();
    });
    document.addEventListener('visibilitychange', () => { if (!document.hidden) pollNow(); });
    $('log').checked = S.log;
  }

  function schedule() {
    clearTimeout(S.timer);
    S.timer = setTimeout(poll, POLL_MS);
  }

  function pollNow() {
    clearTimeout(S.timer);
    poll();
  }

  async function poll() {
    // A hidden tab or a paused page asks nothing of the server (and so of the store).
    if (S.polling || S.paused || document.hidden) { if (!S.polling) schedule(); return; }
    S.polling = true;
    try {
      const hadRuns = S.runs.length > 0;
      await refreshRuns();
      if (!hadRuns && S.runs.length) setView(S.view); // the first run appeared
      else if (S.runs.length && S.view === 'run') { await syncMatrix(); if (S.hm) await loadAlerts(false); }
      else if (S.runs.length) await syncCompare();
      S.lastOk = new Date();
      showLiveStatus();
    } catch (e) {
      setStatus('error', e.message);
    } finally {
      S.polling = false;
      schedule();
    }
  }

  async function start() {
    readHash();
    wireControls();
    try {
      await refreshRuns();
      S.lastOk = new Date();
      showLiveStatus();
    } catch (e) {
      setStatus('error', e.message);
    }
    if (S.runs.length) setView(S.view);
    else {
      for (const t of document.querySelectorAll('.tab')) t.classList.toggle('active', t.dataset.view === S.view);
    }
    schedule();
  }

  if (!window.Plotly) {
    setStatus('error', 'plotly.js did not load from /vendor/plotly.min.js');
  }
  start();
})();
