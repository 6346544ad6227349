/**
 * metricsHandler(): the Prometheus text format for every hub and sse()
 * middleware of the process, read over a real socket and parsed by a real
 * Prometheus text parser; counts checked against what the streams received.
 * Also the prom-client integration on a real prom-client Registry.
 */
import net from 'node:net';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import client from 'prom-client';
import { metricsHandler, registerPromMetrics, sse, METRIC_NAMES } from '../lib';
import { setChannelLabel } from '../lib/metrics';
import { closeServer, listen } from '../lib/testing';
import { metric, parseMetrics, type Family } from './helpers/prometheus';
import { cleanup, defer } from './helpers/cleanup';
import { expressHub, openDeferred } from './helpers/hub-server';
import { until } from './helpers/wait';

/** The metrics tests' authorisation: everything but `secret*` channels. */
const secretsRefused = (_req: unknown, channel: string): boolean => !channel.startsWith('secret');

afterEach(cleanup);

let metricsServer: Server;
beforeAll(async () => {
  metricsServer = await listen(metricsHandler() as Parameters<typeof listen>[0]);
});
afterAll(async () => {
  await closeServer(metricsServer);
  setChannelLabel(undefined);
});

async function scrape(): Promise<Map<string, Family>> {
  const port = (metricsServer.address() as AddressInfo).port;
  const res = await fetch(`http://127.0.0.1:${port}/metrics`);
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toBe('text/plain; version=0.0.4; charset=utf-8');
  return parseMetrics(await res.text());
}

/** The counters that only grow, as a flat record, to compare before/after. */
function counts(f: Map<string, Family>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const family of f.values()) {
    if (family.type === 'histogram') {
      out[`${family.name}_count`] = family.count!;
      continue;
    }
    for (const s of family.samples) {
      const labels = Object.entries(s.labels)
        .map(([k, v]) => `${k}=${v}`)
        .join(',');
      out[labels === '' ? family.name : `${family.name}{${labels}}`] = s.value;
    }
  }
  return out;
}

function delta(before: Record<string, number>, after: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(after)) if (v !== (before[k] ?? 0)) out[k] = v - (before[k] ?? 0);
  return out;
}

test('every family has HELP and TYPE, counters end in _total, and nothing else is exposed', async () => {
  const f = await scrape();
  expect([...f.keys()]).toEqual([...METRIC_NAMES]);
  expect([...f.keys()]).toEqual([
    'sse_relay_connections',
    'sse_relay_channels',
    'sse_relay_published_total',
    'sse_relay_delivered_total',
    'sse_relay_dropped_total',
    'sse_relay_replays_total',
    'sse_relay_coalesced_total',
    'sse_relay_refused_total',
    'sse_relay_broker_recoveries_total',
    'sse_relay_delivery_latency_seconds',
  ]);
  for (const family of f.values()) {
    if (family.type === 'counter') expect(family.name).toMatch(/_total$/);
  }
  expect(f.get('sse_relay_connections')!.type).toBe('gauge');
  expect(f.get('sse_relay_delivery_latency_seconds')!.type).toBe('histogram');
  expect(f.get('sse_relay_dropped_total')!.samples.map((s) => s.labels.reason)).toEqual(['backlog', 'drain', 'error']);
  expect(f.get('sse_relay_replays_total')!.samples.map((s) => s.labels.result)).toEqual(['complete', 'reset']);
});

test('connections, channels, published, delivered and latency follow what the streams received', async () => {
  const { hub, base } = await expressHub({ authorize: secretsRefused });
  const before = await scrape();
  const a = await openDeferred(`${base}/events/order:1`);
  const b = await openDeferred(`${base}/events?channel=order:1&channel=order:2`);
  await until(() => hub.stats().connections === 2, 'two streams');
  const during = await scrape();
  expect(metric(during, 'sse_relay_connections') - metric(before, 'sse_relay_connections')).toBe(2);
  expect(metric(during, 'sse_relay_channels') - metric(before, 'sse_relay_channels')).toBe(2);

  await hub.publish('order:1', 'one');
  await hub.publish('order:2', 'two');
  await hub.publish('order:1', 'three');
  await a.waitFor(2);
  await b.waitFor(3);
  const after = await scrape();
  const d = delta(counts(before), counts(after));
  expect(d).toEqual({
    sse_relay_connections: 2,
    sse_relay_channels: 2,
    sse_relay_published_total: 3,
    sse_relay_delivered_total: 5,
    sse_relay_delivery_latency_seconds_count: 3,
  });
  // The histogram is cumulative, ends with +Inf = count, and its sum is the sum of 3 positive latencies.
  const h = after.get('sse_relay_delivery_latency_seconds')!;
  const cumulative = h.buckets!.map(([, n]) => n);
  expect([...cumulative].sort((x, y) => x - y)).toEqual(cumulative);
  expect(h.buckets!.at(-1)).toEqual(['+Inf', h.count]);
  expect(h.sum!).toBeGreaterThan(before.get('sse_relay_delivery_latency_seconds')!.sum!);

  // A closed hub leaves the gauges; its counts stay in the totals (counters never go down).
  await a.close();
  await b.close();
  await hub.close();
  const closed = await scrape();
  expect(metric(closed, 'sse_relay_connections')).toBe(metric(before, 'sse_relay_connections'));
  expect(metric(closed, 'sse_relay_channels')).toBe(metric(before, 'sse_relay_channels'));
  expect(metric(closed, 'sse_relay_published_total')).toBe(metric(after, 'sse_relay_published_total'));
  expect(metric(closed, 'sse_relay_delivered_total')).toBe(metric(after, 'sse_relay_delivered_total'));
});

