// Latency and error-rate charts from `/api/metrics` (stored samples, bucketed by `step`),
// drawn with uPlot (vendored, loaded before this module).

import { api, enc } from './api.js';
import { h, fill } from './dom.js';

export const RANGES = { '1h': '30s', '24h': '10m', '7d': '1h' };

const PALETTE = ['#0a57c2', '#b3261e', '#116329', '#7d4e00', '#8250df', '#1b7c83'];

/// One chart per metric for a server, one line per instance; replaces `el`'s content.
export async function draw(el, server, range, metric, title, unit) {
  const step = RANGES[range];
  const r = await api(`/api/metrics?server=${enc(server)}&metric=${metric}&since=${range}&step=${step}`);
  const series = r.series || [];
  const figure = h('figure', { class: 'chart', 'aria-label': `${title}, last ${range}` },
    h('h3', {}, `${title} — last ${range}`));
  fill(el, figure);
  if (series.length === 0 || series.every(s => s.points.length === 0)) {
    figure.append(h('p', { class: 'muted' }, 'No samples stored for this period yet.'));
    return;
  }
  // One x axis: the union of every instance's bucket times.
  const times = [...new Set(series.flatMap(s => s.points.map(p => Date.parse(p[0]) / 1000)))]
    .sort((a, b) => a - b);
  const index = new Map(times.map((t, i) => [t, i]));
  const data = [times];
  for (const s of series) {
    const ys = new Array(times.length).fill(null);
    for (const p of s.points) ys[index.get(Date.parse(p[0]) / 1000)] = unit === '%' ? p[1] * 100 : p[1];
    data.push(ys);
  }
  const width = Math.max(320, Math.min(figure.clientWidth || 560, 900) - 16);
  const opts = {
    width, height: 200,
    series: [{}, ...series.map((s, i) => ({ label: s.instance, stroke: PALETTE[i % PALETTE.length],
      width: 1.5, spanGaps: false, value: (u, v) => (v == null ? '—' : `${v.toFixed(2)} ${unit}`) }))],
    axes: [{ stroke: 'currentColor' }, { stroke: 'currentColor', label: unit, size: 60 }],
    // The whole period, not just where there are samples.
    scales: { x: { time: true, range: () => [Date.parse(r.since) / 1000, Date.parse(r.until) / 1000] } },
  };
  // A text alternative for screen readers: the last value of each instance.
  figure.append(h('p', { class: 'sr' }, series.map(s => {
    const last = s.points[s.points.length - 1];
    return `${s.instance}: ${last && last[1] != null ? last[1].toFixed(2) : 'no data'} ${unit} at the end of the period.`;
  }).join(' ')));
  // eslint-disable-next-line no-undef
  new uPlot(opts, data, figure);
}
