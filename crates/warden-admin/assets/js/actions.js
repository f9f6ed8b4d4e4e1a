// Operator actions, each through the API (recorded there as `operator_action`), each answered
// with the API's own words when refused.

import { api, enc } from './api.js';
import { toast } from './dom.js';

async function run(label, path, body) {
  try {
    const r = await api(path, { method: 'POST', body });
    toast(`${label}: done`);
    return r;
  } catch (e) {
    toast(`${label} refused — ${e.message}`, true);
    return null;
  }
}

/// restart / stop / start / reset a server, or one instance of it.
export function act(server, action, instance) {
  const q = instance === undefined ? '' : `?instance=${instance}`;
  const target = instance === undefined ? server : `${server}#${instance}`;
  return run(`${action} ${target}`, `/api/servers/${enc(server)}/${action}${q}`);
}

/// trigger / restore / enable / disable a server's failover.
export function failover(server, action) {
  return run(`failover ${action} ${server}`, `/api/failover/${enc(server)}/${action}`);
}

export function tuningApply(server) {
  return run(`apply tuning for ${server}`, '/api/tuning/apply', { server });
}

export function tuningRevert(id) {
  return run(`revert tuning change ${id}`, `/api/tuning/${enc(id)}/revert`);
}
