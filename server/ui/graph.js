// graph.js: a saga's step graph as SVG. Steps sit in columns by depth (a
// step's column is one more than its deepest dependency), so parallel
// branches stack and joins sit right of everything they wait for.

import { stepState } from './api.js';

const NS = 'http://www.w3.org/2000/svg';
const W = 178, H = 56, GX = 56, GY = 16, PAD = 6;

const COLORS = {
  pending: '#98a4b3', running: '#1f5fbf', retry_wait: '#8a6d00', succeeded: '#1a7f37',
  failed: '#c62828', compensating: '#b26a00', comp_retry_wait: '#b26a00', compensated: '#6e40c9',
  comp_failed: '#c62828',
};

function el(name, attrs, text) {
  const e = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'style') e.style.cssText = v; // CSSOM: the CSP refuses style attributes
    else e.setAttribute(k, v);
  }
  if (text !== undefined) e.textContent = text;
  return e;
}

function cut(s, n) { return s.length > n ? `${s.slice(0, n - 1)}…` : s; }

// steps: [{name, participant, dependsOn: [names], state, attempts, compAttempts}]
// (a definition's steps have no state: they are drawn neutral).
export function stepGraph(steps, onClick) {
  const depth = new Map();
  const byName = new Map(steps.map((s) => [s.name, s]));
  const level = (s, seen = new Set()) => {
    if (depth.has(s.name)) return depth.get(s.name);
    if (seen.has(s.name)) return 0;
    seen.add(s.name);
    let d = 0;
    for (const n of s.dependsOn || []) if (byName.has(n)) d = Math.max(d, level(byName.get(n), seen) + 1);
    depth.set(s.name, d);
    return d;
  };
  steps.forEach((s) => level(s));
  const cols = [];
  steps.forEach((s) => { const d = depth.get(s.name); (cols[d] = cols[d] || []).push(s); });
  const rows = Math.max(1, ...cols.map((c) => c.length));
  const width = cols.length * (W + GX) - GX + 2 * PAD;
  const height = rows * (H + GY) - GY + 2 * PAD;
  const pos = new Map();
  cols.forEach((c, x) => c.forEach((s, y) => {
    const off = ((rows - c.length) * (H + GY)) / 2;
    pos.set(s.name, { x: PAD + x * (W + GX), y: PAD + off + y * (H + GY) });
  }));

  const svg = el('svg', { class: 'graph', viewBox: `0 0 ${width} ${height}`, role: 'img',
    'aria-label': 'step graph', style: `max-width:${width}px` });
  const defs = el('defs');
  const m = el('marker', { id: 'arrow', viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse' });
  m.append(el('path', { d: 'M0,0 L10,5 L0,10 z', fill: '#98a4b3' }));
  defs.append(m);
  svg.append(defs);
  for (const s of steps) {
    const b = pos.get(s.name);
    for (const n of s.dependsOn || []) {
      const a = pos.get(n);
      if (!a) continue;
      const x1 = a.x + W, y1 = a.y + H / 2, x2 = b.x - 2, y2 = b.y + H / 2, mx = (x1 + x2) / 2;
      svg.append(el('path', { class: 'edge', d: `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}` }));
    }
  }
  for (const s of steps) {
    const p = pos.get(s.name);
    const st = s.state === undefined ? null : stepState(s.state);
    const color = st ? COLORS[st] || '#98a4b3' : '#1f3a5f';
    const g = el('g', { class: 'node', transform: `translate(${p.x},${p.y})`, 'data-step': s.name });
    if (onClick) { g.style.cursor = 'pointer'; g.addEventListener('click', () => onClick(s)); }
    g.append(el('title', {}, `${s.name} (${s.participant})${st ? `: ${st}` : ''}`));
    g.append(el('rect', { width: W, height: H, rx: 8, stroke: color, fill: '#fff', 'stroke-width': 2 }));
    g.append(el('rect', { width: 6, height: H, rx: 3, fill: color }));
    g.append(el('text', { x: 14, y: 19, class: 't' }, cut(s.name, 22)));
    g.append(el('text', { x: 14, y: 35, class: 's' }, cut(s.participant || '', 26)));
    let line = st ? st.replace(/_/g, ' ') : (s.compensation ? `undo: ${s.compensation}` : 'nothing to undo');
    if (st && (s.attempts || s.compAttempts)) line += ` · ${s.attempts || 0}${s.compAttempts ? ` / ${s.compAttempts} undo` : ''} att.`;
    g.append(el('text', { x: 14, y: 50, class: 's', fill: color, style: `fill:${color}` }, cut(line, 30)));
    svg.append(g);
  }
  return svg;
}
