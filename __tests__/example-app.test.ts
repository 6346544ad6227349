/**
 * example-app/: login, pages, the authorize hook and the fragments its
 * publishing routes put on the streams (read over real sockets). The app is
 * plain JavaScript that requires 'sse-relay' (the built dist/), as a user would.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import request from 'supertest';
import { closeServer, listen, openStream } from '../lib/testing';
import { exampleServer } from './helpers/example-server';

const ROOT = path.join(__dirname, '..');
if (!existsSync(path.join(ROOT, 'dist', 'index.js'))) {
  throw new Error('example-app tests need the built library: run `npm run build` first');
}

interface Hub {
  cursor(channels: string | readonly string[]): Promise<string>;
  stats(): { connections: number };
}
interface ExampleApp {
  app: import('express').Express;
  hub: Hub;
  close(): Promise<void>;
}
interface AppModule {
  createApp(options?: {
    broker?: unknown;
    secret?: string;
    redisUrl?: string;
    publishToken?: string;
    jobTickMs?: number;
    jobStep?: number;
    reauthorizeEvery?: number;
  }): ExampleApp;
  canSubscribe(
    store: { order(id: string): { owner: string } | undefined },
    user: string | undefined,
    channel: string,
  ): boolean;
}
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { createApp, canSubscribe } = require('../example-app/app') as AppModule;

const fx = exampleServer(() =>
  createApp({ secret: 'test-secret', publishToken: 'test-publish-token', jobTickMs: 10, jobStep: 10 }),
);
const { login, stream } = fx;

/** The `sse-connect` URL a page embeds (HTML-decoded). */
function sseConnect(page: string): string {
  const m = /sse-connect="([^"]+)"/.exec(page);
  if (m === null) throw new Error('no sse-connect on the page');
  return m[1]!.replace(/&amp;/g, '&');
}

