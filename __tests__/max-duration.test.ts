/**
 * maxDuration: a stream ends by itself (not before maxDuration minus its
 * jitter), releases its place, and a hub client resumes with Last-Event-ID
 * with no gap and no reset. Only "not before" bounds on time.
 */
import express from 'express';
import { performance } from 'node:perf_hooks';
import { createHub } from '../lib';
import { expectEvents, runningClocks } from '../lib/testing';
import { cleanup } from './helpers/cleanup';
import { expectAdmitted, helloApp, open, serve, useHub, useSse } from './helpers/sse-server';
import { until } from './helpers/wait';

afterEach(cleanup);

describe('maxDuration', () => {
  test('sse(): the stream ends by itself, not immediately, and releases its place', async () => {
    const mw = useSse({ maxDuration: 150 });
    const { app } = helloApp(mw);
    const { server } = await serve(app);
    const started = performance.now();
    const s = await open(server, '/s');
    await expectAdmitted(s);
    await s.waitForEnd(5000);
    const elapsed = performance.now() - started;
    expect(elapsed).toBeGreaterThanOrEqual(130); // 150 ms minus at most 10 % jitter (and timer rounding)
    expect(s.raw()).toBe('data: hello\n\n');
    expect(mw.connections).toBe(0);
    expect(runningClocks()).toBe(0);
  });

  test('hub: the stream ends by itself and the client resumes with Last-Event-ID, no gap, no reset', async () => {
    const hub = useHub(createHub({ authorize: () => true, sse: { maxDuration: 150 } }));
    const app = express();
    app.use('/events', hub.router());
    const { server } = await serve(app);

    const started = performance.now();
    const first = await open(server, '/events/ch');
    expect(first.status).toBe(200);
    await until(() => hub.stats().connections === 1, 'the stream to be live');
    const a = await hub.publish('ch', 'a');
    const b = await hub.publish('ch', 'b');
    expectEvents(await first.waitFor(2), [
      { data: 'a', id: a },
      { data: 'b', id: b },
    ]);
    await first.waitForEnd(5000);
    expect(performance.now() - started).toBeGreaterThanOrEqual(130);
    await until(() => hub.stats().connections === 0, 'the stream to be released');

    const c = await hub.publish('ch', 'c');
    const d = await hub.publish('ch', 'd');
    const second = await open(server, '/events/ch', { 'Last-Event-ID': first.events.at(-1)!.id });
    expect(second.status).toBe(200);
    expectEvents(await second.waitFor(2), [
      { data: 'c', id: c, event: 'message' },
      { data: 'd', id: d, event: 'message' },
    ]);
    await second.waitForEnd(5000);
    expect(second.events.some((e) => e.event === 'reset')).toBe(false);
  });
});
