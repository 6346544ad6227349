'use strict';
// Tracing cost: hub.publish on 100 loopback streams with nobody subscribed to the
// sse-relay:* diagnostics channels, and with a subscriber on every one of them.
// A/B alternated in one process; prints one JSON line { off, on } (us of CPU per publish).
const http = require('node:http');
const dc = require('node:diagnostics_channel');
const { createHub } = require('../dist');

const STREAMS = Number(process.env.TRACING_STREAMS || 100);
const PUBLISHES = Number(process.env.TRACING_PUBLISHES || 20000);
const ROUNDS = 3;

async function main() {
  const hub = createHub({ authorize: () => true, history: 100 });
  const server = http.createServer(hub.router());
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address();
  const clients = [];
  for (let i = 0; i < STREAMS; i++) {
    await new Promise((resolve, reject) => {
      const req = http.get({ host: '127.0.0.1', port, path: '/feed', agent: false }, (res) => {
        res.resume();
        resolve();
      });
      req.on('error', reject);
      clients.push(req);
    });
  }
  const names = [
    'sse-relay:stream:open',
    'sse-relay:stream:close',
    'sse-relay:stream:drop',
    'sse-relay:replay',
    'sse-relay:reset',
  ];
  const noop = () => undefined;
  const tracing = dc.tracingChannel('sse-relay:publish');
  const handlers = { start: noop, end: noop, asyncStart: noop, asyncEnd: noop, error: noop };
  const subscribe = (on) => {
    for (const n of names) (on ? dc.subscribe : dc.unsubscribe)(n, noop);
    if (on) tracing.subscribe(handlers);
    else tracing.unsubscribe(handlers);
  };
  const run = async () => {
    const t0 = process.cpuUsage();
    for (let i = 0; i < PUBLISHES; i += 50) {
      const batch = [];
      for (let j = 0; j < 50; j++) batch.push(hub.publish('feed', 'x'.repeat(100)));
      await Promise.all(batch);
      await new Promise((r) => setImmediate(r));
    }
    const d = process.cpuUsage(t0);
    return (d.user + d.system) / PUBLISHES;
  };
  await run(); // warm-up
  const off = [];
  const on = [];
  for (let r = 0; r < ROUNDS; r++) {
    off.push(await run());
    subscribe(true);
    on.push(await run());
    subscribe(false);
  }
  const median = (a) => a.slice().sort((x, y) => x - y)[Math.floor(a.length / 2)];
  console.log(JSON.stringify({ streams: STREAMS, publishes: PUBLISHES, off: median(off), on: median(on) }));
  for (const c of clients) c.destroy();
  await hub.close();
  server.closeAllConnections();
  server.close();
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
