/**
 * The HTTP publish endpoint (createPublisher / hub.publisher): every status
 * code with its exact body and headers, under Express 5, Express 4 and bare
 * node:http, with and without a body parser in front; a flood of concurrent
 * POSTs delivered exactly once; an oversized body refused without being read.
 * Every publish goes through a real hub; streams are read over real sockets.
 */
import {
  request as httpRequest,
  Agent,
  type IncomingMessage,
  type RequestListener,
  type Server,
  type ServerResponse,
} from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import express from 'express';
import { createHub, RedisBroker, SseRelayError, type Hub } from '../lib';
import { createPublisher, type PublisherOptions, type PublishFn } from '../lib/publisher';
import type { PublishOptions } from '../lib/hub';
import { closeServer, listen, openStream, type TestStream } from '../lib/testing';
import { freePort } from './helpers/redis-server';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const express4 = require('express4') as typeof express;

const TOKEN = 'publish-secret';
const bearer = (req: IncomingMessage): boolean | 'unauthenticated' => {
  const auth = req.headers.authorization;
  if (auth === undefined) return 'unauthenticated';
  return auth === `Bearer ${TOKEN}`;
};

interface Reply {
  status: number;
  headers: IncomingMessage['headers'];
  body: string;
}

/** One request on a fresh socket; resolves with the whole response. */
function send(
  server: Server,
  options: { method?: string; path?: string; headers?: Record<string, string>; body?: string | Buffer },
): Promise<Reply> {
  const { port } = server.address() as AddressInfo;
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      {
        host: '127.0.0.1',
        port,
        method: options.method ?? 'POST',
        path: options.path ?? '/publish',
        headers: options.headers,
        agent: false,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }),
        );
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(options.body);
  });
}

