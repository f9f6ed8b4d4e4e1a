// The live event stream: `GET /events` read with fetch (so the token goes in a header, not a
// URL, as EventSource would need), parsed as Server-Sent Events, handed to subscribers in
// batches once per animation frame, so 500 events a second cost one render a frame.
// Reconnects with backoff; after a reconnect subscribers are told to resynchronize, since
// the stream has no replay.

import { headers } from './api.js';

const subscribers = new Set();
const statusListeners = new Set();
let queue = [];
let scheduled = false;
let controller = null;
let stats = { received: 0, batches: 0, dropped: 0 };

export function subscribe(f) {
  subscribers.add(f);
  return () => subscribers.delete(f);
}

export function onStatus(f) {
  statusListeners.add(f);
}

export function counters() {
  return { ...stats, queued: queue.length };
}

function setStatus(s) {
  for (const f of statusListeners) f(s);
}

function flush() {
  scheduled = false;
  const batch = queue;
  queue = [];
  stats.batches += 1;
  for (const f of subscribers) {
    try { f(batch); } catch (e) { console.error('event subscriber failed', e); }
  }
}

/// Hands events to the subscribers on the next frame (also the entry the benchmark drives).
export function deliver(events) {
  for (const e of events) queue.push(e);
  stats.received += events.length;
  if (!scheduled) {
    scheduled = true;
    // A hidden tab gets no frames: fall back to a timer so state stays current.
    if (document.hidden) setTimeout(flush, 250);
    else requestAnimationFrame(flush);
  }
}

function parse(block) {
  let data = '';
  for (const line of block.split('\n')) {
    if (line.startsWith('data:')) data += (data ? '\n' : '') + line.slice(line[5] === ' ' ? 6 : 5);
  }
  if (!data) return null;
  try { return JSON.parse(data); } catch { return null; }
}

export function start() {
  let delay = 1000;
  let first = true;
  const loop = async () => {
    for (;;) {
      controller = new AbortController();
      try {
        const r = await fetch('/events', { headers: headers({ Accept: 'text/event-stream' }),
          signal: controller.signal, cache: 'no-store', credentials: 'omit' });
        if (r.status === 401) { setStatus('needs token'); return; }
        if (!r.ok || !r.body) throw new Error(`HTTP ${r.status}`);
        setStatus('live');
        if (!first) deliver([{ kind: 'resync' }]);
        first = false;
        delay = 1000;
        const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value.replace(/\r\n/g, '\n');
          let at;
          const batch = [];
          while ((at = buffer.indexOf('\n\n')) >= 0) {
            const e = parse(buffer.slice(0, at));
            buffer = buffer.slice(at + 2);
            if (e) {
              if (e.kind === 'dropped') stats.dropped += 1;
              batch.push(e);
            }
          }
          if (batch.length) deliver(batch);
        }
      } catch (e) {
        if (e.name === 'AbortError') return;
      }
      setStatus(`reconnecting in ${Math.round(delay / 1000)} s`);
      await new Promise(res => setTimeout(res, delay));
      delay = Math.min(delay * 2, 10000);
    }
  };
  loop();
}

export function stop() {
  if (controller) controller.abort();
}
