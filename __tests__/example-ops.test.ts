/**
 * The example app's operations side: `/ops` (admins only) and its live figures
 * on the admin-only channel `ops:metrics`, and `/metrics` (sse-relay's
 * metricsHandler) for a scraper on this host or an admin, read with a real
 * Prometheus text-format parser. Over real sockets, against the built library.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import request from 'supertest';
import type { ParsedEvent } from '../lib/testing';
import { exampleServer } from './helpers/example-server';
import { metric, parseMetrics } from './helpers/prometheus';

const ROOT = path.join(__dirname, '..');
if (!existsSync(path.join(ROOT, 'dist', 'index.js'))) {
  throw new Error('example-app tests need the built library: run `npm run build` first');
}

interface ExampleApp {
  app: import('express').Express;
  close(): Promise<void>;
}
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { createApp, canSubscribe } = require('../example-app/app') as {
  createApp(options?: { secret?: string; opsIntervalMs?: number }): ExampleApp;
  canSubscribe(store: { order(id: string): undefined }, user: string | undefined, channel: string): boolean;
};
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { METRIC_NAMES } = require('sse-relay') as { METRIC_NAMES: readonly string[] };

interface Figures {
  instance: string;
  at: number;
  connections: number;
  channels: number;
  publishRate: number;
  deliveryRate: number;
  published: number;
  delivered: number;
  dropped: number;
  resets: number;
}

const fx = exampleServer(() => createApp({ secret: 'ops-secret', opsIntervalMs: 50 }));
const { login, stream } = fx;

const figures = (e: ParsedEvent): Figures => JSON.parse(e.data) as Figures;

describe('/ops: admins only', () => {
  test('signed out: redirected to the login page', async () => {
    const res = await request(fx.base).get('/ops').expect(303);
    expect(res.headers.location).toBe('/login');
  });

  test.each(['alice', 'bob', 'carol'])(
    '%s (not an admin) gets 403 for the page and for the ops:metrics stream',
    async (user) => {
      const page = await request(fx.base)
        .get('/ops')
        .set('Cookie', await login(user))
        .expect(403);
      expect(page.text).toContain('Operations is for admins.');
      expect(page.text).not.toContain('href="/ops"'); // no nav link either
      const s = await stream('/events/ops:metrics', user);
      expect(s.status).toBe(403);
      expect(s.raw()).toBe('Forbidden');
    },
  );

  test('canSubscribe: ops:metrics for admins only, nothing else under ops:', () => {
    const store = { order: () => undefined };
    expect(canSubscribe(store, 'dave', 'ops:metrics')).toBe(true);
    for (const user of ['alice', 'bob', 'carol', undefined])
      expect(canSubscribe(store, user, 'ops:metrics')).toBe(false);
    expect(canSubscribe(store, 'dave', 'ops:other')).toBe(false);
    expect(canSubscribe(store, 'dave', 'ops:metrics:x')).toBe(false);
  });

  test('Dave (admin) gets the page: figures, chart, its script from self under the strict CSP, a nav link', async () => {
    const res = await request(fx.base)
      .get('/ops')
      .set('Cookie', await login('dave'))
      .expect(200);
    expect(res.headers['content-security-policy']).toContain("script-src 'self'");
    expect(res.text).toContain('data-events="/events/ops:metrics"');
    expect(res.text).toMatch(/data-instance="[^"]+"/);
    expect(res.text).toContain('<script src="/static/ops.js" defer></script>');
    expect(res.text).toMatch(/<svg\s+id="ops-chart"/);
    expect(res.text).toContain('id="ops-connections"');
    expect(res.text).toContain('<a href="/ops"');
    expect(res.text).not.toMatch(/<script>|<script [^s]|style="/); // nothing inline
    const js = await request(fx.base).get('/static/ops.js').expect(200);
    expect(js.headers['content-type']).toMatch(/javascript/);
  });
});

describe("the admin's stream carries the hub's figures", () => {
  test('every interval a `metrics` event with JSON figures; they follow connections and publishes', async () => {
    const admin = await stream('/events/ops:metrics', 'dave');
    expect(admin.status).toBe(200);
    // waitFor resolves with the events up to and including the first match: the match is the last.
    const f = figures((await admin.waitFor((e) => e.event === 'metrics' && figures(e).connections === 1)).at(-1)!);
    expect(Object.keys(f).sort()).toEqual(
      [
        'at',
        'channels',
        'connections',
        'delivered',
        'deliveryRate',
        'dropped',
        'instance',
        'publishRate',
        'published',
        'resets',
      ].sort(),
    );
    expect(f.channels).toBe(1); // ops:metrics
    expect(f.published).toBe(0); // the feed's own publishes are left out
    const page = await request(fx.base)
      .get('/ops')
      .set('Cookie', await login('dave'));
    expect(page.text).toContain(`data-instance="${f.instance}"`);

    // Alice opens her dashboard (one stream, several channels): the figures follow.
    const dash = await request(fx.base)
      .get('/dashboard')
      .set('Cookie', await login('alice'))
      .expect(200);
    const url = /sse-connect="([^"]+)"/.exec(dash.text)![1]!.replace(/&amp;/g, '&');
    const alice = await stream(url, 'alice');
    expect(alice.status).toBe(200);
    await admin.waitFor((e) => e.event === 'metrics' && figures(e).connections === 2 && figures(e).channels > 2);

    // Carol ships order 1001: four publishes (status, notification, activity, stats), and Alice's stream gets its share.
    await request(fx.base)
      .post('/orders/1001/status')
      .set('Cookie', await login('carol'))
      .type('form')
      .send({ status: 'shipped' })
      .expect(303);
    const shipped = (await admin.waitFor((e) => e.event === 'metrics' && figures(e).published === 4)).at(-1)!;
    expect(figures(shipped).delivered).toBeGreaterThanOrEqual(4);
    // The interval that saw them reports a publish rate; a later quiet one reports 0 again.
    const rates = admin.events.filter((e) => e.event === 'metrics').map((e) => figures(e).publishRate);
    expect(rates.some((r) => r > 0)).toBe(true);
    const index = admin.events.indexOf(shipped);
    await admin.waitFor(
      (e) => e.event === 'metrics' && admin.events.indexOf(e) > index && figures(e).publishRate === 0,
    );

    // Alice leaves: back to one connection.
    await alice.close();
    await admin.waitFor(
      (e) => e.event === 'metrics' && admin.events.indexOf(e) > index && figures(e).connections === 1,
    );
    // Every event has a hub id (a reconnect resumes) and only the `metrics` name.
    expect(new Set(admin.events.map((e) => e.event))).toEqual(new Set(['metrics']));
  });
});

describe('/metrics: sse-relay metricsHandler() for a scraper on this host or an admin', () => {
  test('from loopback without a proxy header: 200, Prometheus text that parses, every sse-relay family', async () => {
    const admin = await stream('/events/ops:metrics', 'dave');
    await admin.waitFor(1);
    const res = await request(fx.base).get('/metrics').expect(200);
    expect(res.headers['content-type']).toBe('text/plain; version=0.0.4; charset=utf-8');
    const families = parseMetrics(res.text);
    for (const name of METRIC_NAMES) expect([name, families.has(name)]).toEqual([name, true]);
    expect(metric(families, 'sse_relay_connections')).toBeGreaterThanOrEqual(1);
    // channelLabel: 'namespace': the ops feed's publishes count under namespace="ops", never a channel name.
    expect(metric(families, 'sse_relay_published_total', { namespace: 'ops' })).toBeGreaterThanOrEqual(1);
    expect(res.text).not.toContain('ops:metrics');
    expect(families.get('sse_relay_delivery_latency_seconds')!.count).toBeGreaterThanOrEqual(1);
  });

  test('through a proxy (X-Forwarded-For / Forwarded) without an admin session: 403; with one: 200', async () => {
    for (const header of [{ 'X-Forwarded-For': '203.0.113.9' }, { Forwarded: 'for=203.0.113.9' }]) {
      await request(fx.base).get('/metrics').set(header).expect(403);
      await request(fx.base)
        .get('/metrics')
        .set(header)
        .set('Cookie', await login('alice'))
        .expect(403);
      const res = await request(fx.base)
        .get('/metrics')
        .set(header)
        .set('Cookie', await login('dave'))
        .expect(200);
      expect(parseMetrics(res.text).has('sse_relay_connections')).toBe(true);
    }
  });
});
