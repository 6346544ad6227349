/**
 * The small sse-relay app the proxy tests put behind nginx / Caddy: a hub on a
 * RedisBroker (so a restarted instance finds the history), `GET /events/<channel>`
 * and `GET /events?channel=...`, on a fixed loopback port (a restart reuses it),
 * with a short keep-alive.
 */
import { createServer, type Server } from 'node:http';
import { createHub, RedisBroker, type Hub } from '../../lib';
import { closeServer } from '../../lib/testing';

export interface RelayApp {
  readonly hub: Hub;
  readonly server: Server;
  /** A deploy's stop: the hub sends `retry:` and ends its streams, then the server closes. */
  stop(): Promise<void>;
}

export async function startRelayApp(options: {
  port: number;
  redisUrl: string;
  prefix: string;
  keepAlive: number;
}): Promise<RelayApp> {
  const hub = createHub({
    authorize: () => true,
    broker: new RedisBroker({ url: options.redisUrl, prefix: options.prefix }),
    sse: { keepAlive: options.keepAlive },
  });
  const router = hub.router();
  const server = createServer((req, res) => {
    if (req.url !== '/events' && !req.url?.startsWith('/events/') && !req.url?.startsWith('/events?')) {
      res.writeHead(404).end();
      return;
    }
    req.url = req.url.slice('/events'.length) || '/';
    if (req.url.startsWith('?')) req.url = '/' + req.url;
    router(req, res, (err?: unknown) => {
      res.writeHead(err === undefined ? 404 : 500).end();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, '127.0.0.1', () => {
      server.removeListener('error', reject);
      resolve();
    });
  });
  return {
    hub,
    server,
    async stop() {
      await hub.close();
      await closeServer(server);
    },
  };
}
