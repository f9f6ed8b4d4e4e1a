// The overview: every server and integration, one <tbody> per server so a change re-renders
// only its rows. The list is fetched once; after that each event updates its instance at once
// (state, reason, PID) and queues a refresh of that one server (`/api/servers/{name}`), at
// most once a second per server and four in flight; when eight or more wait (a burst), one
// read of the whole list, at most once a second, replaces them. Latency and error rates move without events,
// so the list is re-read every 15 s while the tab is visible.

import { api, enc } from './api.js';
import { h, fill, badge, ms, pct, duration, since, toast, confirmAction } from './dom.js';
import { subscribe } from './live.js';
import { act } from './actions.js';

const ORDER = { unhealthy: 0, failed: 0, critical: 0, degraded: 1, warning: 1, offline: 2,
  starting: 3, stopped: 4, healthy: 5 };

export function mount(root) {
  const servers = new Map();
  const bodies = new Map();
  let sortKey = 'status';
  let filter = { status: 'all', text: '' };
  const dirty = new Set();
  const pending = new Set();
  const inflight = new Set();
  const lastRefresh = new Map();
  const shown = new Map();
  let alive = true;

  const summary = h('div', { class: 'cards', 'aria-label': 'Summary' });
  const status = h('select', { id: 'f-status' },
    ['all', 'healthy', 'degraded', 'unhealthy', 'offline', 'stopped'].map(s =>
      h('option', { value: s }, s)));
  const text = h('input', { id: 'f-text', type: 'search', placeholder: 'name or tag' });
  const sort = h('select', { id: 'f-sort' },
    [['status', 'worst first'], ['name', 'name'], ['latency', 'slowest first'],
     ['errors', 'most errors first']].map(([v, l]) => h('option', { value: v }, l)));
  const tableEl = h('table', { id: 'servers', 'aria-describedby': 'servers-caption' },
    h('caption', { id: 'servers-caption', class: 'sr' },
      'Servers and their instances; each server row is followed by its instances.'),
    h('thead', {}, h('tr', {},
      ['Server / instance', 'Status', 'Served by', 'PID', 'p50', 'p95', 'Errors', 'Restarts',
       'In state', 'Tools', 'Reason', 'Actions'].map((t, i) =>
        h('th', { scope: 'col', class: i >= 4 && i <= 9 ? 'num' : null }, t)))));
  const events = h('ol', { class: 'timeline', id: 'recent', 'aria-live': 'off' });
  fill(root,
    h('h1', {}, 'Overview'),
    summary,
    h('div', { class: 'toolbar', role: 'search' },
      h('div', { class: 'field' }, h('label', { for: 'f-status' }, 'Status'), status),
      h('div', { class: 'field' }, h('label', { for: 'f-text' }, 'Filter'), text),
      h('div', { class: 'field' }, h('label', { for: 'f-sort' }, 'Sort'), sort)),
    tableEl,
    h('h2', {}, 'Recent events'),
    events);

  status.addEventListener('change', () => { filter.status = status.value; order(); });
  text.addEventListener('input', () => { filter.text = text.value.toLowerCase(); order(); });
  sort.addEventListener('change', () => { sortKey = sort.value; order(); });

  function worst(s) {
    const lat = Math.max(0, ...s.instances.map(i => (i.stats && i.stats.p95_ms) || 0));
    const err = Math.max(0, ...s.instances.map(i => (i.stats && i.stats.error_rate) || 0));
    return { lat, err };
  }

  function visible(s) {
    if (filter.status !== 'all' && s.status !== filter.status) return false;
    if (filter.text) {
      const hay = [s.name, ...(s.tags || [])].join(' ').toLowerCase();
      if (!hay.includes(filter.text)) return false;
    }
    return true;
  }

  function order() {
    const list = [...servers.values()];
    list.sort((a, b) => {
      if (sortKey === 'name') return a.name.localeCompare(b.name);
      if (sortKey === 'latency') return worst(b).lat - worst(a).lat || a.name.localeCompare(b.name);
      if (sortKey === 'errors') return worst(b).err - worst(a).err || a.name.localeCompare(b.name);
      return (ORDER[a.status] ?? 9) - (ORDER[b.status] ?? 9) || a.name.localeCompare(b.name);
    });
    // Move rows only from the first one out of place (a live update rarely reorders).
    const current = [...tableEl.tBodies];
    let moved = false;
    list.forEach((s, i) => {
      const body = bodies.get(s.name);
      body.hidden = !visible(s);
      if (moved || current[i] !== body) {
        moved = true;
        tableEl.append(body);
      }
    });
    renderSummary();
  }

  function renderSummary() {
    const counts = {};
    let instances = 0;
    let routable = 0;
    for (const s of servers.values()) {
      counts[s.status] = (counts[s.status] || 0) + 1;
      instances += s.instances.length;
      routable += s.instances.filter(i => i.state === 'healthy' || i.state === 'warning').length;
    }
    fill(summary,
      card('Servers', servers.size),
      ...Object.entries(counts).sort().map(([k, v]) => card(k, v, k)),
      card('Instances routable', `${routable} / ${instances}`));
  }

  function card(k, v, st) {
    return h('div', { class: 'card' }, h('div', { class: 'v' }, v),
      h('div', { class: 'k' }, st ? badge(st) : k));
  }

  function row(s) {
    let body = bodies.get(s.name);
    if (!body) {
      body = h('tbody', { dataset: { server: s.name } });
      bodies.set(s.name, body);
    }
    const { lat, err: errs } = worst(s);
    const restarts = s.instances.reduce((n, i) => n + (i.restarts || 0), 0);
    const reason = s.error || (s.instances.find(i => i.reason) || {}).reason;
    const server = h('tr', { class: 'server', dataset: { status: s.status } },
      h('th', { scope: 'row' }, h('a', { href: `#/servers/${enc(s.name)}` }, s.name),
        s.kind && s.kind !== 'mcp' ? h('span', { class: 'muted' }, ` (${s.kind})`) : null),
      h('td', {}, badge(s.status)),
      h('td', {}, s.served_by && s.served_by !== s.name ? h('strong', {}, s.served_by) : s.served_by ? 'itself' : '—'),
      h('td', {}, ''),
      h('td', { class: 'num' }, ''),
      h('td', { class: 'num' }, s.instances.length > 1 ? ms(lat) : ''),
      h('td', { class: 'num' }, s.instances.length > 1 ? pct(errs) : ''),
      h('td', { class: 'num' }, restarts),
      h('td', { class: 'num' }, ''),
      h('td', { class: 'num' }, s.tools ?? '—'),
      h('td', {}, s.status === 'healthy' ? '' : (reason || '')),
      h('td', {}, h('div', { class: 'actions' },
        button('Restart', `Restart every instance of ${s.name}?`, s.name, 'restart'))));
    const instances = s.instances.map((i, index) => {
      const st = i.stats || {};
      return h('tr', { class: 'instance', dataset: { instance: i.id, state: i.state, pid: i.pid ?? '' } },
        h('td', {}, h('span', { class: 'mono' }, `↳ ${i.id}`),
          i.standby ? h('span', { class: 'muted' }, ' standby') : null,
          i.draining ? h('span', { class: 'muted' }, ' draining') : null),
        h('td', {}, badge(i.state)),
        h('td', {}, ''),
        h('td', { class: 'num mono' }, i.pid ?? '—'),
        h('td', { class: 'num' }, ms(st.p50_ms)),
        h('td', { class: 'num' }, ms(st.p95_ms)),
        h('td', { class: 'num' }, pct(st.error_rate)),
        h('td', { class: 'num' }, i.restarts ?? 0),
        h('td', { class: 'num' }, duration(since(i.since))),
        h('td', { class: 'num' }, i.tools ?? '—'),
        h('td', {}, i.reason || ''),
        h('td', {}, h('div', { class: 'actions' },
          button('Restart', `Restart ${i.id}? Calls in flight on it fail.`, s.name, 'restart', index))));
    });
    fill(body, server, instances);
    body.hidden = !visible(s);
    return body;
  }

  function button(label, question, name, action, instance) {
    const target = instance === undefined ? name : `${name}#${instance}`;
    return h('button', { type: 'button', class: 'small', 'aria-label': `${label} ${target}`,
      dataset: { action, target },
      onclick: async () => {
        if (await confirmAction(question, label)) {
          await act(name, action, instance);
          queue(name);
        }
      } }, label);
  }

  /// A server the config no longer has: its rows and everything kept about it go.
  function forget(name) {
    servers.delete(name);
    shown.delete(name);
    lastRefresh.delete(name);
    bodies.get(name)?.remove();
    bodies.delete(name);
  }

  async function load() {
    try {
      const r = await api('/api/servers');
      const seen = new Set();
      for (const s of r.servers) {
        seen.add(s.name);
        const key = JSON.stringify(s);
        if (!bodies.has(s.name)) {
          shown.set(s.name, key);
          servers.set(s.name, s);
          row(s);
        } else if (shown.get(s.name) !== key) {
          shown.set(s.name, key);
          servers.set(s.name, s);
          dirty.add(s.name);
        }
      }
      for (const name of [...servers.keys()]) {
        if (!seen.has(name)) forget(name);
      }
      render();
      if (!root.dataset.loaded) performance.mark('warden-first-render');
      root.dataset.loaded = 'true';
    } catch (e) {
      if (e.status !== 401) toast(`Could not read the servers: ${e.message}`, true);
    }
  }

  function queue(name) {
    pending.add(name);
    pump();
  }

  // Many servers waiting (a burst of events): one read of the whole list, at most once a
  // second, is cheaper than a read per server.
  let lastFull = 0;
  let fullTimer = null;
  let pumpTimer = null;
  function pump() {
    if (pending.size >= 8) {
      const wait = 1000 - (performance.now() - lastFull);
      if (wait > 0) {
        if (!fullTimer) fullTimer = setTimeout(() => { fullTimer = null; pump(); }, wait);
        return;
      }
      lastFull = performance.now();
      for (const name of pending) lastRefresh.set(name, lastFull);
      pending.clear();
      load();
      return;
    }
    let soonest = Infinity;
    for (const name of [...pending]) {
      if (inflight.size >= 4) return;
      if (inflight.has(name)) continue;
      const wait = 1000 - (performance.now() - (lastRefresh.get(name) || -1e9));
      if (wait > 0) { soonest = Math.min(soonest, wait); continue; }
      pending.delete(name);
      inflight.add(name);
      lastRefresh.set(name, performance.now());
      api(`/api/servers/${enc(name)}`).then(fresh => {
        const old = servers.get(name);
        if (!alive) return;
        if (old) {
          servers.set(name, { ...old, ...fresh });
          dirty.add(name);
          render();
        }
      }).catch(e => {
        if (e.status === 404) forget(name);
      }).finally(() => { inflight.delete(name); pump(); });
    }
    // One timer for the next server whose turn comes, however many wait.
    if (soonest < Infinity && !pumpTimer) {
      pumpTimer = setTimeout(() => { pumpTimer = null; pump(); }, soonest);
    }
  }

  // At most 25 servers' rows a frame: a list read that changed 100 of them is spread over a few
  // frames instead of one long task.
  let renderQueued = false;
  function render() {
    let n = 0;
    for (const name of dirty) {
      if (n++ >= 25) break;
      dirty.delete(name);
      const s = servers.get(name);
      if (s) row(s);
    }
    order();
    if (dirty.size && !renderQueued) {
      renderQueued = true;
      requestAnimationFrame(() => { renderQueued = false; if (alive) render(); });
    }
  }

  const recent = [];
  function onEvents(batch) {
    let reload = false;
    for (const e of batch) {
      if (e.kind === 'resync' || e.kind === 'config_reloaded' || e.kind === 'dropped') { reload = true; continue; }
      if (!e.server) continue;
      recent.push(e);
      const s = servers.get(e.server);
      if (!s) { reload = true; continue; }
      const inst = s.instances.find(i => i.id === e.instance);
      if (inst && e.kind === 'state_changed' && e.data) {
        inst.state = e.data.to;
        inst.reason = e.data.reason;
        inst.since = e.at;
      } else if (inst && e.kind === 'process_started' && e.data) {
        inst.pid = e.data.pid;
      } else if (inst && e.kind === 'process_exited') {
        inst.pid = null;
      }
      dirty.add(e.server);
      shown.delete(e.server);
      if (e.kind !== 'catalog_listed') queue(e.server);
    }
    if (reload) load();
    else render();
    if (recent.length) renderRecent();
  }

  function renderRecent() {
    recent.splice(0, Math.max(0, recent.length - 50));
    const items = recent.slice(-20).reverse().map(e => h('li', {},
      h('time', { datetime: e.at }, new Date(e.at).toLocaleTimeString()),
      h('strong', {}, e.kind), ' ', h('span', { class: 'mono' }, e.instance || e.server || ''),
      ' ', e.message || ''));
    fill(events, items);
  }

  const unsubscribe = subscribe(onEvents);
  api('/api/events?limit=20').then(r => {
    if (!alive || recent.length) return;
    recent.push(...(r.events || []).filter(e => e.server).reverse());
    renderRecent();
  }).catch(() => {});
  const timer = setInterval(() => { if (!document.hidden) load(); }, 15000);
  load();
  return () => { alive = false; unsubscribe(); clearInterval(timer); };
}
