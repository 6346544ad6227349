/**
 * Connection limits: maxConnections (over it: 200, the stream head and only
 * `retry:`; the count released however a stream ends) and
 * maxConnectionsPerKey (over it: 429 with Retry-After for that key only), for
 * sse() and the hub. Exact status codes and bytes; every wait is bounded.
 */
import express from 'express';
import type { ServerResponse } from 'node:http';
import { createHub, type SseOptions } from '../lib';
import { expectEvents } from '../lib/testing';
import { cleanup } from './helpers/cleanup';
import { pausedClient } from './helpers/clients';
import { KiB, payload } from './helpers/data';
import { expectAdmitted, expectRetryOnly, helloApp, open, serve, SSE_HEAD, useHub, useSse } from './helpers/sse-server';
import { until } from './helpers/wait';

afterEach(cleanup);

describe('maxConnections', () => {
  test('over the limit: 200, the stream head, exactly `retry: <n>\\n\\n` (jittered), and the response ends', async () => {
    const mw = useSse({ maxConnections: 2 });
    const { app } = helloApp(mw);
    const { server } = await serve(app);
    await expectAdmitted(await open(server, '/s'));
    await expectAdmitted(await open(server, '/s'));
    const retries = new Set<number>();
    for (let i = 0; i < 6; i++) retries.add(await expectRetryOnly(await open(server, '/s')));
    expect(retries.size).toBeGreaterThan(1); // jittered
    expect(mw.connections).toBe(2);
  });

  test('the count is released on client abort, res.sse.close() and a server drop, so a new stream is admitted again', async () => {
    const mw = useSse({ maxConnections: 2, maxBufferedBytes: 64 * KiB });
    const { app, held } = helloApp(mw);
    let raw: ServerResponse | undefined;
    app.get('/raw', mw, (_req, res) => {
      if (res.sse.open()) raw = res;
    });
    const { server, port } = await serve(app);

    const a = await open(server, '/s', { 'x-name': 'a' });
    await expectAdmitted(a);
    const b = await open(server, '/s', { 'x-name': 'b' });
    await expectAdmitted(b);
    await expectRetryOnly(await open(server, '/s'));

    // 1. the client aborts
    await a.close();
    await until(() => mw.connections === 1, 'the abort to release its place');
    const c = await open(server, '/s', { 'x-name': 'c' });
    await expectAdmitted(c);
    await expectRetryOnly(await open(server, '/s'));

    // 2. the server closes with res.sse.close()
    held.get('b')!.sse.close();
    expect(mw.connections).toBe(1);
    await b.waitForEnd();
    expect(b.raw()).toBe('data: hello\n\n');
    await expectAdmitted(await open(server, '/s', { 'x-name': 'd' }));
    await expectRetryOnly(await open(server, '/s'));

    // 3. the server drops a client that stopped reading
    held.get('c')!.sse.close();
    await c.waitForEnd();
    await pausedClient(port, '/raw');
    await until(() => raw !== undefined && mw.connections === 2, 'the paused stream to open');
    const kb = payload(0);
    for (let i = 0; i < 64 * 1024 && !raw!.sse.closed; i++) raw!.sse.send(kb);
    expect(raw!.sse.closed).toBe(true);
    expect(mw.dropped).toBe(1);
    expect(mw.connections).toBe(1);
    await expectAdmitted(await open(server, '/s', { 'x-name': 'e' }));
    expect(mw.connections).toBe(2);
    await expectRetryOnly(await open(server, '/s'));
  });

  test('the count is released when maxDuration ends a stream', async () => {
    const mw = useSse({ maxConnections: 1, maxDuration: 150 });
    const { app } = helloApp(mw);
    const { server } = await serve(app);
    const a = await open(server, '/s');
    await expectAdmitted(a);
    await expectRetryOnly(await open(server, '/s'));
    await a.waitForEnd();
    expect(mw.connections).toBe(0);
    await expectAdmitted(await open(server, '/s'));
  });

  test('a hub counts its streams too: over the limit the stream gets only `retry:`', async () => {
    const hub = useHub(createHub({ authorize: () => true, sse: { maxConnections: 1 } }));
    const app = express();
    app.use('/events', hub.router());
    const { server } = await serve(app);
    const a = await open(server, '/events/ch');
    expect(a.status).toBe(200);
    await until(() => hub.stats().connections === 1, 'the stream to be live');
    const refused = await open(server, '/events/ch');
    expect(refused.status).toBe(200);
    expect(refused.headers).toMatchObject(SSE_HEAD);
    await refused.waitForEnd();
    expect(refused.raw()).toMatch(/^retry: \d+\n\n$/);
    await a.close();
    await until(() => hub.stats().connections === 0, 'the abort to release its place');
    const b = await open(server, '/events/ch');
    await until(() => hub.stats().connections === 1, 'the new stream to be live');
    const id = await hub.publish('ch', 'x');
    expectEvents(await b.waitFor(1), [{ data: 'x', id }]);
  });
});

