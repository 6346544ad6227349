/**
 * sse() on the wire: real sockets on 127.0.0.1, exact status codes, headers
 * and bytes, under Express 5, Express 4 and a bare node:http server with a
 * tiny connect-style chain. The client is the test kit (sse-relay/testing).
 *
 * Timing: the only clocks here are small keep-alive intervals; tests assert
 * ordering, "at least" and "none", never how fast anything is.
 */
import { once } from 'node:events';
import type { IncomingMessage, RequestListener, Server, ServerResponse } from 'node:http';
import compression from 'compression';
import express from 'express';
import request from 'supertest';
import { sse, type SseMiddleware, type SseOptions } from '../lib';
import { runningClocks } from '../lib/testing';
import { closeServer, collectEvents, expectEvents, listen, openStream, type OpenStreamOptions, type TestStream } from '../lib/testing';

// Express 4 is installed under an alias; its API is the same for what we use.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const express4 = require('express4') as typeof express;

type Next = (err?: unknown) => void;
type Mw = (req: IncomingMessage, res: ServerResponse, next: Next) => void;
type Req = IncomingMessage & { body?: unknown };
type Handler = (req: Req, res: ServerResponse) => void;
interface Route {
  method: 'GET' | 'POST';
  path: string;
  handler: Handler;
}

interface Host {
  name: string;
  /** Express adds X-Powered-By and has res.json. */
  express: boolean;
  json(): Mw;
  app(before: Mw[], routes: Route[]): RequestListener;
}

function expressHost(name: string, lib: typeof express): Host {
  return {
    name,
    express: true,
    json: () => lib.json() as unknown as Mw,
    app(before, routes) {
      const app = lib();
      for (const mw of before) app.use(mw as unknown as express.RequestHandler);
      for (const r of routes) {
        if (r.method === 'GET') app.get(r.path, r.handler as unknown as express.RequestHandler);
        else app.post(r.path, r.handler as unknown as express.RequestHandler);
      }
      return app as unknown as RequestListener;
    },
  };
}

/** A bare node:http server: the middlewares in order, then an exact-path router, 404 otherwise. */
const bareHost: Host = {
  name: 'node:http + connect-style chain',
  express: false,
  json: () => express.json() as unknown as Mw, // body-parser is a plain (req, res, next) middleware
  app(before, routes) {
    return (req, res) => {
      let i = 0;
      const next: Next = (err) => {
        if (err !== undefined) {
          res.statusCode = 500;
          res.end('error');
          return;
        }
        const mw = before[i++];
        if (mw !== undefined) {
          try {
            mw(req, res, next);
          } catch (e) {
            next(e);
          }
          return;
        }
        const path = (req.url ?? '/').split('?')[0];
        const route = routes.find((r) => r.method === req.method && r.path === path);
        if (route === undefined) {
          res.statusCode = 404;
          res.end('Not Found');
          return;
        }
        route.handler(req, res);
      };
      next();
    };
  },
};

const HOSTS: Host[] = [expressHost('Express 5', express), expressHost('Express 4', express4), bareHost];

/**
 * Every wire test runs on both write paths (lib/stream/direct.ts): straight to
 * the socket where that is safe (the default), and through res.write.
 */
const WRITE_PATHS = [
  { path: 'direct', env: 'direct' },
  { path: 'res.write', env: 'node' },
] as const;
const HOSTS_AND_PATHS = HOSTS.flatMap((host) => WRITE_PATHS.map((p) => ({ ...host, host, path: p.path, env: p.env })));

// ---------------------------------------------------------------------------
// Resources of the running test, all released in afterEach.

const servers: Server[] = [];
const streams: TestStream[] = [];

async function start(host: Host, before: Mw[], routes: Route[]): Promise<Server> {
  const server = await listen(host.app(before, routes));
  servers.push(server);
  return server;
}

async function open(server: Server, path: string, options?: OpenStreamOptions): Promise<TestStream> {
  const stream = await openStream({ server, path }, options);
  streams.push(stream);
  return stream;
}

