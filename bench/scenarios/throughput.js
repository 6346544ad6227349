'use strict';
// Throughput: few clients, many small events in batches of 100, as fast as backpressure allows.
const { featureRows } = require('./feature-rows');
const { printLoad, relayTargets } = require('../report');

module.exports = {
  name: 'throughput',
  title: 'throughput',
  params: (h) => ({
    name: 'throughput',
    title: 'throughput',
    clients: 10,
    events: h.q(100_000, 10_000),
    size: 100,
    batch: 100,
    rate: 0,
    sameRate: true,
  }),
  needsRedis: (h) => h.servers.includes('sse-relay-redis'),
  async run(h, p) {
    const out = await h.loadRows(p);
    await featureRows(h, p, ['batching off', 'Node write path'], out.rows, out.skipped);
    return out;
  },
  print: (h, p, { rows, skipped }) => printLoad(p, rows, skipped),
  targets: (h, p, { rows }) => relayTargets('throughput', rows),
};