describe('login and session cookie', () => {
  test('login sets an HttpOnly, SameSite=Lax, Path=/ signed cookie and redirects to the dashboard', async () => {
    const res = await request(fx.base).post('/login').type('form').send({ user: 'alice' }).expect(303);
    expect(res.headers.location).toBe('/dashboard');
    const cookie = String(res.headers['set-cookie']?.[0]);
    expect(cookie).toMatch(/^session=[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+;/);
    expect(cookie).toMatch(/; HttpOnly(;|$)/);
    expect(cookie).toMatch(/; SameSite=Lax(;|$)/);
    expect(cookie).toMatch(/; Path=\/(;|$)/);
  });

  test('an unknown user gets the form again with 422 and no cookie', async () => {
    const res = await request(fx.base).post('/login').type('form').send({ user: 'mallory' }).expect(422);
    expect(res.headers['set-cookie']).toBeUndefined();
    expect(res.text).toContain('Pick one of the demo users');
  });

  test('a forged or foreign cookie is no session', async () => {
    const alice = await login('alice');
    const [payload, sig] = alice.slice('session='.length).split('.') as [string, string];
    const asBob = Buffer.from(Buffer.from(payload, 'base64url').toString().replace('"alice"', '"bob"')).toString(
      'base64url',
    );
    for (const cookie of [`session=${asBob}.${sig}`, `session=${payload}.x${sig.slice(1)}`, 'session=garbage']) {
      const res = await request(fx.base).get('/dashboard').set('Cookie', cookie).expect(303);
      expect(res.headers.location).toBe('/login');
    }
    // Signed with another secret.
    const other = createApp({ secret: 'another-secret' });
    try {
      const res = await request(other.app).post('/login').type('form').send({ user: 'alice' });
      const foreign = String(res.headers['set-cookie']?.[0]).split(';')[0]!;
      await request(fx.base).get('/dashboard').set('Cookie', foreign).expect(303);
    } finally {
      await other.close();
    }
  });

  test('logout clears the cookie and revokes the session', async () => {
    const res = await request(fx.base).post('/login').type('form').send({ user: 'bob' });
    const cookie = String(res.headers['set-cookie']?.[0]).split(';')[0]!;
    await request(fx.base).get('/dashboard').set('Cookie', cookie).expect(200);
    const out = await request(fx.base).post('/logout').set('Cookie', cookie).expect(303);
    expect(out.headers.location).toBe('/login');
    expect(String(out.headers['set-cookie']?.[0])).toMatch(/^session=; .*Max-Age=0/);
    await request(fx.base).get('/dashboard').set('Cookie', cookie).expect(303);
    const s = await openStream(fx.base + '/events/dashboard:stats', { headers: { Cookie: cookie } });
    fx.track(s);
    expect(s.status).toBe(403);
  });
});

test("logging out ends the session's open streams at the next re-authorisation", async () => {
  const quick = createApp({ secret: 's', reauthorizeEvery: 100 });
  const srv = await listen(quick.app);
  try {
    const url = `http://127.0.0.1:${(srv.address() as AddressInfo).port}`;
    const res = await request(url).post('/login').type('form').send({ user: 'bob' }).expect(303);
    const cookie = String(res.headers['set-cookie']?.[0]).split(';')[0]!;
    const s = await openStream(url + '/events/user:bob:notifications', { headers: { Cookie: cookie } });
    fx.track(s);
    expect(s.status).toBe(200);
    await request(url).post('/logout').set('Cookie', cookie).expect(303);
    await s.waitForEnd(3000);
  } finally {
    await quick.close();
    await closeServer(srv);
  }
});

describe('pages', () => {
  const pages = ['/dashboard', '/orders', '/orders/1001', '/notifications', '/jobs'];

  test.each(pages)('%s: 200 when logged in, redirect to /login when not', async (page) => {
    const ok = await request(fx.base)
      .get(page)
      .set('Cookie', await login('alice'))
      .expect(200);
    expect(ok.headers['content-type']).toMatch(/^text\/html/);
    expect(ok.text).toContain('Signed in as <strong>Alice</strong>');
    const anon = await request(fx.base).get(page).expect(303);
    expect(anon.headers.location).toBe('/login');
    // htmx requests are told where to go instead of swapping the login page into a fragment.
    const hx = await request(fx.base).get(page).set('HX-Request', 'true').expect(401);
    expect(hx.headers['hx-redirect']).toBe('/login');
  });

  test('/ redirects to the dashboard, /login to the dashboard once logged in', async () => {
    expect(
      (
        await request(fx.base)
          .get('/')
          .set('Cookie', await login('alice'))
          .expect(303)
      ).headers.location,
    ).toBe('/dashboard');
    expect(
      (
        await request(fx.base)
          .get('/login')
          .set('Cookie', await login('alice'))
          .expect(303)
      ).headers.location,
    ).toBe('/dashboard');
    await request(fx.base).get('/login').expect(200);
  });

  test("another user's order or job is a 404; the warehouse is for staff", async () => {
    await request(fx.base)
      .get('/orders/1003')
      .set('Cookie', await login('alice'))
      .expect(404);
    await request(fx.base)
      .get('/orders/nope')
      .set('Cookie', await login('alice'))
      .expect(404);
    await request(fx.base)
      .get('/warehouse')
      .set('Cookie', await login('alice'))
      .expect(403);
    const wh = await request(fx.base)
      .get('/warehouse')
      .set('Cookie', await login('carol'))
      .expect(200);
    expect(wh.text).toContain('id="wh-row-1003"');

    const started = await request(fx.base)
      .post('/jobs')
      .set('Cookie', await login('bob'))
      .expect(303);
    const jobPath = String(started.headers.location);
    expect(jobPath).toMatch(/^\/jobs\/[0-9a-f]{8}$/);
    await request(fx.base)
      .get(jobPath)
      .set('Cookie', await login('bob'))
      .expect(200);
    await request(fx.base)
      .get(jobPath)
      .set('Cookie', await login('alice'))
      .expect(404);
  });

  test('pages embed the resume point of their channels in sse-connect', async () => {
    const order = await request(fx.base)
      .get('/orders/1001')
      .set('Cookie', await login('alice'))
      .expect(200);
    const embedded = /^\/events\/order%3A1001\?lastEventId=([A-Za-z0-9_-]+)\.(\d+)$/.exec(sseConnect(order.text));
    expect(embedded).not.toBeNull();
    // Ids are global positions: other channels' events (a running job) may have moved the head since.
    const [epoch, seq] = (await fx.example.hub.cursor('order:1001')).split('.');
    expect(embedded![1]).toBe(epoch);
    expect(Number(embedded![2])).toBeLessThanOrEqual(Number(seq));

    const dash = await request(fx.base)
      .get('/dashboard')
      .set('Cookie', await login('alice'))
      .expect(200);
    const url = new URL(sseConnect(dash.text), fx.base);
    expect(url.pathname).toBe('/events');
    expect(url.searchParams.getAll('channel')).toEqual([
      'dashboard:stats',
      'dashboard:activity',
      'user:alice:notifications',
      'order:1001',
      'order:1002',
    ]);
    expect(url.searchParams.get('lastEventId')).toMatch(new RegExp(`^${epoch}\\.\\d+$`));
    expect(dash.text).toContain('hx-trigger="sse:status"');
    expect(dash.text).toContain('hx-trigger="sse:reset"');
  });

  test('vendor scripts and the stylesheet are served locally', async () => {
    const htmx = await request(fx.base).get('/vendor/htmx.min.js').expect(200);
    expect(htmx.headers['content-type']).toMatch(/javascript/);
    expect((await request(fx.base).get('/vendor/sse.js').expect(200)).text).toContain("defineExtension('sse'");
    await request(fx.base).get('/static/style.css').expect(200);
    await request(fx.base).get('/static/app.js').expect(200);
    const page = await request(fx.base).get('/login').expect(200);
    expect(page.text).not.toMatch(/src="https?:/);
    expect(page.headers['content-security-policy']).toContain("script-src 'self'");
  });
});

describe('the authorize hook', () => {
  test.each([
    ['/events/user:bob:notifications', 'alice'],
    ['/events/job:bob:1', 'alice'],
    ['/events/order:1003', 'alice'],
    ['/events/order:9999', 'alice'],
    ['/events/admin:secrets', 'alice'],
    ['/events?channel=dashboard:stats&channel=user:bob:notifications', 'alice'],
    ['/events/dashboard:stats', undefined],
    ['/events/user:alice:notifications', undefined],
  ])('%s as %s: 403, no stream', async (url, user) => {
    const s = await stream(url, user);
    expect(s.status).toBe(403);
    expect(s.headers['content-type']).not.toMatch(/event-stream/);
  });

  test.each([
    ['/events/user:alice:notifications', 'alice'],
    ['/events/job:alice:42', 'alice'],
    ['/events/order:1001', 'alice'],
    ['/events/dashboard:activity', 'bob'],
    [
      '/events?channel=dashboard:stats&channel=dashboard:activity&channel=user:bob:notifications&channel=order:1003',
      'bob',
    ],
  ])('%s as %s: 200 event stream', async (url, user) => {
    const s = await stream(url, user);
    expect(s.status).toBe(200);
    expect(s.headers['content-type']).toBe('text/event-stream; charset=utf-8');
  });

  test('canSubscribe: own channels, owned orders, dashboard:* for users only', () => {
    const store = { order: (id: string) => ({ '1': { owner: 'alice' } })[id] };
    expect(canSubscribe(store, 'alice', 'user:alice:notifications')).toBe(true);
    expect(canSubscribe(store, 'alice', 'user:alice:other')).toBe(false);
    expect(canSubscribe(store, 'alice', 'user:alice:notifications:x')).toBe(false);
    expect(canSubscribe(store, 'alice', 'job:alice:7')).toBe(true);
    expect(canSubscribe(store, 'alice', 'job:alice:X!')).toBe(false);
    expect(canSubscribe(store, 'bob', 'job:alice:7')).toBe(false);
    expect(canSubscribe(store, 'alice', 'order:1')).toBe(true);
    expect(canSubscribe(store, 'bob', 'order:1')).toBe(false);
    expect(canSubscribe(store, 'bob', 'dashboard:stats')).toBe(true);
    expect(canSubscribe(store, 'bob', 'dashboard:')).toBe(false);
    expect(canSubscribe(store, undefined, 'dashboard:stats')).toBe(false);
    expect(canSubscribe(store, 'mallory', 'dashboard:stats')).toBe(false);
    expect(canSubscribe(store, 'toString', 'dashboard:stats')).toBe(false);
  });
});

describe('publishing routes put escaped fragments on the streams', () => {
  test('a notification reaches only its user, escaped', async () => {
    const alice = await stream('/events/user:alice:notifications', 'alice');
    const bob = await stream('/events/user:bob:notifications', 'bob');
    const evil = '<img src=x onerror="alert(1)"> & \'quotes\'\nline two';

    const res = await request(fx.base)
      .post('/notifications')
      .set('Cookie', await login('bob'))
      .set('HX-Request', 'true')
      .type('form')
      .send({ to: 'alice', text: evil })
      .expect(200);
    expect(res.text).toBe('<span class="flash flash-ok">Sent to Alice.</span>');

    const [ev] = await alice.waitFor((e) => e.event === 'notification');
    expect(ev!.data).toMatch(/^<li id="notification-[0-9a-f]{8}" class="notification">/);
    expect(ev!.data).toContain('<strong>From Bob</strong>');
    expect(ev!.data).toContain('&lt;img src=x onerror=&quot;alert(1)&quot;&gt; &amp; &#39;quotes&#39;\nline two');
    expect(ev!.data).not.toContain('<img');
    expect(ev!.id).toMatch(/^[A-Za-z0-9._-]+$/);

    // Bob's stream got nothing of it: his own notification is the first event he sees.
    await request(fx.base)
      .post('/notifications')
      .set('Cookie', await login('alice'))
      .type('form')
      .send({ to: 'bob', text: 'for bob' })
      .expect(303);
    const bobEvents = await bob.waitFor(1);
    expect(bobEvents[0]!.data).toContain('<p>for bob</p>');
    expect(alice.events.some((e) => e.data.includes('for bob'))).toBe(false);

    // The page renders the same escaped text.
    const page = await request(fx.base)
      .get('/notifications')
      .set('Cookie', await login('alice'))
      .expect(200);
    expect(page.text).toContain('&lt;img src=x onerror=&quot;alert(1)&quot;&gt;');
    expect(page.text).not.toContain('<img');
  });

  test('a notification must have a known user and 1 to 280 characters', async () => {
    const cookie = await login('alice');
    for (const body of [
      { to: 'mallory', text: 'hi' },
      { to: 'bob', text: '   ' },
      { to: 'bob', text: 'x'.repeat(281) },
    ]) {
      const res = await request(fx.base)
        .post('/notifications')
        .set('Cookie', cookie)
        .set('HX-Request', 'true')
        .type('form')
        .send(body);
      expect(res.status).toBe(422);
      expect(res.text).toContain('flash-error');
    }
    await request(fx.base).post('/notifications').type('form').send({ to: 'bob', text: 'hi' }).expect(303);
  });

  test("a status change swaps the owner's badge and reaches their notifications and the dashboards", async () => {
    const order = await stream('/events/order:1001', 'alice');
    const dash = await stream(
      '/events?channel=dashboard:stats&channel=dashboard:activity&channel=user:alice:notifications&channel=order:1001',
      'alice',
    );

    const res = await request(fx.base)
      .post('/orders/1001/status')
      .set('Cookie', await login('carol'))
      .set('HX-Request', 'true')
      .type('form')
      .send({ status: 'shipped', view: 'row' })
      .expect(200);
    expect(res.text).toMatch(/^<tr id="wh-row-1001">/);
    expect(res.text).toContain('<span class="badge badge-shipped">Shipped</span>');

    const [status] = await order.waitFor(1);
    expect(status).toMatchObject({ event: 'status', data: '<span class="badge badge-shipped">Shipped</span>' });

    // The dashboard channels are shared: an earlier test's job may post its own activity or
    // stats meanwhile, so look for this change's events, not for the first of each kind.
    const expected: [string, string][] = [
      ['status', '<span class="badge badge-shipped">Shipped</span>'],
      ['notification', 'Order #1001 (Espresso machine) is now shipped.'],
      ['activity', 'Carol set order #1001 to shipped'],
      ['stats', '<dt>Shipped</dt><dd>'],
    ];
    const missing = (): string[] =>
      expected
        .filter(([name, text]) => !dash.events.some((e) => e.event === name && e.data.includes(text)))
        .map(([name]) => name);
    await dash.waitUntil(() => missing().length === 0, 5000, 'all four kinds of event on the multi-channel stream');
    expect(missing()).toEqual([]);
    // The dashboard's trigger target: the refetched fragment shows the new status.
    const fragment = await request(fx.base)
      .get('/dashboard/orders')
      .set('Cookie', await login('alice'))
      .expect(200);
    expect(fragment.text).toContain('badge-shipped');
  });

  test('status changes: owner or staff only, known statuses only, plain forms redirect', async () => {
    await request(fx.base)
      .post('/orders/1001/status')
      .set('Cookie', await login('bob'))
      .type('form')
      .send({ status: 'paid' })
      .expect(404);
    const bad = await request(fx.base)
      .post('/orders/1001/status')
      .set('Cookie', await login('alice'))
      .set('HX-Request', 'true')
      .type('form')
      .send({ status: '<b>lost</b>' })
      .expect(422);
    expect(bad.text).not.toContain('<b>');
    const plain = await request(fx.base)
      .post('/orders/1002/status')
      .set('Cookie', await login('alice'))
      .type('form')
      .send({ status: 'paid' });
    expect(plain.status).toBe(303);
    expect(plain.headers.location).toBe('/orders/1002');
    const hx = await request(fx.base)
      .post('/orders/1002/status')
      .set('Cookie', await login('alice'))
      .set('HX-Request', 'true')
      .type('form')
      .send({ status: 'cancelled' })
      .expect(200);
    expect(hx.text).toBe('<span class="flash flash-ok">Order #1002 is now cancelled.</span>');
  });

  test('an event published between render and connect is replayed to the page', async () => {
    const cookie = await login('alice');
    const page = await request(fx.base).get('/orders/1002').set('Cookie', cookie).expect(200);
    const url = sseConnect(page.text);
    expect(url).toMatch(/\?lastEventId=[A-Za-z0-9._-]+$/);
    await request(fx.base)
      .post('/orders/1002/status')
      .set('Cookie', cookie)
      .type('form')
      .send({ status: 'delivered' })
      .expect(303);
    const s = await stream(url, 'alice');
    const [ev] = await s.waitFor(1);
    expect(ev).toMatchObject({ event: 'status', data: '<span class="badge badge-delivered">Delivered</span>' });
  });

  test('a job publishes progress to 100% and then done', async () => {
    const cookie = await login('alice');
    const started = await request(fx.base).post('/jobs').set('Cookie', cookie).expect(303);
    const page = await request(fx.base).get(String(started.headers.location)).set('Cookie', cookie).expect(200);
    const s = await stream(sseConnect(page.text), 'alice');
    const events = await s.waitFor((e) => e.event === 'done', 5000);
    const progress = events.filter((e) => e.event === 'progress').map((e) => Number(/value="(\d+)"/.exec(e.data)?.[1]));
    expect(progress.length).toBeGreaterThan(0);
    expect(progress).toEqual([...progress].sort((a, b) => a - b));
    expect(progress.at(-1)).toBe(100);
    expect(events.at(-1)!.data).toContain('Completed');
    // Once done, the page renders the result and opens no stream.
    const after = await request(fx.base).get(String(started.headers.location)).set('Cookie', cookie).expect(200);
    expect(after.text).not.toContain('sse-connect');
    expect(after.text).toContain('value="100"');
  });
});

describe('the job worker (a separate process) and the publish endpoint it uses', () => {
  const endpoint = (body: object, auth?: string) => {
    const r = request(fx.base).post('/internal/publish').set('Content-Type', 'application/json');
    if (auth !== undefined) r.set('Authorization', auth);
    return r.send(JSON.stringify(body));
  };

  test('POST /internal/publish needs the bearer token and takes job channels only', async () => {
    const res401 = await endpoint({ channel: 'job:alice:1', data: 'x', event: 'progress' }).expect(401);
    expect([res401.headers['www-authenticate'], res401.text]).toEqual(['Bearer', 'Unauthorized']);
    expect((await endpoint({ channel: 'job:alice:1', data: 'x' }, 'Bearer wrong').expect(403)).text).toBe('Forbidden');
    expect(
      (await endpoint({ channel: 'dashboard:stats', data: 'x' }, 'Bearer test-publish-token').expect(403)).text,
    ).toBe('Forbidden');
    const s = await stream('/events/job:alice:abc123', 'alice');
    const ok = await endpoint(
      { channel: 'job:alice:abc123', data: '<b>hi</b>', event: 'progress' },
      'Bearer test-publish-token',
    ).expect(201);
    const [ev] = await s.waitFor(1);
    expect(ev).toEqual({ id: (ok.body as { id: string }).id, event: 'progress', data: '<b>hi</b>' });
  });

  // REDIS_URL comes from the global setup (a real redis-server): a missing one fails, never skips.
  test('on Redis, the worker publishes with the sse-relay CLI: progress and done arrive', async () => {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { RedisBroker } = require('../dist') as { RedisBroker: new (o: { url: string; prefix: string }) => unknown };
    // The CLI uses the default prefix, as the app's broker does.
    const redisApp = createApp({
      broker: new RedisBroker({ url: process.env.REDIS_URL!, prefix: 'sse-relay:' }),
      redisUrl: process.env.REDIS_URL!,
      secret: 'test-secret',
      jobTickMs: 10,
      jobStep: 50,
    });
    const redisServer = await listen(redisApp.app);
    try {
      const url = `http://127.0.0.1:${(redisServer.address() as AddressInfo).port}`;
      const cookie = await login('bob');
      const started = await request(url).post('/jobs').set('Cookie', cookie).expect(303);
      const page = await request(url).get(String(started.headers.location)).set('Cookie', cookie).expect(200);
      const s = await openStream(url + sseConnect(page.text), { headers: { Cookie: cookie } });
      fx.track(s);
      const events = await s.waitFor((e) => e.event === 'done', 20_000);
      const progress = events
        .filter((e) => e.event === 'progress')
        .map((e) => Number(/value="(\d+)"/.exec(e.data)?.[1]));
      expect(progress.at(-1)).toBe(100);
      expect(progress).toEqual([...progress].sort((a, b) => a - b));
      expect(events.at(-1)!.data).toContain('Completed');
    } finally {
      await redisApp.close();
      await closeServer(redisServer);
    }
  });
});

describe('server.js', () => {
  function startServer(env: Record<string, string>): Promise<{ child: ChildProcess; url: string }> {
    const childEnv: NodeJS.ProcessEnv = { ...process.env, PORT: '0', ...env };
    if (env.REDIS_URL === undefined) delete childEnv.REDIS_URL;
    const child = spawn(process.execPath, [path.join(ROOT, 'example-app', 'server.js')], {
      env: childEnv,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    return new Promise((resolve, reject) => {
      let out = '';
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new Error(`server.js printed no URL within 10 s: ${out}`));
      }, 10_000);
      const onData = (chunk: Buffer): void => {
        out += chunk.toString();
        const m = /http:\/\/127\.0\.0\.1:\d+(?=\/)/.exec(out);
        if (m !== null) {
          clearTimeout(timer);
          resolve({ child, url: m[0] });
        }
      };
      child.stdout!.on('data', onData);
      child.stderr!.on('data', (c: Buffer) => (out += c.toString()));
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`server.js exited with ${code}: ${out}`));
      });
    });
  }

  function stop(child: ChildProcess): Promise<number | null> {
    return new Promise((resolve) => {
      if (child.exitCode !== null) return resolve(child.exitCode);
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      child.once('exit', (code) => {
        clearTimeout(timer);
        resolve(code);
      });
      child.kill('SIGTERM');
    });
  }

  test('listens on 127.0.0.1 and PORT, prints the URL, ends its streams and exits on SIGTERM', async () => {
    const { child, url } = await startServer({});
    try {
      await request(url).get('/login').expect(200);
      const res = await request(url).post('/login').type('form').send({ user: 'alice' }).expect(303);
      const cookie = String(res.headers['set-cookie']?.[0]).split(';')[0]!;
      const s = await openStream(new URL('/events/dashboard:stats', url), { headers: { Cookie: cookie } });
      fx.track(s);
      expect(s.status).toBe(200);
      expect(await stop(child)).toBe(0);
      await s.waitForEnd(5000);
    } finally {
      await stop(child);
    }
  });

  // REDIS_URL comes from the global setup (a real redis-server): a missing one fails, never skips.
  test('two instances on one REDIS_URL share events', async () => {
    const env = { REDIS_URL: process.env.REDIS_URL!, SESSION_SECRET: 'shared-secret' };
    const a = await startServer(env);
    try {
      const b = await startServer(env);
      try {
        const res = await request(a.url).post('/login').type('form').send({ user: 'alice' }).expect(303);
        const cookie = String(res.headers['set-cookie']?.[0]).split(';')[0]!;
        const s = await openStream(new URL('/events/user:alice:notifications', a.url), { headers: { Cookie: cookie } });
        fx.track(s);
        expect(s.status).toBe(200);
        // The same cookie works on B (same SESSION_SECRET); B publishes, A's stream receives.
        await request(b.url)
          .post('/notifications')
          .set('Cookie', cookie)
          .type('form')
          .send({ to: 'alice', text: 'from B' })
          .expect(303);
        const [ev] = await s.waitFor((e) => e.event === 'notification', 5000);
        expect(ev!.data).toContain('<p>from B</p>');
      } finally {
        await stop(b.child);
      }
    } finally {
      await stop(a.child);
    }
  });
});