/** Polls `condition` (server-side state) every few ms; bounded. */
async function eventually(condition: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

afterEach(async () => {
  await Promise.all(streams.splice(0).map((s) => s.close()));
  await Promise.all(servers.splice(0).map((s) => closeServer(s)));
  // Every stream has ended: no shared timer may be left running.
  await eventually(() => runningClocks() === 0, 'every shared timer to stop');
  expect(runningClocks()).toBe(0);
});

/** Server side of one request, handed from the route to the test. */
interface Seen {
  req: Req;
  res: ServerResponse;
  /** res.listenerCount('close') before the stream opened. */
  closeListenersBefore: number;
}

/** A route handler that records each request (after `then` ran) for the test to pick up. */
function inbox(then: (req: Req, res: ServerResponse) => void = (_req, res) => void res.sse.open()) {
  const seen: Seen[] = [];
  const waiting: Array<(s: Seen) => void> = [];
  const handler: Handler = (req, res) => {
    const entry: Seen = { req, res, closeListenersBefore: res.listenerCount('close') };
    then(req, res);
    const w = waiting.shift();
    if (w) w(entry);
    else seen.push(entry);
  };
  function next(timeoutMs = 5000): Promise<Seen> {
    const ready = seen.shift();
    if (ready) return Promise.resolve(ready);
    return new Promise<Seen>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no request reached the route')), timeoutMs);
      waiting.push((s) => {
        clearTimeout(timer);
        resolve(s);
      });
    });
  }
  return { handler, next };
}

const STREAM_HEADER_NAMES = ['cache-control', 'connection', 'content-type', 'date', 'transfer-encoding', 'x-accel-buffering'];

function streamHeaderNames(host: Host): string[] {
  return [...STREAM_HEADER_NAMES, ...(host.express ? ['x-powered-by'] : [])].sort();
}

// ---------------------------------------------------------------------------

