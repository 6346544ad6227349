/**
 * The Redis Function library that RedisBroker loads: any Redis client
 * publishes with one FCALL (here: redis-cli) and gets the id back; the event
 * reaches broker listeners in order with the broker's own publishes, is
 * replayable, bad input is refused with nothing stored, and the library comes
 * back after FUNCTION FLUSH and after a restart.
 */
import { execFile } from 'node:child_process';
import Redis from 'ioredis';
import type { BrokerEvent } from '../lib/brokers/broker';
import { RedisBroker } from '../lib/brokers/redis';
import { formatEventId } from '../lib/positions';
import { Recorder } from '../lib/testing';
import { startRedis, type RedisServer } from './helpers/redis-server';
import { sleep, until } from './helpers/wait';

jest.setTimeout(30_000);

let s: RedisServer;
let admin: Redis;
const brokers: RedisBroker[] = [];
let n = 0;
const prefix = (): string => `fn${process.pid}-${++n}:`;
const at = (seq: number): Map<number, number> => new Map([[0, seq]]);

beforeEach(async () => {
  s = await startRedis();
  admin = new Redis(s.url);
});

afterEach(async () => {
  for (const b of brokers.splice(0)) await b.close();
  admin.disconnect();
  await s.stop();
});

function broker(options: ConstructorParameters<typeof RedisBroker>[0]): RedisBroker {
  const b = new RedisBroker(options);
  brokers.push(b);
  return b;
}

/** redis-cli against the test server: stdout, or the error line it printed. */
function cli(...args: string[]): Promise<{ out: string; code: number }> {
  return new Promise((resolve) => {
    execFile('redis-cli', ['-h', '127.0.0.1', '-p', String(s.port), ...args], { timeout: 5000 }, (err, stdout) => {
      resolve({ out: stdout.trim(), code: err === null ? 0 : Number((err as { code?: number }).code ?? 1) });
    });
  });
}

/** FCALL through redis-cli; the reply as lines. */
async function fcall(key: string, ...args: string[]): Promise<string[]> {
  return (await cli('FCALL', 'sse_relay_publish_v1', '1', key, ...args)).out.split('\n');
}

test('redis-cli FCALL publishes: the id comes back, listeners get it in order with broker publishes, replay has it', async () => {
  const p = prefix();
  const b = broker({ url: s.url, prefix: p });
  const other = broker({ url: s.url, prefix: p }); // a second process
  const rec = new Recorder();
  const rec2 = new Recorder();
  await b.subscribe('order:1', rec);
  await other.subscribe('order:1', rec2);
  const key = b.keyOf('order:1');
  expect(key).toBe(`${p}{0}:order:1`);
  const start = (await b.replay(['order:1'], undefined)).heads.get(0)!;
  const acked: BrokerEvent[] = [];
  const external: { epoch: string; seq: number; data: string; event?: string }[] = [];
  for (let i = 0; i < 6; i++) {
    acked.push(await b.publish('order:1', { data: 'node' + i }, 100));
    const [epoch, seq] = i % 2 === 0 ? await fcall(key, 'cli' + i) : await fcall(key, 'cli' + i, 'status', '', '100');
    external.push({ epoch: epoch!, seq: Number(seq), data: 'cli' + i, ...(i % 2 ? { event: 'status' } : {}) });
  }
  expect(new Set([...acked.map((e) => e.epoch), ...external.map((e) => e.epoch)]).size).toBe(1);
  const expected = [
    ...acked.map((e) => ({ seq: e.seq, data: e.data, event: e.event })),
    ...external.map((e) => ({ seq: e.seq, data: e.data, event: e.event })),
  ].sort((x, y) => x.seq - y.seq);
  expect(expected.map((e) => e.seq)).toEqual(expected.map((_, i) => start.seq + 1 + i));
  for (const r of [rec, rec2]) {
    await r.count(12);
    expect(r.events.map((e) => ({ seq: e.seq, data: e.data, event: e.event }))).toEqual(expected);
    // the id a caller gets from FCALL is the event's id
    const ext = r.events.find((e) => e.data === 'cli1')!;
    expect(ext.id).toBe(formatEventId(0, external[1]!.epoch, external[1]!.seq, 1));
    expect(ext.event).toBe('status');
  }
  const r = await other.replay(['order:1'], at(start.seq));
  expect(r.complete).toBe(true);
  expect(r.events.map((e) => e.data)).toEqual(expected.map((e) => e.data));
  // an idempotency key: the same call twice stores one event
  const once = await fcall(key, 'once', '', '', '', 'job-7');
  const twice = await fcall(key, 'once', '', '', '', 'job-7');
  expect(twice).toEqual(once);
  const last = await b.publish('order:1', { data: 'last' }, 100);
  await rec.has(last.id);
  expect(rec.events.filter((e) => e.data === 'once')).toHaveLength(1);
});

