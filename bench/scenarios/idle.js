'use strict';
// Idle memory: heap and RSS per idle stream above an empty, warmed-up server.
const { execFileSync } = require('node:child_process');
const { f, table } = require('../report');
const { settings } = require('../procs');

function limits() {
  const sh = (cmd) => Number(execFileSync('/bin/sh', ['-c', cmd]).toString().trim()) || Infinity;
  return { soft: sh('ulimit -n'), hard: sh('ulimit -Hn') };
}

module.exports = {
  name: 'idle',
  title: 'idle memory',
  params: (h) => ({ name: 'idle', title: 'idle memory', streams: h.q(10_000, 1000) }),
  needsRedis: (h) => h.servers.includes('sse-relay-redis'),

  /** File descriptors: one per stream in the server, plus slack (raised for every child, before any runs). */
  prepare(h, p) {
    const need = p.streams + 256;
    const lim = limits();
    if (lim.soft >= need) return;
    if (lim.hard >= need) {
      settings.nofileWrap = Math.min(lim.hard, need * 2);
    } else {
      const was = p.streams;
      p.streams = Math.max(100, Math.floor((lim.hard - 256) / 100) * 100);
      settings.nofileWrap = lim.hard;
      p.note = `note: ulimit -n hard limit is ${lim.hard}; idle streams lowered from ${was} to ${p.streams}`;
      console.log(p.note);
    }
  },

  async run(h, p) {
    const rows = [];
    const skipped = [];
    for (const kind of h.servers) {
      if (kind === 'sse-relay-redis' && !h.redis) {
        skipped.push(`sse-relay-redis: ${h.redisSkip || 'skipped'}`);
        continue;
      }
      await h.measure(`${p.name} / ${kind}`, () => h.runIdle(p, kind), rows, skipped);
    }
    return { rows, skipped };
  },

  print(h, p, { rows, skipped }) {
    const raw = rows.find((r) => r.server === 'raw');
    console.log(`\n## ${p.title}: ${p.streams} idle streams, per stream above an empty (warmed-up) server`);
    if (p.note) console.log('  ' + p.note);
    const headers = ['server', 'heap B/stream', 'vs raw', 'RSS B/stream', 'vs raw', 'connect s'];
    const plus = (d) => (d >= 0 ? '+' : '') + f.int(d);
    const body = rows.map((r) => [
      r.server,
      f.int(r.heapPerStream),
      raw ? plus(r.heapPerStream - raw.heapPerStream) : '-',
      f.int(r.rssPerStream),
      raw ? plus(r.rssPerStream - raw.rssPerStream) : '-',
      r.connectS.toFixed(1),
    ]);
    console.log(table(headers, body));
    for (const s of skipped) console.log('  ' + s);
  },

  targets(h, p, { rows }) {
    const raw = rows.find((r) => r.server === 'raw');
    const relay = rows.find((r) => r.server === 'sse-relay');
    if (!raw || !relay) return [];
    const d = relay.heapPerStream - raw.heapPerStream;
    return [{ target: 'idle: heap per stream <= raw + 1.5 KB', value: `+${f.int(d)} B`, ok: d <= 1536 }];
  },
};
