/**
 * What a broker hands the hub cannot inject fields or events: the hub builds
 * every `id:` itself from (partition, epoch, seq) and drops events that break
 * the Broker contract's rules, counting them.
 */
import { MemoryBroker, type Broker, type BrokerEvent, type BrokerListener } from '../lib';
import { openStream } from '../lib/testing';
import { startHub } from './helpers/hub-server';
import { until } from './helpers/wait';

/** A MemoryBroker whose listeners (and, with `results`, publish() callers) see what `tamper` makes of each event. */
function tampering(tamper: (ev: BrokerEvent) => BrokerEvent, results = false): Broker {
  const inner = new MemoryBroker();
  const wrapped = new Map<BrokerListener, BrokerListener>();
  return {
    partitions: 1,
    partitionOf: () => 0,
    publish: (ch, input, history) => inner.publish(ch, input, history).then((ev) => (results ? tamper(ev) : ev)),
    replay: (chs, after, limit) => inner.replay(chs, after, limit),
    close: () => inner.close(),
    subscribe(channel, listener) {
      const w: BrokerListener = {
        onEvent: (ev) => listener.onEvent(tamper(ev)),
        onReset: (c, h) => listener.onReset(c, h),
      };
      wrapped.set(listener, w);
      return inner.subscribe(channel, w);
    },
    unsubscribe: (channel, listener) => inner.unsubscribe(channel, wrapped.get(listener) ?? listener),
  };
}

test.each([
  ['an epoch with a line break', (ev: BrokerEvent) => ({ ...ev, epoch: 'e\n\nevent: injected' })],
  ['an event name with a line break', (ev: BrokerEvent) => ({ ...ev, event: 'x\n\nevent: injected\ndata: x' })],
  ['a seq that is not an integer', (ev: BrokerEvent) => ({ ...ev, seq: 1.5 })],
  ['a partition out of range', (ev: BrokerEvent) => ({ ...ev, partition: 3 })],
  [
    'data that is not a string',
    (ev: BrokerEvent) => ({ ...ev, data: { toString: () => 'x\n\nevent: injected' } as unknown as string }),
  ],
])('%s cannot inject a field or an event', async (_name, tamper) => {
  let n = 0;
  // Every other event is tampered with; the clean ones arrive with ids the hub built.
  const fx = await startHub({ broker: tampering((ev) => (++n % 2 === 1 ? tamper(ev) : ev)) });
  try {
    const s = await openStream({ server: fx.server, path: '/events/feed' });
    await until(() => fx.hub.stats().connections === 1, 'the stream');
    const ids: string[] = [];
    for (let i = 0; i < 4; i++) ids.push(await fx.hub.publish('feed', `clean-${i}`));
    await s.waitFor(2);
    await fx.hub.publish('feed', 'fence-a');
    await fx.hub.publish('feed', 'fence-b');
    await s.waitFor(3);
    expect(s.raw()).not.toMatch(/injected/);
    expect(s.events.every((e) => e.event === 'message' && /^[A-Za-z0-9._-]{1,128}$/.test(e.id))).toBe(true);
    const delivered = s.events.map((e) => e.data);
    expect(delivered.filter((d) => d.startsWith('clean-')).length).toBe(2);
    expect(fx.hub.stats().invalid).toBeGreaterThanOrEqual(2);
    await s.close();
  } finally {
    await fx.close();
  }
});

test('the id a broker puts on an event is never sent: the hub builds it from partition, epoch and seq', async () => {
  const fx = await startHub({ broker: tampering((ev) => ({ ...ev, id: '1\n\nevent: injected\ndata: x' })) });
  try {
    const s = await openStream({ server: fx.server, path: '/events/feed' });
    await until(() => fx.hub.stats().connections === 1, 'the stream');
    const id = await fx.hub.publish('feed', 'x');
    await s.waitFor(1);
    expect(s.raw()).not.toMatch(/injected/);
    expect(s.events.map((e) => [e.id, e.event, e.data])).toEqual([[id, 'message', 'x']]);
    expect(id).toMatch(/^[A-Za-z0-9_-]{12}\.1$/);
    await s.close();
  } finally {
    await fx.close();
  }
});

test.each([
  ['a leading zero', (id: string) => id.replace(/\.1$/, '.01')],
  ['another seq', (id: string) => id.replace(/\.1$/, '.2')],
  ['a trailing character', (id: string) => id + ' '],
  ['another separator', (id: string) => id.replace(/\.1$/, '-1')],
  ['no seq', (id: string) => id.replace(/1$/, '')],
  ['a seq in another base', (id: string) => id.replace(/\.1$/, '.0x1')],
])('a broker id that is almost the right one (%s) is neither sent nor returned', async (_name, bend) => {
  const fx = await startHub({ broker: tampering((ev) => ({ ...ev, id: bend(ev.id) }), true) });
  try {
    const s = await openStream({ server: fx.server, path: '/events/feed' });
    await until(() => fx.hub.stats().connections === 1, 'the stream');
    const id = await fx.hub.publish('feed', 'x');
    expect(id).toMatch(/^[A-Za-z0-9_-]{12}\.1$/);
    await s.waitFor(1);
    expect(s.events.map((e) => e.id)).toEqual([id]);
    await s.close();
  } finally {
    await fx.close();
  }
});
