// app.js: sagad's web UI. Plain ES modules, no framework: pages are built
// with h() (text only, never HTML from data), routed by the URL's hash.

import { api, ApiError, credential, ACTIONS, sagaState, stepState, us, fmtTime, fmtDur } from './api.js';
import { stepGraph } from './graph.js';

const $ = (s) => document.querySelector(s);
const main = $('#main');
let me = { role: 'none', auth: false, reveal: false };
let timer = null; // the live refresh of the page shown
let renderSeq = 0;

function h(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (k === 'class') e.className = v;
    else if (k === 'style') e.style.cssText = v; // CSSOM: allowed by the CSP, a style attribute is not
    else if (v === true) e.setAttribute(k, '');
    else e.setAttribute(k, v);
  }
  for (const k of kids.flat(Infinity)) {
    if (k === undefined || k === null || k === false) continue;
    e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  }
  return e;
}

function toast(msg, bad) {
  const t = $('#toast');
  t.textContent = msg;
  t.className = bad ? 'toast bad' : 'toast';
  t.hidden = false;
  clearTimeout(toast.t);
  toast.t = setTimeout(() => { t.hidden = true; }, bad ? 8000 : 4000);
}

const badge = (state) => h('span', { class: `badge s-${state}`, 'data-state': state }, state === 'failed' ? 'failed (parked)' : state);
const stepBadge = (st) => h('span', { class: `badge st-${st}` }, st.replace(/_/g, ' '));
const mono = (s) => h('span', { class: 'mono' }, s);
const canAct = () => me.role === 'operator' || me.role === 'admin';
const noRole = 'your role may not do this (operator or admin needed)';

// ---- sign in -----------------------------------------------------------

function askCredential(msg) {
  const d = $('#login');
  $('#login-error').textContent = msg || '';
  $('#login-cred').value = '';
  if (!d.open) d.showModal();
  return new Promise((resolve) => {
    $('#login-form').onsubmit = async (ev) => {
      ev.preventDefault();
      credential.set($('#login-cred').value.trim());
      try {
        me = await api.whoami();
        d.close();
        resolve();
      } catch (e) {
        credential.clear();
        $('#login-error').textContent = e.message;
      }
    };
  });
}

async function loadMe() {
  for (;;) {
    try { me = await api.whoami(); break; } catch (e) {
      if (e.status !== 401) throw e;
      await askCredential(credential.get() ? 'That credential was refused.' : '');
    }
  }
  const who = $('#who');
  who.replaceChildren(h('span', {},
    h('span', { id: 'role', 'data-role': me.role }, me.auth ? `role: ${me.role}` : 'auth off: anyone here may act'),
    me.auth && h('button', { class: 'small', style: 'margin-left:10px', onclick: () => { credential.clear(); location.reload(); } }, 'Sign out')));
}

// ---- confirmation with a reason ------------------------------------------

function confirmAction(title, body, danger) {
  const d = $('#confirm');
  $('#confirm-title').textContent = title;
  $('#confirm-body').replaceChildren(...[].concat(body));
  $('#confirm-reason').value = '';
  $('#confirm-error').textContent = '';
  $('#confirm-ok').className = danger ? 'danger' : 'primary';
  d.showModal();
  return new Promise((resolve) => {
    $('#confirm-cancel').onclick = () => { d.close(); resolve(null); };
    d.oncancel = () => resolve(null);
    $('#confirm-form').onsubmit = (ev) => {
      ev.preventDefault();
      const r = $('#confirm-reason').value.trim();
      if (!r) { $('#confirm-error').textContent = 'A reason is required.'; return; }
      d.close();
      resolve(r);
    };
  });
}

async function act(id, action, step, reason, extra) {
  try {
    const r = await api.act(id, action, step, reason, extra);
    return { ok: true, state: sagaState(r.state), newSagaId: r.newSagaId || '' };
  } catch (e) {
    return { ok: false, error: e.message, status: e.status };
  }
}

function actionButton(a, enabled, why, onclick) {
  return h('button', { class: `small${a.danger ? ' danger' : ''}`, disabled: !enabled, title: enabled ? a.help : why,
    'data-action': a.name, onclick }, a.label);
}

// ---- pages ------------------------------------------------------------------

function stop() { if (timer) { clearInterval(timer); timer = null; } }
function live(fn, ms) { stop(); timer = setInterval(fn, ms); }

function errorCard(e) {
  return h('div', { class: 'card parked' }, h('h2', {}, e.status ? `Error ${e.status}` : 'Error'), h('p', {}, e.message));
}

const STATES = ['running', 'compensating', 'failed', 'completed', 'compensated', 'terminated'];
const listMemo = { key: '', back: [] };
let selected = new Set();

