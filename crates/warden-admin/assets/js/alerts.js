// Alerts: what fires and what is pending, silences (create with matchers and a duration,
// expire), and each receiver's delivery state.

import { api, enc } from './api.js';
import { h, fill, badge, time, table, toast, confirmAction } from './dom.js';
import { subscribe } from './live.js';

export function mount(root) {
  let alive = true;
  const firing = h('section', {});
  const silences = h('section', {});
  const receivers = h('section', {});
  const matchers = h('input', { id: 's-matchers', required: true, size: 34,
    placeholder: 'server=search, alertname=ServerDown', 'aria-describedby': 's-help' });
  const duration = h('input', { id: 's-duration', required: true, size: 6, value: '2h' });
  const comment = h('input', { id: 's-comment', required: true, size: 28, placeholder: 'why' });
  const who = h('input', { id: 's-by', size: 12, placeholder: 'you' });
  const form = h('form', { class: 'inline', id: 'silence-form', 'aria-labelledby': 'h-new-silence' },
    h('div', { class: 'field' }, h('label', { for: 's-matchers' }, 'Matchers'), matchers),
    h('div', { class: 'field' }, h('label', { for: 's-duration' }, 'Duration'), duration),
    h('div', { class: 'field' }, h('label', { for: 's-comment' }, 'Comment'), comment),
    h('div', { class: 'field' }, h('label', { for: 's-by' }, 'Created by'), who),
    h('button', { type: 'submit' }, 'Create silence'));
  fill(root,
    h('h1', {}, 'Alerts'),
    h('h2', {}, 'Firing and pending'), firing,
    h('h2', {}, 'Silences'), silences,
    h('h3', { id: 'h-new-silence' }, 'New silence'),
    h('p', { id: 's-help', class: 'muted' },
      'Comma-separated label matchers (name=value or name!=value); a duration such as 30m, 2h or 1d.'),
    form,
    h('h2', {}, 'Receivers'), receivers);

  form.addEventListener('submit', async ev => {
    ev.preventDefault();
    const list = matchers.value.split(',').map(m => m.trim()).filter(Boolean);
    try {
      const s = await api('/api/silences', { method: 'POST', body: {
        matchers: list, duration: duration.value.trim(), comment: comment.value.trim(),
        created_by: who.value.trim() || 'dashboard' } });
      toast(`Silence ${s.id} created`);
      comment.value = '';
      refresh();
    } catch (e) {
      toast(`The silence was refused — ${e.message}`, true);
    }
  });

  async function refresh() {
    let v;
    let recent = [];
    try {
      [v, recent] = await Promise.all([api('/api/alerts'),
        api('/api/alerts/notifications?limit=50').then(r => r.notifications).catch(() => [])]);
    } catch (e) {
      fill(firing, h('p', { class: 'error', role: 'alert' }, e.message));
      return;
    }
    if (!alive) return;
    const labels = a => Object.entries(a.labels || {}).filter(([k]) => k !== 'alertname' && k !== 'severity')
      .map(([k, x]) => `${k}=${x}`).join(', ');
    fill(firing, table('Alerts', [
      ['Alert', a => a.name],
      ['Status', a => badge(a.status)],
      ['Severity', a => a.severity],
      ['Labels', a => h('span', { class: 'mono' }, labels(a))],
      ['Summary', a => (a.annotations && a.annotations.summary) || ''],
      ['Since', a => time(a.starts_at)],
      ['Muted', a => (a.muted ? 'silenced' : '')],
    ], [...(v.firing || []), ...(v.pending || [])], 'Nothing is firing or pending.'));
    fill(silences, table('Silences', [
      ['Id', s => h('code', {}, s.id)],
      ['Matchers', s => h('span', { class: 'mono' }, (s.matchers || []).map(m =>
        `${m.name}${m.equal === false ? '!=' : '='}${m.value}`).join(', '))],
      ['Ends', s => time(s.ends_at)],
      ['Comment', s => s.comment],
      ['By', s => s.created_by],
      ['', s => h('button', { type: 'button', class: 'small', 'aria-label': `Expire silence ${s.id}`,
        onclick: async () => {
          if (!(await confirmAction(`Expire silence ${s.id}? Alerts it mutes notify again.`, 'Expire'))) return;
          try {
            await api(`/api/silences/${enc(s.id)}`, { method: 'DELETE' });
            toast(`Silence ${s.id} expired`);
          } catch (e) { toast(`Could not expire ${s.id} — ${e.message}`, true); }
          refresh();
        } }, 'Expire')],
    ], (v.silences || []).filter(s => Date.parse(s.ends_at) > Date.now()), 'No active silences.'));
    const outbox = (v.notifications && v.notifications.undelivered) || [];
    fill(receivers,
      h('p', {}, `Delivered: ${v.notifications ? v.notifications.delivered : 0} · failed attempts: ${
        v.notifications ? v.notifications.failed_attempts : 0} · expired: ${v.notifications ? v.notifications.expired : 0}`),
      table('Receivers', [
        ['Receiver', r => r.name],
        ['Kind', r => r.kind],
        ['Target', r => h('span', { class: 'mono' }, r.target)],
        ['Minimum severity', r => r.min_severity || 'any'],
        ['Waiting', r => outbox.filter(o => o.receiver === r.name).length, { num: true }],
        ['Last error', r => (outbox.find(o => o.receiver === r.name && o.last_error) || {}).last_error || ''],
        ['Last sent', r => { const n = recent.find(x => x.receiver === r.name); return n ? [badge(n.status), ' ', time(n.created_at || n.at)] : '—'; }],
      ], v.receivers || [], 'No receivers configured (warden.alerts.receivers).'));
  }

  let timer;
  const unsubscribe = subscribe(batch => {
    if (batch.some(e => e.kind === 'alert_firing' || e.kind === 'alert_resolved' || e.kind === 'resync')) {
      clearTimeout(timer);
      timer = setTimeout(refresh, 200);
    }
  });
  refresh();
  const periodic = setInterval(() => { if (!document.hidden) refresh(); }, 10000);
  return () => { alive = false; unsubscribe(); clearTimeout(timer); clearInterval(periodic); };
}
