'use strict';
// Large payloads: 16 KiB events to 100 clients.
const { featureRows } = require('./feature-rows');
const { printLoad } = require('../report');

module.exports = {
  name: 'large',
  title: 'large payloads',
  params: (h) => ({
    name: 'large',
    title: 'large payloads',
    clients: h.q(100, 20),
    events: h.q(2000, 200),
    size: 16384,
    batch: 4,
    rate: 0,
  }),
  needsRedis: (h) => h.servers.includes('sse-relay-redis'),
  async run(h, p) {
    const out = await h.loadRows(p);
    await featureRows(h, p, ['batching off', 'Node write path'], out.rows, out.skipped);
    return out;
  },
  print: (h, p, { rows, skipped }) => printLoad(p, rows, skipped),
};