async function pageList(q) {
  const seq = renderSeq;
  const filters = Object.fromEntries(q);
  const key = JSON.stringify({ ...filters, page_token: undefined });
  if (key !== listMemo.key) { listMemo.key = key; listMemo.back = []; selected = new Set(); }
  const liveOn = sessionStorage.getItem('sagad.live') !== 'off';

  const form = h('form', { class: 'filters card', id: 'filters' },
    h('label', {}, 'State', h('select', { name: 'state' }, h('option', { value: '' }, 'any'),
      STATES.map((s) => h('option', { value: s, selected: filters.state === s }, s === 'failed' ? 'failed (parked)' : s)))),
    h('label', {}, 'Definition', h('input', { name: 'definition', value: filters.definition || '', placeholder: 'shop.OrderSaga' })),
    h('label', {}, 'Version', h('input', { name: 'version', value: filters.version || '', inputmode: 'numeric', placeholder: 'any' })),
    h('label', {}, 'Business key', h('input', { name: 'business_key', value: filters.business_key || '' })),
    h('label', {}, 'Participant', h('input', { name: 'participant', value: filters.participant || '' })),
    h('label', {}, 'Error contains', h('input', { name: 'error', value: filters.error || '' })),
    h('label', {}, 'Created from', h('input', { name: 'from', type: 'datetime-local', step: 1, value: filters.from || '' })),
    h('label', {}, 'Created before', h('input', { name: 'to', type: 'datetime-local', step: 1, value: filters.to || '' })),
    h('div', { class: 'buttons' },
      h('button', { class: 'primary', type: 'submit' }, 'Filter'),
      h('button', { type: 'button', onclick: () => { location.hash = '#/sagas'; } }, 'Clear')));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const p = new URLSearchParams();
    for (const [k, v] of new FormData(form)) if (String(v).trim()) p.set(k, String(v).trim());
    location.hash = `#/sagas?${p}`;
  });

  const countsEl = h('div', { class: 'counts', id: 'counts' });
  const bulkEl = h('div', { id: 'bulk' });
  const tableEl = h('div', { class: 'card tablecard', id: 'sagas' }, h('p', { class: 'muted', style: 'padding:12px' }, 'Loading…'));
  const liveBox = h('input', { type: 'checkbox', id: 'live', checked: liveOn,
    onchange: (ev) => { sessionStorage.setItem('sagad.live', ev.target.checked ? 'on' : 'off'); pageList(q); } });
  main.replaceChildren(
    h('div', { class: 'row', style: 'margin-bottom:10px' }, h('h1', {}, 'Sagas'), h('span', { class: 'spacer' }),
      h('label', { class: 'live' }, h('span', { class: 'row' }, liveBox, 'live refresh (3 s)'))),
    form, countsEl, bulkEl, tableEl);

  const req = { limit: 50, counts: 1 };
  for (const k of ['state', 'definition', 'version', 'business_key', 'participant', 'error', 'page_token']) if (filters[k]) req[k] = filters[k];
  if (filters.from) req.created_after_us = Date.parse(filters.from) * 1000;
  if (filters.to) req.created_before_us = Date.parse(filters.to) * 1000;

  let lastSig = '';
  // A live refresh redraws only when the answer changed: a click on a row
  // is never lost to a redraw.
  const draw = async (force) => {
    let r;
    const t0 = performance.now();
    try { r = await api.list(req); } catch (e) {
      if (seq !== renderSeq) return;
      tableEl.replaceChildren(errorCard(e));
      lastSig = '';
      return;
    }
    if (seq !== renderSeq) return;
    const sig = JSON.stringify(r);
    if (force !== true && sig === lastSig) return;
    lastSig = sig;
    const ms = Math.round(performance.now() - t0);
    const counts = Object.fromEntries((r.counts || []).map((c) => [sagaState(c.state),
      `${Number(c.count || 0).toLocaleString('en')}${c.atLeast ? '+' : ''}`]));
    countsEl.replaceChildren(...STATES.map((s) => {
      const p = new URLSearchParams(q); p.delete('page_token');
      if (filters.state === s) p.delete('state'); else p.set('state', s);
      return h('a', { class: `count${filters.state === s ? ' on' : ''}`, href: `#/sagas?${p}`, 'data-count': s },
        h('span', { class: `s-${s}` }, s === 'failed' ? 'failed (parked)' : s), h('b', { title: String(counts[s] || '0').endsWith('+') ? 'at least: counting stops there (docs/HTTP-API.md)' : undefined }, counts[s] || '0'));
    }));
    const sagas = r.sagas || [];
    const rows = sagas.map((s) => {
      const st = sagaState(s.state);
      const box = h('input', { type: 'checkbox', 'aria-label': `select ${s.sagaId}`, checked: selected.has(s.sagaId),
        onchange: (ev) => { if (ev.target.checked) selected.add(s.sagaId); else selected.delete(s.sagaId); drawBulk(); } });
      return h('tr', { 'data-id': s.sagaId },
        h('td', {}, box),
        h('td', {}, h('a', { href: `#/saga/${s.sagaId}`, class: 'mono' }, s.sagaId)),
        h('td', {}, s.definition, h('span', { class: 'muted' }, ` v${s.version}`)),
        h('td', {}, badge(st)),
        h('td', { class: 'mono' }, s.businessKey || ''),
        h('td', { class: 'num' }, `${s.stepsDone || 0}/${s.stepsTotal || 0}`),
        h('td', { class: 'mono' }, fmtTime(s.createdUs)),
        h('td', { class: 'mono' }, fmtTime(s.updatedUs)),
        h('td', { class: 'err', title: s.error || '' }, s.error || ''));
    });
    const all = h('input', { type: 'checkbox', 'aria-label': 'select all on this page',
      checked: sagas.length > 0 && sagas.every((s) => selected.has(s.sagaId)),
      onchange: (ev) => { for (const s of sagas) { if (ev.target.checked) selected.add(s.sagaId); else selected.delete(s.sagaId); } draw(true); drawBulk(); } });
    const older = r.nextPageToken;
    tableEl.replaceChildren(
      h('table', {}, h('thead', {}, h('tr', {}, h('th', {}, all), h('th', {}, 'Saga'), h('th', {}, 'Definition'), h('th', {}, 'State'),
        h('th', {}, 'Business key'), h('th', { class: 'num' }, 'Steps'), h('th', {}, 'Created'), h('th', {}, 'Updated'), h('th', {}, 'Error'))),
      h('tbody', {}, rows.length ? rows : h('tr', {}, h('td', { colspan: 9, class: 'muted' }, 'No saga matches.')))),
      h('div', { class: 'pager' },
        h('button', { disabled: listMemo.back.length === 0, onclick: () => {
          const p = new URLSearchParams(q); const t = listMemo.back.pop();
          if (t) p.set('page_token', t); else p.delete('page_token');
          location.hash = `#/sagas?${p}`;
        } }, '← Newer'),
        h('button', { disabled: !older, id: 'older', onclick: () => {
          const p = new URLSearchParams(q); listMemo.back.push(filters.page_token || '');
          p.set('page_token', older); location.hash = `#/sagas?${p}`;
        } }, 'Older →'),
        h('span', { class: 'muted' }, `${sagas.length} shown · answered in ${ms} ms`)));
  };

  const drawBulk = () => {
    if (selected.size === 0) { bulkEl.replaceChildren(); return; }
    const why = canAct() ? '' : noRole;
    bulkEl.replaceChildren(h('div', { class: 'bulk' },
      h('b', {}, `${selected.size} selected`),
      h('button', { class: 'small danger', disabled: !canAct(), title: why || 'Cancel every selected saga that is running', 'data-bulk': 'cancel',
        onclick: () => bulk('cancel') }, 'Cancel…'),
      h('button', { class: 'small', disabled: !canAct(), title: why || 'Retry the waiting or failed step of every selected saga', 'data-bulk': 'retry',
        onclick: () => bulk('retry') }, 'Retry…'),
      h('button', { class: 'small danger', disabled: !canAct(), title: why || 'Terminate every selected saga that is running, compensating or parked, without compensating', 'data-bulk': 'terminate',
        onclick: () => bulk('terminate') }, 'Terminate…'),
      h('span', { class: 'spacer' }),
      h('button', { class: 'small', onclick: () => { selected = new Set(); draw(true); drawBulk(); } }, 'Clear selection')));
  };

  const bulk = async (what) => {
    const ids = [...selected];
    const title = { cancel: 'Cancel', terminate: 'Terminate', retry: 'Retry' }[what];
    const reason = await confirmAction(`${title} ${ids.length} saga(s)?`,
      [h('p', {}, { cancel: 'Each running saga stops and compensates its completed steps.',
        terminate: 'Each saga stops where it is, without compensating anything.',
        retry: 'For each saga, every step waiting to retry or whose compensation failed starts its attempts again.' }[what]),
      h('p', { class: 'mono muted' }, ids.slice(0, 5).join('\n'), ids.length > 5 ? ` … and ${ids.length - 5} more` : '')], what !== 'retry');
    if (!reason) return;
    let ok = 0; const bad = [];
    for (const id of ids) {
      if (what !== 'retry') {
        const r = await act(id, what, '', reason);
        if (r.ok) ok++; else bad.push(`${id.slice(0, 8)}: ${r.error}`);
      } else {
        let s;
        try { s = (await api.saga(id)).saga; } catch (e) { bad.push(`${id.slice(0, 8)}: ${e.message}`); continue; }
        const steps = (s.steps || []).filter((st) => ['retry_wait', 'comp_retry_wait', 'comp_failed'].includes(stepState(st.state)));
        if (steps.length === 0) { bad.push(`${id.slice(0, 8)}: no step to retry`); continue; }
        for (const st of steps) {
          const r = await act(id, 'retry', st.name, reason);
          if (r.ok) ok++; else bad.push(`${id.slice(0, 8)} ${st.name}: ${r.error}`);
        }
      }
    }
    toast(`${what}: ${ok} done${bad.length ? `, ${bad.length} refused: ${bad.slice(0, 3).join('; ')}` : ''}`, bad.length > 0);
    selected = new Set();
    drawBulk();
    draw(true);
  };

  drawBulk();
  await draw(true);
  if (liveOn) live(draw, 3000); else stop();
}

