// One server: its instances (with breaker and in-flight calls), actions, latency and
// error-rate charts over 1 h / 24 h / 7 d, the incident timeline with trace ids, its tools with
// their use, the tuning in force, and the predictions and alerts that concern it.

import { api, enc } from './api.js';
import { h, fill, badge, ms, pct, duration, since, time, table, confirmAction } from './dom.js';
import { subscribe } from './live.js';
import { act, failover, tuningApply, tuningRevert } from './actions.js';
import { draw, RANGES } from './charts.js';

export function mount(root, name) {
  let alive = true;
  let range = '1h';
  const head = h('div', {});
  const instances = h('section', { 'aria-labelledby': 'h-inst' });
  const charts = h('div', { class: 'charts' }, h('div', { id: 'c-lat' }), h('div', { id: 'c-err' }));
  const tabs = h('div', { class: 'tabs', role: 'group', 'aria-label': 'Chart period' },
    Object.keys(RANGES).map(r => h('button', { type: 'button', 'aria-pressed': String(r === range),
      dataset: { range: r }, onclick: () => { range = r; paintTabs(); drawCharts(); } }, r)));
  const timeline = h('section', {});
  const tools = h('section', {});
  const tuning = h('section', {});
  const alerts = h('section', {});
  fill(root,
    h('p', {}, h('a', { href: '#/' }, '← Overview')),
    head,
    h('h2', { id: 'h-inst' }, 'Instances'), instances,
    h('h2', {}, 'Latency and errors'), tabs, charts,
    h('h2', {}, 'Predictions and alerts'), alerts,
    h('h2', {}, 'Incidents and events'), timeline,
    h('h2', {}, 'Tools'), tools,
    h('h2', {}, 'Tuning in force'), tuning);

  function paintTabs() {
    for (const b of tabs.children) b.setAttribute('aria-pressed', String(b.dataset.range === range));
  }

  function drawCharts() {
    draw(charts.children[0], name, range, 'response_time', 'Response time (p50)', 'ms').catch(() => {});
    draw(charts.children[1], name, range, 'error_rate', 'Error rate', '%').catch(() => {});
  }

  function confirmed(question, label, f, action) {
    return h('button', { type: 'button', class: label === 'Stop' ? 'danger small' : 'small',
      dataset: action ? { action } : {},
      onclick: async () => { if (await confirmAction(question, label)) { await f(); refresh(); } } }, label);
  }

  async function refresh() {
    let s;
    try {
      s = await api(`/api/servers/${enc(name)}`);
    } catch (e) {
      fill(head, h('h1', {}, name), h('p', { class: 'error', role: 'alert' }, e.message));
      return;
    }
    if (!alive) return;
    const details = await Promise.all(s.instances.map((_, i) =>
      api(`/api/servers/${enc(name)}/instances/${i}`).catch(() => ({}))));
    fill(head,
      h('h1', {}, `${s.name} `, badge(s.status)),
      h('p', {}, `${s.kind || 'mcp'} · ${s.transport || ''} `, h('code', {}, s.target || ''),
        s.served_by && s.served_by !== s.name ? h('strong', {}, ` · served by ${s.served_by}`) : null,
        s.tags && s.tags.length ? ` · tags: ${s.tags.join(', ')}` : ''),
      h('div', { class: 'actions', 'aria-label': 'Server actions' },
        confirmed(`Restart every instance of ${name}? Calls in flight fail.`, 'Restart', () => act(name, 'restart')),
        confirmed(`Stop ${name}? Clients lose its tools until it is started.`, 'Stop', () => act(name, 'stop')),
        confirmed(`Start ${name}?`, 'Start', () => act(name, 'start')),
        confirmed(`Reset ${name} (clear a failed state and its restart budget)?`, 'Reset', () => act(name, 'reset')),
        confirmed(`Fail ${name} over to its fallback now?`, 'Failover', () => failover(name, 'trigger'), 'failover-trigger'),
        confirmed(`Restore ${name} from its fallback?`, 'Restore', () => failover(name, 'restore'), 'failover-restore')));
    fill(instances, table('Instances', [
      ['Instance', i => h('span', { class: 'mono' }, i.id)],
      ['State', i => badge(i.state)],
      ['PID', i => i.pid ?? '—', { num: true }],
      ['p50', i => ms(i.stats && i.stats.p50_ms), { num: true }],
      ['p95', i => ms(i.stats && i.stats.p95_ms), { num: true }],
      ['Errors', i => pct(i.stats && i.stats.error_rate), { num: true }],
      ['Restarts', i => i.restarts ?? 0, { num: true }],
      ['In state', i => duration(since(i.since)), { num: true }],
      ['Breaker', i => { const b = details[i.index].breaker || {}; return b.state ? badge(b.state) : '—'; }],
      ['In flight', i => details[i.index].in_flight ?? 0, { num: true }],
      ['Prediction', i => i.predictor ? (i.predictor.armed ? (i.predictor.seeded ? 'armed (seeded)' : 'armed') : 'learning') : '—'],
      ['Reason', i => i.reason || ''],
      ['Actions', i => h('div', { class: 'actions' },
        ['restart', 'stop', 'start', 'reset'].map(a => confirmed(`${a} ${i.id}?`,
          a[0].toUpperCase() + a.slice(1), () => act(name, a, i.index))))],
    ], s.instances.map((i, index) => ({ ...i, index }))));
    const cats = new Map((s.tool_categories || []).map(t => [t.name, t.categories.join(', ')]));
    let usage = new Map();
    try {
      const perf = await api(`/api/reports/performance?server=${enc(name)}&since=24h`);
      usage = new Map((perf.tools || perf.busiest_tools || []).map(t => [t.tool, t]));
    } catch { /* the report is optional here */ }
    const toolRows = [...cats.keys()].map(t => ({ name: t, categories: cats.get(t), use: usage.get(t) || {} }));
    fill(tools, table('Tools', [
      ['Tool', t => h('code', {}, t.name)],
      ['Categories', t => t.categories],
      ['Calls (24 h)', t => t.use.calls ?? 0, { num: true }],
      ['Errors', t => t.use.errors ?? 0, { num: true }],
      ['Mean', t => ms(t.use.mean_ms), { num: true }],
    ], toolRows, 'No tools listed.'));
  }

  async function refreshHistory() {
    const [failures, events, alertView, tune] = await Promise.all([
      api(`/api/failures?server=${enc(name)}&limit=50`).catch(() => ({ failures: [] })),
      api(`/api/events?server=${enc(name)}&limit=100`).catch(() => ({ events: [] })),
      api('/api/alerts').catch(() => ({ firing: [], pending: [] })),
      api(`/api/tuning?server=${enc(name)}`).catch(() => null),
    ]);
    if (!alive) return;
    const mine = a => a.labels && a.labels.server === name;
    const firing = [...(alertView.firing || []).filter(mine), ...(alertView.pending || []).filter(mine)];
    fill(alerts, table('Alerts for this server', [
      ['Alert', a => a.name],
      ['Status', a => badge(a.status)],
      ['Severity', a => a.severity],
      ['Summary', a => (a.annotations && (a.annotations.summary || a.annotations.description)) || ''],
      ['Since', a => time(a.starts_at)],
    ], firing, 'Nothing firing or pending; drift and failure forecasts appear here when the predictor raises them.'));
    fill(timeline,
      h('h3', {}, 'Incidents'),
      table('Incidents', [
        ['Occurred', f => time(f.occurred_at)],
        ['Instance', f => h('span', { class: 'mono' }, f.server_instance)],
        ['Type', f => f.failure_type],
        ['Details', f => f.error_details || ''],
        ['Recovery', f => f.resolved ? `${f.recovery_action || 'recovered'} in ${duration(f.resolution_time_seconds)}` : badge('open')],
        ['Trace', f => h('code', {}, f.trace_id || '')],
      ], failures.failures || [], 'No incidents recorded.'),
      h('h3', {}, 'Events'),
      h('ol', { class: 'timeline' }, (events.events || []).map(e => h('li', {},
        time(e.at), h('strong', {}, e.kind), ' ', h('span', { class: 'mono' }, e.instance || ''), ' ',
        e.message || '', e.trace_id ? h('code', { class: 'muted' }, ` trace ${e.trace_id}`) : null))));
    const mineTune = tune && (tune.servers || []).find(t => t.server === name);
    const proposals = tune ? (tune.proposals || []).filter(p => p.server === name) : [];
    const history = tune ? (tune.history || []).filter(p => p.server === name) : [];
    fill(tuning,
      table('Parameters', [
        ['Parameter', p => p.instance == null ? p.parameter : `${p.parameter} #${p.instance}`],
        ['In force', p => p.value_text],
        ['Configured', p => p.configured_text],
        ['Tuned', p => (p.tuned ? 'yes' : 'no')],
      ], mineTune ? mineTune.parameters : []),
      h('h3', {}, 'Proposals'),
      table('Proposals', [
        ['Parameter', p => p.parameter],
        ['From', p => p.from_text],
        ['To', p => p.to_text],
        ['Why', p => p.reason || ''],
      ], proposals, 'No proposals.'),
      proposals.length ? confirmed(`Apply the tuning proposals for ${name}?`, 'Apply', () => tuningApply(name)) : null,
      h('h3', {}, 'Changes'),
      table('Changes', [
        ['When', c => time(c.at)],
        ['Parameter', c => c.parameter],
        ['Change', c => `${c.from_text ?? c.from} → ${c.to_text ?? c.to}`],
        ['Why', c => c.reason || ''],
        ['State', c => (c.in_force ? confirmed(`Revert change ${c.id} (${c.parameter})?`, 'Revert', () => tuningRevert(c.id)) : 'reverted')],
      ], history, 'No changes.'));
  }

  let timer;
  const unsubscribe = subscribe(batch => {
    if (batch.some(e => e.server === name || e.kind === 'resync')) {
      clearTimeout(timer);
      timer = setTimeout(() => { refresh(); refreshHistory(); }, 300);
    }
  });
  refresh();
  refreshHistory();
  drawCharts();
  const periodic = setInterval(() => { if (!document.hidden) refresh(); }, 15000);
  return () => { alive = false; unsubscribe(); clearTimeout(timer); clearInterval(periodic); };
}
