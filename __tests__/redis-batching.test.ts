/**
 * How RedisBroker batches publishes into Function calls, on a real
 * redis-server: group commit (what is published while calls are in flight
 * waits for the next call), one turn's publishes in at most two calls, the
 * history trimmed once per stream per call with the window still exact, the
 * packed batch call refusing malformed input with nothing stored, and the
 * previous release's batch call still served during a rolling upgrade.
 */
import Redis from 'ioredis';
import { RedisBroker } from '../lib/brokers/redis';
import { FN_BATCH, FN_BATCH_V1 } from '../lib/brokers/redis/scripts';
import { startRedis, type RedisServer } from './helpers/redis-server';

jest.setTimeout(30_000);

let s: RedisServer;
let admin: Redis;
const brokers: RedisBroker[] = [];
let n = 0;
const prefix = (): string => `batch${process.pid}-${++n}:`;

beforeAll(async () => {
  s = await startRedis();
  admin = new Redis(s.url);
});

afterAll(async () => {
  admin.disconnect();
  await s.stop();
});

afterEach(async () => {
  for (const b of brokers.splice(0)) await b.close();
});

function broker(options: ConstructorParameters<typeof RedisBroker>[0]): RedisBroker {
  const b = new RedisBroker(options);
  brokers.push(b);
  return b;
}

/** How many FCALLs Redis has run since the last CONFIG RESETSTAT. */
async function fcalls(): Promise<number> {
  const info = (await admin.call('INFO', 'commandstats')) as string;
  return Number(/cmdstat_fcall:calls=(\d+)/.exec(info)?.[1] ?? 0);
}

const turn = (): Promise<void> => new Promise((r) => setImmediate(r));

test('one turn of 1,000 publishes reaches Redis in two calls, in order', async () => {
  const b = broker({ url: s.url, prefix: prefix() });
  await b.publish('t', { data: 'connect' }, 100);
  await admin.call('CONFIG', 'RESETSTAT');
  const events = await Promise.all(Array.from({ length: 1000 }, (_, i) => b.publish('t', { data: String(i) }, 2000)));
  expect(events.map((e) => e.seq)).toEqual(events.map((_, i) => events[0]!.seq + i));
  expect(events.map((e) => e.data)).toEqual(events.map((_, i) => String(i)));
  expect(await fcalls()).toBe(2);
});

test('the two calls of one turn are both sent in that turn (pipelined), each in its own write', async () => {
  const client = new Redis(s.url);
  const b = broker({ redis: client, prefix: prefix() });
  await b.publish('p', { data: 'connect' }, 100);
  const sent: string[] = [];
  const sendCommand = client.sendCommand.bind(client);
  client.sendCommand = ((command: { name: string }, ...rest: unknown[]) => {
    sent.push(command.name);
    return (sendCommand as (...a: unknown[]) => unknown)(command, ...rest);
  }) as typeof client.sendCommand;
  try {
    const all = Promise.all(Array.from({ length: 100 }, (_, i) => b.publish('p', { data: String(i) }, 100)));
    // An immediate queued after the broker's flush runs once that turn is over.
    await turn();
    expect(sent.filter((c) => c.toLowerCase() === 'fcall')).toHaveLength(2);
    const events = await all;
    expect(events.map((e) => e.seq)).toEqual(events.map((_, i) => events[0]!.seq + i));
  } finally {
    client.sendCommand = sendCommand;
    await b.close();
    client.disconnect();
  }
});

test('group commit: publishes made while two calls are in flight wait, then go in ONE call, in order', async () => {
  const b = broker({ url: s.url, prefix: prefix() });
  await b.publish('g', { data: 'connect' }, 100);
  await admin.call('CONFIG', 'RESETSTAT');
  // The fence: Redis holds every write call until we let it go.
  await admin.call('CLIENT', 'PAUSE', '10000', 'WRITE');
  const all: Promise<{ seq: number; data: string }>[] = [];
  try {
    for (let wave = 0; wave < 4; wave++) {
      for (let i = 0; i < 5; i++) all.push(b.publish('g', { data: `${wave}.${i}` }, 100));
      await turn(); // the wave is flushed: waves 0 and 1 are sent, 2 and 3 wait for a free call
      await turn();
    }
  } finally {
    await admin.call('CLIENT', 'UNPAUSE');
  }
  const events = await Promise.all(all);
  expect(events.map((e) => e.data)).toEqual(Array.from({ length: 20 }, (_, i) => `${Math.floor(i / 5)}.${i % 5}`));
  expect(events.map((e) => e.seq)).toEqual(events.map((_, i) => events[0]!.seq + i));
  expect(await fcalls()).toBe(3); // wave 0, wave 1, then waves 2 + 3 together
});

