/* vigil dashboard: rules as tiles, charts with their levels, incidents
 * with their report, all from /api/v1/ and kept live by the vigil-feed
 * WebSocket (docs/api.md). Plain JavaScript; uPlot draws the charts. */
'use strict';

(function () {
  const $ = (sel) => document.querySelector(sel);
  const state = {
    window: '15m',
    rules: [],
    tiles: new Map(),   // "rule|series" -> tile element
    charts: new Map(),  // series key -> {plot, data, levels, el}
    ws: null,
    wsDelay: 1000,
    subscribed: new Set(),
    token: localStorage.getItem('vigil.token') || '',
  };

  /* ------------------------------------------------------------ helpers */

  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === 'class') e.className = v;
      else if (k.startsWith('data-')) e.setAttribute(k, v);
      else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
      else e[k] = v;
    }
    for (const k of kids) {
      if (k != null) e.append(k instanceof Node ? k : String(k));
    }
    return e;
  }

  async function api(path, opts) {
    const r = await fetch(path, opts);
    const type = r.headers.get('content-type') || '';
    const body = type.includes('json') ? await r.json() : await r.text();
    if (!r.ok) throw new Error((body && body.error) || r.statusText);
    return body;
  }

  function seconds(text) {
    const m = /^(\d+)([smhd])$/.exec(text);
    const unit = { s: 1, m: 60, h: 3600, d: 86400 }[m[2]];
    return Number(m[1]) * unit;
  }

  /* A value in the unit its series name says. */
  function fmt(v, name) {
    if (v === null || v === undefined || Number.isNaN(v)) return '–';
    const n = name || '';
    const num = (x) => {
      const a = Math.abs(x);
      if (a !== 0 && (a >= 1e6 || a < 0.01)) return x.toExponential(2);
      return Number(x.toPrecision(4)).toString();
    };
    if (n.endsWith('_bytes')) {
      const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
      let i = 0;
      let x = v;
      while (Math.abs(x) >= 1024 && i < u.length - 1) { x /= 1024; i++; }
      return num(x) + ' ' + u[i];
    }
    if (n.endsWith('_ms')) return num(v) + ' ms';
    if (n.endsWith('_pct')) return num(v) + ' %';
    if (n.endsWith('_per_s')) return num(v) + ' /s';
    return num(v);
  }

  function when(ms) {
    if (!ms) return '–';
    return new Date(ms).toLocaleString();
  }

  function metricOf(key) {
    const i = key.indexOf('{');
    return i < 0 ? key : key.slice(0, i);
  }

  /* ------------------------------------------------------------ status */

  async function loadStatus() {
    try {
      const s = await api('api/v1/status');
      const r = s.rules;
      $('#summary').textContent =
        `${s.series} series · ${r.rules} rules: ${r.ok} ok, ${r.warning} warning, ` +
        `${r.critical} critical, ${r.nodata} no data · ` +
        `${s.incidents_open} open incidents · vigil ${s.version}`;
    } catch (e) {
      $('#summary').textContent = 'vigil is not answering: ' + e.message;
    }
  }

  /* ------------------------------------------------------------ rules */

  function levelsText(lv) {
    const parts = [];
    if (lv.warn_above !== undefined) parts.push('warn > ' + lv.warn_above);
    if (lv.crit_above !== undefined) parts.push('crit > ' + lv.crit_above);
    if (lv.warn_below !== undefined) parts.push('warn < ' + lv.warn_below);
    if (lv.crit_below !== undefined) parts.push('crit < ' + lv.crit_below);
    return parts.join(' · ');
  }

  /* A bar from the lowest to the highest level, coloured by band, with
   * the value marked. */
  function gauge(lv, value) {
    const pts = [lv.warn_above, lv.crit_above, lv.warn_below, lv.crit_below]
      .filter((x) => x !== undefined);
    if (!pts.length || value === null || value === undefined) return null;
    let lo = Math.min(0, value, ...pts);
    let hi = Math.max(value, ...pts) * 1.15;
    if (hi <= lo) hi = lo + 1;
    const pos = (x) => ((x - lo) / (hi - lo)) * 100;
    const g = el('div', { class: 'gauge' });
    const band = (cls, from, to) => {
      const b = el('div', { class: 'band ' + cls });
      b.style.left = pos(from) + '%';
      b.style.width = Math.max(0, pos(to) - pos(from)) + '%';
      g.append(b);
    };
    if (lv.warn_above !== undefined) band('warning', lv.warn_above, hi);
    if (lv.crit_above !== undefined) band('critical', lv.crit_above, hi);
    if (lv.warn_below !== undefined) band('warning', lo, lv.warn_below);
    if (lv.crit_below !== undefined) band('critical', lo, lv.crit_below);
    const m = el('div', { class: 'mark' });
    m.style.left = Math.min(99, Math.max(0, pos(value))) + '%';
    g.append(m);
    return g;
  }

  function renderTile(rule, inst) {
    const series = inst.series || '';
    const key = rule.name + '|' + series;
    const metric = inst.metric || '';
    const stat = rule.stat && rule.window_s > 0
      ? `${rule.stat} over ${rule.window_s}s` : 'latest value';
    const t = el('div', {
      class: 'tile state-' + inst.state,
      'data-rule': rule.name,
      'data-series': series,
      'data-state': inst.state,
      title: rule.file + ':' + rule.line,
      onclick: () => focusChart(series),
    },
    el('span', { class: 'state' }, inst.state),
    el('div', { class: 'title' }, rule.title || rule.name),
    el('div', { class: 'series' }, series || rule.name),
    el('div', { class: 'value', 'data-metric': metric },
      fmt(inst.value, metric)),
    gauge(rule.levels, inst.value),
    el('div', { class: 'bands' }, `${stat} · ${levelsText(rule.levels)}`));
    state.tiles.set(key, t);
    return t;
  }

  async function loadRules() {
    let doc;
    try {
      doc = await api('api/v1/rules');
    } catch (e) {
      return;
    }
    state.rules = doc.rules;
    state.tiles.clear();
    const tiles = $('#tiles');
    tiles.replaceChildren();
    const order = { critical: 0, warning: 1, nodata: 2, ok: 3 };
    const all = [];
    for (const r of doc.rules) {
      for (const i of r.instances) all.push([r, i]);
    }
    all.sort((a, b) => order[a[1].state] - order[b[1].state] ||
      a[0].name.localeCompare(b[0].name));
    for (const [r, i] of all) tiles.append(renderTile(r, i));
    if (!all.length) tiles.append(el('p', { class: 'empty' }, 'No rules loaded.'));
    tiles.setAttribute('data-loaded', String(Date.now()));
    syncCharts();
    subscribe();
  }

  /* ------------------------------------------------------------ charts */

  function levelsOf(series) {
    const lv = {};
    for (const r of state.rules) {
      if (r.instances.some((i) => i.series === series)) Object.assign(lv, r.levels);
    }
    return lv;
  }

  function makeChart(series) {
    const lv = levelsOf(series);
    const lines = [];
    for (const [k, color] of [['warn_above', '#e0a000'], ['crit_above', '#c62828'],
                              ['warn_below', '#e0a000'], ['crit_below', '#c62828']]) {
      if (lv[k] !== undefined) lines.push({ label: k.replace('_', ' '), value: lv[k], color });
    }
    const box = el('div', { class: 'chart', 'data-series': series },
      el('div', { class: 'title' }, series));
    const plotEl = el('div');
    box.append(plotEl);
    $('#charts').append(box);
    const opts = {
      width: 440,
      height: 200,
      scales: { x: { time: true } },
      series: [{}, { label: metricOf(series), stroke: '#1e88e5', width: 2,
                     value: (u, v) => fmt(v, metricOf(series)) }]
        .concat(lines.map((l) => ({ label: l.label, stroke: l.color, dash: [6, 4],
                                    width: 1, points: { show: false } }))),
      axes: [{}, { size: 60 }],
    };
    const data = [[], []].concat(lines.map(() => []));
    const plot = typeof uPlot === 'function' ? new uPlot(opts, data, plotEl) : null;
    const c = { plot, data, lines, el: box };
    state.charts.set(series, c);
    return c;
  }

  function redraw(c) {
    const xs = c.data[0];
    c.lines.forEach((l, i) => { c.data[2 + i] = xs.map(() => l.value); });
    if (c.plot) c.plot.setData(c.data);
  }

  async function loadChart(series) {
    const c = state.charts.get(series) || makeChart(series);
    try {
      const q = new URLSearchParams({ series, window: state.window, points: '400' });
      const doc = await api('api/v1/samples?' + q);
      const s = doc.series[0];
      c.data[0] = s ? s.points.map((p) => p[0] / 1000) : [];
      c.data[1] = s ? s.points.map((p) => p[1]) : [];
      redraw(c);
    } catch (e) {
      /* The next refresh tries again. */
    }
  }

  function syncCharts() {
    const want = new Set();
    for (const r of state.rules) {
      for (const i of r.instances) if (i.series) want.add(i.series);
    }
    for (const [k, c] of state.charts) {
      if (!want.has(k)) {
        if (c.plot) c.plot.destroy();
        c.el.remove();
        state.charts.delete(k);
      }
    }
    for (const s of want) if (!state.charts.has(s)) loadChart(s);
  }

  function reloadCharts() {
    for (const k of state.charts.keys()) loadChart(k);
  }

  function focusChart(series) {
    const c = state.charts.get(series);
    if (!c) return;
    for (const o of state.charts.values()) o.el.classList.remove('highlight');
    c.el.classList.add('highlight');
    c.el.scrollIntoView({ behavior: 'smooth', block: 'center' });
  }

  /* ------------------------------------------------------------ incidents */

  function table(head, rows) {
    return el('table', {},
      el('thead', {}, el('tr', {}, ...head.map((h) => el('th', {}, h)))),
      el('tbody', {}, ...rows.map((r) => el('tr', {}, ...r.map((c) => el('td', {}, c))))));
  }

  async function approve(id, button) {
    if (!state.token) {
      $('#token-dialog').showModal();
      return;
    }
    button.disabled = true;
    try {
      await api(`api/v1/actions/${id}/approve`,
        { method: 'POST', headers: { Authorization: 'Bearer ' + state.token } });
      button.textContent = 'approved';
    } catch (e) {
      button.textContent = 'failed: ' + e.message;
      button.disabled = false;
    }
  }

  async function fillIncident(body, id) {
    body.replaceChildren(el('p', { class: 'empty' }, 'loading…'));
    try {
      const [doc, md] = await Promise.all([
        api(`api/v1/incidents/${id}`),
        api(`api/v1/incidents/${id}?format=md`),
      ]);
      const ns = (x) => (x ? when(x / 1e6) : '–');
      const kids = [];
      kids.push(el('h4', {}, 'Timeline'), table(['time', 'from', 'to', 'value', 'reason'],
        doc.transitions.map((t) => [ns(t.ts_ns), t.from, t.to, fmt(t.value), t.reason])));
      kids.push(el('h4', {}, 'Evidence'));
      if (!doc.evidence.length) kids.push(el('p', { class: 'empty' }, 'none'));
      for (const e of doc.evidence) {
        kids.push(el('div', { class: 'evidence', 'data-step': e.name },
          el('strong', {}, `${e.step + 1}. ${e.name}`), ` (${e.phase}): ${e.status}`,
          el('pre', {}, JSON.stringify(e.output, null, 2))));
      }
      kids.push(el('h4', {}, 'Actions'), table(['id', 'time', 'action', 'mode', 'result', 'why', ''],
        doc.actions.map((a) => [a.id, ns(a.intent_ns), `${a.name} (${a.kind})`, a.mode,
          a.result, a.reason,
          a.result === 'awaiting approval'
            ? el('button', { type: 'button', class: 'approve',
                             onclick: (ev) => approve(a.id, ev.target) }, 'approve')
            : '',
        ])));
      kids.push(el('details', { class: 'report' }, el('summary', {}, 'Report (Markdown)'),
        el('pre', {}, md)));
      body.replaceChildren(...kids);
    } catch (e) {
      body.replaceChildren(el('p', { class: 'empty' }, 'cannot load: ' + e.message));
    }
  }

  async function loadIncidents() {
    let doc;
    try {
      doc = await api('api/v1/incidents?limit=50');
    } catch (e) {
      $('#incidents').replaceChildren(el('p', { class: 'empty' }, e.message));
      return;
    }
    const box = $('#incidents');
    const open = new Set([...box.querySelectorAll('details.incident[open]')]
      .map((d) => d.getAttribute('data-id')));
    box.replaceChildren();
    const list = doc.incidents.slice().sort((a, b) => (b.open - a.open) || (b.id - a.id));
    for (const i of list) {
      const body = el('div', { class: 'body' });
      const d = el('details', {
        class: 'incident', 'data-id': String(i.id), 'data-rule': i.rule,
        'data-open': String(i.open),
      },
      el('summary', {},
        el('span', { class: 'badge ' + (i.open ? i.state : 'resolved') },
          i.open ? i.state : 'resolved'),
        `#${i.id} ${i.title || i.rule} `,
        el('span', { class: 'series' }, i.series), ` · opened ${when(i.opened_ns / 1e6)}`),
      body);
      d.addEventListener('toggle', () => { if (d.open) fillIncident(body, i.id); });
      if (open.has(String(i.id))) {
        d.open = true;
      }
      box.append(d);
    }
    if (!list.length) box.append(el('p', { class: 'empty' }, 'No incidents.'));
    box.setAttribute('data-loaded', String(Date.now()));
  }

  /* ------------------------------------------------------------ plugins */

  async function loadPlugins() {
    try {
      const doc = await api('api/v1/plugins');
      $('#plugins').replaceChildren(...doc.plugins.map((p) =>
        el('span', { class: 'plugin ' + p.health, title: `errors: ${p.errors_total}` },
          p.plugin + (p.instance ? ' ' + p.instance : '') + ': ' + p.health +
          (p.collect_ms != null ? ` (${fmt(p.collect_ms, '_ms')})` : ''))));
    } catch (e) { /* shown by the summary */ }
  }

  /* ------------------------------------------------------------ feed */

  function subscribe() {
    const ws = state.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return;
    const fresh = [];
    for (const r of state.rules) {
      for (const i of r.instances) {
        if (i.series && !state.subscribed.has(i.series)) {
          state.subscribed.add(i.series);
          fresh.push(i.series);
        }
      }
    }
    ws.send(JSON.stringify({ op: 'subscribe', series: fresh,
                             events: ['transition', 'incident', 'action'] }));
  }

  function onSample(m) {
    for (const [key, t] of state.tiles) {
      if (key.slice(key.indexOf('|') + 1) !== m.series) continue;
      const v = t.querySelector('.value');
      v.textContent = fmt(m.value, v.getAttribute('data-metric'));
      t.setAttribute('data-updated', String(m.ts_ms));
    }
    const c = state.charts.get(m.series);
    if (c) {
      const x = m.ts_ms / 1000;
      const xs = c.data[0];
      if (!xs.length || x > xs[xs.length - 1]) {
        xs.push(x);
        c.data[1].push(m.value);
        const from = x - seconds(state.window);
        while (xs.length && xs[0] < from) { xs.shift(); c.data[1].shift(); }
        redraw(c);
      }
    }
  }

  let refreshRules = null;
  let refreshIncidents = null;
  function soon(fn, which) {
    /* Several events in a burst: one reload. */
    if (which === 'rules') {
      clearTimeout(refreshRules);
      refreshRules = setTimeout(() => { loadRules(); loadStatus(); }, 150);
    } else {
      clearTimeout(refreshIncidents);
      refreshIncidents = setTimeout(() => { loadIncidents(); loadStatus(); }, 150);
    }
  }

  function connect() {
    const url = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host +
      location.pathname.replace(/[^/]*$/, '') + 'api/v1/feed';
    const ws = new WebSocket(url, 'vigil-feed');
    state.ws = ws;
    ws.onopen = () => {
      state.wsDelay = 1000;
      state.subscribed.clear();
      $('#feed-status').textContent = 'live';
      $('#feed-status').className = 'feed on';
      subscribe();
    };
    ws.onmessage = (ev) => {
      let msgs;
      try { msgs = JSON.parse(ev.data); } catch (e) { return; }
      for (const m of msgs) {
        if (m.type === 'sample') onSample(m);
        else if (m.type === 'transition') soon(loadRules, 'rules');
        else if (m.type === 'incident' || m.type === 'action') soon(loadIncidents, 'incidents');
      }
    };
    ws.onclose = (ev) => {
      $('#feed-status').textContent = 'offline' + (ev.reason ? ': ' + ev.reason : '');
      $('#feed-status').className = 'feed off';
      setTimeout(connect, state.wsDelay);
      state.wsDelay = Math.min(state.wsDelay * 2, 30000);
    };
  }

  /* ------------------------------------------------------------ start */

  $('#window').addEventListener('change', (ev) => {
    state.window = ev.target.value;
    reloadCharts();
  });
  $('#token-button').addEventListener('click', () => {
    $('#token-input').value = state.token;
    $('#token-dialog').showModal();
  });
  $('#token-dialog').addEventListener('close', () => {
    if ($('#token-dialog').returnValue === 'save') {
      state.token = $('#token-input').value.trim();
      localStorage.setItem('vigil.token', state.token);
    }
  });

  loadStatus();
  loadRules();
  loadIncidents();
  loadPlugins();
  connect();
  /* States and values judged over windows change without a transition;
   * a slow refresh keeps them honest. */
  setInterval(() => { loadStatus(); loadPlugins(); }, 10000);
  setInterval(loadRules, 30000);
})();