describe('maxConnectionsPerKey', () => {
  const options: SseOptions = {
    maxConnectionsPerKey: 2,
    connectionKey: (req) => String(req.headers['x-user'] ?? 'anonymous'),
  };

  test('over the limit for one key: 429 with Retry-After; other keys are still admitted; released on close', async () => {
    const mw = useSse(options);
    const { app, held } = helloApp(mw);
    const { server } = await serve(app);
    const a1 = await open(server, '/s', { 'x-user': 'alice', 'x-name': 'a1' });
    await expectAdmitted(a1);
    await expectAdmitted(await open(server, '/s', { 'x-user': 'alice', 'x-name': 'a2' }));

    const over = await open(server, '/s', { 'x-user': 'alice' });
    expect(over.status).toBe(429);
    expect(over.headers['retry-after']).toMatch(/^[1-9]\d*$/);
    expect(over.headers['content-type']).not.toMatch(/event-stream/);
    await over.waitForEnd();
    expect(over.events).toEqual([]);
    expect(over.retries).toEqual([]);

    await expectAdmitted(await open(server, '/s', { 'x-user': 'bob' }));
    await expectAdmitted(await open(server, '/s', { 'x-user': 'bob' }));
    expect((await open(server, '/s', { 'x-user': 'bob' })).status).toBe(429);
    expect(mw.connections).toBe(4);

    // released on client abort
    await a1.close();
    await until(() => mw.connections === 3, 'the abort to release its place');
    await expectAdmitted(await open(server, '/s', { 'x-user': 'alice', 'x-name': 'a3' }));
    expect((await open(server, '/s', { 'x-user': 'alice' })).status).toBe(429);

    // released on res.sse.close()
    held.get('a2')!.sse.close();
    await expectAdmitted(await open(server, '/s', { 'x-user': 'alice' }));
    expect((await open(server, '/s', { 'x-user': 'alice' })).status).toBe(429);
  });

  test('hub: 429 over the limit for one key, other keys admitted', async () => {
    const hub = useHub(createHub({ authorize: () => true, sse: { ...options, maxConnectionsPerKey: 1 } }));
    const app = express();
    app.use('/events', hub.router());
    const { server } = await serve(app);
    const a = await open(server, '/events/ch', { 'x-user': 'alice' });
    expect(a.status).toBe(200);
    const over = await open(server, '/events/ch', { 'x-user': 'alice' });
    expect(over.status).toBe(429);
    expect(over.headers['retry-after']).toMatch(/^[1-9]\d*$/);
    const b = await open(server, '/events/ch', { 'x-user': 'bob' });
    expect(b.status).toBe(200);
    await until(() => hub.stats().connections === 2, 'two live streams');
    await a.close();
    await until(() => hub.stats().connections === 1, 'the abort to release its place');
    expect((await open(server, '/events/ch', { 'x-user': 'alice' })).status).toBe(200);
  });
});
