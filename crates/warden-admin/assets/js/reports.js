// Reports for a chosen period: failure analysis, availability against objectives, capacity
// recommendations, performance.

import { api } from './api.js';
import { h, fill, badge, ms, pct, rate, duration, time, table } from './dom.js';

const KINDS = [['failures', 'Failure analysis'], ['availability', 'Availability'],
  ['capacity', 'Capacity'], ['performance', 'Performance']];
const PERIODS = ['1h', '24h', '7d', '30d'];

export function mount(root, params) {
  let kind = params.get('kind') || 'failures';
  let period = params.get('since') || '7d';
  const body = h('section', { 'aria-live': 'polite', id: 'report' });
  const kindSel = h('select', { id: 'r-kind' }, KINDS.map(([k, l]) =>
    h('option', { value: k, selected: k === kind }, l)));
  const periodSel = h('select', { id: 'r-since' }, PERIODS.map(p =>
    h('option', { value: p, selected: p === period }, `last ${p}`)));
  fill(root, h('h1', {}, 'Reports'),
    h('div', { class: 'toolbar' },
      h('div', { class: 'field' }, h('label', { for: 'r-kind' }, 'Report'), kindSel),
      h('div', { class: 'field' }, h('label', { for: 'r-since' }, 'Period'), periodSel)),
    body);
  kindSel.addEventListener('change', () => { kind = kindSel.value; load(); });
  periodSel.addEventListener('change', () => { period = periodSel.value; load(); });

  async function load() {
    fill(body, h('p', { class: 'muted' }, 'Loading…'));
    try {
      const r = await api(`/api/reports/${kind}?since=${period}`);
      fill(body, RENDER[kind](r), r.note ? h('p', { class: 'muted' }, r.note) : null,
        h('p', { class: 'muted' }, 'Generated ', time(r.generated_at)));
    } catch (e) {
      fill(body, h('p', { class: 'error', role: 'alert' }, e.message));
    }
  }
  load();
  return () => {};
}

const RENDER = {
  failures: r => [
    h('div', { class: 'cards' },
      card('Failures', r.total), card('Open', r.open), card('Resolved', r.resolved),
      card('MTTR', duration(r.mttr_seconds))),
    h('h2', {}, 'By class'),
    table('By class', [
      ['Class', ([k]) => k], ['Count', ([, v]) => v.count, { num: true }],
      ['Open', ([, v]) => v.open, { num: true }], ['MTTR', ([, v]) => duration(v.mttr_seconds), { num: true }],
    ], Object.entries(r.by_class || {})),
    h('h2', {}, 'Top offenders'),
    table('Top offenders', [
      ['Instance', o => h('span', { class: 'mono' }, o.instance)], ['Failures', o => o.count, { num: true }],
      ['Open', o => o.open, { num: true }], ['Downtime', o => duration(o.downtime_seconds), { num: true }],
    ], r.top_offenders),
    h('h2', {}, 'Open incidents'),
    table('Open incidents', [
      ['Occurred', f => time(f.occurred_at)], ['Instance', f => h('span', { class: 'mono' }, f.server_instance)],
      ['Type', f => f.failure_type], ['Details', f => f.error_details || ''], ['Trace', f => h('code', {}, f.trace_id || '')],
    ], r.open_incidents, 'No open incidents.'),
  ],
  availability: r => table('Availability', [
    ['Server', s => s.server],
    ['Availability', s => pct(s.availability, 3), { num: true }],
    ['Objective', s => (s.objective == null ? '—' : pct(s.objective, 3)), { num: true }],
    ['Met', s => (s.met == null ? '—' : badge(s.met ? 'healthy' : 'unhealthy', s.met ? 'met' : 'missed'))],
    ['Error budget left', s => (s.error_budget && s.error_budget.remaining != null ? pct(s.error_budget.remaining) : '—'), { num: true }],
    ['Downtime', s => duration(s.downtime_seconds), { num: true }],
    ['Observed', s => duration(s.observed_seconds), { num: true }],
  ], r.servers),
  capacity: r => [
    h('p', { class: 'muted' }, r.method || ''),
    table('Capacity', [
      ['Server', s => s.server],
      ['Instances', s => `${s.routable_now} / ${s.instances}`, { num: true }],
      ['Utilization (peak hour)', s => pct(s.utilization && s.utilization.peak_hour), { num: true }],
      ['Throughput (avg)', s => rate(s.throughput && s.throughput.avg), { num: true }],
      ['Recommendation', s => (s.add_replica && s.add_replica.now ? badge('warning', 'add a replica now')
        : s.add_replica && s.add_replica.projected_at ? ['add a replica by ', time(s.add_replica.projected_at)]
        : (s.add_replica && s.add_replica.note) || 'enough')],
    ], r.servers),
  ],
  performance: r => [
    table('Servers', [
      ['Instance', i => h('span', { class: 'mono' }, i.instance)],
      ['p50 (avg)', i => ms(i.p50_ms_avg), { num: true }], ['p95 (max)', i => ms(i.p95_ms_max), { num: true }],
      ['Error rate (max)', i => pct(i.error_rate_max), { num: true }],
      ['Throughput (avg)', i => rate(i.throughput_avg), { num: true }],
    ], (r.servers || []).flatMap(s => s.instances)),
    h('h2', {}, 'Busiest tools'),
    table('Busiest tools', [
      ['Server', t => t.server], ['Tool', t => h('code', {}, t.tool)], ['Calls', t => t.calls, { num: true }],
      ['Errors', t => pct(t.error_rate), { num: true }], ['Mean', t => ms(t.mean_ms), { num: true }],
    ], r.busiest_tools, 'No tool calls in the period.'),
    h('h2', {}, 'Suggestions'),
    h('ul', {}, (r.suggestions || []).map(s => h('li', {}, typeof s === 'string' ? s : (s.message || s.suggestion || JSON.stringify(s))))),
  ],
};

function card(k, v) {
  return h('div', { class: 'card' }, h('div', { class: 'v' }, v ?? '—'), h('div', { class: 'k' }, k));
}
