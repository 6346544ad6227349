'use strict';
// Fan-out: many clients, one channel, events as fast as backpressure allows.
const { printLoad, relayTargets } = require('../report');

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
  print: (h, p, { rows, skipped }) => printLoad(p, rows, skipped),
  targets: (h, p, { rows }) => relayTargets('fanout', rows),
};
