/**
 * A real nginx (Debian's /usr/sbin/nginx) in front of an sse-relay app (a hub on
 * a RedisBroker over a redis-server of its own), configured with the README's
 * nginx recipe verbatim: the ```nginx block of README.md, with only the three
 * lines it marks `# ←` substituted (the app's address, the listen port, a 2 s
 * proxy_read_timeout). Everything on 127.0.0.1; nginx, Redis, servers and temp
 * dirs are cleaned up in afterAll.
 *
 * - events arrive unbuffered: each event is awaited on the client before the
 *   next is published (a fence: a buffering proxy would stall it);
 * - with keepAlive 500 ms under proxy_read_timeout 2s, one stream stays open
 *   across several read timeouts, with no reconnect;
 * - a deploy (the instance stopped, a new one started on the same port, same
 *   Redis) while events are published: the client reconnects through nginx with
 *   Last-Event-ID and has every acknowledged event exactly once, in order.
 */
import { createHub, RedisBroker, type Hub } from '../lib';
import { freePort, startRedis, type RedisServer } from '../__tests__/helpers/redis-server';
import { until } from '../__tests__/helpers/wait';
import { Follower } from './helpers/follower';
import { startNginx, type Proxy } from './helpers/proxy';
import { readmeBlock, substitute } from './helpers/readme';
import { startRelayApp, type RelayApp } from './helpers/relay-app';

const KEEP_ALIVE = 500;
const PREFIX = `e2e-nginx-${process.pid}:`;

let redis: RedisServer;
let appPort: number;
let app: RelayApp | undefined;
let nginx: Proxy;
let publisher: Hub;
let base: string;
const followers: Follower[] = [];

function follow(channel: string, gate?: () => Promise<void>): Follower {
  const f = new Follower(`${base}/events/${channel}`, gate);
  followers.push(f);
  return f;
}

async function opened(f: Follower): Promise<void> {
  await until(() => f.stream() !== undefined, 'the stream through nginx to open');
}

beforeAll(async () => {
  redis = await startRedis();
  appPort = await freePort();
  const nginxPort = await freePort();
  app = await startRelayApp({ port: appPort, redisUrl: redis.url, prefix: PREFIX, keepAlive: KEEP_ALIVE });
  // Publishes as another process would (a worker): its own RedisBroker, no streams.
  publisher = createHub({ authorize: () => false, broker: new RedisBroker({ url: redis.url, prefix: PREFIX }) });

  const recipe = substitute(readmeBlock('nginx'), {
    // ---- the only changes to the README recipe: the lines it marks `# ←` ----
    'server 127.0.0.1:3000;': `server 127.0.0.1:${appPort};`,
    'listen 80;': `listen 127.0.0.1:${nginxPort};`,
    'proxy_read_timeout 1h;': 'proxy_read_timeout 2s;',
  });
  nginx = await startNginx(recipe, nginxPort);
  base = `http://127.0.0.1:${nginxPort}`;
});

afterAll(async () => {
  await Promise.all(followers.map((f) => f.close()));
  await nginx?.stop();
  await app?.stop();
  await publisher?.close();
  await redis?.stop();
});

test('through nginx: the SSE head arrives at once, and every event before the next is published (no buffering)', async () => {
  const f = follow('fence');
  await opened(f);
  const s = f.stream()!;
  expect(s.status).toBe(200);
  expect(s.headers['content-type']).toBe('text/event-stream; charset=utf-8');
  expect(s.headers['cache-control']).toBe('no-cache, no-transform');
  expect(s.headers['content-length']).toBeUndefined();

  const ids: string[] = [];
  for (let i = 1; i <= 20; i++) {
    ids.push(await publisher.publish('fence', `small event ${i}`, { event: 'tick' }));
    // The fence: the next event is published only once this one went all the way through nginx.
    await f.waitFor((events) => events.length === i, `event ${i} through nginx`, 10_000);
  }
  expect(f.events()).toEqual(ids.map((id, i) => ({ id, event: 'tick', data: `small event ${i + 1}` })));
  expect(f.statuses).toEqual([200]);
});

test(`through nginx with proxy_read_timeout 2s: keepAlive ${KEEP_ALIVE} ms keeps one stream open across several timeouts`, async () => {
  const f = follow('idle');
  await opened(f);
  const s = f.stream()!;
  const start = Date.now();
  // 12 keep-alives = 6 s idle = three read timeouts of nginx.
  await s.waitUntil(() => s.comments.length >= 12, 20_000, '12 keep-alive comments through nginx');
  expect(Date.now() - start).toBeGreaterThanOrEqual(5000);
  expect(new Set(s.comments)).toEqual(new Set(['keep-alive']));
  expect(s.ended).toBe(false);
  // Still the first connection, and it still carries events.
  const id = await publisher.publish('idle', 'still here');
  await f.waitFor((events) => events.length === 1, 'an event on the idle stream');
  expect(f.events()).toEqual([{ id, event: 'message', data: 'still here' }]);
  expect(f.statuses).toEqual([200]);
  expect(f.stream()).toBe(s);
});

test('a deploy behind nginx (instance stopped, new one on the same port, same Redis) while publishing: every acknowledged event once, in order', async () => {
  let up!: () => void;
  const newInstanceUp = new Promise<void>((resolve) => (up = resolve));
  const f = follow('deploy', () => newInstanceUp);
  await opened(f);

  const acked: { id: string; data: string }[] = [];
  let publishing = true;
  const loop = (async () => {
    for (let i = 1; publishing && i <= 3000; i++) {
      const data = `event ${i}`;
      acked.push({ id: await publisher.publish('deploy', data), data });
      await new Promise((r) => setTimeout(r, 5));
    }
  })();

  let whileDown = 0;
  try {
    await f.waitFor((events) => events.length >= 10, 'events before the deploy');
    await app!.stop(); // retry: + end on every stream, then the server closes
    whileDown = acked.length;
    await until(() => acked.length >= whileDown + 20, 'events published while no instance runs');
    app = await startRelayApp({ port: appPort, redisUrl: redis.url, prefix: PREFIX, keepAlive: KEEP_ALIVE });
    up();

    await until(() => f.statuses.length === 2, 'the reconnect through nginx', 15_000);
    await f.waitFor((events) => events.length >= whileDown + 40, 'events after the reconnect');
  } finally {
    publishing = false; // also when the test failed: no publish outlives it
    await loop;
  }
  await f.waitFor((events) => events.length >= acked.length, `all ${acked.length} acknowledged events`);

  const events = f.events();
  expect(events.filter((e) => e.event === 'reset')).toEqual([]);
  expect(events.map((e) => e.data)).toEqual(acked.map((a) => a.data));
  expect(events.map((e) => e.id)).toEqual(acked.map((a) => a.id));
  expect(f.statuses).toEqual([200, 200]);
  // The reconnect resumed from the last event the first connection delivered.
  const resumed = f.resumedFrom[1]!;
  const cut = acked.findIndex((a) => a.id === resumed);
  expect(cut).toBeGreaterThanOrEqual(9);
  expect(cut).toBeLessThan(whileDown);
});