function traceId(tp) {
  const m = /^[0-9a-f]{2}-([0-9a-f]{32})-/.exec(tp || '');
  return m ? m[1] : '';
}

const EV = (t) => String(t || '').replace(/^EVENT_/, '').toLowerCase();

// The compensation unwind from the history: each step undone, in the order
// its compensation began, with when, how many attempts and how it ended.
function unwind(s) {
  const steps = s.steps || [];
  const order = [];
  const by = new Map();
  let why = null, began = null;
  for (const e of s.events || []) {
    const t = EV(e.type);
    if (t === 'compensating' && !why) { why = e.detail || ''; began = e.atUs; }
    const idx = (e.step || 0) - 1;
    if (idx < 0 || !steps[idx]) continue;
    if (!['comp_attempt', 'comp_attempt_failed', 'compensated_step', 'comp_failed', 'operator'].includes(t)) continue;
    if (t === 'operator' && !by.has(idx)) continue;
    if (!by.has(idx)) { by.set(idx, { idx, step: steps[idx], start: e.atUs, end: null, attempts: 0, errors: [], result: 'in progress', ops: [] }); order.push(idx); }
    const u = by.get(idx);
    if (t === 'comp_attempt') u.attempts = Math.max(u.attempts, e.attempt || 0);
    if (t === 'comp_attempt_failed') u.errors.push(e.detail || '');
    if (t === 'compensated_step') { u.end = e.atUs; u.result = 'undone'; }
    if (t === 'comp_failed') { u.end = e.atUs; u.result = 'failed'; u.errors.push(e.detail || ''); }
    if (t === 'operator') u.ops.push(`${fmtTime(e.atUs)}: ${e.detail || ''}`);
  }
  for (const [i, st] of steps.entries()) {
    const ss = stepState(st.state);
    if (!by.has(i) && ['compensating', 'comp_retry_wait', 'comp_failed'].includes(ss)) {
      by.set(i, { idx: i, step: st, start: st.compStartedUs, end: null, attempts: st.compAttempts || 0, errors: [], result: 'in progress', ops: [] });
      order.push(i);
    }
  }
  for (const u of by.values()) {
    const ss = stepState(u.step.state);
    if (ss === 'comp_failed') u.result = 'failed';
    else if (ss === 'compensated' && u.result !== 'undone') u.result = 'undone';
    else if (ss === 'comp_retry_wait') u.result = 'waiting to retry';
  }
  return { why, began, list: order.map((i) => by.get(i)) };
}