describe.each(HOSTS_AND_PATHS)('sse() under $name, $path write path', ({ host, env }) => {
  beforeAll(() => {
    process.env.SSE_RELAY_WRITE_PATH = env;
  });
  afterAll(() => {
    delete process.env.SSE_RELAY_WRITE_PATH;
  });

  test('opens with exactly the stream headers, flushed before the first event', async () => {
    const mw = sse({ keepAlive: false });
    const box = inbox();
    const server = await start(host, [mw], [{ method: 'GET', path: '/s', handler: box.handler }]);
    const stream = await open(server, '/s');
    const { res } = await box.next();

    // The client has the head while the server has sent nothing else.
    expect(stream.status).toBe(200);
    expect(stream.raw()).toBe('');
    expect(stream.headers['content-type']).toBe('text/event-stream; charset=utf-8');
    expect(stream.headers['cache-control']).toBe('no-cache, no-transform');
    expect(stream.headers['connection']).toBe('keep-alive');
    expect(stream.headers['x-accel-buffering']).toBe('no');
    expect(stream.headers['transfer-encoding']).toBe('chunked');
    expect(stream.headers['content-length']).toBeUndefined();
    expect(Object.keys(stream.headers).sort()).toEqual(streamHeaderNames(host));
    expect(mw.connections).toBe(1);

    expect(res.sse.send('first')).toBe(true);
    await stream.waitFor(1);
    expect(stream.raw()).toBe('data: first\n\n');
  });

  test('a normal route under sse() is untouched: no stream, normal headers, normal body', async () => {
    const mw = sse();
    let attached = '';
    const server = await start(host, [mw], [
      {
        method: 'GET',
        path: '/json',
        handler: (_req, res) => {
          attached = typeof res.sse?.send;
          if (host.express) (res as unknown as express.Response).json({ ok: true });
          else {
            res.setHeader('Content-Type', 'application/json; charset=utf-8');
            res.end('{"ok":true}');
          }
        },
      },
    ]);
    const got = await request(server).get('/json').expect(200);
    expect(attached).toBe('function');
    expect(got.headers['content-type']).toBe('application/json; charset=utf-8');
    expect(got.text).toBe('{"ok":true}');
    expect(got.headers['x-accel-buffering']).toBeUndefined();
    expect(got.headers['cache-control']).toBeUndefined();
    if (host.express) expect(got.headers['content-length']).toBe('11');
    expect(mw.connections).toBe(0);

    const missing = await request(server).get('/nope');
    expect(missing.status).toBe(404);
    expect(missing.headers['x-accel-buffering']).toBeUndefined();
  });

  test('send, comment and retry write exactly their frames, and return true', async () => {
    const mw = sse({ keepAlive: false });
    const returns: boolean[] = [];
    const server = await start(host, [mw], [
      {
        method: 'GET',
        path: '/s',
        handler: (_req, res) => {
          const s = res.sse;
          returns.push(
            s.send('hello'),
            s.send({ a: 1, t: 'x\ny' }, { event: 'obj', id: 7 }),
            s.send('l1\r\nl2\rl3\nl4'),
            s.comment('ping'),
            s.comment('a\nb'),
            s.comment(),
            s.retry(2500),
            s.send('', { id: '' }),
            s.send(' spaced', { event: 'e', id: 'x' }),
            s.retry(0),
          );
          s.close();
        },
      },
    ]);
    const stream = await open(server, '/s');
    await stream.waitForEnd();
    expect(stream.raw()).toBe(
      'data: hello\n\n' +
        'id: 7\nevent: obj\ndata: {"a":1,"t":"x\\ny"}\n\n' +
        'data: l1\ndata: l2\ndata: l3\ndata: l4\n\n' +
        ': ping\n\n' +
        ': a\n: b\n\n' +
        ': \n\n' +
        'retry: 2500\n\n' +
        'id: \ndata: \n\n' +
        'id: x\nevent: e\ndata:  spaced\n\n' +
        'retry: 0\n\n',
    );
    expect(returns).toEqual(Array(10).fill(true));
    expectEvents(stream.events, [
      { data: 'hello', event: 'message', id: '' },
      { data: '{"a":1,"t":"x\\ny"}', event: 'obj', id: '7' },
      { data: 'l1\nl2\nl3\nl4', event: 'message', id: '7' },
      { data: '', event: 'message', id: '' },
      { data: ' spaced', event: 'e', id: 'x' },
    ]);
    expect(stream.comments).toEqual(['ping', 'a', 'b', '']);
    expect(stream.retries).toEqual([2500, 0]);
  });

  test('the retry option is sent right after opening, before anything else', async () => {
    const mw = sse({ keepAlive: false, retry: 1234 });
    const box = inbox();
    const server = await start(host, [mw], [{ method: 'GET', path: '/s', handler: box.handler }]);
    const stream = await open(server, '/s');
    const { res } = await box.next();
    await stream.waitUntil(() => stream.raw() !== '', 5000, 'the retry frame');
    expect(stream.raw()).toBe('retry: 1234\n\n');
    res.sse.send('x');
    await stream.waitFor(1);
    expect(stream.raw()).toBe('retry: 1234\n\ndata: x\n\n');
    expect(stream.retries).toEqual([1234]);
  });

  test('the retry option is sent once even when the first call is send() (lazy open)', async () => {
    const mw = sse({ keepAlive: false, retry: 0 });
    const server = await start(host, [mw], [
      {
        method: 'GET',
        path: '/s',
        handler: (_req, res) => {
          res.sse.send('a');
          res.sse.send('b');
          res.sse.close();
        },
      },
    ]);
    const stream = await open(server, '/s');
    await stream.waitForEnd();
    expect(stream.raw()).toBe('retry: 0\n\ndata: a\n\ndata: b\n\n');
  });

  test('keep-alive comments come after keepAlive ms of silence, and only comments', async () => {
    const keepAlive = 50;
    const mw = sse({ keepAlive });
    const box = inbox();
    const server = await start(host, [mw], [{ method: 'GET', path: '/s', handler: box.handler }]);
    const stream = await open(server, '/s');
    await box.next();
    await stream.waitUntil(() => stream.comments.length >= 3, 5000, 'three keep-alives');
    expect(stream.comments.every((c) => c === 'keep-alive')).toBe(true);
    expect(stream.raw()).toBe(': keep-alive\n\n'.repeat(stream.comments.length));
    expect(stream.events).toEqual([]);
  });

  test('the first keep-alive comes no earlier than keepAlive ms after opening, whatever else is open', async () => {
    const keepAlive = 50;
    const mw = sse({ keepAlive });
    let openedAt = 0;
    const box = inbox((_req, res) => {
      openedAt = performance.now();
      res.sse.open();
    });
    const server = await start(host, [mw], [{ method: 'GET', path: '/s', handler: box.handler }]);
    // Another stream keeps the shared timer running, so the streams below join it at arbitrary moments.
    await open(server, '/s');
    await box.next();
    const delays: number[] = [];
    for (let i = 0; i < 10; i++) {
      await new Promise((r) => setTimeout(r, i)); // land at different points of the 10 ms tick
      const stream = await open(server, '/s');
      await box.next();
      const startedAt = openedAt;
      await stream.waitUntil(() => stream.comments.length >= 1, 5000, 'a keep-alive');
      delays.push(performance.now() - startedAt);
      expect(stream.raw()).toBe(': keep-alive\n\n');
      await stream.close();
    }
    // At least keepAlive ms (a couple of ms of timer granularity allowed); never an upper bound.
    expect(Math.min(...delays)).toBeGreaterThanOrEqual(keepAlive - 3);
  });

  test('writes reset the keep-alive timer: no keep-alive while sending every 20 ms, one after', async () => {
    const mw = sse({ keepAlive: 50 });
    const box = inbox();
    const server = await start(host, [mw], [{ method: 'GET', path: '/s', handler: box.handler }]);
    const stream = await open(server, '/s');
    const { res } = await box.next();
    const COUNT = 15; // 15 x 20 ms = 300 ms of steady writes
    let sent = 0;
    res.sse.send(String(sent++));
    await new Promise<void>((resolve) => {
      const timer = setInterval(() => {
        res.sse.send(String(sent++));
        if (sent === COUNT) {
          clearInterval(timer);
          resolve();
        }
      }, 20);
    });
    await stream.waitFor(COUNT);
    const dataFrames = Array.from({ length: COUNT }, (_, i) => `data: ${i}\n\n`).join('');
    // Silence now: a keep-alive follows, and nothing came between the data frames.
    await stream.waitUntil(() => stream.comments.length >= 1, 5000, 'a keep-alive after the writes stop');
    expect(stream.raw()).toBe(dataFrames + ': keep-alive\n\n'.repeat(stream.comments.length));
  });

  test('lastEventId: the Last-Event-ID header, else the lastEventId query parameter', async () => {
    const mw = sse({ keepAlive: false });
    const server = await start(host, [mw], [
      {
        method: 'GET',
        path: '/s',
        handler: (_req, res) => {
          res.sse.send(JSON.stringify({ last: res.sse.lastEventId ?? null }));
        },
      },
    ]);
    const last = async (path: string, headers?: Record<string, string>) =>
      JSON.parse((await collectEvents(server, path, { count: 1 }, { headers }))[0]!.data).last;
    expect(await last('/s', { 'Last-Event-ID': '42' })).toBe('42');
    expect(await last('/s?lastEventId=7')).toBe('7');
    expect(await last('/s?x=1&lastEventId=a%20b')).toBe('a b');
    expect(await last('/s?lastEventId=7', { 'Last-Event-ID': 'h' })).toBe('h');
    expect(await last('/s')).toBe(null);
  });

  test('client leaves: closed, signal aborted, calls return false, every listener and timer released', async () => {
    const mw = sse({ keepAlive: 50 });
    const box = inbox();
    const server = await start(host, [mw], [{ method: 'GET', path: '/s', handler: box.handler }]);
    const stream = await open(server, '/s');
    const { res, closeListenersBefore } = await box.next();
    const s = res.sse;
    const aborted = once(s.signal, 'abort');
    expect(s.closed).toBe(false);
    expect(s.signal.aborted).toBe(false);
    expect(mw.connections).toBe(1);
    expect(runningClocks()).toBe(1);
    expect(res.listenerCount('close')).toBe(closeListenersBefore + 1);

    await stream.close();
    await aborted;
    expect(s.closed).toBe(true);
    expect(s.signal.aborted).toBe(true);
    expect(mw.connections).toBe(0);
    expect(runningClocks()).toBe(0);
    expect(res.listenerCount('close')).toBe(closeListenersBefore);
    expect(res.listenerCount('drain')).toBe(0);
    expect(s.send('late')).toBe(false);
    expect(s.send('late', { event: 'e', id: 1 })).toBe(false);
    expect(s.comment('late')).toBe(false);
    expect(s.retry(10)).toBe(false);
    expect(s.open()).toBe(false);
    expect(() => s.close()).not.toThrow();
    expect(mw.connections).toBe(0);
  });

  test('close(): the response ends, closed and signal follow, close is idempotent, later calls return false', async () => {
    const mw = sse({ keepAlive: 50 });
    const box = inbox();
    const server = await start(host, [mw], [{ method: 'GET', path: '/s', handler: box.handler }]);
    const stream = await open(server, '/s');
    const { res, closeListenersBefore } = await box.next();
    const s = res.sse;
    let aborts = 0;
    s.signal.addEventListener('abort', () => aborts++);
    s.send('last');
    s.close();
    expect(s.closed).toBe(true);
    expect(s.signal.aborted).toBe(true);
    expect(() => s.close()).not.toThrow();
    expect(s.send('after')).toBe(false);
    expect(s.comment('after')).toBe(false);
    expect(s.retry(1)).toBe(false);
    expect(s.open()).toBe(false);
    expect(aborts).toBe(1);
    expect(mw.connections).toBe(0);
    expect(runningClocks()).toBe(0);

    await stream.waitForEnd();
    expect(stream.raw()).toBe('data: last\n\n');
    await eventually(() => res.listenerCount('close') <= closeListenersBefore, 'the close listener to go');
    expect(res.listenerCount('close')).toBe(closeListenersBefore);
  });

  test('close() before the stream opened answers 204 No Content with no body', async () => {
    const mw = sse();
    let after: boolean | undefined;
    let abortedAtClose: boolean | undefined;
    const server = await start(host, [mw], [
      {
        method: 'GET',
        path: '/s',
        handler: (_req, res) => {
          res.sse.close();
          abortedAtClose = res.sse.signal.aborted;
          res.sse.close();
          after = res.sse.send('x');
        },
      },
    ]);
    const stream = await open(server, '/s');
    await stream.waitForEnd();
    expect(stream.status).toBe(204);
    expect(stream.raw()).toBe('');
    expect(stream.headers['content-type']).toBeUndefined();
    expect(stream.headers['x-accel-buffering']).toBeUndefined();
    expect(after).toBe(false);
    expect(abortedAtClose).toBe(true);
    expect(mw.connections).toBe(0);
  });

  test('a call that throws does not open the stream: the route can still answer normally', async () => {
    const mw = sse({ keepAlive: false });
    const thrown: string[] = [];
    let state: unknown;
    const server = await start(host, [mw], [
      {
        method: 'GET',
        path: '/s',
        handler: (_req, res) => {
          const s = res.sse;
          const attempts: Array<() => unknown> = [
            () => s.send('x', { event: 'a\nb' }),
            () => s.send('x', { event: 'a\rb' }),
            () => s.send('x', { event: 'a\0b' }),
            () => s.send('x', { id: '1\r\ndata: evil' }),
            () => s.retry(-1),
            () => s.retry(1.5),
            () => s.retry(NaN),
            () => s.retry('5' as unknown as number),
            () => s.send(undefined),
            () => s.comment(5 as unknown as string),
          ];
          for (const attempt of attempts) {
            try {
              attempt();
              thrown.push('nothing');
            } catch (e) {
              thrown.push((e as Error).constructor.name);
            }
          }
          state = { headersSent: res.headersSent, closed: s.closed, connections: mw.connections };
          res.statusCode = 418;
          res.setHeader('Content-Type', 'text/plain');
          res.end('still mine');
        },
      },
    ]);
    const stream = await open(server, '/s');
    await stream.waitForEnd();
    expect(thrown).toEqual([
      'TypeError',
      'TypeError',
      'TypeError',
      'TypeError',
      'RangeError',
      'RangeError',
      'RangeError',
      'RangeError',
      'TypeError',
      'TypeError',
    ]);
    expect(state).toEqual({ headersSent: false, closed: false, connections: 0 });
    expect(stream.status).toBe(418);
    expect(stream.raw()).toBe('still mine');
    expect(stream.headers['x-accel-buffering']).toBeUndefined();
  });

  test('a serializer that throws does not open the stream either', async () => {
    const boom = new Error('cannot serialize');
    const mw = sse({
      keepAlive: false,
      serialize: () => {
        throw boom;
      },
    });
    let caught: unknown;
    const server = await start(host, [mw], [
      {
        method: 'GET',
        path: '/s',
        handler: (_req, res) => {
          try {
            res.sse.send({ a: 1 });
          } catch (e) {
            caught = e;
          }
          res.sse.send('strings skip the serializer');
          res.sse.close();
        },
      },
    ]);
    const stream = await open(server, '/s');
    await stream.waitForEnd();
    expect(caught).toBe(boom);
    expect(stream.status).toBe(200);
    expect(stream.raw()).toBe('data: strings skip the serializer\n\n');
  });

  test('compression() in front: the stream is not compressed and every event arrives as it is sent', async () => {
    const mw = sse({ keepAlive: false });
    const box = inbox();
    const big = 'x'.repeat(4096);
    const server = await start(host, [compression() as unknown as Mw, mw], [
      { method: 'GET', path: '/s', handler: box.handler },
      {
        method: 'GET',
        path: '/big',
        handler: (_req, res) => {
          res.setHeader('Content-Type', 'text/plain');
          res.end(big);
        },
      },
    ]);
    // compression is really in the chain: a normal response is gzipped.
    const normal = await request(server).get('/big').set('Accept-Encoding', 'gzip');
    expect(normal.headers['content-encoding']).toBe('gzip');
    expect(normal.text).toBe(big);

    const stream = await open(server, '/s', { headers: { 'Accept-Encoding': 'gzip, deflate, br' } });
    const { res } = await box.next();
    expect(stream.status).toBe(200);
    expect(stream.headers['content-encoding']).toBeUndefined();
    expect(stream.headers['content-type']).toBe('text/event-stream; charset=utf-8');
    // Each event reaches the client before the next one is sent: nothing is held back.
    for (let i = 1; i <= 3; i++) {
      res.sse.send(`event ${i}`, { id: i });
      await stream.waitFor(i);
    }
    res.sse.comment('c');
    await stream.waitUntil(() => stream.comments.length === 1, 5000, 'the comment');
    expect(stream.raw()).toBe('id: 1\ndata: event 1\n\nid: 2\ndata: event 2\n\nid: 3\ndata: event 3\n\n: c\n\n');
  });

  test('express.json() in front of a POST stream: the request\'s early close does not end the stream', async () => {
    const mw = sse({ keepAlive: false });
    const box = inbox((req, res) => {
      res.sse.open();
      const report = () => res.sse.send({ body: req.body ?? null, streamClosed: res.sse.closed }, { event: 'report' });
      // The request body was read: the request emits 'close' now, while the response goes on.
      if (req.closed) report();
      else req.once('close', report);
    });
    const server = await start(host, [host.json(), mw], [{ method: 'POST', path: '/s', handler: box.handler }]);
    const stream = await open(server, '/s', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: '{"want":["a","b"]}',
    });
    const { req, res } = await box.next();
    const [report] = await stream.waitFor(1);
    expect(req.closed).toBe(true);
    expect(report).toEqual({ event: 'report', id: '', data: '{"body":{"want":["a","b"]},"streamClosed":false}' });
    expect(res.sse.closed).toBe(false);
    expect(mw.connections).toBe(1);
    expect(res.sse.send('still open')).toBe(true);
    await stream.waitFor(2);
    expect(stream.events[1]!.data).toBe('still open');
    expect(stream.ended).toBe(false);
  });

  test('middleware.close() sends retry to every open stream and ends it', async () => {
    const mw = sse({ keepAlive: false });
    const box = inbox();
    const server = await start(host, [mw], [{ method: 'GET', path: '/s', handler: box.handler }]);
    const a = await open(server, '/s');
    const b = await open(server, '/s');
    await box.next();
    await box.next();
    expect(mw.connections).toBe(2);
    mw.close();
    await a.waitForEnd();
    await b.waitForEnd();
    for (const s of [a, b]) {
      expect(s.raw()).toMatch(/^retry: \d+\n\n$/);
      expect(s.retries).toHaveLength(1);
    }
    expect(mw.connections).toBe(0);
  });
});

