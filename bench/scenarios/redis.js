'use strict';
// The Redis path: few clients, many events, so the broker hop per event is
// what is measured, not the fan-out (1,000 clients would make each event's own
// fan-out the tail). MemoryBroker in-process, RedisBroker with the publish in
// the server process, and RedisBroker with the publish in another process.
const { f, table, lostCell } = require('../report');

const PATHS = [['sse-relay'], ['sse-relay-redis'], ['sse-relay-redis', 'publisher-redis']];

module.exports = {
  name: 'redis',
  title: 'Redis path',
  params: (h) => ({
    name: 'redis',
    title: 'Redis path',
    clients: h.q(100, 50),
    events: h.q(2000, 400), // 200/s for ~10 s (quick: ~2 s)
    size: 100,
    rate: 200,
  }),
  needsRedis: (h) => h.servers.includes('sse-relay-redis'),

  async run(h, p) {
    const rows = [];
    const skipped = [];
    for (const [kind, pubKind] of PATHS) {
      if (!h.servers.includes(kind)) continue;
      if (kind === 'sse-relay-redis' && !h.redis) {
        skipped.push(`${h.redisSkip || 'Redis skipped'}`);
        break;
      }
      const name = `${p.name} / ${kind}${pubKind ? ' + ' + pubKind : ''}`;
      await h.measure(name, () => h.runLoad(p, kind, pubKind), rows, skipped);
    }
    return { rows, skipped };
  },

  print(h, p, { rows, skipped }) {
    const base = rows.find((r) => r.server === 'sse-relay');
    console.log(
      `\n## ${p.title}: ${p.clients} clients, ${p.events} events of ${p.size} B paced at ${p.rate}/s, publish -> receipt`,
    );
    const headers = ['path', 'p50 ms', 'p99 ms', 'p99 vs in-process', 'lost', 'srv us/deliv', 'srv cpu'];
    const body = rows.map((r) => [
      r.server === 'sse-relay'
        ? 'sse-relay MemoryBroker, in-process publish'
        : r.server.startsWith('sse-relay-redis (')
          ? 'sse-relay RedisBroker, publish in another process'
          : 'sse-relay RedisBroker, publish in the server process',
      f.ms(r.p50Ms),
      f.ms(r.p99Ms),
      base ? f.x(r.p99Ms / base.p99Ms) : '-',
      lostCell(r),
      f.us(r.serverUsPerDelivery),
      f.pct(r.serverUtil),
    ]);
    console.log(table(headers, body));
    for (const s of skipped) console.log('  ' + s);
  },

  targets(h, p, { rows }) {
    const mem = rows.find((r) => r.server === 'sse-relay');
    const x = rows.find((r) => r.server === 'sse-relay-redis (publish from another process)');
    if (!mem || !x) return [];
    const r = x.p99Ms / mem.p99Ms;
    return [{ target: 'redis: p99 (publish in another process) <= 2x in-process p99', value: f.x(r), ok: r <= 2 }];
  },
};