// Attempts as bars: one row per step, action attempts then compensations.
function gantt(s) {
  const steps = s.steps || [];
  const bars = [];
  const open = new Map();
  const t0 = us(s.createdUs);
  let tEnd = us(s.updatedUs);
  for (const e of s.events || []) {
    const t = EV(e.type), idx = (e.step || 0) - 1, at = us(e.atUs);
    tEnd = Math.max(tEnd, at);
    if (idx < 0) continue;
    const comp = t.startsWith('comp');
    if (t === 'attempt' || t === 'comp_attempt') { open.set(`${idx}/${comp}`, { idx, comp, from: at, attempt: e.attempt }); continue; }
    const key = `${idx}/${t === 'compensated_step' || t.startsWith('comp')}`;
    const b = open.get(key);
    if (!b) continue;
    open.delete(key);
    b.to = at;
    b.ok = t === 'succeeded' || t === 'compensated_step';
    b.detail = e.detail || '';
    bars.push(b);
  }
  const now = Date.now() * 1000;
  for (const b of open.values()) { b.to = Math.max(tEnd, Math.min(now, tEnd + 1e6)); b.running = true; bars.push(b); }
  if (bars.length === 0) return null;
  const NS = 'http://www.w3.org/2000/svg';
  const LW = 150, RH = 22, W = 900;
  const span = Math.max(1, (bars.reduce((m, b) => Math.max(m, b.to), tEnd)) - t0);
  const x = (t) => LW + ((t - t0) / span) * (W - LW - 10);
  const svg = document.createElementNS(NS, 'svg');
  svg.setAttribute('class', 'gantt');
  svg.setAttribute('viewBox', `0 0 ${W} ${steps.length * RH + 24}`);
  const add = (name, attrs, text) => {
    const e = document.createElementNS(NS, name);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    svg.append(e);
    return e;
  };
  steps.forEach((st, i) => {
    add('text', { x: 0, y: i * RH + 15, class: 'lbl' }, st.name.length > 20 ? `${st.name.slice(0, 19)}…` : st.name);
    add('line', { x1: LW, x2: W - 10, y1: i * RH + RH - 1, y2: i * RH + RH - 1, stroke: '#eef1f4' });
  });
  for (const b of bars) {
    const color = b.running ? '#1f5fbf' : b.comp ? (b.ok ? '#6e40c9' : '#c62828') : (b.ok ? '#1a7f37' : '#c62828');
    const r = add('rect', { x: x(b.from), y: b.idx * RH + 4 + (b.comp ? 7 : 0), width: Math.max(3, x(b.to) - x(b.from)), height: 8, rx: 2, fill: color, opacity: b.comp ? 0.8 : 1 });
    const tt = document.createElementNS(NS, 'title');
    tt.textContent = `${steps[b.idx].name} ${b.comp ? 'compensation' : 'action'} attempt ${b.attempt || ''}: ${fmtDur(b.from, b.to)}${b.running ? ' (running)' : b.ok ? ' ok' : ` — ${b.detail}`}`;
    r.append(tt);
  }
  const y = steps.length * RH + 16;
  for (let k = 0; k <= 4; k++) {
    const t = t0 + (span * k) / 4;
    add('text', { x: x(t), y, class: 'axis', 'text-anchor': k === 0 ? 'start' : k === 4 ? 'end' : 'middle' }, `+${fmtDur(t0, t)}`);
  }
  return svg;
}

