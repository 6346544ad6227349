/**
 * A real Caddy (Debian's /usr/bin/caddy) in front of the same small sse-relay
 * app as the nginx test, with the README's ```caddy block verbatim but for the
 * site address (plain HTTP on a loopback port) and the app's address. Each
 * event is awaited on the client before the next is published (a fence: a
 * buffering proxy would stall it), and the idle stream's keep-alives come
 * through as they are sent.
 */
import { createHub, RedisBroker, type Hub } from '../lib';
import { freePort, startRedis, type RedisServer } from '../__tests__/helpers/redis-server';
import { until } from '../__tests__/helpers/wait';
import { Follower } from './helpers/follower';
import { startCaddy, type Proxy } from './helpers/proxy';
import { readmeBlock, substitute } from './helpers/readme';
import { startRelayApp, type RelayApp } from './helpers/relay-app';

const PREFIX = `e2e-caddy-${process.pid}:`;

let redis: RedisServer;
let app: RelayApp;
let caddy: Proxy;
let publisher: Hub;
let base: string;
const followers: Follower[] = [];

beforeAll(async () => {
  redis = await startRedis();
  const appPort = await freePort();
  const caddyPort = await freePort();
  app = await startRelayApp({ port: appPort, redisUrl: redis.url, prefix: PREFIX, keepAlive: 500 });
  publisher = createHub({ authorize: () => false, broker: new RedisBroker({ url: redis.url, prefix: PREFIX }) });
  const recipe = substitute(readmeBlock('caddy'), {
    // ---- the only changes to the README recipe: the site address and the app's address ----
    'example.com {': `http://127.0.0.1:${caddyPort} {`,
    '127.0.0.1:3000': [`127.0.0.1:${appPort}`, 2],
  });
  caddy = await startCaddy(recipe, caddyPort);
  base = `http://127.0.0.1:${caddyPort}`;
});

afterAll(async () => {
  await Promise.all(followers.map((f) => f.close()));
  await caddy?.stop();
  await app?.stop();
  await publisher?.close();
  await redis?.stop();
});

test('through Caddy (flush_interval -1): every event arrives before the next is published; keep-alives pass', async () => {
  const f = new Follower(`${base}/events/fence`);
  followers.push(f);
  await until(() => f.stream() !== undefined, 'the stream through Caddy to open');
  const s = f.stream()!;
  expect(s.status).toBe(200);
  expect(s.headers['content-type']).toBe('text/event-stream; charset=utf-8');
  expect(s.headers['content-length']).toBeUndefined();

  const ids: string[] = [];
  for (let i = 1; i <= 20; i++) {
    ids.push(await publisher.publish('fence', `small event ${i}`, { event: 'tick' }));
    await f.waitFor((events) => events.length === i, `event ${i} through Caddy`, 10_000);
  }
  expect(f.events()).toEqual(ids.map((id, i) => ({ id, event: 'tick', data: `small event ${i + 1}` })));

  const before = s.comments.length;
  await s.waitUntil(() => s.comments.length >= before + 3, 10_000, 'three keep-alive comments through Caddy');
  expect(f.statuses).toEqual([200]);
});
