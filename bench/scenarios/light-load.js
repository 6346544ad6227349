'use strict';
// Light load: 100 clients at 10 events/s, the process mostly idle: the
// latency a frame gets when nothing is queued, against raw's in the same run.
const { f, table, lostCell, noiseNotes } = require('../report');

module.exports = {
  name: 'light-load',
  title: 'light load',
  params: (h) => ({
    name: 'light-load',
    title: 'light load',
    clients: 100,
    events: h.q(100, 30), // 10/s for ~10 s (quick: ~3 s)
    size: 100,
    rate: 10,
  }),
  needsRedis: () => false,

  async run(h, p) {
    const rows = [];
    const skipped = [];
    for (const kind of h.servers.filter((s) => s === 'raw' || s === 'sse-relay')) {
      await h.measure(`${p.name} / ${kind}`, () => h.runLoad(p, kind), rows, skipped);
    }
    return { rows, skipped };
  },

  print(h, p, { rows, skipped }) {
    const raw = rows.find((r) => r.server === 'raw');
    console.log(
      `\n## ${p.title}: ${p.clients} clients x ${p.events} events of ${p.size} B, paced at ${p.rate}/s, publish -> receipt`,
    );
    const headers = [
      'server',
      'p50 ms',
      'p50 - raw ms',
      'p99 ms',
      'p99 vs raw',
      'max ms',
      'srv us/deliv',
      'lost',
      'other load',
    ];
    const body = rows.map((r) => [
      r.server,
      f.ms(r.p50Ms),
      raw ? (r.p50Ms - raw.p50Ms >= 0 ? '+' : '') + (r.p50Ms - raw.p50Ms).toFixed(2) : '-',
      f.ms(r.p99Ms),
      raw ? f.x(r.p99Ms / raw.p99Ms) : '-',
      f.ms(r.maxMs),
      f.us(r.serverUsPerDelivery),
      lostCell(r),
      f.cores(r.otherCores),
    ]);
    console.log(table(headers, body));
    noiseNotes(rows);
    for (const s of skipped) console.log('  ' + s);
  },

  targets(h, p, { rows }) {
    const raw = rows.find((r) => r.server === 'raw');
    const relay = rows.find((r) => r.server === 'sse-relay');
    if (!raw || !relay) return [];
    const d = relay.p50Ms - raw.p50Ms;
    return [
      {
        target: `light-load: p50 within 0.2 ms of raw's (${f.ms(raw.p50Ms)} ms) (#16)`,
        value: `${d >= 0 ? '+' : ''}${d.toFixed(2)} ms`,
        ok: d <= 0.2,
      },
    ];
  },
};