function jsonBlock(v) {
  if (v === null || v === undefined) return h('pre', { class: 'json muted' }, '(none)');
  if (v === '[redacted]') return h('pre', { class: 'json redacted' }, '[redacted]');
  return h('pre', { class: 'json' }, JSON.stringify(v, null, 2));
}

// prev: the page shown (a live refresh): nothing is redrawn when the saga
// has not changed, so a click, a scroll or an open detail is not lost.
async function pageSaga(id, q, prev) {
  const seq = renderSeq;
  const reveal = q.get('reveal') === '1';
  let r;
  try { r = await api.saga(id, reveal); } catch (e) {
    if (seq === renderSeq) main.replaceChildren(h('p', {}, h('a', { href: '#/sagas' }, '← Sagas')), errorCard(e));
    return;
  }
  if (seq !== renderSeq) return;
  const s = r.saga;
  const state = sagaState(s.state);
  const steps = s.steps || [];
  const final = ['completed', 'compensated', 'terminated'].includes(state);
  const sig = JSON.stringify([s.updatedUs, s.state, (s.events || []).length,
    steps.map((st) => [st.state, st.attempts, st.compAttempts, st.queued, st.lastError])]);
  if (prev && prev.sig === sig) return;

  const doAct = async (a, step) => {
    const input = a.input && h('input', { id: `confirm-${a.input.name}`, class: 'mono', autocomplete: 'off' });
    const reason = await confirmAction(`${a.label}${step ? ` step ${step}` : ''}?`,
      [h('p', {}, a.help), h('p', {}, 'Saga ', mono(s.sagaId), step ? [' · step ', h('b', {}, step)] : ''),
        input && h('label', {}, a.input.label, input)], a.danger);
    if (!reason) return;
    const extra = input ? { [a.input.name]: input.value.trim() } : undefined;
    const res = await act(s.sagaId, a.name, step, reason, extra);
    if (res.ok && res.newSagaId) toast(`${a.label}: done; the new saga is ${res.newSagaId}`);
    else if (res.ok) toast(`${a.label}: done; the saga is ${res.state}`);
    else toast(`${a.label} refused: ${res.error}`, true);
    if (seq === renderSeq) pageSaga(id, q);
  };

  const sagaActions = ACTIONS.filter((a) => a.scope === 'saga').map((a) =>
    actionButton(a, canAct() && a.when && a.when({ state }), canAct() ? `not for a ${state} saga` : noRole, () => doAct(a)));
  // A step shows the actions its state allows (disabled for a role that
  // may not act); the others would only crowd the row.
  const stepButtons = (st) => ACTIONS.filter((a) => a.scope === 'step' && a.when &&
    a.when({ state }, { state: stepState(st.state) })).map((a) =>
    actionButton(a, canAct(), noRole, () => doAct(a, st.name)));

  const tid = traceId(s.traceparent);
  const head = h('div', { class: 'card' },
    h('div', { class: 'row' },
      h('h1', { class: 'mono', id: 'saga-id' }, s.sagaId), h('span', { id: 'saga-state' }, badge(state)),
      h('span', { class: 'spacer' }), sagaActions,
      me.reveal && h('button', { class: 'small', title: 'Show sensitive fields (admin)', onclick: () => {
        location.hash = `#/saga/${id}${reveal ? '' : '?reveal=1'}`;
      } }, reveal ? 'Hide sensitive' : 'Reveal sensitive')),
    h('dl', { class: 'kv', style: 'margin-top:10px' },
      h('dt', {}, 'Definition'), h('dd', {}, h('a', { href: `#/definitions/${encodeURIComponent(s.definition)}` }, s.definition), ` version ${s.version}`),
      s.businessKey && [h('dt', {}, 'Business key'), h('dd', { class: 'mono' }, s.businessKey)],
      s.idempotencyKey && [h('dt', {}, 'Idempotency key'), h('dd', { class: 'mono' }, s.idempotencyKey)],
      h('dt', {}, 'Created'), h('dd', { class: 'mono' }, fmtTime(s.createdUs)),
      h('dt', {}, 'Updated'), h('dd', { class: 'mono' }, `${fmtTime(s.updatedUs)}  (${fmtDur(s.createdUs, s.updatedUs)} after start)`),
      us(s.deadlineUs) > 0 && [h('dt', {}, 'Deadline'), h('dd', { class: 'mono' }, fmtTime(s.deadlineUs))],
      h('dt', {}, 'Trace id'), h('dd', { class: 'mono', id: 'trace-id', title: s.traceparent || '' }, tid || '(none)'),
      s.error && [h('dt', {}, 'Error'), h('dd', { class: 'error' }, s.error)]));

  const parkedSteps = steps.filter((st) => stepState(st.state) === 'comp_failed');
  const parked = state === 'failed' && h('div', { class: 'card parked', id: 'parked' },
    h('h2', {}, 'Parked: a compensation ran out of attempts'),
    h('p', {}, 'Nothing more happens to this saga until an operator acts. Fix what made the compensation fail, then ',
      h('b', {}, 'Retry'), ' it (a fresh budget of attempts), or ', h('b', {}, 'Skip'),
      ' it if you undid the step by hand. The saga then goes on unwinding and ends compensated.'),
    parkedSteps.map((st) => h('div', { class: 'row', style: 'margin-top:6px' },
      h('b', {}, st.name), h('span', { class: 'muted' }, `undo ${st.compensation} on ${st.participant}, ${st.compAttempts || 0} attempts:`),
      h('span', { class: 'error' }, st.lastError || ''), h('span', { class: 'spacer' }), stepButtons(st))));

  const graph = h('div', { class: 'card' }, h('h2', {}, 'Steps'), stepGraph(steps));
  const stepTable = h('div', { class: 'card tablecard' }, h('table', { id: 'steps' },
    h('thead', {}, h('tr', {}, ['Step', 'Participant', 'State', 'Attempts', 'Started', 'Finished', 'Undo', 'Last error', ''].map((t) => h('th', {}, t)))),
    h('tbody', {}, steps.map((st) => {
      const ss = stepState(st.state);
      return h('tr', { 'data-step': st.name },
        h('td', {}, h('b', {}, st.name), st.queued ? h('div', { class: 'muted' }, 'queued in sagad') : null),
        h('td', {}, st.participant),
        h('td', {}, stepBadge(ss), us(st.nextAttemptUs) > 0 && ['retry_wait', 'comp_retry_wait'].includes(ss) ? h('div', { class: 'muted mono' }, `next ${fmtTime(st.nextAttemptUs)}`) : null),
        h('td', { class: 'num' }, `${st.attempts || 0}${st.compAttempts ? ` / ${st.compAttempts}` : ''}`),
        h('td', { class: 'mono' }, fmtTime(st.startedUs)),
        h('td', { class: 'mono' }, fmtTime(st.finishedUs), us(st.finishedUs) ? h('div', { class: 'muted' }, fmtDur(st.startedUs, st.finishedUs)) : null),
        h('td', { class: 'mono' }, st.compensation || h('span', { class: 'muted' }, 'nothing')),
        h('td', { class: 'err', title: st.lastError || '' }, st.lastError || ''),
        h('td', { class: 'acts' }, stepButtons(st)));
    }))));

  const u = unwind(s);
  const unwindCard = (u.list.length > 0 || u.why !== null) && h('div', { class: 'card', id: 'unwind' },
    h('h2', {}, 'Compensation unwind'),
    h('p', { class: 'muted' }, u.why !== null ? ['Began ', h('span', { class: 'mono' }, fmtTime(u.began)), ': ', u.why] : 'Compensating.',
      ' Completed steps are undone newest first.'),
    h('ol', { class: 'unwind' }, u.list.map((x, i) => h('li', { class: x.result === 'failed' ? 'bad' : x.result === 'undone' ? 'done' : '', 'data-step': x.step.name, 'data-result': x.result },
      h('span', { class: 'n' }, String(i + 1)),
      h('div', {},
        h('div', { class: 'row' }, h('b', {}, x.step.name),
          h('span', { class: 'muted' }, x.step.compensation ? `undone by ${x.step.compensation} on ${x.step.participant}` : 'nothing to undo'),
          h('span', { class: 'spacer' }),
          h('span', { class: `badge ${x.result === 'failed' ? 's-failed' : x.result === 'undone' ? 's-compensated' : 's-compensating'}` }, x.result)),
        h('div', { class: 'muted mono' }, x.start ? `${fmtTime(x.start)}${x.end ? ` → ${fmtTime(x.end)} (${fmtDur(x.start, x.end)})` : ''}` : '',
          x.attempts ? ` · ${x.attempts} attempt${x.attempts > 1 ? 's' : ''}` : ''),
        x.errors.filter(Boolean).length ? h('div', { class: 'error' }, x.errors.filter(Boolean).slice(-1)[0]) : null,
        x.ops.map((o) => h('div', { class: 'muted' }, `operator: ${o}`)),
        r.results && r.results[x.step.name] !== undefined ? h('details', {}, h('summary', { class: 'muted' }, 'what was undone (the action\'s result)'), jsonBlock(r.results[x.step.name])) : null)))));

  const g = gantt(s);
  const timeline = h('div', { class: 'card' }, h('h2', {}, 'Attempts'),
    g ? g : h('p', { class: 'muted' }, 'No attempt yet.'),
    h('p', { class: 'muted', style: 'font-size:12px' }, 'Each bar is one attempt: green succeeded, red failed, purple a compensation, blue running.'));
  const history = h('div', { class: 'card tablecard' }, h('table', { class: 'timeline', id: 'history' },
    h('thead', {}, h('tr', {}, ['Time', '+', 'Step', 'Event', 'Attempt', 'Detail'].map((t) => h('th', {}, t)))),
    h('tbody', {}, (s.events || []).map((e) => {
      const t = EV(e.type);
      const cls = /failed|parked/.test(t) ? 'ev-fail' : t === 'operator' ? 'ev-op' : '';
      return h('tr', { class: cls },
        h('td', { class: 't' }, fmtTime(e.atUs)), h('td', { class: 't muted' }, fmtDur(s.createdUs, e.atUs)),
        h('td', {}, e.step ? (steps[e.step - 1] || {}).name || `#${e.step}` : h('span', { class: 'muted' }, 'saga')),
        h('td', {}, t.replace(/_/g, ' ')), h('td', { class: 'num' }, e.attempt || ''), h('td', {}, e.detail || ''));
    }))));

  const payloads = h('div', { class: 'card' }, h('h2', {}, 'Payloads'),
    r.payloadError ? h('p', { class: 'error' }, `Cannot decode: ${r.payloadError}`) : null,
    (s.redacted || []).length || steps.some((st) => (st.redacted || []).length)
      ? h('p', { class: 'muted' }, reveal ? 'Sensitive fields shown (admin).' : 'Sensitive fields are redacted.') : null,
    h('div', { class: 'grid2' },
      h('div', {}, h('h2', {}, 'Input'), jsonBlock(r.input)),
      h('div', {}, h('h2', {}, 'Results'), Object.keys(r.results || {}).length
        ? Object.entries(r.results).map(([k, v]) => h('div', { style: 'margin-bottom:8px' }, h('div', { class: 'muted' }, k), jsonBlock(v)))
        : h('p', { class: 'muted' }, 'No result yet.'))));

  main.replaceChildren(h('p', {}, h('a', { href: '#/sagas' }, '← Sagas')), head, parked || '', graph, unwindCard || '', stepTable, timeline, payloads,
    h('h2', {}, 'History'), history);
  if (!final) live(() => { if (!document.querySelector('dialog[open]')) pageSaga(id, q, { sig }); }, 2000);
  else stop();
}