test('history is trimmed once per stream per call, and the window stays exact', async () => {
  const p = prefix();
  const b = broker({ url: s.url, prefix: p });
  await b.publish('h', { data: 'connect' }, 10);
  const events = await Promise.all(Array.from({ length: 600 }, (_, i) => b.publish('h', { data: String(i) }, 10)));
  // history 10: the stream keeps 10 + 1 entries (the oldest marks what was trimmed)
  expect(await admin.xlen(b.keyOf('h'))).toBe(11);
  const last = events[events.length - 1]!.seq;
  const inWindow = await b.replay(['h'], new Map([[0, last - 10]]));
  expect(inWindow.complete).toBe(true);
  expect(inWindow.events.map((e) => e.data)).toEqual(Array.from({ length: 10 }, (_, i) => String(590 + i)));
  const beyond = await b.replay(['h'], new Map([[0, last - 11]]));
  expect(beyond.complete).toBe(false);
});

/** A packed event of the batch call: u16 key index, u32 data bytes, u32 option bytes, data, options. */
function packed(ki: number, data: string, opt = ''): Buffer {
  const d = Buffer.from(data);
  const o = Buffer.from(opt);
  const h = Buffer.alloc(10);
  h.writeUInt16LE(ki, 0);
  h.writeUInt32LE(d.length, 2);
  h.writeUInt32LE(o.length, 6);
  return Buffer.concat([h, d, o]);
}

test('a malformed packed batch call is refused with nothing stored', async () => {
  const p = prefix();
  const b = broker({ url: s.url, prefix: p });
  await b.publish('m', { data: 'connect' }, 10);
  const base = `${p}{0}`;
  const keys = [base, `${base}!d`, `${base}!b:test-${n}`, `${base}:m`];
  const before = await admin.dbsize();
  const head = (await b.replay(['m'], undefined)).heads.get(0)!;
  const good = packed(4, 'ok');
  const cases: [Buffer, RegExp][] = [
    [Buffer.concat([good, good.subarray(0, 6)]), /truncated event header/],
    [Buffer.concat([good, packed(4, 'cut').subarray(0, 12)]), /truncated event/],
    [Buffer.concat([good, packed(9, 'x')]), /key index out of range/],
    [Buffer.concat([good, packed(2, 'x')]), /key index out of range/],
  ];
  for (const [events, message] of cases) {
    await expect(
      admin.call('FCALL', FN_BATCH, String(keys.length), ...keys, '', '0', 'e1', '0', '1000', '10', events),
    ).rejects.toThrow(message);
  }
  expect(await admin.dbsize()).toBe(before);
  expect((await b.replay(['m'], undefined)).heads.get(0)).toEqual(head);
});

test("the previous release's batch call (three arguments per event) still publishes", async () => {
  const p = prefix();
  const b = broker({ url: s.url, prefix: p });
  const first = await b.publish('v1', { data: 'new' }, 10);
  const base = `${p}{0}`;
  const keys = [base, `${base}!d`, `${base}!b:old-${n}`, `${base}:v1`];
  const reply = (await admin.call(
    'FCALL',
    FN_BATCH_V1,
    String(keys.length),
    ...keys,
    '',
    '0',
    'e1',
    '0',
    '1000',
    '10',
    '4',
    'old-a',
    '',
    '4',
    'old-b',
    'estatus\n',
  )) as string[];
  expect(reply).toEqual([first.epoch, String(first.seq + 1)]);
  const r = await b.replay(['v1'], new Map([[0, first.seq]]));
  expect(r.events.map((e) => [e.seq, e.data, e.event])).toEqual([
    [first.seq + 1, 'old-a', undefined],
    [first.seq + 2, 'old-b', 'status'],
  ]);
});

test('multi-byte data survives packing, in a small call (sized for the worst case) and a large one (measured)', async () => {
  const b = broker({ url: s.url, prefix: prefix() });
  const first = await b.publish('u', { data: 'connect' }, 2000);
  const small = ['é', '€uro', '😀 emoji', 'mixed ascii and ü', ''].map((d, i) => d + i);
  const large = Array.from({ length: 300 }, (_, i) => '€'.repeat(1000) + i); // 300k UTF-16 units: over the slack bound
  const sent = [...small, ...large];
  const publish = (data: string, i: number) => b.publish('u', { data, event: i % 2 ? 'odd' : undefined }, 2000);
  // two turns: the small call alone, then the large ones
  const events = [
    ...(await Promise.all(small.map((d, i) => publish(d, i)))),
    ...(await Promise.all(large.map((d, i) => publish(d, small.length + i)))),
  ];
  expect(events.map((e) => e.data)).toEqual(sent);
  const r = await b.replay(['u'], new Map([[0, first.seq]]));
  expect(r.complete).toBe(true);
  expect(r.events.map((e) => e.data)).toEqual(sent);
  expect(r.events.map((e) => e.event)).toEqual(sent.map((_, i) => (i % 2 ? 'odd' : undefined)));
});