describe('sse(options): bad options throw at sse() time, naming the option', () => {
  const CASES: Array<[string, unknown, typeof TypeError | typeof RangeError, RegExp]> = [
    ['keepAlive 0', { keepAlive: 0 }, RangeError, /keepAlive/],
    ['keepAlive -1', { keepAlive: -1 }, RangeError, /keepAlive/],
    ['keepAlive 1.5', { keepAlive: 1.5 }, RangeError, /keepAlive/],
    ['keepAlive NaN', { keepAlive: NaN }, RangeError, /keepAlive/],
    ['keepAlive "100"', { keepAlive: '100' }, TypeError, /keepAlive/],
    ['keepAlive true', { keepAlive: true }, TypeError, /keepAlive/],
    ['retry -1', { retry: -1 }, RangeError, /retry/],
    ['retry 1.5', { retry: 1.5 }, RangeError, /retry/],
    ['retry "5"', { retry: '5' }, RangeError, /retry/],
    ['headers "x"', { headers: 'x' }, TypeError, /headers/],
    ['headers value {}', { headers: { 'X-A': {} } }, TypeError, /headers/],
    ['serialize "json"', { serialize: 'json' }, TypeError, /serialize/],
    ['maxBufferedBytes 0', { maxBufferedBytes: 0 }, RangeError, /maxBufferedBytes/],
    ['maxDuration -5', { maxDuration: -5 }, RangeError, /maxDuration/],
    ['allowedOrigins "*"', { allowedOrigins: '*' }, TypeError, /allowedOrigins/],
    ['allowedOrigins ["*"]', { allowedOrigins: ['*'] }, TypeError, /allowedOrigins/],
    ['allowedOrigins trailing slash', { allowedOrigins: ['https://a.example/'] }, TypeError, /allowedOrigins/],
    ['maxConnections 0', { maxConnections: 0 }, RangeError, /maxConnections/],
    ['maxConnectionsPerKey 1.5', { maxConnectionsPerKey: 1.5 }, RangeError, /maxConnectionsPerKey/],
    ['connectionKey 1', { connectionKey: 1 }, TypeError, /connectionKey/],
    ['an unknown option', { keepalive: 5 }, TypeError, /keepalive/],
    ['options null', null, TypeError, /options/],
    ['options "x"', 'x', TypeError, /options/],
  ];

  test.each(CASES)('%s', (_name, options, ErrorClass, names) => {
    let error: unknown;
    try {
      sse(options as SseOptions);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ErrorClass);
    expect((error as Error).message).toMatch(names);
  });

  test('good options are accepted', () => {
    const mws: SseMiddleware[] = [
      sse(),
      sse({}),
      sse({ keepAlive: false, retry: 0, headers: { 'X-A': 'b', 'X-N': 1, 'X-L': ['a', 'b'] } }),
      sse({ maxConnections: Infinity, maxBufferedBytes: Infinity, allowedOrigins: ['https://a.example'] }),
      sse({ allowedOrigins: () => true, connectionKey: () => 'k', serialize: String, maxDuration: 1000 }),
    ];
    for (const mw of mws) expect(mw.connections).toBe(0);
  });
});

describe('calls after close never throw', () => {
  test('even with input that would throw on an open stream', async () => {
    const middleware = sse({ keepAlive: false });
    let results: unknown[] = [];
    const app = express();
    app.use(middleware);
    app.get('/s', (_req, res) => {
      res.sse.send('one');
      res.sse.close();
      results = [
        res.sse.send(undefined),
        res.sse.send('x', { event: 'bad\nname' }),
        res.sse.retry(-1),
        res.sse.comment(42 as unknown as string),
        res.sse.open(),
      ];
    });
    const server = await listen(app);
    try {
      const s = await openStream({ server, path: '/s' });
      await s.waitForEnd();
      expect(s.raw()).toBe('data: one\n\n');
      expect(results).toEqual([false, false, false, false, false]);
    } finally {
      await closeServer(server);
    }
  });
});
