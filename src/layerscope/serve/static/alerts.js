// layerscope dashboard: the run's watch alerts (/api/events) as markers on the heatmap and as a
// list, newest first. app.js owns the state and the polling; this file only turns alerts into
// plotly traces and DOM nodes.
//
// Safety as in app.js: list text goes through textContent; strings handed to plotly through ptext.
'use strict';

window.LayerscopeAlerts = (() => {
  /** One alert in words, as render/alerts.py's alert_line says it. */
  function line(a) {
    let where = 'run';
    if (a.layer !== null && a.layer !== undefined) {
      where = `layer ${a.layer}`;
      if (a.layer_name && String(a.layer_name) !== String(a.layer)) where += ` (${a.layer_name})`;
    }
    if (a.head !== null && a.head !== undefined) where += ` head ${a.head}`;
    return `step ${a.step} · ${where} · ${a.metric}@${a.site} = ${a.value_text} · ${a.rule}`;
  }

  /** The row of `step` in `steps` (ascending): its own, or the nearest inside the range; else -1. */
  function rowOf(steps, step) {
    const n = steps.length;
    if (!n || step < steps[0] || step > steps[n - 1]) return -1;
    let lo = 0;
    let hi = n - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (steps[mid] < step) lo = mid + 1; else hi = mid;
    }
    if (steps[lo] === step || lo === 0) return lo;
    return steps[lo] - step < step - steps[lo - 1] ? lo : lo - 1;
  }

  /**
   * Marker traces for the heatmap (y in row units, x the layer): an open circle in a white halo
   * per cell of this metric's alerts, a small open triangle for other metrics' at this site.
   * Each trace carries `meta` ('watch-alerts' / 'watch-alerts-other') and its cells' alerts.
   */
  function traces(alerts, hm, metric, site, ptext) {
    const cells = new Map();
    const layerSet = new Set(hm.layers);
    for (const a of alerts) {
      if (a.site !== site || a.layer === null || a.layer === undefined || !layerSet.has(a.layer)) continue;
      const r = rowOf(hm.steps, a.step);
      if (r < 0) continue;
      const key = `${r}:${a.layer}`;
      if (!cells.has(key)) cells.set(key, { row: r, layer: a.layer, alerts: [] });
      cells.get(key).alerts.push(a);
    }
    const groups = { primary: [], other: [] };
    for (const c of cells.values()) {
      c.alerts.sort((x, y) => (x.metric !== metric) - (y.metric !== metric) || x.step - y.step);
      (c.alerts.some((a) => a.metric === metric) ? groups.primary : groups.other).push(c);
    }
    const out = [];
    const nMine = alerts.filter((a) => a.site === site && a.metric === metric).length;
    const spec = [
      ['primary', 'circle-open', 14, 'watch-alerts', `watch alert (${nMine})`],
      ['other', 'triangle-up-open', 9, 'watch-alerts-other', `other alerts at ${ptext(site)}`],
    ];
    for (const [g, symbol, size, meta, name] of spec) {
      const cs = groups[g];
      if (!cs.length) continue;
      const x = cs.map((c) => c.layer);
      const y = cs.map((c) => c.row);
      out.push({ type: 'scatter', mode: 'markers', x, y, hoverinfo: 'skip', showlegend: false,
        marker: { symbol, size, color: '#fff', line: { width: 4.5 } }, name: 'halo' });
      out.push({ type: 'scatter', mode: 'markers', x, y, meta, name, showlegend: false,
        text: cs.map((c) => c.alerts.map((a) => ptext(line(a))).join('<br>')),
        customdata: cs.map((c) => c.alerts.map(line).join('\n')),
        hovertemplate: '%{text}<extra></extra>',
        marker: { symbol, size, color: '#000', line: { width: 1.8 } } });
    }
    return out;
  }

  /**
   * Fill the list box (an <ol>) with `alerts` (newest first, as /api/events sends them). Each item
   * is a button: `onPick(alert)` shows the alert's metric and site.
   */
  function renderList(card, list, meta, alerts, onPick) {
    card.hidden = !alerts.length;
    const key = JSON.stringify(alerts.map((a) => [a.step, a.site, a.metric, a.layer, a.head, a.rule]));
    if (list.dataset.key === key) return;
    list.dataset.key = key;
    meta.textContent = alerts.length
      ? `${alerts.length} alert${alerts.length === 1 ? '' : 's'} · first at step ${Math.min(...alerts.map((a) => a.step))} · newest first`
      : '';
    list.replaceChildren(...alerts.map((a) => {
      const li = document.createElement('li');
      const b = document.createElement('button');
      b.type = 'button';
      b.className = 'alert-item';
      b.textContent = line(a);
      b.title = a.message || line(a);
      b.dataset.step = String(a.step);
      b.dataset.site = a.site;
      b.dataset.metric = a.metric;
      b.addEventListener('click', () => onPick(a));
      li.append(b);
      return li;
    }));
  }

  return { line, rowOf, traces, renderList };
})();
