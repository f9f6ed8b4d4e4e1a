// Small DOM and formatting helpers. Everything the page shows goes through `h` (text nodes,
// never innerHTML), so nothing a server or a client sends can become markup.

export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/// Replaces an element's children.
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/// A status as a badge: the word, a shape (CSS), and a colour.
export function badge(status, label) {
  const s = String(status || 'unknown');
  return h('span', { class: `badge s-${s.replace(/[^a-z_]/gi, '')}` }, label || s);
}

export function ms(v) {
  if (v === null || v === undefined || Number.isNaN(v)) return '—';
  if (v >= 1000) return `${(v / 1000).toFixed(2)} s`;
  if (v >= 10) return `${v.toFixed(0)} ms`;
  return `${v.toFixed(1)} ms`;
}

export function rate(v) {
  if (v === null || v === undefined || Number.isNaN(v)) return '—';
  return `${v.toFixed(2)}/s`;
}

export function pct(v, digits = 1) {
  if (v === null || v === undefined || Number.isNaN(v)) return '—';
  return `${(v * 100).toFixed(digits)} %`;
}

export function duration(seconds) {
  if (seconds === null || seconds === undefined) return '—';
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
}

export function since(at) {
  if (!at) return null;
  return (Date.now() - Date.parse(at)) / 1000;
}

export function time(at) {
  if (!at) return '—';
  const d = new Date(at);
  return h('time', { datetime: at, title: at }, d.toLocaleString());
}

/// A table from column specs `[header, cell(row), {num}]`.
export function table(caption, columns, rows, empty = 'None.') {
  if (!rows || rows.length === 0) return h('p', { class: 'muted' }, empty);
  return h('table', {},
    caption ? h('caption', { class: 'sr' }, caption) : null,
    h('thead', {}, h('tr', {}, columns.map(([title, , o]) =>
      h('th', { scope: 'col', class: o && o.num ? 'num' : null }, title)))),
    h('tbody', {}, rows.map(r => h('tr', {}, columns.map(([, cell, o]) =>
      h('td', { class: o && o.num ? 'num' : null }, cell(r)))))));
}

const toastEl = () => document.getElementById('toast');
let toastTimer;
/// A short message in the corner (a live region), errors in bold.
export function toast(message, isError = false) {
  const el = toastEl();
  fill(el, h('span', { class: isError ? 'error' : null }, message));
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => fill(el), isError ? 12000 : 5000);
}

/// Asks before an action; resolves true when confirmed. Esc and Cancel decline.
export function confirmAction(text, okLabel = 'Confirm') {
  const dialog = document.getElementById('confirm');
  fill(document.getElementById('confirm-text'), text);
  const ok = document.getElementById('confirm-ok');
  const cancel = document.getElementById('confirm-cancel');
  ok.textContent = okLabel;
  return new Promise(resolve => {
    const done = answer => {
      ok.removeEventListener('click', yes);
      cancel.removeEventListener('click', no);
      dialog.removeEventListener('close', no);
      if (dialog.open) dialog.close();
      resolve(answer);
    };
    const yes = () => done(true);
    const no = () => done(false);
    ok.addEventListener('click', yes);
    cancel.addEventListener('click', no);
    dialog.addEventListener('close', no);
    dialog.showModal();
    cancel.focus();
  });
}
