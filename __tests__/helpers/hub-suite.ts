/**
 * The fixture of the hub behaviour suites: one hub on a real 127.0.0.1
 * server, with the same routes everywhere, run on every broker (in-process,
 * and over a real redis-server at REDIS_URL from the global setup):
 *
 * ```ts
 * const { start, stream, request, useBroker } = hubSuite();
 * describe.each(BROKERS)('with %s', (_name, make) => {
 *   useBroker(make);
 *   test('…', async () => { const fx = await start(); … });
 * });
 * ```
 *
 * Routes: `/orders/:id` (channel `order:<id>`), `/multi` (channels a and b,
 * async select), `/select-throws`, and `hub.router()` at `/events`. The
 * default authorize refuses channels starting with `secret` and records every
 * channel it was asked about; errors passed to next(err) are recorded too.
 */
import { randomBytes } from 'node:crypto';
import http, { type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import { createHub, MemoryBroker, RedisBroker, type Broker, type Hub, type HubOptions } from '../../lib';
import { openStream, type TestStream } from '../../lib/testing';
import { until } from './wait';

/** What an event id looks like. */
export const ID = /^[A-Za-z0-9._-]{1,128}$/;

export interface HubFixture {
  hub: Hub;
  server: Server;
  port: number;
  /** Every channel authorize was asked about, in order. */
  authorized: string[];
  /** Every error the routes passed to next(err). */
  errors: unknown[];
  streams: TestStream[];
}

const memoryBroker = (): Broker => new MemoryBroker();
// A key prefix no other test file or run shares: jest may run several files in one worker (one pid).
const run = `hub-test:${process.pid}:${randomBytes(4).toString('hex')}`;
let prefixes = 0;

export const BROKERS: Array<[string, () => Broker]> = [
  ['MemoryBroker', memoryBroker],
  ['RedisBroker', () => new RedisBroker({ url: process.env.REDIS_URL!, prefix: `${run}:${++prefixes}:` })],
];

export function hubSuite() {
  let fx: HubFixture | undefined;
  let makeBroker = memoryBroker;

  afterEach(async () => {
    if (fx === undefined) return;
    const current = fx;
    fx = undefined;
    for (const s of current.streams) await s.close();
    await current.hub.close();
    if (current.server.listening) await new Promise((r) => current.server.close(r));
  });

  const running = (): HubFixture => {
    if (fx === undefined) throw new Error('hub suite: call start() first');
    return fx;
  };

  /** Inside a describe: its tests build their hubs on `make()` (MemoryBroker otherwise). */
  function useBroker(make: () => Broker): void {
    beforeAll(() => {
      makeBroker = make;
    });
    afterAll(() => {
      makeBroker = memoryBroker;
    });
  }

  async function start(options: Partial<HubOptions> = {}): Promise<HubFixture> {
    const authorized: string[] = [];
    const errors: unknown[] = [];
    const hub = createHub({
      authorize: (_req, channel) => {
        authorized.push(channel);
        return !channel.startsWith('secret');
      },
      ...options,
      broker: options.broker ?? makeBroker(), // made only when used: an unused RedisBroker would hold a connection open
    });
    const app = express();
    app.get(
      '/orders/:id',
      hub.subscribe((req) => `order:${(req as express.Request).params.id}`),
    );
    app.get(
      '/multi',
      hub.subscribe(async () => ['a', 'b']),
    );
    app.get(
      '/select-throws',
      hub.subscribe(() => {
        throw new Error('select failed: order:secret');
      }),
    );
    app.use('/events', hub.router());
    app.use((err: unknown, _req: express.Request, res: express.Response, _next: express.NextFunction) => {
      errors.push(err);
      res.status(500).type('text/plain').send('Internal Server Error');
    });
    const server = app.listen(0, '127.0.0.1');
    await new Promise((r) => server.once('listening', r));
    const port = (server.address() as AddressInfo).port;
    fx = { hub, server, port, authorized, errors, streams: [] };
    return fx;
  }

  /** Opens a stream on the running hub's server; closed after the test. */
  async function stream(path: string, headers: Record<string, string> = {}): Promise<TestStream> {
    const current = running();
    const s = await openStream({ server: current.server, path }, { headers });
    current.streams.push(s);
    return s;
  }

  /** A plain request that reads the whole (non-stream) answer. */
  function request(
    path: string,
    method = 'GET',
  ): Promise<{ status: number; body: string; headers: http.IncomingHttpHeaders }> {
    const { port } = running();
    return new Promise((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port, path, method }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode!, body, headers: res.headers }));
      });
      req.on('error', reject);
      req.end();
    });
  }

  /** Waits until the hub has `n` streams live (subscribed and opened). */
  async function untilConnections(n: number): Promise<void> {
    const { hub } = running();
    await until(() => hub.stats().connections === n, `${n} live stream(s)`, 2000);
    expect(hub.stats().connections).toBe(n);
  }

  /** A new broker of the kind the current describe uses (to wrap, e.g. in a HeldReplay). */
  const newBroker = (): Broker => makeBroker();

  return { start, stream, request, untilConnections, useBroker, newBroker };
}