async function pageParticipants() {
  const seq = renderSeq;
  const table = h('div', { class: 'card tablecard', id: 'participants' }, h('p', { class: 'muted', style: 'padding:12px' }, 'Loading…'));
  main.replaceChildren(h('div', { class: 'row', style: 'margin-bottom:10px' }, h('h1', {}, 'Participants'), h('span', { class: 'spacer' }),
    h('span', { class: 'muted' }, 'live, every 2 s')), table);
  const draw = async () => {
    let r;
    try { r = await api.participants(); } catch (e) { if (seq === renderSeq) table.replaceChildren(errorCard(e)); return; }
    if (seq !== renderSeq) return;
    const ps = r.participants || [];
    table.replaceChildren(h('table', {},
      h('thead', {}, h('tr', {}, h('th', {}, 'Participant'), ['Connections', 'Capacity', 'In flight', 'Queued'].map((t) => h('th', { class: 'num' }, t)),
        h('th', {}, 'Breaker'), h('th', { class: 'num' }, 'Opened'), h('th', { class: 'num' }, 'Window (failed / ended)'), h('th', {}, 'Sagas'))),
      h('tbody', {}, ps.length ? ps.map((p) => {
        const b = p.breaker || 'closed';
        return h('tr', { 'data-participant': p.name },
          h('td', {}, h('b', {}, p.name)),
          h('td', { class: 'num' }, p.connections || 0), h('td', { class: 'num' }, p.capacity || 0),
          h('td', { class: 'num' }, p.inFlight || 0), h('td', { class: 'num' }, p.queued || 0),
          h('td', {}, h('span', { class: `badge ${b === 'closed' ? 's-completed' : b === 'open' ? 's-failed' : 's-compensating'}` }, b),
            b === 'open' && us(p.breakerOpenUntilUs) ? h('div', { class: 'muted mono' }, `probe at ${fmtTime(p.breakerOpenUntilUs)}`) : null),
          h('td', { class: 'num' }, p.breakerOpened || 0),
          h('td', { class: 'num' }, `${p.windowFailures || 0} / ${p.windowAttempts || 0}`),
          h('td', {}, h('a', { href: `#/sagas?participant=${encodeURIComponent(p.name)}` }, 'sagas →')));
      }) : h('tr', {}, h('td', { colspan: 10, class: 'muted' }, 'No participant has connected.')))));
  };
  await draw();
  live(draw, 2000);
}