test('bad input is refused with a clear error and nothing stored', async () => {
  const p = prefix();
  const b = broker({ url: s.url, prefix: p });
  await b.publish('a', { data: 'loaded' }, 10); // the broker has loaded the library
  const before = await admin.dbsize();
  const head = (await b.replay(['a'], undefined)).heads.get(0)!;
  const eight = broker({ url: s.url, prefix: p, partitions: 8 });
  const esc = (t: string): string => t.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const cases: [string[], RegExp][] = [
    [[`${p}{0}:bad channel`, 'x'], /invalid channel name/],
    [[`${p}{0}:${'x'.repeat(201)}`, 'x'], /invalid channel name/],
    [[`${p}{0}:a`, 'x', 'bad\nevent'], /event name contains CR, LF or NUL/],
    [[`${p}{0}:a`, 'x', 'bad\revent'], /event name contains CR, LF or NUL/],
    [[`${p}{0}:a`, 'x', 'nul\0'], /event name contains CR, LF or NUL/],
    [[`${p}{0}:a`, 'x', '', 'co\nalesce'], /coalesce key contains CR, LF or NUL/],
    [[`${p}{0}:a`, 'x'.repeat(1024 * 1024 + 1)], /data is larger than 1048576 bytes/],
    [[`${p}{0}:a`, 'x'.repeat(11), '', '', '', '', '10'], /data is larger than 10 bytes/],
    [[`${p}{0}:a`, 'x', '', '', '-1'], /history must be an integer/],
    [[`${p}{0}:a`, 'x', '', '', 'many'], /history must be an integer/],
    [[`${p}{0}:a`], /expects the data argument/],
    [[`${p}a`, 'x'], /the key must be <prefix>\{<tag>\}:<channel>/],
    // a tag of no layout, or of another layout than the one in use here: the right key named
    [[`${p}{nope}:a`, 'x'], new RegExp(`channel a belongs to key ${esc(p)}\\{0\\}:a$`)],
    [[`${p}{8.0.1260}:a`, 'x'], new RegExp(`channel a belongs to key ${esc(p)}\\{0\\}:a$`)],
    // the key 'a' would have with 8 partitions, while this Redis is used with one
    [[eight.keyOf('a'), 'x'], new RegExp(`channel a belongs to key ${esc(p)}\\{0\\}:a$`)],
    [
      [`${p}new{nope}:zz`, 'x'],
      new RegExp(
        `unknown partition tag \\{nope\\}: channel zz belongs to key ${esc(p)}new\\{0\\}:zz on one Redis, ${esc(p)}new\\{8\\.\\d\\.\\d+\\}:zz on a cluster$`,
      ),
    ],
  ];
  for (const [args, message] of cases) {
    let reply: unknown;
    try {
      reply = await admin.call('FCALL', 'sse_relay_publish_v1', '1', ...args);
    } catch (err) {
      expect((err as Error).message).toMatch(/^ERR sse-relay: /);
      expect((err as Error).message).toMatch(message);
      continue;
    }
    throw new Error(`accepted ${JSON.stringify(args.map((a) => a.slice(0, 40)))}: ${String(reply)}`);
  }
  expect(await admin.dbsize()).toBe(before);
  expect((await b.replay(['a'], undefined)).heads.get(0)).toEqual(head);
  // and through redis-cli: a non-zero exit... redis-cli prints the error and exits 0, so look at the text
  const { out } = await cli('FCALL', 'sse_relay_publish_v1', '1', `${p}{0}:a b`, 'x');
  expect(out).toMatch(/ERR sse-relay: invalid channel name/);
});

test('the library comes back after FUNCTION FLUSH and after a restart without persistence', async () => {
  const p = prefix();
  const b = broker({ url: s.url, prefix: p, commandTimeout: 1000 });
  const rec = new Recorder();
  await b.subscribe('a', rec);
  const e1 = await b.publish('a', { data: '1' }, 10);
  await rec.has(e1.id);
  expect(await admin.call('FUNCTION', 'FLUSH')).toBe('OK');
  expect((await cli('FCALL', 'sse_relay_publish_v1', '1', b.keyOf('a'), 'x')).out).toMatch(/Function not found/);
  // the broker's next call loads it again (and is not lost)
  const e2 = await b.publish('a', { data: '2' }, 10);
  await rec.has(e2.id);
  const [epoch, seq] = await fcall(b.keyOf('a'), '3');
  expect(epoch).toBe(e2.epoch);
  expect(Number(seq)).toBe(e2.seq + 1);
  await until(() => rec.events.length === 3, 'the FCALL event');

  // restart without persistence: the broker reconnects and loads it on connect, before any publish of its own
  const { port } = s;
  await s.stop();
  admin.disconnect();
  s = await startRedis({ port });
  admin = new Redis(s.url);
  await until(
    async () => ((await admin.call('FUNCTION', 'LIST', 'LIBRARYNAME', 'sse_relay_v1')) as unknown[]).length === 1,
    'the library loaded after the restart',
    10_000,
  );
  const [epoch2] = await fcall(b.keyOf('a'), 'after restart');
  expect(epoch2 === e1.epoch).toBe(false);
  await rec.until(() => rec.events.some((e) => e.data === 'after restart'), 'the event after the restart');
  expect(rec.resets).toHaveLength(1);
  await sleep(0);
});

test('FUNCTION LOAD REPLACE: a broker replaces an older library of the same name, and FUNCTION LIST shows it', async () => {
  await admin.call(
    'FUNCTION',
    'LOAD',
    "#!lua name=sse_relay_v1\nredis.register_function('sse_relay_publish_v1', function() return 'old' end)",
  );
  const b = broker({ url: s.url, prefix: prefix() });
  await b.publish('a', { data: 'x' }, 10);
  const list = (await admin.call('FUNCTION', 'LIST', 'LIBRARYNAME', 'sse_relay_v1')) as unknown[][];
  const names = JSON.stringify(list);
  expect(names).toContain('sse_relay_batch_v1');
  expect(names).toContain('sse_relay_batch_v2');
  expect(names).toContain('sse_relay_read_v1');
  const [epoch, seq] = await fcall(b.keyOf('a'), 'new');
  expect(epoch).toMatch(/^[A-Za-z0-9_-]{1,32}$/);
  expect(Number(seq)).toBe(2);
});
