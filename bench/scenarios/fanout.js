'use strict';
// Fan-out: many clients, one channel, events as fast as backpressure allows.
// Also the server process's own CPU per delivery (process.cpuUsage in the
// server), split into user and kernel time.
const { f, printLoad, relayTargets } = require('../report');

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
  run: (h, p) => h.loadRows(p),
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
    }
    return out;
  },
};
