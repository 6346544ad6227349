// @ts-check
'use strict';

const { createApp } = require('./app');

/**
 * Starts the demo: PORT (default 3000), HOST (default 127.0.0.1), REDIS_URL
 * (set: events go through Redis, so several instances share them),
 * SESSION_SECRET (set the same one on every instance so a login works on all).
 */
function main() {
  const port = Number(process.env.PORT ?? 3000);
  const host = process.env.HOST || '127.0.0.1';
  let broker;
  if (process.env.REDIS_URL) {
    const { RedisBroker } = require('sse-relay');
    if (typeof RedisBroker !== 'function') throw new Error('this build of sse-relay has no RedisBroker');
    broker = new RedisBroker({ url: process.env.REDIS_URL });
  }
  const { app, close } = createApp({ broker, redisUrl: process.env.REDIS_URL, secret: process.env.SESSION_SECRET });
  const server = app.listen(port, host, () => {
    const { port: actual } = /** @type {import('node:net').AddressInfo} */ (server.address());
    const shown = host.includes(':') ? `[${host}]` : host;
    console.log(`sse-relay demo: http://${shown}:${actual}/ (${broker ? 'RedisBroker' : 'MemoryBroker'})`);
  });
  server.on('error', (err) => {
    console.error(err.message);
    process.exitCode = 1;
    close().catch(() => undefined);
  });

  let stopping = false;
  const shutdown = async () => {
    if (stopping) return;
    stopping = true;
    // hub.close() sends `retry:` and ends every stream, so server.close() can finish.
    await close().catch((err) => console.error(err));
    server.close(() => process.exit(process.exitCode ?? 0));
    server.closeIdleConnections();
    setTimeout(() => server.closeAllConnections(), 2000).unref();
  };
  process.on('SIGINT', shutdown);
  process.on('SIGTERM', shutdown);
  return server;
}

if (require.main === module) main();

module.exports = { main };