async function pageDefinitions(name) {
  const seq = renderSeq;
  stop();
  let r;
  try { r = name ? await api.definition(name) : await api.definitions(); } catch (e) {
    if (seq === renderSeq) main.replaceChildren(errorCard(e));
    return;
  }
  if (seq !== renderSeq) return;
  const defs = r.definitions || [];
  if (!name) {
    main.replaceChildren(h('h1', { style: 'margin-bottom:10px' }, 'Definitions'), h('div', { class: 'card tablecard' }, h('table', { id: 'definitions' },
      h('thead', {}, h('tr', {}, ['Definition', 'Latest version', 'Steps', 'Input', 'Registered', ''].map((t) => h('th', {}, t)))),
      h('tbody', {}, defs.length ? defs.map((d) => h('tr', {},
        h('td', {}, h('a', { href: `#/definitions/${encodeURIComponent(d.name)}` }, h('b', {}, d.name)), d.description ? h('div', { class: 'muted' }, d.description) : null),
        h('td', { class: 'num' }, d.version), h('td', { class: 'num' }, (d.steps || []).length), h('td', { class: 'mono' }, d.inputType),
        h('td', { class: 'mono' }, fmtTime(d.registeredUs)),
        h('td', {}, h('a', { href: `#/sagas?definition=${encodeURIComponent(d.name)}` }, 'sagas →'))))
        : h('tr', {}, h('td', { colspan: 6, class: 'muted' }, 'No definition registered.'))))));
    return;
  }
  const ver = new URLSearchParams(location.hash.split('?')[1] || '').get('version');
  const d = defs.find((x) => String(x.version) === ver) || defs[0];
  if (!d) { main.replaceChildren(errorCard(new Error(`no definition ${name}`))); return; }
  main.replaceChildren(h('p', {}, h('a', { href: '#/definitions' }, '← Definitions')),
    h('div', { class: 'card' }, h('div', { class: 'row' }, h('h1', {}, d.name), h('span', { class: 'spacer' }),
      h('label', { class: 'row' }, 'Version ', h('select', { onchange: (ev) => { location.hash = `#/definitions/${encodeURIComponent(name)}?version=${ev.target.value}`; } },
        defs.map((x) => h('option', { value: x.version, selected: x === d }, `v${x.version} · ${fmtTime(x.registeredUs)}`))))),
      d.description ? h('p', {}, d.description) : null,
      h('dl', { class: 'kv' }, h('dt', {}, 'Input'), h('dd', { class: 'mono' }, d.inputType),
        d.businessKey && [h('dt', {}, 'Business key'), h('dd', { class: 'mono' }, d.businessKey)],
        d.deadlineMs && [h('dt', {}, 'Deadline'), h('dd', {}, `${d.deadlineMs} ms`)],
        h('dt', {}, 'Sagas'), h('dd', {}, h('a', { href: `#/sagas?definition=${encodeURIComponent(d.name)}&version=${d.version}` }, `of version ${d.version} →`)))),
    h('div', { class: 'card' }, h('h2', {}, 'Step graph'), stepGraph(d.steps || [])),
    h('div', { class: 'card tablecard' }, h('table', {},
      h('thead', {}, h('tr', {}, ['Step', 'Participant', 'Compensation', 'Depends on', 'Timeout', 'Attempts', 'Undo timeout', 'Undo attempts', 'Result type'].map((t) => h('th', {}, t)))),
      h('tbody', {}, (d.steps || []).map((st) => h('tr', {},
        h('td', {}, h('b', {}, st.name)), h('td', {}, st.participant), h('td', { class: 'mono' }, st.compensation || '—'),
        h('td', {}, (st.dependsOn || []).join(', ') || '—'), h('td', { class: 'num' }, `${st.timeoutMs || 0} ms`), h('td', { class: 'num' }, st.maxAttempts || 0),
        h('td', { class: 'num' }, `${st.compensationTimeoutMs || 0} ms`), h('td', { class: 'num' }, st.compensationMaxAttempts || 0),
        h('td', { class: 'mono' }, st.outputType)))))));
}

async function route() {
  renderSeq++;
  stop();
  const [path, qs] = (location.hash.slice(1) || '/sagas').split('?');
  const q = new URLSearchParams(qs || '');
  const parts = path.split('/').filter(Boolean);
  for (const a of document.querySelectorAll('[data-nav]')) a.classList.toggle('on', a.dataset.nav === (parts[0] === 'saga' ? 'sagas' : parts[0]));
  try {
    if (parts[0] === 'saga' && parts[1]) await pageSaga(parts[1], q);
    else if (parts[0] === 'participants') await pageParticipants();
    else if (parts[0] === 'definitions') await pageDefinitions(parts[1] ? decodeURIComponent(parts[1]) : null);
    else await pageList(q);
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) { await askCredential('Your credential was refused.'); route(); return; }
    main.replaceChildren(errorCard(e));
  }
}

window.addEventListener('hashchange', route);
loadMe().then(route, (e) => main.replaceChildren(errorCard(e)));
