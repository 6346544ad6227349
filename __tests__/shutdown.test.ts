/**
 * Shutdown: middleware.close() and hub.close() send `retry:` last to every
 * open stream (under every host, for 100 streams, and for a hub stream still
 * being set up) and end it, so server.close() completes; after hub.close() a
 * publish rejects and a new request gets 200 + `retry:`, never an error status.
 */
import express from 'express';
import type { Server } from 'node:http';
import { createHub, sse, type Broker } from '../lib';
import { MemoryBroker } from '../lib/brokers/memory';
import { runningClocks, type TestStream } from '../lib/testing';
import { cleanup } from './helpers/cleanup';
import { HOSTS } from './helpers/hosts';
import { hubSuite } from './helpers/hub-suite';
import { expectNoRunningClocks, helloApp, inbox, open, serve, start } from './helpers/sse-server';
import { until } from './helpers/wait';

const hubs = hubSuite(); // declared first: its hub is closed before the clock check below
afterEach(async () => {
  await cleanup();
  await expectNoRunningClocks();
});

describe.each(HOSTS)('sse() under $name', (host) => {
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

describe('graceful shutdown', () => {
  const N = 100;

  function expectEndsWithRetry(s: TestStream, before: string): void {
    const raw = s.raw();
    expect(raw.startsWith(before)).toBe(true);
    const m = /^retry: (\d+)\n\n$/.exec(raw.slice(before.length));
    expect(m).not.toBeNull();
    const n = Number(m![1]);
    expect(n).toBeGreaterThanOrEqual(1000);
    expect(n).toBeLessThanOrEqual(10000);
  }

  function closeWithin(server: Server, ms: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`server.close() did not complete within ${ms} ms`)), ms);
      server.close((err) => {
        clearTimeout(timer);
        if (err) reject(err);
        else resolve();
      });
    });
  }

  test('sse(): middleware.close() sends `retry:` last and ends all 100 streams; server.close() completes', async () => {
    const mw = sse();
    const { app } = helloApp(mw);
    const { server } = await serve(app);
    const streams = await Promise.all(Array.from({ length: N }, () => open(server, '/s')));
    await Promise.all(streams.map((s) => s.waitFor(1)));
    expect(mw.connections).toBe(N);
    expect(runningClocks()).toBeGreaterThan(0);

    mw.close();
    expect(mw.connections).toBe(0);
    await Promise.all(streams.map((s) => s.waitForEnd()));
    for (const s of streams) expectEndsWithRetry(s, 'data: hello\n\n');
    await closeWithin(server, 5000);
    expect(mw.connections).toBe(0);
    expect(runningClocks()).toBe(0);
  });

  test('hub: hub.close() sends `retry:` last and ends all 100 streams; server.close() completes', async () => {
    const hub = createHub({ authorize: () => true });
    const app = express();
    app.use('/events', hub.router());
    const { server } = await serve(app);
    const streams = await Promise.all(Array.from({ length: N }, (_, i) => open(server, `/events/ch${i % 7}`)));
    await until(() => hub.stats().connections === N, `${N} live streams`);
    const ids: string[] = [];
    for (let i = 0; i < 7; i++) ids.push(await hub.publish(`ch${i}`, 'hello'));
    await Promise.all(streams.map((s) => s.waitFor(1)));

    await hub.close();
    expect(hub.stats().connections).toBe(0);
    await Promise.all(streams.map((s) => s.waitForEnd()));
    streams.forEach((s, i) => expectEndsWithRetry(s, `id: ${ids[i % 7]}\ndata: hello\n\n`));
    await closeWithin(server, 5000);
    expect(hub.stats().connections).toBe(0);
    expect(runningClocks()).toBe(0);
  });

  test('hub: a stream still being set up when hub.close() runs is ended with `retry:` too', async () => {
    // A broker whose subscribe() waits, so a stream sits admitted but not yet open.
    const inner = new MemoryBroker();
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let subscribing = 0;
    const broker: Broker = {
      publish: (c, i, h) => inner.publish(c, i, h),
      subscribe: async (c, l) => {
        subscribing++;
        await gate;
        return inner.subscribe(c, l);
      },
      unsubscribe: (c, l) => inner.unsubscribe(c, l),
      replay: (c, a) => inner.replay(c, a),
      close: () => inner.close(),
    };
    const hub = createHub({ authorize: () => true, broker });
    const app = express();
    app.use('/events', hub.router());
    const { server } = await serve(app);
    // The head is written only once the stream opens, so do not wait for it yet.
    const opening = open(server, '/events/ch');
    await until(() => subscribing === 1, 'the subscription to start');
    expect(hub.stats().connections).toBe(1);

    const closing = hub.close();
    release();
    await closing;
    const s = await opening;
    expect(s.status).toBe(200);
    await s.waitForEnd();
    expect(s.raw()).toMatch(/^retry: \d+\n\n$/);
    expect(hub.stats().connections).toBe(0);
    await closeWithin(server, 5000);
    expect(runningClocks()).toBe(0);
  });
});

describe('hub.close()', () => {
  const { start, stream, request, untilConnections } = hubs;

  test('hub.close(): every stream gets retry: and ends; server.close() completes', async () => {
    const fx = await start();
    const streams = [await stream('/events/a'), await stream('/events/b'), await stream('/orders/9')];
    await untilConnections(3);
    await fx.hub.close();
    for (const s of streams) {
      await s.waitForEnd(5000);
      expect(s.raw()).toMatch(/retry: \d+\n\n$/);
    }
    expect(fx.hub.stats()).toMatchObject({ connections: 0, channels: 0 });
    await expect(fx.hub.publish('a', 'late')).rejects.toMatchObject({ code: 'ERR_HUB_CLOSED' });
    // A request arriving after close gets 200 + retry, never an error status.
    const late = await request('/events/a');
    expect(late.status).toBe(200);
    expect(late.body).toMatch(/^retry: \d+\n\n$/);
    await new Promise((r) => fx.server.close(r));
  });
});