const json = (value: unknown, headers: Record<string, string> = {}) => ({
  headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${TOKEN}`, ...headers },
  body: typeof value === 'string' ? value : JSON.stringify(value),
});
const form = (fields: Record<string, string> | string, headers: Record<string, string> = {}) => ({
  headers: { 'Content-Type': 'application/x-www-form-urlencoded', Authorization: `Bearer ${TOKEN}`, ...headers },
  body: typeof fields === 'string' ? fields : new URLSearchParams(fields).toString(),
});

/** The hub's publish as a PublishFn, as `hub.publisher()` binds it. */
const publishOn =
  (hub: Hub): PublishFn =>
  (c, d, o) =>
    hub.publish(c, d, o as PublishOptions<never>);

type Host = 'express5' | 'express5+parsers' | 'express4' | 'express4+parsers' | 'node:http';
const HOSTS: Host[] = ['express5', 'express5+parsers', 'express4', 'express4+parsers', 'node:http'];

/** The endpoint at POST /publish and the hub's streams at GET /events/<channel>, on `host`. */
function app(host: Host, hub: Hub, options: Partial<PublisherOptions> = {}, publish?: PublishFn): RequestListener {
  const handler = createPublisher(publish ?? publishOn(hub), { authorize: bearer, ...options });
  if (host === 'node:http') {
    const events = hub.router();
    return (req, res) => {
      if (req.url?.startsWith('/events/')) {
        req.url = req.url.slice('/events'.length);
        events(req, res, () => res.writeHead(404).end());
      } else if (req.url === '/publish') handler(req, res);
      else res.writeHead(404).end();
    };
  }
  const make = host.startsWith('express4') ? express4 : express;
  const a = make();
  if (host.endsWith('+parsers')) {
    a.use(make.json());
    a.use(make.urlencoded({ extended: true }));
  }
  a.use('/events', hub.router());
  a.all('/publish', handler);
  // An error from authorize reaches the app's error handler (generic 500, no message).
  a.use((err: { status?: number }, req: IncomingMessage, res: ServerResponse, next: (err?: unknown) => void) => {
    void next;
    res.statusCode = err.status ?? 500;
    res.setHeader('Content-Type', 'text/plain');
    res.end('app error handler');
  });
  return a as unknown as RequestListener;
}

describe('createPublisher options', () => {
  const publish: PublishFn = async () => 'x';
  test('authorize is required; unknown names and bad values are refused', () => {
    expect(() => createPublisher(publish, {} as PublisherOptions)).toThrow(
      new TypeError(
        'sse-relay: publisher option authorize must be a function (req, channel) => boolean, got undefined',
      ),
    );
    expect(() => createPublisher(publish, undefined as unknown as PublisherOptions)).toThrow(TypeError);
    expect(() => createPublisher(publish, { authorize: () => true, limt: 10 } as PublisherOptions)).toThrow(
      'sse-relay: unknown publisher option "limt" (did you mean "limit"?); known: authorize, limit, wwwAuthenticate',
    );
    expect(() =>
      createPublisher(publish, { authorize: () => true, limit: '1mb' } as unknown as PublisherOptions),
    ).toThrow(new TypeError('sse-relay: option limit must be a number, got "1mb"'));
    expect(() => createPublisher(publish, { authorize: () => true, limit: 0 })).toThrow(
      new RangeError('sse-relay: option limit must be a positive integer, got 0'),
    );
    expect(() => createPublisher(publish, { authorize: () => true, limit: 1.5 })).toThrow(RangeError);
    expect(() => createPublisher(publish, { authorize: () => true, wwwAuthenticate: 'a\nb' })).toThrow(TypeError);
    expect(() => createPublisher('nope' as unknown as PublishFn, { authorize: () => true })).toThrow(TypeError);
  });
});

describe.each(HOSTS)('the publish endpoint under %s', (host) => {
  let hub: Hub;
  let server: Server;
  const streams: TestStream[] = [];
  const seen: Array<Parameters<PublishFn>[2]> = [];
  const parsers = host.endsWith('+parsers');

  beforeAll(async () => {
    hub = createHub({ authorize: () => true });
    server = await listen(
      app(host, hub, { limit: 64 * 1024 }, (c, d, o) => {
        seen.push(o);
        return publishOn(hub)(c, d, o);
      }),
    );
  });
  afterEach(async () => {
    await Promise.all(streams.splice(0).map((s) => s.close()));
    seen.length = 0;
  });
  afterAll(async () => {
    await hub.close();
    await closeServer(server);
  });

  async function stream(channel: string): Promise<TestStream> {
    const s = await openStream({ server, path: `/events/${channel}` });
    streams.push(s);
    expect(s.status).toBe(200);
    return s;
  }

  test('201 + {"id"} for a JSON body; the event reaches the channel with that id', async () => {
    const s = await stream('order:1');
    const reply = await send(server, json({ channel: 'order:1', data: '<span>Shipped</span>', event: 'status' }));
    expect(reply.status).toBe(201);
    expect(reply.headers['content-type']).toBe('application/json');
    expect(reply.headers['cache-control']).toBe('no-store');
    const { id } = JSON.parse(reply.body) as { id: string };
    expect(reply.body).toBe(JSON.stringify({ id }));
    expect(id).toMatch(/^[A-Za-z0-9._-]{1,128}$/);
    const [ev] = await s.waitFor(1);
    expect(ev).toEqual({ id, event: 'status', data: '<span>Shipped</span>' });
  });

  test('JSON data that is not a string is sent as its JSON text; multi-line strings stay multi-line', async () => {
    const s = await stream('json:data');
    expect((await send(server, json({ channel: 'json:data', data: { n: 1, ok: [true, null] } }))).status).toBe(201);
    expect((await send(server, json({ channel: 'json:data', data: 42 }))).status).toBe(201);
    expect((await send(server, json({ channel: 'json:data', data: 'line 1\nline 2' }))).status).toBe(201);
    const events = await s.waitFor(3);
    expect(events.map((e) => [e.event, e.data])).toEqual([
      ['message', '{"n":1,"ok":[true,null]}'],
      ['message', '42'],
      ['message', 'line 1\nline 2'],
    ]);
  });

  test('201 for a form-encoded body, coalesce and Idempotency-Key passed on', async () => {
    const s = await stream('job:7');
    const reply = await send(
      server,
      form(
        { channel: 'job:7', data: '50% & rising', event: 'progress', coalesce: 'progress' },
        { 'Idempotency-Key': '"job-7-50"' },
      ),
    );
    expect(reply.status).toBe(201);
    const { id } = JSON.parse(reply.body) as { id: string };
    const [ev] = await s.waitFor(1);
    expect(ev).toEqual({ id, event: 'progress', data: '50% & rising' });
    expect(seen).toEqual([{ event: 'progress', coalesce: 'progress', idempotencyKey: 'job-7-50' }]);
  });

  test('405 + Allow: POST for any other method', async () => {
    for (const method of ['GET', 'PUT', 'DELETE', 'PATCH', 'OPTIONS']) {
      const reply = await send(server, { method, headers: { Authorization: `Bearer ${TOKEN}` } });
      expect([method, reply.status, reply.headers.allow, reply.headers['content-type'], reply.body]).toEqual([
        method,
        405,
        'POST',
        'text/plain; charset=utf-8',
        'Method Not Allowed',
      ]);
    }
  });

  test('415 for other content types, charsets and encodings', async () => {
    const body = JSON.stringify({ channel: 'a', data: 'x' });
    // With express.json() in front, the charset and the encoding are its business: its own
    // error (415 unsupported charset, 400 for a body that is not gzip) reaches the error handler.
    const cases: Array<[Record<string, string>, number | undefined]> = [
      [{}, undefined],
      [{ 'Content-Type': 'text/plain' }, undefined],
      [{ 'Content-Type': 'application/json; charset=latin1' }, 415],
      [{ 'Content-Type': 'multipart/form-data; boundary=x' }, undefined],
      [{ 'Content-Type': 'application/json', 'Content-Encoding': 'gzip' }, 400],
    ];
    for (const [headers, parserStatus] of cases) {
      const reply = await send(server, { headers: { Authorization: `Bearer ${TOKEN}`, ...headers }, body });
      expect([headers, reply.status, reply.headers['content-type'], reply.body]).toEqual(
        parsers && parserStatus !== undefined
          ? [headers, parserStatus, 'text/plain', 'app error handler']
          : [headers, 415, 'text/plain; charset=utf-8', 'Unsupported Media Type'],
      );
    }
    // A charset of utf-8 (any case, quoted or not) is fine.
    const ok = await send(
      server,
      json({ channel: 'a', data: 'x' }, { 'Content-Type': 'Application/JSON; Charset="UTF-8"' }),
    );
    expect(ok.status).toBe(201);
  });

  test('400 for a bad body or field, with a generic body that echoes nothing', async () => {
    // Bodies that are not JSON objects at all: with express.json() in front, it refuses them itself (400 to the error handler).
    const notJson: Array<{ headers: Record<string, string>; body: string | Buffer }> = [
      json('{"channel": "a", "data": '),
      json('"a string"'),
      json('null'),
      { headers: json({}).headers, body: Buffer.from([0x7b, 0x22, 0xff, 0x22, 0x7d]) }, // invalid UTF-8
    ];
    for (const request of notJson) {
      const reply = await send(server, request);
      expect([String(request.body), reply.status, reply.body]).toEqual([
        String(request.body),
        400,
        parsers ? 'app error handler' : 'Bad Request',
      ]);
    }
    const bad: Array<{ headers: Record<string, string>; body: string | Buffer }> = [
      json('[]'),
      json({ data: 'x' }),
      json({ channel: 'a' }),
      json({ channel: '<script>alert(1)</script>', data: 'x' }),
      json({ channel: 'a/b', data: 'x' }),
      json({ channel: 7, data: 'x' }),
      json({ channel: 'a', data: 'x', event: 'evil\ndata: injected' }),
      json({ channel: 'a', data: 'x', event: '' }),
      json({ channel: 'a', data: 'x', event: 5 }),
      json({ channel: 'a', data: 'x', coalesce: '' }),
      json({ channel: 'a', data: 'x', evnt: 'typo' }),
      json({ channel: 'a', data: 'x' }, { 'Idempotency-Key': 'has space' }),
      json({ channel: 'a', data: 'x' }, { 'Idempotency-Key': 'k'.repeat(201) }),
      form('channel=a&channel=b&data=x'),
      form('channel=a'),
      form('channel=a&data=x&extra=1'),
      form('channel=a&data=x&event=a%0Ab'),
    ];
    for (const request of bad) {
      const reply = await send(server, request);
      expect([String(request.body), reply.status, reply.headers['content-type'], reply.body]).toEqual([
        String(request.body),
        400,
        'text/plain; charset=utf-8',
        'Bad Request',
      ]);
    }
    expect(seen).toEqual([]);
  });

  test('401 (with WWW-Authenticate) and 403 from authorize; only a strict true publishes', async () => {
    const noAuth = await send(server, {
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ channel: 'a', data: 'x' }),
    });
    expect([noAuth.status, noAuth.headers['www-authenticate'], noAuth.body]).toEqual([401, 'Bearer', 'Unauthorized']);
    const wrong = await send(server, json({ channel: 'a', data: 'x' }, { Authorization: 'Bearer guess' }));
    expect([wrong.status, wrong.headers['content-type'], wrong.body]).toEqual([
      403,
      'text/plain; charset=utf-8',
      'Forbidden',
    ]);
    expect(seen).toEqual([]);
  });

  test('413 for a body over the limit, declared or streamed; the connection closes', async () => {
    const big = JSON.stringify({ channel: 'a', data: 'x'.repeat(64 * 1024) });
    const declared = await send(server, json(big));
    expect([declared.status, declared.headers.connection, declared.body]).toEqual([413, 'close', 'Payload Too Large']);
    // Chunked (no Content-Length): reading stops at the limit. With express.json() in front, its own
    // limit (100 kB) applies to a body it reads first, and its 413 reaches the error handler.
    const chunked = await send(server, {
      ...json(big.repeat(3)),
      headers: { ...json({}).headers, 'Transfer-Encoding': 'chunked' },
    });
    expect([chunked.status, chunked.body]).toEqual([413, parsers ? 'app error handler' : 'Payload Too Large']);
    if (!parsers) expect(chunked.headers.connection).toBe('close');
    // Just at the limit is fine.
    const fits = JSON.stringify({ channel: 'a', data: '' });
    const exact = JSON.stringify({ channel: 'a', data: 'x'.repeat(64 * 1024 - fits.length) });
    expect(Buffer.byteLength(exact)).toBe(64 * 1024);
    expect((await send(server, json(exact))).status).toBe(201);
    expect(seen).toHaveLength(1);
  });

  test('503 + Retry-After when the hub cannot publish (closed)', async () => {
    const closedHub = createHub({ authorize: () => true });
    await closedHub.close();
    const other = await listen(app(host, closedHub));
    try {
      const reply = await send(other, json({ channel: 'a', data: 'x' }));
      expect([reply.status, reply.headers['retry-after'], reply.body]).toEqual([503, '5', 'Service Unavailable']);
    } finally {
      await closeServer(other);
    }
  });

  test('a throwing authorize goes to the error handler (or a plain 500 under bare http); nothing is published', async () => {
    const other = await listen(
      app(host, hub, {
        authorize: () => {
          throw new Error('secret detail');
        },
      }),
    );
    try {
      const reply = await send(other, json({ channel: 'a', data: 'x' }));
      expect(reply.status).toBe(500);
      expect(reply.body).toBe(host === 'node:http' ? 'Internal Server Error' : 'app error handler');
    } finally {
      await closeServer(other);
    }
  });
});

describe('503 when the broker is unavailable', () => {
  test('a RedisBroker whose Redis is down: 503 + Retry-After, generic body', async () => {
    const port = await freePort(); // nothing listens there
    const hub = createHub({
      authorize: () => true,
      broker: new RedisBroker({ url: `redis://127.0.0.1:${port}`, commandTimeout: 300 }),
    });
    let rejection: unknown;
    const server = await listen(
      app('node:http', hub, {}, (c, d, o) =>
        publishOn(hub)(c, d, o).catch((err: unknown) => {
          rejection = err;
          throw err;
        }),
      ),
    );
    try {
      const reply = await send(server, json({ channel: 'a', data: 'x' }));
      expect(rejection).toBeInstanceOf(SseRelayError);
      expect((rejection as SseRelayError).code).toBe('ERR_BROKER_UNAVAILABLE');
      expect([reply.status, reply.headers['retry-after'], reply.headers['content-type'], reply.body]).toEqual([
        503,
        '5',
        'text/plain; charset=utf-8',
        'Service Unavailable',
      ]);
    } finally {
      await hub.close();
      await closeServer(server);
    }
  });
});

