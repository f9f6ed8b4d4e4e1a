// The dashboard's entry: the hash router (#/, #/servers/NAME, #/alerts, #/reports), the token
// prompt, and the live stream's status line.

import { api, token, whenUnauthorized } from './api.js';
import * as live from './live.js';
import * as overview from './overview.js';
import * as server from './server.js';
import * as alerts from './alerts.js';
import * as reports from './reports.js';

// Any Content-Security-Policy violation is kept where the browser tests can read it.
window.wardenCspViolations = [];
document.addEventListener('securitypolicyviolation', e => {
  window.wardenCspViolations.push(`${e.violatedDirective}: ${e.blockedURI}`);
});
window.wardenLive = live;

const main = document.getElementById('main');
const login = document.getElementById('login');
const liveEl = document.getElementById('live');
const signout = document.getElementById('signout');
let unmount = () => {};
let streaming = false;

function route() {
  unmount();
  const [path, query] = location.hash.replace(/^#/, '').split('?');
  const params = new URLSearchParams(query || '');
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  let section = 'overview';
  if (parts[0] === 'servers' && parts[1]) {
    unmount = server.mount(main, parts[1]);
    document.title = `${parts[1]} · Warden`;
  } else if (parts[0] === 'alerts') {
    section = 'alerts';
    unmount = alerts.mount(main);
    document.title = 'Alerts · Warden';
  } else if (parts[0] === 'reports') {
    section = 'reports';
    unmount = reports.mount(main, params);
    document.title = 'Reports · Warden';
  } else {
    unmount = overview.mount(main);
    document.title = 'Warden';
  }
  for (const a of document.querySelectorAll('[data-nav]')) {
    if (a.dataset.nav === section) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
}

function askForToken(message) {
  live.stop();
  streaming = false;
  unmount();
  unmount = () => {};
  main.hidden = true;
  login.hidden = false;
  document.getElementById('login-error').textContent = message || '';
  document.getElementById('token').focus();
}

async function begin() {
  // One read decides whether a token is needed (or the one kept is still good).
  try {
    await api('/api/events?limit=1');
  } catch (e) {
    if (e.status === 401) return;
  }
  login.hidden = true;
  main.hidden = false;
  signout.hidden = !token.get();
  if (!streaming) {
    streaming = true;
    live.start();
  }
  route();
}

whenUnauthorized(() => askForToken(token.get() ? 'That token was refused.' : ''));
live.onStatus(s => {
  liveEl.textContent = s === 'live' ? '● live' : s;
  liveEl.dataset.state = s === 'live' ? 'live' : 'down';
});
document.getElementById('login-form').addEventListener('submit', ev => {
  ev.preventDefault();
  const input = document.getElementById('token');
  token.set(input.value);
  input.value = '';
  begin();
});
signout.addEventListener('click', () => { token.clear(); askForToken(''); });
window.addEventListener('hashchange', route);
begin();
