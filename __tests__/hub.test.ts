/**
 * createHub against MemoryBroker on real HTTP streams: exact event sequences,
 * status codes, resume from every position, reset, re-authorisation, close,
 * and no leak after many connect/abort cycles.
 */
import express from 'express';
import http, { type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createHub, MemoryBroker, RedisBroker, type Broker, type Hub, type HubOptions } from '../lib';
import { runningClocks } from '../lib/testing';
import { openStream, type TestStream } from '../lib/testing';

const ID = /^[A-Za-z0-9._-]{1,128}$/;

interface Fixture {
  hub: Hub;
  server: Server;
  port: number;
  authorized: string[];
  errors: unknown[];
  streams: TestStream[];
}

let fx: Fixture | undefined;

// The same behaviour on every broker: in-process, and over a real redis-server (REDIS_URL from the global setup).
let prefixes = 0;
const memoryBroker = (): Broker => new MemoryBroker();
const BROKERS: Array<[string, () => Broker]> = [
  ['MemoryBroker', memoryBroker],
  ['RedisBroker', () => new RedisBroker({ url: process.env.REDIS_URL!, prefix: `hub-test:${process.pid}:${++prefixes}:` })],
];
let makeBroker = memoryBroker;

async function start(options: Partial<HubOptions> = {}): Promise<Fixture> {
  const authorized: string[] = [];
  const errors: unknown[] = [];
  const hub = createHub({
    authorize: (_req, channel) => {
      authorized.push(channel);
      return !channel.startsWith('secret');
    },
    broker: makeBroker(),
    ...options,
  });
  const app = express();
  app.get('/orders/:id', hub.subscribe((req) => `order:${(req as express.Request).params.id}`));
  app.get('/multi', hub.subscribe(async () => ['a', 'b']));
  app.get('/select-throws', hub.subscribe(() => {
    throw new Error('select failed: order:secret');
  }));
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

async function stream(path: string, headers: Record<string, string> = {}): Promise<TestStream> {
  const s = await openStream({ server: fx!.server, path }, { headers });
  fx!.streams.push(s);
  return s;
}

/** A plain request that reads the whole (non-stream) answer. */
function request(path: string, method = 'GET'): Promise<{ status: number; body: string; headers: http.IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: fx!.port, path, method }, (res) => {
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
  for (let i = 0; i < 400 && fx!.hub.stats().connections !== n; i++) await new Promise((r) => setTimeout(r, 5));
  expect(fx!.hub.stats().connections).toBe(n);
}

afterEach(async () => {
  if (fx === undefined) return;
  for (const s of fx.streams) await s.close();
  await fx.hub.close();
  if (fx.server.listening) await new Promise((r) => fx!.server.close(r));
  fx = undefined;
});

describe.each(BROKERS)('with %s', (_name, make) => {
  beforeAll(() => {
    makeBroker = make;
  });
  afterAll(() => {
    makeBroker = memoryBroker;
  });

  describe('subscribing and fan-out', () => {
    test('events reach only the streams of their channel, with hub ids', async () => {
      await start();
      const one = await stream('/orders/1');
      const two = await stream('/orders/2');
      const a = await fx!.hub.publish('order:1', '<span>Shipped</span>', { event: 'status' });
      const b = await fx!.hub.publish('order:2', { state: 'paid' });
      await one.waitFor(1);
      await two.waitFor(1);
      expect(a).toMatch(ID);
      expect(b).toMatch(ID);
      expect(one.events).toEqual([{ event: 'status', data: '<span>Shipped</span>', id: a }]);
      expect(two.events).toEqual([{ event: 'message', data: '{"state":"paid"}', id: b }]);
      expect(one.raw()).toBe(`id: ${a}\nevent: status\ndata: <span>Shipped</span>\n\n`);
    });

    test('one stream, several channels (query form), in publish order', async () => {
      await start();
      const s = await stream('/events?channel=a&channel=b');
      const ids = [];
      for (const ch of ['a', 'b', 'a', 'c', 'b']) ids.push(await fx!.hub.publish(ch, ch));
      await s.waitFor(4);
      expect(s.events.map((e) => [e.data, e.id])).toEqual([
        ['a', ids[0]],
        ['b', ids[1]],
        ['a', ids[2]],
        ['b', ids[4]],
      ]);
      expect(fx!.hub.stats()).toMatchObject({ connections: 1, channels: 2, published: 5, delivered: 4 });
    });

    test('path form takes one percent-decoded segment; select may be async', async () => {
      await start();
      const s = await stream('/events/order%3A7');
      const m = await stream('/multi');
      await fx!.hub.publish('order:7', 'x');
      await fx!.hub.publish('b', 'y');
      await s.waitFor(1);
      await m.waitFor(1);
      expect(s.events.map((e) => e.data)).toEqual(['x']);
      expect(m.events.map((e) => e.data)).toEqual(['y']);
    });

    test('events published in one turn reach single- and multi-channel streams in order, once', async () => {
      await start();
      const a1 = await stream('/events/a');
      const a2 = await stream('/events/a');
      const ab = await stream('/events?channel=a&channel=b');
      const b1 = await stream('/events/b');
      const plan = ['a', 'b', 'a', 'a', 'b', 'a'];
      const ids = await Promise.all(plan.map((ch, i) => fx!.hub.publish(ch, `${ch}${i}`)));
      const onA = ids.filter((_, i) => plan[i] === 'a');
      const onB = ids.filter((_, i) => plan[i] === 'b');
      await Promise.all([a1.waitFor(onA.length), a2.waitFor(onA.length), ab.waitFor(ids.length), b1.waitFor(onB.length)]);
      expect(a1.events.map((e) => e.id)).toEqual(onA);
      expect(a2.raw()).toBe(a1.raw()); // the same bytes
      expect(ab.events.map((e) => e.id)).toEqual(ids);
      expect(ab.events.map((e) => e.data)).toEqual(plan.map((ch, i) => `${ch}${i}`));
      expect(b1.events.map((e) => e.id)).toEqual(onB);
      // and the next turn still flows
      const last = await fx!.hub.publish('a', 'next');
      await a1.waitFor(onA.length + 1);
      expect(a1.events[onA.length]!.id).toBe(last);
    });

    test('a multi-line payload stays one event', async () => {
      await start();
      const s = await stream('/events/a');
      await fx!.hub.publish('a', 'line1\r\nevent: evil\rdata: x\n\nid: 1');
      await s.waitFor(1);
      expect(s.events).toHaveLength(1);
      expect(s.events[0]!.data).toBe('line1\nevent: evil\ndata: x\n\nid: 1');
      expect(s.events[0]!.event).toBe('message');
    });
  });

  describe('refusals: nothing subscribed, nothing echoed', () => {
    test.each([
      ['/events?channel=bad%20name'],
      ['/events?channel=' + 'x'.repeat(201)],
      ['/events?channel='],
      ['/events'],
      ['/events?channel=a&channel=%3Cscript%3E'],
      ['/events/a%2Fb/c'],
      ['/events/%E0%A4%A'],
    ])('%s -> 400 before authorize runs', async (path) => {
      await start();
      const res = await request(path);
      expect(res.status).toBe(400);
      expect(res.body).toBe('Bad Request');
      expect(fx!.authorized).toEqual([]);
      expect(fx!.hub.stats()).toMatchObject({ connections: 0, channels: 0 });
    });

    test('any channel refused -> 403, no stream, no subscription, no echo', async () => {
      await start();
      const res = await request('/events?channel=a&channel=secret:42');
      expect(res.status).toBe(403);
      expect(res.body).toBe('Forbidden');
      expect(res.headers['content-type']).toBe('text/plain; charset=utf-8');
      expect(fx!.hub.stats()).toMatchObject({ connections: 0, channels: 0 });
      // nothing subscribed: a publish reaches no stream
      await fx!.hub.publish('a', 'x');
      expect(fx!.hub.stats().delivered).toBe(0);
    });

    test('authorize throwing or rejecting goes to next(err): no stream, no echo', async () => {
      await start({
        authorize: async (_req, channel) => {
          if (channel === 'boom') throw new Error('db down for boom');
          return true;
        },
      });
      const res = await request('/events?channel=a&channel=boom');
      expect(res.status).toBe(500);
      expect(res.body).toBe('Internal Server Error');
      expect((fx!.errors[0] as Error).message).toBe('db down for boom');
      expect(fx!.hub.stats()).toMatchObject({ connections: 0, channels: 0 });
    });

    test('select throwing goes to next(err)', async () => {
      await start();
      const res = await request('/select-throws');
      expect(res.status).toBe(500);
      expect(res.body).not.toContain('secret');
      expect(fx!.errors).toHaveLength(1);
    });

    test('methods other than GET/HEAD go to next()', async () => {
      await start();
      const res = await request('/events?channel=a', 'POST');
      expect(res.status).toBe(404);
      expect(fx!.authorized).toEqual([]);
    });

    test('only a strict true authorises', async () => {
      await start({ authorize: () => 'yes' as unknown as boolean });
      expect((await request('/events/a')).status).toBe(403);
    });
  });

  describe('history and Last-Event-ID resume', () => {
    test('resume from every position of a sequence: exactly the rest, then live', async () => {
      await start();
      const ids: string[] = [];
      for (let i = 0; i < 8; i++) ids.push(await fx!.hub.publish('a', `e${i}`));
      for (let k = 0; k < ids.length; k++) {
        const s = await stream('/events/a', { 'Last-Event-ID': ids[k]! });
        const expected = ids.slice(k + 1);
        if (expected.length > 0) await s.waitFor(expected.length);
        expect(s.events.map((e) => e.id)).toEqual(expected);
        await s.close();
      }
    });

    test('resume with the lastEventId query parameter', async () => {
      await start();
      const first = await fx!.hub.publish('a', 'one');
      const second = await fx!.hub.publish('a', 'two');
      const s = await stream(`/events?channel=a&lastEventId=${encodeURIComponent(first)}`);
      await s.waitFor(1);
      expect(s.events.map((e) => e.id)).toEqual([second]);
    });

    test('a multi-channel stream resumes from every position in global order', async () => {
      await start();
      const plan = ['a', 'b', 'c', 'a', 'a', 'b', 'c', 'b'];
      const ids: string[] = [];
      for (const ch of plan) ids.push(await fx!.hub.publish(ch, ch));
      const mine = (i: number) => plan[i] === 'a' || plan[i] === 'b';
      const positions = ids.length;
      for (let k = 0; k < positions; k++) {
        const s = await stream('/events?channel=a&channel=b', { 'Last-Event-ID': ids[k]! });
        const expected = ids.filter((_, i) => i > k && mine(i));
        if (expected.length > 0) await s.waitFor(expected.length);
        const live = await fx!.hub.publish('b', 'live');
        await s.waitFor(expected.length + 1);
        expect(s.events.map((e) => e.id)).toEqual([...expected, live]);
        await s.close();
        ids.push(live);
        plan.push('b');
      }
    });

    test('resume while events are being published: no gap, no duplicate', async () => {
      await start();
      const ids: string[] = [];
      for (let i = 0; i < 20; i++) ids.push(await fx!.hub.publish('a', `p${i}`));
      let publishing = true;
      const publisher = (async () => {
        for (let i = 0; i < 300 && publishing; i++) {
          ids.push(await fx!.hub.publish(i % 3 === 0 ? 'b' : 'a', `q${i}`));
          await new Promise((r) => setImmediate(r));
        }
      })();
      await new Promise((r) => setTimeout(r, 5));
      const from = 10;
      const s = await stream('/events?channel=a&channel=b', { 'Last-Event-ID': ids[from]! });
      await new Promise((r) => setTimeout(r, 30));
      publishing = false;
      await publisher;
      const expected = ids.slice(from + 1);
      await s.waitFor(expected.length, 10000);
      expect(s.events.map((e) => e.id)).toEqual(expected);
    });

    test('beyond history: one reset carrying a resumable id, then live; resuming from it: no second reset', async () => {
      await start({ history: 3 });
      const ids: string[] = [];
      for (let i = 0; i < 6; i++) ids.push(await fx!.hub.publish('a', `e${i}`));
      const s = await stream('/events/a', { 'Last-Event-ID': ids[1]! });
      await s.waitFor(1);
      expect(s.events[0]).toEqual({ event: 'reset', data: '', id: ids[5] });
      const live = await fx!.hub.publish('a', 'live');
      await s.waitFor(2);
      expect(s.events[1]).toMatchObject({ id: live, data: 'live' });
      s.close();

      // Within history: a complete replay, no reset.
      const again = await stream('/events/a', { 'Last-Event-ID': ids[4]! });
      await again.waitFor(2);
      expect(again.events.map((e) => e.id)).toEqual([ids[5], live]);
      // From the reset's own id: complete.
      const fromReset = await stream('/events/a', { 'Last-Event-ID': ids[5]! });
      await fromReset.waitFor(1);
      expect(fromReset.events.map((e) => e.id)).toEqual([live]);
    });

    test.each([['garbage'], ['x'.repeat(300)], ['abc.12.3'], ['ZZZZZZZZZZZZ.1'], ['']])(
      'an id that is not ours (%s) gives reset, never echoed',
      async (bad) => {
        await start();
        await fx!.hub.publish('a', 'old');
        const s = await stream('/events/a', { 'Last-Event-ID': bad });
        await s.waitFor(1);
        expect(s.events[0]!.event).toBe('reset');
        expect(s.events[0]!.id).toMatch(ID);
        expect(s.raw()).not.toContain(bad === '' ? 'id: \n' : bad);
      },
    );

    test('an id from the future (same epoch) gives reset', async () => {
      await start();
      const id = await fx!.hub.publish('a', 'x');
      const future = id.replace(/\.\d+$/, '.999999');
      const s = await stream('/events/a', { 'Last-Event-ID': future });
      await s.waitFor(1);
      expect(s.events[0]).toEqual({ event: 'reset', data: '', id });
    });

    test('history: 0 -> every resume attempt gets reset', async () => {
      await start({ history: 0 });
      const id = await fx!.hub.publish('a', 'x');
      const s = await stream('/events/a', { 'Last-Event-ID': id });
      await s.waitFor(1);
      expect(s.events[0]!.event).toBe('reset');
      const fresh = await stream('/events/a');
      const live = await fx!.hub.publish('a', 'y');
      await fresh.waitFor(1);
      expect(fresh.events).toEqual([{ event: 'message', data: 'y', id: live }]);
    });

    test('ids of another broker instance (a restarted process) give reset', async () => {
      await start();
      const other = createHub({ authorize: () => true, broker: new MemoryBroker() });
      const foreign = await other.publish('a', 'x');
      await other.close();
      const s = await stream('/events/a', { 'Last-Event-ID': foreign });
      await s.waitFor(1);
      expect(s.events[0]!.event).toBe('reset');
    });
  });

  describe('render-time cursor', () => {
    test('an event published between render and connect is not lost', async () => {
      await start();
      await fx!.hub.publish('a', 'before render');
      const cursor = await fx!.hub.cursor(['a', 'b']);
      expect(cursor).toMatch(ID);
      const between = await fx!.hub.publish('b', 'between render and connect');
      const s = await stream(`/events?channel=a&channel=b&lastEventId=${encodeURIComponent(cursor)}`);
      await s.waitFor(1);
      expect(s.events).toEqual([{ event: 'message', data: 'between render and connect', id: between }]);
      expect(s.raw()).not.toContain('reset');
    });

    test('a cursor taken before any event resumes cleanly', async () => {
      await start();
      const cursor = await fx!.hub.cursor('fresh');
      const first = await fx!.hub.publish('fresh', 'first');
      const s = await stream('/events/fresh', { 'Last-Event-ID': cursor });
      await s.waitFor(1);
      expect(s.events).toEqual([{ event: 'message', data: 'first', id: first }]);
    });

    test('cursor refuses bad channel names', async () => {
      await start();
      await expect(fx!.hub.cursor('bad name')).rejects.toThrow(TypeError);
    });
  });

});

describe('MemoryBroker channel bound', () => {
  test('past maxChannels the least recently published idle channel is forgotten: reset, never a gap', async () => {
    await start({ broker: new MemoryBroker({ maxChannels: 2 }) });
    const a1 = await fx!.hub.publish('a', 'a1');
    await fx!.hub.publish('a', 'a2');
    const b1 = await fx!.hub.publish('b', 'b1');
    const c1 = await fx!.hub.publish('c', 'c1'); // forgets a
    const c2 = await fx!.hub.publish('c', 'c2');
    const onA = await stream('/events/a', { 'Last-Event-ID': a1 });
    await onA.waitFor(1);
    expect(onA.events[0]!.event).toBe('reset');
    const onC = await stream('/events/c', { 'Last-Event-ID': c1 });
    await onC.waitFor(1);
    expect(onC.events.map((e) => e.id)).toEqual([c2]);
    const onB = await stream('/events/b', { 'Last-Event-ID': b1 });
    const b2 = await fx!.hub.publish('b', 'b2');
    await onB.waitFor(1);
    expect(onB.events.map((e) => e.id)).toEqual([b2]);
  });

  test('maxChannels is validated', () => {
    expect(() => new MemoryBroker({ maxChannels: 0 })).toThrow(RangeError);
  });
});

describe('re-authorisation, close, leaks', () => {
  test('reauthorizeEvery: a no closes the stream', async () => {
    let allowed = true;
    await start({ authorize: () => allowed, reauthorizeEvery: 30 });
    const s = await stream('/events/a');
    await untilConnections(1);
    await fx!.hub.publish('a', 'before');
    await s.waitFor(1);
    allowed = false;
    await s.waitForEnd(5000);
    expect(fx!.hub.stats()).toMatchObject({ connections: 0, channels: 0 });
  });

  test('hub.close(): every stream gets retry: and ends; server.close() completes', async () => {
    await start();
    const streams = [await stream('/events/a'), await stream('/events/b'), await stream('/orders/9')];
    await untilConnections(3);
    await fx!.hub.close();
    for (const s of streams) {
      await s.waitForEnd(5000);
      expect(s.raw()).toMatch(/retry: \d+\n\n$/);
    }
    expect(fx!.hub.stats()).toMatchObject({ connections: 0, channels: 0 });
    await expect(fx!.hub.publish('a', 'late')).rejects.toMatchObject({ code: 'ERR_HUB_CLOSED' });
    // A request arriving after close gets 200 + retry, never an error status.
    const late = await request('/events/a');
    expect(late.status).toBe(200);
    expect(late.body).toMatch(/^retry: \d+\n\n$/);
    await new Promise((r) => fx!.server.close(r));
  });

  test('HEAD answers the stream head and ends', async () => {
    await start();
    const res = await request('/events/a', 'HEAD');
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toBe('text/event-stream; charset=utf-8');
    expect(fx!.hub.stats().connections).toBe(0);
  });

  test('1,000 connect/abort cycles leave nothing behind', async () => {
    await start();
    for (let i = 0; i < 1000; i++) {
      await new Promise<void>((resolve, reject) => {
        const req = http.get({ host: '127.0.0.1', port: fx!.port, path: `/events?channel=a&channel=c${i % 7}` }, (res) => {
          res.once('data', () => undefined);
          req.destroy();
          resolve();
        });
        req.on('error', (err) => ((err as NodeJS.ErrnoException).code === 'ECONNRESET' ? resolve() : reject(err)));
      });
    }
    for (let i = 0; i < 400 && fx!.hub.stats().connections > 0; i++) await new Promise((r) => setTimeout(r, 5));
    expect(fx!.hub.stats()).toMatchObject({ connections: 0, channels: 0 });
    expect(runningClocks()).toBe(0);
  });
});

describe('hosts', () => {
  test.each([['express4'], ['node:http']])('hub.router() and hub.subscribe() under %s', async (host) => {
    const hub = createHub({ authorize: (_req, ch) => ch !== 'no' });
    let server: Server;
    if (host === 'express4') {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const express4 = require('express4') as typeof express;
      const app = express4();
      app.get('/one', hub.subscribe(() => 'a'));
      app.use('/events', hub.router());
      server = app.listen(0, '127.0.0.1');
    } else {
      const routes = hub.router();
      server = http.createServer((req, res) => {
        // a tiny connect-style mount: strip the prefix like app.use('/events') does
        if (req.url!.startsWith('/events')) {
          req.url = req.url!.slice('/events'.length) || '/';
          routes(req, res, () => res.writeHead(404).end());
        } else if (req.url === '/one') {
          hub.subscribe(() => 'a')(req, res, () => res.writeHead(404).end());
        } else {
          res.writeHead(404).end();
        }
      });
      server.listen(0, '127.0.0.1');
    }
    await new Promise((r) => server.once('listening', r));
    try {
      const s1 = await openStream({ server, path: '/events?channel=a&channel=b' });
      const s2 = await openStream({ server, path: '/one' });
      const refused = await openStream({ server, path: '/events/no' });
      expect(refused.status).toBe(403);
      await refused.close();
      for (let i = 0; i < 200 && hub.stats().connections < 2; i++) await new Promise((r) => setTimeout(r, 5));
      const id = await hub.publish('a', 'hello', { event: 'greeting' });
      await s1.waitFor(1);
      await s2.waitFor(1);
      expect(s1.events).toEqual([{ event: 'greeting', data: 'hello', id }]);
      expect(s2.events).toEqual([{ event: 'greeting', data: 'hello', id }]);
      expect(s1.headers['content-type']).toBe('text/event-stream; charset=utf-8');
      await s1.close();
      await s2.close();
    } finally {
      await hub.close();
      await new Promise((r) => server.close(r));
    }
  });
});
