/**
 * Resume, on every broker: Last-Event-ID (header or lastEventId query) from
 * every position gives exactly the rest then live, for one channel and
 * several, also while events are being published; beyond history, a foreign
 * or a future id gives exactly one `reset` with a resumable id, and so does a
 * replay that trimming overtakes between two of its pages; hub.cursor()
 * taken at render time loses nothing published before the client connects.
 */
import { createHub, MemoryBroker } from '../lib';
import { HeldReplay } from './helpers/held-replay';
import { BROKERS, hubSuite, ID } from './helpers/hub-suite';
import { until } from './helpers/wait';

const { start, stream, useBroker, newBroker } = hubSuite();

describe.each(BROKERS)('with %s', (brokerName, make) => {
  useBroker(make);

  describe('history and Last-Event-ID resume', () => {
    test('resume from every position of a sequence: exactly the rest, then live', async () => {
      const fx = await start();
      const ids: string[] = [];
      for (let i = 0; i < 8; i++) ids.push(await fx.hub.publish('a', `e${i}`));
      for (let k = 0; k < ids.length; k++) {
        const s = await stream('/events/a', { 'Last-Event-ID': ids[k]! });
        const expected = ids.slice(k + 1);
        if (expected.length > 0) await s.waitFor(expected.length);
        expect(s.events.map((e) => e.id)).toEqual(expected);
        await s.close();
      }
    });

    test('resume with the lastEventId query parameter', async () => {
      const fx = await start();
      const first = await fx.hub.publish('a', 'one');
      const second = await fx.hub.publish('a', 'two');
      const s = await stream(`/events?channel=a&lastEventId=${encodeURIComponent(first)}`);
      await s.waitFor(1);
      expect(s.events.map((e) => e.id)).toEqual([second]);
    });

    test('a multi-channel stream resumes from every position in global order', async () => {
      const fx = await start();
      const plan = ['a', 'b', 'c', 'a', 'a', 'b', 'c', 'b'];
      const ids: string[] = [];
      for (const ch of plan) ids.push(await fx.hub.publish(ch, ch));
      const mine = (i: number) => plan[i] === 'a' || plan[i] === 'b';
      const positions = ids.length;
      for (let k = 0; k < positions; k++) {
        const s = await stream('/events?channel=a&channel=b', { 'Last-Event-ID': ids[k]! });
        const expected = ids.filter((_, i) => i > k && mine(i));
        if (expected.length > 0) await s.waitFor(expected.length);
        const live = await fx.hub.publish('b', 'live');
        await s.waitFor(expected.length + 1);
        expect(s.events.map((e) => e.id)).toEqual([...expected, live]);
        await s.close();
        ids.push(live);
        plan.push('b');
      }
    });

    test('resume while events are being published: no gap, no duplicate', async () => {
      // Fenced, not timed: the replay is held while events are published at the two fragile moments.
      const held = new HeldReplay(newBroker());
      const fx = await start({ broker: held.broker });
      const ids: string[] = [];
      const publish = async (n: number): Promise<void> => {
        for (let i = 0; i < n; i++) ids.push(await fx.hub.publish(ids.length % 3 === 0 ? 'b' : 'a', `q${ids.length}`));
      };
      for (let i = 0; i < 20; i++) ids.push(await fx.hub.publish('a', `p${i}`));
      const from = 10;
      const opening = stream('/events?channel=a&channel=b', { 'Last-Event-ID': ids[from]! });
      await held.asked;
      // Subscribed, history not read yet: these come both live and in the replay, and must arrive once.
      await publish(10);
      await held.snapshot();
      // History read, replay not written yet: these come live only, and must not be lost.
      await publish(10);
      held.answer();
      const s = await opening;
      // Live.
      await publish(10);
      const expected = ids.slice(from + 1);
      // The last event published is the fence: once it is in, anything duplicated or lost before it shows.
      await s.waitFor((e) => e.id === ids.at(-1), 10000);
      expect(s.events.map((e) => e.id)).toEqual(expected);
    });

    test('beyond history: one reset carrying a resumable id, then live; resuming from it: no second reset', async () => {
      const fx = await start({ history: 3 });
      const ids: string[] = [];
      for (let i = 0; i < 6; i++) ids.push(await fx.hub.publish('a', `e${i}`));
      const s = await stream('/events/a', { 'Last-Event-ID': ids[1]! });
      await s.waitFor(1);
      expect(s.events[0]).toEqual({ event: 'reset', data: '', id: ids[5] });
      const live = await fx.hub.publish('a', 'live');
      await s.waitFor(2);
      expect(s.events[1]).toMatchObject({ id: live, data: 'live' });
      s.close();

      // Within history: a complete replay, no reset.
      const again = await stream('/events/a', { 'Last-Event-ID': ids[4]! });
      await again.waitFor(2);
      expect(again.events.map((e) => e.id)).toEqual([ids[5], live]);
      // From the reset's own id: complete.
      const fromReset = await stream('/events/a', { 'Last-Event-ID': ids[5]! });
      await fromReset.waitFor(1);
      expect(fromReset.events.map((e) => e.id)).toEqual([live]);
    });

    test('a replay overtaken by trimming between two of its pages: the events up to the gap, one reset at the head, then live', async () => {
      // A slow reader resuming over a big backlog: its replay goes page by page as its socket
      // drains, and publishing may trim history past where the next page starts.
      const held = new HeldReplay(newBroker(), { page: 2 });
      const fx = await start({ history: 600, broker: held.broker });
      const burst = (tag: string, n: number): Promise<string[]> =>
        Promise.all(Array.from({ length: n }, (_, i) => fx.hub.publish('a', `${tag}${i}`)));
      const backlog = await burst('b', 600);
      const opening = stream('/events/a', { 'Last-Event-ID': backlog[0]! });
      await held.asked; // the first page is written; the hub asks for the second
      // 600 more with history 600: the second page's start is no longer in history.
      const overtaking = await burst('o', 600);
      await held.snapshot();
      held.answer();
      const s = await opening;
      const live = await fx.hub.publish('a', 'live');
      await s.waitFor((e) => e.id === live, 20_000);
      const reset = s.events.findIndex((e) => e.event === 'reset');
      expect(reset).toBeGreaterThan(0); // some of the backlog came first
      expect(reset).toBeLessThan(backlog.length - 1); // and not all of it
      // No gap before the reset, one reset at the head, then only what came after it.
      expect(s.events.slice(0, reset).map((e) => e.id)).toEqual(backlog.slice(1, reset + 1));
      expect(s.events.slice(reset)).toEqual([
        { event: 'reset', data: '', id: overtaking.at(-1) },
        { event: 'message', data: 'live', id: live },
      ]);
      expect(fx.hub.stats()).toMatchObject({ replays: { complete: 0, reset: 1 } });
    });

    test.each([['garbage'], ['x'.repeat(300)], ['abc.12.3'], ['ZZZZZZZZZZZZ.1'], ['']])(
      'an id that is not ours (%s) gives reset, never echoed',
      async (bad) => {
        const fx = await start();
        await fx.hub.publish('a', 'old');
        const s = await stream('/events/a', { 'Last-Event-ID': bad });
        await s.waitFor(1);
        expect(s.events[0]!.event).toBe('reset');
        expect(s.events[0]!.id).toMatch(ID);
        expect(s.raw()).not.toContain(bad === '' ? 'id: \n' : bad);
      },
    );

    test('an id from the future (same epoch) gives reset', async () => {
      const fx = await start();
      const id = await fx.hub.publish('a', 'x');
      const future = id.replace(/\.\d+$/, '.999999');
      const s = await stream('/events/a', { 'Last-Event-ID': future });
      await s.waitFor(1);
      const reset = s.events[0]!;
      expect(reset).toMatchObject({ event: 'reset', data: '' });
      if (fx.hub.stats().replays.reset !== 1) throw new Error('the resume was not counted as a reset');
      // A broker that can fence (RedisBroker) takes an id ahead of its head as proof that its
      // history rewound, and starts a new epoch at the same seq; MemoryBroker cannot rewind.
      const epoch = (x: string): string => x.slice(0, x.lastIndexOf('.'));
      expect(reset.id.slice(reset.id.lastIndexOf('.'))).toBe(id.slice(id.lastIndexOf('.')));
      if (brokerName === 'RedisBroker') expect(epoch(reset.id)).not.toBe(epoch(id));
      else expect(reset.id).toBe(id);
      // Resuming from the reset's id is complete: no second reset, then live.
      const again = await stream('/events/a', { 'Last-Event-ID': reset.id });
      await until(() => fx.hub.stats().connections === 2, 'the second stream');
      const live = await fx.hub.publish('a', 'y');
      await again.waitFor(1);
      expect(again.events).toEqual([{ event: 'message', data: 'y', id: live }]);
    });

    test('history: 0 -> every resume attempt gets reset', async () => {
      const fx = await start({ history: 0 });
      const id = await fx.hub.publish('a', 'x');
      const s = await stream('/events/a', { 'Last-Event-ID': id });
      await s.waitFor(1);
      expect(s.events[0]!.event).toBe('reset');
      const fresh = await stream('/events/a');
      const live = await fx.hub.publish('a', 'y');
      await fresh.waitFor(1);
      expect(fresh.events).toEqual([{ event: 'message', data: 'y', id: live }]);
    });

    test('ids of another broker instance (a restarted process) give reset', async () => {
      await start();
      const other = createHub({ authorize: () => true, broker: new MemoryBroker() });
      const foreign = await other.publish('a', 'x');
      await other.close();
      const s = await stream('/events/a', { 'Last-Event-ID': foreign });
      await s.waitFor(1);
      expect(s.events[0]!.event).toBe('reset');
    });
  });

  describe('render-time cursor', () => {
    test('an event published between render and connect is not lost', async () => {
      const fx = await start();
      await fx.hub.publish('a', 'before render');
      const cursor = await fx.hub.cursor(['a', 'b']);
      expect(cursor).toMatch(ID);
      const between = await fx.hub.publish('b', 'between render and connect');
      const s = await stream(`/events?channel=a&channel=b&lastEventId=${encodeURIComponent(cursor)}`);
      await s.waitFor(1);
      expect(s.events).toEqual([{ event: 'message', data: 'between render and connect', id: between }]);
      expect(s.raw()).not.toContain('reset');
    });

    test('a cursor taken before any event resumes cleanly', async () => {
      const fx = await start();
      const cursor = await fx.hub.cursor('fresh');
      const first = await fx.hub.publish('fresh', 'first');
      const s = await stream('/events/fresh', { 'Last-Event-ID': cursor });
      await s.waitFor(1);
      expect(s.events).toEqual([{ event: 'message', data: 'first', id: first }]);
    });

    test('cursor refuses bad channel names', async () => {
      const fx = await start();
      await expect(fx.hub.cursor('bad name')).rejects.toThrow(TypeError);
    });
  });
});
