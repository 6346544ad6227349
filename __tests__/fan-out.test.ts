/**
 * Hub fan-out on real HTTP streams, on every broker: an event reaches exactly
 * the streams of its channel with its hub id, events of one turn reach
 * single- and multi-channel streams in order and once (streams of one channel
 * share the same bytes), and a multi-line payload stays one event.
 */
import { BROKERS, hubSuite, ID } from './helpers/hub-suite';

const { start, stream, useBroker } = hubSuite();

describe.each(BROKERS)('with %s', (_name, make) => {
  useBroker(make);

  describe('fan-out', () => {
    test('events reach only the streams of their channel, with hub ids', async () => {
      const fx = await start();
      const one = await stream('/orders/1');
      const two = await stream('/orders/2');
      const a = await fx.hub.publish('order:1', '<span>Shipped</span>', { event: 'status' });
      const b = await fx.hub.publish('order:2', { state: 'paid' });
      await one.waitFor(1);
      await two.waitFor(1);
      expect(a).toMatch(ID);
      expect(b).toMatch(ID);
      expect(one.events).toEqual([{ event: 'status', data: '<span>Shipped</span>', id: a }]);
      expect(two.events).toEqual([{ event: 'message', data: '{"state":"paid"}', id: b }]);
      expect(one.raw()).toBe(`id: ${a}\nevent: status\ndata: <span>Shipped</span>\n\n`);
    });

    test('events published in one turn reach single- and multi-channel streams in order, once', async () => {
      const fx = await start();
      const a1 = await stream('/events/a');
      const a2 = await stream('/events/a');
      const ab = await stream('/events?channel=a&channel=b');
      const b1 = await stream('/events/b');
      const plan = ['a', 'b', 'a', 'a', 'b', 'a'];
      const ids = await Promise.all(plan.map((ch, i) => fx.hub.publish(ch, `${ch}${i}`)));
      const onA = ids.filter((_, i) => plan[i] === 'a');
      const onB = ids.filter((_, i) => plan[i] === 'b');
      await Promise.all([
        a1.waitFor(onA.length),
        a2.waitFor(onA.length),
        ab.waitFor(ids.length),
        b1.waitFor(onB.length),
      ]);
      expect(a1.events.map((e) => e.id)).toEqual(onA);
      expect(a2.raw()).toBe(a1.raw()); // the same bytes
      expect(ab.events.map((e) => e.id)).toEqual(ids);
      expect(ab.events.map((e) => e.data)).toEqual(plan.map((ch, i) => `${ch}${i}`));
      expect(b1.events.map((e) => e.id)).toEqual(onB);
      // and the next turn still flows
      const last = await fx.hub.publish('a', 'next');
      await a1.waitFor(onA.length + 1);
      expect(a1.events[onA.length]!.id).toBe(last);
    });

    test('a multi-line payload stays one event', async () => {
      const fx = await start();
      const s = await stream('/events/a');
      await fx.hub.publish('a', 'line1\r\nevent: evil\rdata: x\n\nid: 1');
      await s.waitFor(1);
      expect(s.events).toHaveLength(1);
      expect(s.events[0]!.data).toBe('line1\nevent: evil\ndata: x\n\nid: 1');
      expect(s.events[0]!.event).toBe('message');
    });
  });
});
