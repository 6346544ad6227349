'use strict';
// Summarises a V8 .cpuprofile (node --cpu-prof): the functions with the most
// self time, and the heaviest inclusive frames from sse-relay's dist/.
// Usage: node bench/prof-top.js <file.cpuprofile> [top=25] [focus]
//   focus: a function name; adds where the time under frames of that name goes (self time below them).
const fs = require('node:fs');
const path = require('node:path');

const file = process.argv[2];
const top = Number(process.argv[3] || 25);
const focus = process.argv[4];
if (!file) {
  console.error('usage: node bench/prof-top.js <file.cpuprofile> [top]');
  process.exit(2);
}
const prof = JSON.parse(fs.readFileSync(file, 'utf8'));
const byId = new Map(prof.nodes.map((n) => [n.id, n]));
const parent = new Map();
for (const n of prof.nodes) for (const c of n.children || []) parent.set(c, n.id);

// Self time per node from the samples and their time deltas (µs).
const self = new Map();
let total = 0;
for (let i = 0; i < prof.samples.length; i++) {
  const dt = prof.timeDeltas[i] || 0;
  self.set(prof.samples[i], (self.get(prof.samples[i]) || 0) + dt);
  total += dt;
}

const label = (n) => {
  const cf = n.callFrame;
  const name = cf.functionName || '(anonymous)';
  if (!cf.url) return name;
  const url = cf.url.replace(/^file:\/\//, '');
  const short = url.includes('/dist/')
    ? 'dist/' + url.split('/dist/')[1]
    : url.startsWith('node:')
      ? url
      : path.basename(url);
  return `${name} ${short}:${cf.lineNumber + 1}`;
};

const selfBy = new Map();
const inclBy = new Map();
for (const [id, t] of self) {
  const n = byId.get(id);
  const key = label(n);
  selfBy.set(key, (selfBy.get(key) || 0) + t);
  // Inclusive: every distinct frame label on the stack gets the sample once.
  const seen = new Set();
  for (let cur = id; cur !== undefined; cur = parent.get(cur)) {
    const k = label(byId.get(cur));
    if (seen.has(k)) continue;
    seen.add(k);
    inclBy.set(k, (inclBy.get(k) || 0) + t);
  }
}

const pct = (t) => ((100 * t) / total).toFixed(1).padStart(5) + '%';
const idle = selfBy.get('(idle)') || 0;
console.log(`${path.basename(file)}: ${(total / 1e6).toFixed(2)} s sampled, ${pct(total - idle)} busy`);
console.log('\nself time:');
for (const [k, t] of [...selfBy].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(`  ${pct(t)}  ${k}`);
console.log('\ninclusive, sse-relay (dist/) and bench frames:');
for (const [k, t] of [...inclBy]
  .filter(([k]) => k.includes('dist/') || k.includes('server.js'))
  .sort((a, b) => b[1] - a[1])
  .slice(0, top)) {
  console.log(`  ${pct(t)}  ${k}`);
}

if (focus) {
  const below = new Map();
  let under = 0;
  for (const [id, t] of self) {
    let hit = false;
    for (let cur = parent.get(id); cur !== undefined; cur = parent.get(cur)) {
      if (byId.get(cur).callFrame.functionName === focus) {
        hit = true;
        break;
      }
    }
    if (!hit && byId.get(id).callFrame.functionName !== focus) continue;
    under += t;
    const k = label(byId.get(id));
    below.set(k, (below.get(k) || 0) + t);
  }
  console.log(`\nunder ${focus} (${pct(under)} of all samples), self time:`);
  for (const [k, t] of [...below].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(`  ${pct(t)}  ${k}`);
}
