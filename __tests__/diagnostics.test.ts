/**
 * Tracing hooks: node:diagnostics_channel channels named sse-relay:*, with
 * the documented payloads, published by a real hub over real sockets; and
 * nothing at all happens while nobody subscribes.
 */
import diagnosticsChannel from 'node:diagnostics_channel';
import type { AddressInfo } from 'node:net';
import express from 'express';
import { createHub, DIAGNOSTICS_CHANNELS, MemoryBroker } from '../lib';
import { publishTraced, tracePublish, type PublishContext } from '../lib/diagnostics';
import { closeServer, listen } from '../lib/testing';
import { cleanup, defer } from './helpers/cleanup';
import { expressHub, openDeferred } from './helpers/hub-server';
import { until } from './helpers/wait';

afterEach(cleanup);

function record(name: string): unknown[] {
  const seen: unknown[] = [];
  const fn = (message: unknown): void => void seen.push(message);
  diagnosticsChannel.subscribe(name, fn);
  defer(() => diagnosticsChannel.unsubscribe(name, fn));
  return seen;
}

test('the channel names', () => {
  expect(DIAGNOSTICS_CHANNELS).toEqual({
    publish: 'sse-relay:publish',
    streamOpen: 'sse-relay:stream:open',
    streamClose: 'sse-relay:stream:close',
    streamDrop: 'sse-relay:stream:drop',
    replay: 'sse-relay:replay',
    reset: 'sse-relay:reset',
  });
});

test('publish is a TracingChannel: start, end, asyncStart, asyncEnd with the id as result; error on a rejection', async () => {
  const broker = new MemoryBroker();
  const { hub } = await expressHub({ broker });
  const calls: Array<[string, PublishContext]> = [];
  const handlers = Object.fromEntries(
    (['start', 'end', 'asyncStart', 'asyncEnd', 'error'] as const).map((k) => [
      k,
      (ctx: PublishContext) => void calls.push([k, { ...ctx }]),
    ]),
  );
  const tc = diagnosticsChannel.tracingChannel<PublishContext>('sse-relay:publish');
  tc.subscribe(handlers as never);
  defer(() => tc.unsubscribe(handlers as never));
  expect(publishTraced()).toBe(true);

  const id = await hub.publish('order:1', { a: 1 }, { event: 'status', coalesce: 'k' });
  const base = { channel: 'order:1', event: 'status', coalesce: 'k', size: '{"a":1}'.length };
  expect(calls.map(([k]) => k)).toEqual(['start', 'end', 'asyncStart', 'asyncEnd']);
  expect(calls[0]![1]).toEqual(base);
  expect(calls[2]![1]).toEqual({ ...base, result: id });

  calls.length = 0;
  await broker.close();
  await expect(hub.publish('order:1', 'x')).rejects.toThrow();
  expect(calls.map(([k]) => k)).toEqual(['start', 'end', 'error', 'asyncStart', 'asyncEnd']);
  expect((calls[2]![1].error as { code?: string }).code).toBe('ERR_BROKER_CLOSED');
});

test('zero cost when nobody listens: the body runs directly, no context is built', async () => {
  expect(publishTraced()).toBe(false);
  const p = Promise.resolve('id');
  let built = 0;
  expect(
    tracePublish(
      () => (built++, { channel: 'c', event: undefined, coalesce: undefined, size: 0 }),
      () => p,
    ),
  ).toBe(p);
  expect(built).toBe(0);
});

test('stream open and close, with channels, Last-Event-ID and duration', async () => {
  const opened = record('sse-relay:stream:open');
  const closed = record('sse-relay:stream:close');
  const { hub, base } = await expressHub();
  const s = await openDeferred(`${base}/events?channel=a&channel=b`, { 'Last-Event-ID': 'nope' });
  await s.waitFor(1); // the reset
  expect(opened).toHaveLength(1);
  const o = opened[0] as { kind: string; channels: string[]; lastEventId: string; req: { url: string } };
  expect(o.kind).toBe('hub');
  expect(o.channels).toEqual(['a', 'b']);
  expect(o.lastEventId).toBe('nope');
  expect(o.req.url).toBe('/?channel=a&channel=b');
  await s.close();
  // Only this stream's message: a stream of an earlier test may still be closing on the same channel.
  const mine = (): unknown[] =>
    closed.filter((m) => (m as { req: { url: string } }).req.url === '/?channel=a&channel=b');
  await until(() => mine().length === 1, 'the close message');
  const c = mine()[0] as { kind: string; channels: string[]; durationMs: number };
  expect(c.kind).toBe('hub');
  expect(c.channels).toEqual(['a', 'b']);
  expect(c.durationMs).toBeGreaterThanOrEqual(0);
  expect(hub.stats().connections).toBe(0);
});

test('replay (complete or not) and reset, with cause and the id the reset carries', async () => {
  const replays = record('sse-relay:replay');
  const resets = record('sse-relay:reset');
  const { hub, base } = await expressHub();
  const first = await hub.publish('room', '1');
  await hub.publish('room', '2');
  const ok = await openDeferred(`${base}/events/room`, { 'Last-Event-ID': first });
  await ok.waitFor(1);
  const lost = await openDeferred(`${base}/events/room`, { 'Last-Event-ID': 'garbage' });
  const [reset] = await lost.waitFor(1);
  expect(replays).toMatchObject([
    { channels: ['room'], lastEventId: first, events: 1, complete: true },
    { channels: ['room'], lastEventId: 'garbage', events: 0, complete: false },
  ]);
  expect(resets).toMatchObject([{ channels: ['room'], cause: 'resume', id: reset!.id }]);
});

test('drop: a stalled client is cut with reason and its backlog size', async () => {
  const drops = record('sse-relay:stream:drop');
  const hub = createHub({ authorize: () => true, sse: { maxBufferedBytes: 32 * 1024 } });
  const app = express();
  app.use('/events', hub.router());
  const server = await listen(app);
  defer(async () => {
    await hub.close();
    await closeServer(server);
  });
  const net = await import('node:net');
  const socket = net.connect({ host: '127.0.0.1', port: (server.address() as AddressInfo).port });
  socket.pause();
  socket.on('error', () => undefined);
  const gone = new Promise<void>((r) => socket.once('close', () => r()));
  defer(() => {
    socket.destroy();
    return gone;
  });
  await new Promise<void>((r) => socket.once('connect', () => r()));
  socket.write('GET /events/big HTTP/1.1\r\nHost: x\r\n\r\n');
  await until(() => hub.stats().connections === 1, 'the stalled stream');
  const chunk = 'y'.repeat(16 * 1024);
  for (let i = 0; i < 4000 && drops.length === 0; i++) await hub.publish('big', chunk);
  expect(drops).toHaveLength(1);
  const d = drops[0] as { kind: string; reason: string; bufferedBytes: number; channels: string[] };
  expect(d).toMatchObject({ kind: 'hub', reason: 'backlog', channels: ['big'] });
  expect(d.bufferedBytes).toBeGreaterThan(32 * 1024);
});