describe('load and limits', () => {
  let hub: Hub;
  let server: Server;
  beforeEach(async () => {
    hub = createHub({ authorize: () => true, history: 2000 });
    server = await listen(app('express5', hub));
  });
  afterEach(async () => {
    await hub.close();
    await closeServer(server);
  });

  test('1,000 concurrent POSTs: every event reaches an open stream exactly once, in id order', async () => {
    const s = await openStream({ server, path: '/events/flood' });
    try {
      expect(s.status).toBe(200);
      const agent = new Agent({ keepAlive: true, maxSockets: 100 });
      const { port } = server.address() as AddressInfo;
      const post = (i: number): Promise<{ status: number; id: string; data: string }> =>
        new Promise((resolve, reject) => {
          const body = JSON.stringify({ channel: 'flood', data: `event ${i}` });
          const req = httpRequest(
            {
              host: '127.0.0.1',
              port,
              method: 'POST',
              path: '/publish',
              agent,
              headers: { ...json({}).headers, 'Content-Length': String(body.length) },
            },
            (res) => {
              let text = '';
              res.setEncoding('utf8');
              res.on('data', (c: string) => (text += c));
              res.on('end', () =>
                resolve({ status: res.statusCode!, id: (JSON.parse(text) as { id: string }).id, data: `event ${i}` }),
              );
            },
          );
          req.on('error', reject);
          req.end(body);
        });
      const replies = await Promise.all(Array.from({ length: 1000 }, (_, i) => post(i)));
      agent.destroy();
      expect(replies.every((r) => r.status === 201)).toBe(true);
      // A fence: an event published after every POST was answered. Once it is here, nothing else may follow it.
      const fence = await hub.publish('flood', 'fence');
      const events = await s.waitFor((e) => e.data === 'fence', 10_000);
      expect(events.at(-1)!.id).toBe(fence);
      const got = events.slice(0, -1);
      expect(got).toHaveLength(1000);
      const byId = new Map(replies.map((r) => [r.id, r.data]));
      expect(byId.size).toBe(1000);
      for (const ev of got) expect([ev.id, ev.data]).toEqual([ev.id, byId.get(ev.id)]);
      expect(new Set(got.map((e) => e.id)).size).toBe(1000);
      const seqs = got.map((e) => Number(e.id.split('.').at(-1)));
      expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
    } finally {
      await s.close();
    }
  });

  /** Streams `total` bytes of a JSON-looking body (chunked, or with a declared Content-Length) until the server stops it. */
  function stream50MiB(declare: boolean): Promise<{ status: number; body: string; sent: number }> {
    const { port } = server.address() as AddressInfo;
    const total = 50 * 1024 * 1024;
    return new Promise((resolve, reject) => {
      const headers: Record<string, string> = { ...json({}).headers };
      if (declare) headers['Content-Length'] = String(total);
      const req = httpRequest({ host: '127.0.0.1', port, method: 'POST', path: '/publish', headers, agent: false });
      const chunk = Buffer.alloc(64 * 1024, 0x20);
      let sent = 0;
      let stopped = false;
      let reply: { status: number; body: string } | undefined;
      const done = (): void => {
        if (reply !== undefined && stopped) resolve({ ...reply, sent });
      };
      const pump = (): void => {
        while (!stopped && sent < total) {
          sent += chunk.length;
          if (!req.write(chunk)) return void req.once('drain', pump);
        }
        if (!stopped) req.end();
      };
      req.on('response', (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => {
          reply = { status: res.statusCode!, body };
          stopped = true;
          req.destroy();
          done();
        });
        res.on('error', () => undefined);
      });
      req.on('error', (err: NodeJS.ErrnoException) => {
        // EPIPE / ECONNRESET: the server closed the connection while we were still sending (expected).
        stopped = true;
        if (err.code !== 'EPIPE' && err.code !== 'ECONNRESET') reject(err);
        done();
      });
      req.on('close', () => {
        stopped = true;
        if (reply === undefined) reject(new Error(`no response after sending ${sent} bytes`));
      });
      pump();
    });
  }

  test.each([
    ['chunked', false],
    ['declared Content-Length', true],
  ])(
    'a 50 MiB body (%s) gets 413 and is not read: the server reads about the limit, not the body',
    async (_, declare) => {
      // The server side of the one connection: how many bytes it read before it closed.
      const bytesRead = new Promise<number>((resolve) =>
        server.once('connection', (socket: Socket) => socket.once('close', () => resolve(socket.bytesRead))),
      );
      const result = await stream50MiB(declare);
      expect([result.status, result.body]).toEqual([413, 'Payload Too Large']);
      const read = await bytesRead;
      // Bounded: the 1 MiB limit plus what was in flight in socket buffers, never the 50 MiB.
      expect(read).toBeLessThan(4 * 1024 * 1024);
      if (declare) expect(read).toBeLessThan(1024 * 1024);
      expect(result.sent).toBeLessThan(50 * 1024 * 1024);
    },
  );
});