test('refusals are counted by status: 400, 403, 429 and the 200 + retry: of maxConnections as 503', async () => {
  const { hub, base } = await expressHub({
    authorize: secretsRefused,
    sse: { maxConnections: 2, maxConnectionsPerKey: 1, connectionKey: (req) => String(req.headers['x-user']) },
  });
  const before = counts(await scrape());
  expect((await fetch(`${base}/events/bad%20name`)).status).toBe(400);
  expect((await fetch(`${base}/events/secret:1`)).status).toBe(403);
  await openDeferred(`${base}/events/a`, { 'x-user': 'u1' });
  const second = await openDeferred(`${base}/events/a`, { 'x-user': 'u1' });
  expect(second.status).toBe(429);
  await openDeferred(`${base}/events/a`, { 'x-user': 'u2' });
  const full = await openDeferred(`${base}/events/a`, { 'x-user': 'u3' });
  expect(full.status).toBe(200);
  await full.waitForEnd();
  expect(full.retries.length).toBe(1);
  expect(hub.stats().connections).toBe(2);
  const d = delta(before, counts(await scrape()));
  expect(d).toMatchObject({
    'sse_relay_refused_total{status=400}': 1,
    'sse_relay_refused_total{status=403}': 1,
    'sse_relay_refused_total{status=429}': 1,
    'sse_relay_refused_total{status=503}': 1,
  });
});

test('resumes are counted as complete or reset', async () => {
  const { hub, base } = await expressHub({ authorize: secretsRefused });
  const first = await hub.publish('room:1', 'x');
  await hub.publish('room:1', 'y');
  const before = counts(await scrape());
  const resumed = await openDeferred(`${base}/events/room:1`, { 'Last-Event-ID': first });
  expect((await resumed.waitFor(1))[0]!.data).toBe('y');
  const lost = await openDeferred(`${base}/events/room:1`, { 'Last-Event-ID': 'unknown.7' });
  expect((await lost.waitFor(1))[0]!.event).toBe('reset');
  const d = delta(before, counts(await scrape()));
  expect(d['sse_relay_replays_total{result=complete}']).toBe(1);
  expect(d['sse_relay_replays_total{result=reset}']).toBe(1);
});

test('a client that stops reading is dropped and counted with reason="backlog"', async () => {
  const { hub, server } = await expressHub({ authorize: secretsRefused, sse: { maxBufferedBytes: 64 * 1024 } });
  const before = counts(await scrape());
  const socket = net.connect({ host: '127.0.0.1', port: (server.address() as AddressInfo).port });
  socket.pause();
  socket.on('error', () => undefined);
  const closed = new Promise<void>((r) => socket.once('close', () => r()));
  defer(() => {
    socket.destroy();
    return closed;
  });
  await new Promise<void>((r) => socket.once('connect', () => r()));
  socket.write('GET /events/big HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n');
  await until(() => hub.stats().connections === 1, 'the stalled stream');
  const chunk = 'x'.repeat(32 * 1024);
  for (let i = 0; i < 2000 && hub.stats().dropped === 0; i++) await hub.publish('big', chunk);
  expect(hub.stats().dropped).toBe(1);
  const d = delta(before, counts(await scrape()));
  expect(d['sse_relay_dropped_total{reason=backlog}']).toBe(1);
  expect(d['sse_relay_dropped_total{reason=drain}']).toBeUndefined();
});

test('sse() middlewares count too: connections and event frames sent', async () => {
  const events = sse();
  const app = express();
  app.use(events);
  app.get('/clock', (_req, res) => {
    res.sse.send('a');
    res.sse.send('b', { event: 'tick' });
  });
  const server = await listen(app);
  defer(() => closeServer(server));
  const before = await scrape();
  const s = await openDeferred(`http://127.0.0.1:${(server.address() as AddressInfo).port}/clock`);
  await s.waitFor(2);
  const after = await scrape();
  expect(metric(after, 'sse_relay_connections') - metric(before, 'sse_relay_connections')).toBe(1);
  expect(metric(after, 'sse_relay_delivered_total') - metric(before, 'sse_relay_delivered_total')).toBe(2);
  await s.close();
  await until(() => events.connections === 0, 'the stream to close');
  expect(metric(await scrape(), 'sse_relay_connections')).toBe(metric(before, 'sse_relay_connections'));
});

