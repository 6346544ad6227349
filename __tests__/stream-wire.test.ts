/**
 * sse() on the wire, under Express 5, Express 4 and a bare node:http server
 * with a tiny connect-style chain: the stream head, the exact bytes of send,
 * comment and retry, the retry option, lastEventId, how a stream ends (client
 * ends, close(), 204 before opening), calls that throw, and compression() or
 * express.json() in front. Real sockets on 127.0.0.1; the client is the test
 * kit (sse-relay/testing).
 *
 * Keep-alive lives in keepalive.test.ts, middleware.close() in shutdown.test.ts,
 * option validation in options.test.ts, what a client leaving releases in leaks.test.ts.
 */
import compression from 'compression';
import express from 'express';
import request from 'supertest';
import { sse } from '../lib';
import { closeServer, collectEvents, expectEvents, listen, openStream, runningClocks } from '../lib/testing';
import { cleanup } from './helpers/cleanup';
import { HOSTS, streamHeaderNames, type Mw } from './helpers/hosts';
import { expectNoRunningClocks, inbox, open, start } from './helpers/sse-server';
import { until } from './helpers/wait';

afterEach(async () => {
  await cleanup();
  await expectNoRunningClocks();
});

/**
 * Every wire test runs on both write paths (lib/stream/direct.ts): straight to
 * the socket where that is safe (the default), and through res.write.
 */
const WRITE_PATHS = [
  { path: 'direct', env: 'direct' },
  { path: 'res.write', env: 'node' },
] as const;
const HOSTS_AND_PATHS = HOSTS.flatMap((host) => WRITE_PATHS.map((p) => ({ ...host, host, path: p.path, env: p.env })));

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
    const server = await start(
      host,
      [mw],
      [
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
      ],
    );
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
    const server = await start(
      host,
      [mw],
      [
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
      ],
    );
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
    const server = await start(
      host,
      [mw],
      [
        {
          method: 'GET',
          path: '/s',
          handler: (_req, res) => {
            res.sse.send('a');
            res.sse.send('b');
            res.sse.close();
          },
        },
      ],
    );
    const stream = await open(server, '/s');
    await stream.waitForEnd();
    expect(stream.raw()).toBe('retry: 0\n\ndata: a\n\ndata: b\n\n');
  });

  test('lastEventId: the Last-Event-ID header, else the lastEventId query parameter', async () => {
    const mw = sse({ keepAlive: false });
    const server = await start(
      host,
      [mw],
      [
        {
          method: 'GET',
          path: '/s',
          handler: (_req, res) => {
            res.sse.send(JSON.stringify({ last: res.sse.lastEventId ?? null }));
          },
        },
      ],
    );
    const last = async (path: string, headers?: Record<string, string>) =>
      JSON.parse((await collectEvents(server, path, { count: 1 }, { headers }))[0]!.data).last;
    expect(await last('/s', { 'Last-Event-ID': '42' })).toBe('42');
    expect(await last('/s?lastEventId=7')).toBe('7');
    expect(await last('/s?x=1&lastEventId=a%20b')).toBe('a b');
    expect(await last('/s?lastEventId=7', { 'Last-Event-ID': 'h' })).toBe('h');
    expect(await last('/s')).toBe(null);
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
    await until(() => res.listenerCount('close') <= closeListenersBefore, 'the close listener to go', 5000);
    expect(res.listenerCount('close')).toBe(closeListenersBefore);
  });

  test('close() before the stream opened answers 204 No Content with no body', async () => {
    const mw = sse();
    let after: boolean | undefined;
    let abortedAtClose: boolean | undefined;
    const server = await start(
      host,
      [mw],
      [
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
      ],
    );
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
    const server = await start(
      host,
      [mw],
      [
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
      ],
    );
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
    const server = await start(
      host,
      [mw],
      [
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
      ],
    );
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
    const server = await start(
      host,
      [compression() as unknown as Mw, mw],
      [
        { method: 'GET', path: '/s', handler: box.handler },
        {
          method: 'GET',
          path: '/big',
          handler: (_req, res) => {
            res.setHeader('Content-Type', 'text/plain');
            res.end(big);
          },
        },
      ],
    );
    // compression is really in the chain: a normal response is gzipped.
    const normal = await request(server).get('/big').set('Accept-Encoding', 'gzip');
    expect(normal.headers['content-encoding']).toBe('gzip');
    expect(normal.text).toBe(big);

    const stream = await open(server, '/s', { 'Accept-Encoding': 'gzip, deflate, br' });
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

  test("express.json() in front of a POST stream: the request's early close does not end the stream", async () => {
    const mw = sse({ keepAlive: false });
    const box = inbox((req, res) => {
      res.sse.open();
      const report = () => res.sse.send({ body: req.body ?? null, streamClosed: res.sse.closed }, { event: 'report' });
      // The request body was read: the request emits 'close' now, while the response goes on.
      if (req.closed) report();
      else req.once('close', report);
    });
    const server = await start(host, [host.json(), mw], [{ method: 'POST', path: '/s', handler: box.handler }]);
    const stream = await open(
      server,
      '/s',
      { 'Content-Type': 'application/json' },
      { method: 'POST', body: '{"want":["a","b"]}' },
    );
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