test('hub.publisher() counts its refusals by status in the hub stats (and so in sse_relay_refused_total)', async () => {
  const hub = createHub({ authorize: () => true });
  const server = await listen(hub.publisher({ authorize: bearer, limit: 64 }));
  try {
    const port = (server.address() as AddressInfo).port;
    const send = (method: string, body: string, headers: Record<string, string>): Promise<number> =>
      new Promise((resolve, reject) => {
        const req = httpRequest({ host: '127.0.0.1', port, method, path: '/', headers }, (res) => {
          res.resume();
          resolve(res.statusCode!);
        });
        req.on('error', reject);
        req.end(body);
      });
    const auth = { Authorization: `Bearer ${TOKEN}` };
    expect(await send('GET', '', {})).toBe(405);
    expect(await send('POST', 'x', { 'Content-Type': 'text/plain' })).toBe(415);
    expect(await send('POST', '{', { 'Content-Type': 'application/json', ...auth })).toBe(400);
    expect(
      await send('POST', JSON.stringify({ channel: 'a', data: 'x' }), { 'Content-Type': 'application/json' }),
    ).toBe(401);
    expect(
      await send('POST', JSON.stringify({ channel: 'a', data: 'y'.repeat(100) }), {
        'Content-Type': 'application/json',
        ...auth,
      }),
    ).toBe(413);
    expect(
      await send('POST', JSON.stringify({ channel: 'a', data: 'x' }), { 'Content-Type': 'application/json', ...auth }),
    ).toBe(201);
    expect(hub.stats().refused).toMatchObject({ 400: 1, 401: 1, 405: 1, 413: 1, 415: 1 });
  } finally {
    await closeServer(server);
    await hub.close();
  }
});