test('HEAD has the headers and no body; other methods get 405 or go to next()', async () => {
  const port = (metricsServer.address() as AddressInfo).port;
  const head = await fetch(`http://127.0.0.1:${port}/metrics`, { method: 'HEAD' });
  expect(head.status).toBe(200);
  expect(await head.text()).toBe('');
  const post = await fetch(`http://127.0.0.1:${port}/metrics`, { method: 'POST' });
  expect(post.status).toBe(405);
  expect(post.headers.get('allow')).toBe('GET, HEAD');
  const app = express();
  app.all('/metrics', metricsHandler(), (_req, res) => void res.status(418).end());
  const server = await listen(app);
  defer(() => closeServer(server));
  const port2 = (server.address() as AddressInfo).port;
  expect((await fetch(`http://127.0.0.1:${port2}/metrics`, { method: 'POST' })).status).toBe(418);
  expect((await fetch(`http://127.0.0.1:${port2}/metrics`)).status).toBe(200);
});

test('bad options are refused at factory time', () => {
  expect(() => metricsHandler({ channelLabels: 'namespace' } as never)).toThrow(
    new TypeError(
      'sse-relay: unknown metricsHandler option "channelLabels" (did you mean "channelLabel"?); known: channelLabel, channelLabelName',
    ),
  );
  expect(() => metricsHandler({ chanelLabel: 'namespace' } as never)).toThrow(/\(did you mean "channelLabel"\?\)/);
  expect(() => metricsHandler({ channelLabel: 'prefix' as never })).toThrow(TypeError);
  expect(() => metricsHandler({ channelLabelName: 'ns' })).toThrow(TypeError);
  expect(() => metricsHandler(null as never)).toThrow(TypeError);
  expect(() => registerPromMetrics({} as never)).toThrow(TypeError);
});

test("prom-client: the same families on the caller's Registry, next to its own metrics", async () => {
  const registry = new client.Registry();
  const own = new client.Counter({ name: 'app_requests_total', help: 'Requests.', registers: [registry] });
  own.inc(2);
  const unregister = registerPromMetrics(registry);
  const { hub, base } = await expressHub({ authorize: secretsRefused });
  const s = await openDeferred(`${base}/events/p:1`);
  await until(() => hub.stats().connections === 1, 'the stream');
  await hub.publish('p:1', 'hello');
  await s.waitFor(1);
  const ours = await scrape();
  const theirs = parseMetrics(await registry.metrics());
  expect(registry.contentType).toBe('text/plain; version=0.0.4; charset=utf-8');
  expect(metric(theirs, 'app_requests_total')).toBe(2);
  for (const name of METRIC_NAMES) expect(theirs.get(name)).toEqual(ours.get(name));
  // Registering twice on one registry is an error; after unregister it is gone.
  expect(() => registerPromMetrics(registry)).toThrow(/already been registered/);
  unregister();
  const left = parseMetrics(await registry.metrics());
  expect([...left.keys()]).toEqual(['app_requests_total']);
  // The module form registers on prom-client's default registry.
  const off = registerPromMetrics(client);
  expect((await client.register.getMetricsAsJSON()).map((m) => m.name)).toEqual([...METRIC_NAMES]);
  off();
  client.register.clear();
});

test('channelLabel: published and delivered per namespace, never a channel name as a label', async () => {
  const before = await scrape();
  metricsHandler({ channelLabel: 'namespace' });
  expect(() => metricsHandler({ channelLabel: (c) => c })).toThrow(/already set/);
  const { hub, base } = await expressHub({ authorize: secretsRefused });
  const a = await openDeferred(`${base}/events?channel=order:1&channel=user:9:inbox`);
  await until(() => hub.stats().connections === 1, 'the stream');
  await hub.publish('order:1', 'o');
  await hub.publish('order:2', 'o2');
  await hub.publish('user:9:inbox', 'u');
  await a.waitFor(2);
  const f = await scrape();
  const published = f.get('sse_relay_published_total')!.samples;
  expect(published.map((s) => Object.keys(s.labels))).toEqual(published.map(() => ['namespace']));
  expect(metric(f, 'sse_relay_published_total', { namespace: 'order' })).toBe(2);
  expect(metric(f, 'sse_relay_published_total', { namespace: 'user' })).toBe(1);
  expect(metric(f, 'sse_relay_delivered_total', { namespace: 'order' })).toBe(1);
  expect(metric(f, 'sse_relay_delivered_total', { namespace: 'user' })).toBe(1);
  // Counts made before the label existed are kept under "other": the sum is the total.
  const sum = published.reduce((n, s) => n + s.value, 0);
  expect(sum).toBe(metric(before, 'sse_relay_published_total') + 3);
  expect(metric(f, 'sse_relay_published_total', { namespace: 'other' })).toBe(
    metric(before, 'sse_relay_published_total'),
  );
  const text = await (await fetch(`http://127.0.0.1:${(metricsServer.address() as AddressInfo).port}/`)).text();
  expect(text).not.toContain('order:1');
  expect(text).not.toContain('user:9');
});
