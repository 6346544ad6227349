'use strict';
// Fan-out: many clients, one channel, events as fast as backpressure allows.
// Also the server process's own CPU per delivery (process.cpuUsage in the
// server), split into user and kernel time.
const { featureRows } = require('./feature-rows');
const { f, printLoad, relayTargets } = require('../report');

/** sse-relay's default maxWriteDelay (lib/stream/options.ts). */
const DEFAULT_WRITE_DELAY_MS = 5;

module.exports = {
  name: 'fanout',
  title: 'fan-out',
  params: (h) => ({
    name: 'fanout',
    title: 'fan-out',
    clients: h.q(1000, 200),
    events: h.q(2000, 300),
    size: 100,
    batch: 10,
    rate: 0,
    sameRate: true,
  }),
  needsRedis: (h) => h.servers.includes('sse-relay-redis'),
  async run(h, p) {
    const out = await h.loadRows(p);
    await featureRows(h, p, ['batching off', 'Node write path', 'both off'], out.rows, out.skipped);
    return out;
  },
  print(h, p, { rows, skipped }) {
    printLoad(p, rows, skipped);
    const raw = rows.find((r) => r.server === 'raw');
    const cpu = rows.filter((r) => r.server === 'raw' || r.server === 'sse-relay');
    if (cpu.length > 0) {
      const one = (r) =>
        `${r.server} ${f.us(r.serverUsPerDelivery)} us (user ${f.us(r.serverUserUsPerDelivery)} + sys ${f.us(r.serverSysUsPerDelivery)})` +
        (raw && r !== raw ? ` = ${f.x(r.serverUsPerDelivery / raw.serverUsPerDelivery)} raw` : '');
      console.log(`  server-process CPU per delivery (process.cpuUsage in the server): ${cpu.map(one).join('; ')}`);
    }
  },
  targets(h, p, { rows }) {
    const out = relayTargets('fanout', rows);
    const raw = rows.find((r) => r.server === 'raw');
    const relay = rows.find((r) => r.server === 'sse-relay');
    if (raw && relay) {
      const r = relay.serverUsPerDelivery / raw.serverUsPerDelivery;
      out.push({ target: 'fanout: server CPU per delivery <= 0.7x raw (#16)', value: f.x(r), ok: r <= 0.7 });
      const d = relay.deliveriesPerSec / raw.deliveriesPerSec;
      out.push({ target: 'fanout: deliveries/s >= 1.5x raw (#16)', value: f.x(d), ok: d >= 1.5 });
      // The batching bound: frames wait at most maxWriteDelay (default 5 ms) under load.
      const bound = raw.p99Ms + DEFAULT_WRITE_DELAY_MS;
      out.push({
        target: `fanout: p99 <= raw p99 + maxWriteDelay (${f.ms(bound)} ms) (#16)`,
        value: f.ms(relay.p99Ms) + ' ms',
        ok: relay.p99Ms <= bound,
      });
      const same = rows.find((x) => x.server === 'sse-relay @ raw rate');
      if (same) {
        out.push({
          target: `fanout: p99 at raw's rate <= raw p99 + maxWriteDelay (${f.ms(bound)} ms) (#16)`,
          value: f.ms(same.p99Ms) + ' ms',
          ok: same.p99Ms <= bound,
        });
      }
    }
    return out;
  },
};
