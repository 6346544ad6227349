'use strict';
// Paced latency: 1,000 clients at 20 events/s, publish -> receipt.
const { printLoad } = require('../report');

module.exports = {
  name: 'paced',
  title: 'paced latency',
  params: (h) => ({
    name: 'paced',
    title: 'paced latency',
    clients: h.q(1000, 200),
    events: h.q(200, 60), // 20/s for ~10 s (quick: ~3 s)
    size: 100,
    rate: 20,
  }),
  needsRedis: (h) => h.servers.includes('sse-relay-redis'),
  run: (h, p) => h.loadRows(p),
  print: (h, p, { rows, skipped }) => printLoad(p, rows, skipped),
};
