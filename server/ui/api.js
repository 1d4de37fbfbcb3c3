// api.js: the JSON API (docs/HTTP-API.md). The credential, when sagad asks
// for one, is kept in sessionStorage (this tab only, never in a URL) and
// sent as "Authorization: Bearer <credential>". Actions carry the header
// X-Sagad-Request, which a page of another site cannot send without a CORS
// preflight that sagad never grants.

const KEY = 'sagad.credential';

export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.error && body.error.message) || `HTTP ${status}`);
    this.status = status;
    this.code = body && body.error ? body.error.code : 0;
  }
}

export const credential = {
  get: () => sessionStorage.getItem(KEY) || '',
  set: (c) => sessionStorage.setItem(KEY, c),
  clear: () => sessionStorage.removeItem(KEY),
};

async function call(method, path, body) {
  const headers = { Accept: 'application/json' };
  const c = credential.get();
  if (c) headers.Authorization = `Bearer ${c}`;
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    headers['X-Sagad-Request'] = 'ui';
  }
  const res = await fetch(`/api/v1${path}`, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
    credentials: 'omit', cache: 'no-store',
  });
  let data = null;
  try { data = await res.json(); } catch (e) { data = null; }
  if (!res.ok) throw new ApiError(res.status, data);
  return data;
}

export const api = {
  whoami: () => call('GET', '/whoami'),
  list: (q) => call('GET', `/sagas?${new URLSearchParams(q)}`),
  saga: (id, reveal) => call('GET', `/sagas/${encodeURIComponent(id)}${reveal ? '?reveal=1' : ''}`),
  participants: () => call('GET', '/participants'),
  definitions: () => call('GET', '/definitions'),
  definition: (name) => call('GET', `/definitions/${encodeURIComponent(name)}`),
  act: (id, action, step, reason, extra) =>
    call('POST', `/sagas/${encodeURIComponent(id)}/actions`, { action, step: step || '', reason, ...(extra || {}) }),
};

// The actions, one entry each (server/http_api.c has the matching table).
// scope: 'saga' acts on the saga, 'step' on one step; when(): may it apply.
export const ACTIONS = [
  { name: 'cancel', label: 'Cancel', scope: 'saga', danger: true,
    help: 'Stops going forward and compensates the completed steps, newest first.',
    when: (s) => ['running'].includes(s.state) },
  { name: 'retry', label: 'Retry', scope: 'step',
    help: 'Gives the step a fresh budget of attempts, now: a step waiting to retry, or a compensation that failed (parked saga).',
    when: (s, st) => ['retry_wait', 'comp_retry_wait', 'comp_failed'].includes(st.state) },
  { name: 'skip', label: 'Skip', scope: 'step', danger: true,
    help: 'Marks the step done by hand (an action: succeeded, no result; a compensation: undone by hand).',
    when: (s, st) => ['retry_wait', 'comp_retry_wait', 'comp_failed'].includes(st.state) },
  { name: 'terminate', label: 'Terminate', scope: 'saga', danger: true,
    help: 'Stops the saga without compensating anything; recorded. Steps keep the state they had; late outcomes are ignored.',
    when: (s) => ['running', 'compensating', 'failed'].includes(s.state) },
  { name: 'rerun', label: 'Rerun', scope: 'saga',
    help: 'Starts a new saga with this one\'s input, linked to it (same definition version).',
    when: (s) => ['completed', 'compensated', 'failed', 'terminated'].includes(s.state) },
  { name: 'force_succeeded', label: 'Force succeeded', scope: 'step', danger: true,
    input: { name: 'result', label: 'Result (base64 of the step\'s result message; empty = none)' },
    help: 'Records the step as succeeded with the given result, so the saga goes on.',
    when: (s, st) => s.state === 'running' && ['running', 'retry_wait'].includes(st.state) },
  { name: 'force_compensated', label: 'Force compensated', scope: 'step', danger: true,
    help: 'Records the step\'s compensation as done by hand; a parked saga resumes.',
    when: (s, st) => ['compensating', 'failed'].includes(s.state) &&
      ['succeeded', 'compensating', 'comp_retry_wait', 'comp_failed'].includes(st.state) },
];

// Proto3 JSON gives enum names and 64-bit numbers as strings.
export const sagaState = (v) => String(v || '').replace(/^SAGA_/, '').toLowerCase() || 'unknown';
export const stepState = (v) => String(v || '').replace(/^STEP_/, '').toLowerCase() || 'pending';
export const us = (v) => Number(v || 0);
export function fmtTime(v) {
  const t = us(v);
  if (!t) return '';
  const d = new Date(t / 1000);
  const p = (n, w = 2) => String(n).padStart(w, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}`;
}
export function fmtDur(a, b) {
  const ms = (us(b) - us(a)) / 1000;
  if (!(ms >= 0)) return '';
  if (ms < 1000) return `${ms.toFixed(ms < 10 ? 1 : 0)} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(2)} s`;
  return `${Math.floor(ms / 60000)} min ${Math.round((ms % 60000) / 1000)} s`;
}
