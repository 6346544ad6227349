/**
 * The hub's routes, on every broker: hub.subscribe(select) and hub.router()
 * (query and path forms), and the refusals that subscribe nothing and echo
 * nothing: 400 for a bad channel before authorize runs, 403 for any channel
 * refused, next(err) when authorize or select throws, next() for other
 * methods; HEAD answers the stream head alone.
 */
import { BROKERS, hubSuite } from './helpers/hub-suite';

const { start, stream, request, useBroker } = hubSuite();

describe.each(BROKERS)('with %s', (_name, make) => {
  useBroker(make);

  describe('subscribing', () => {
    test('one stream, several channels (query form), in publish order', async () => {
      const fx = await start();
      const s = await stream('/events?channel=a&channel=b');
      const ids = [];
      for (const ch of ['a', 'b', 'a', 'c', 'b']) ids.push(await fx.hub.publish(ch, ch));
      await s.waitFor(4);
      expect(s.events.map((e) => [e.data, e.id])).toEqual([
        ['a', ids[0]],
        ['b', ids[1]],
        ['a', ids[2]],
        ['b', ids[4]],
      ]);
      expect(fx.hub.stats()).toMatchObject({ connections: 1, channels: 2, published: 5, delivered: 4 });
    });

    test('up to 256 channel names per stream; a name given twice is subscribed once', async () => {
      const fx = await start();
      const names = Array.from({ length: 255 }, (_, i) => `c${i}`);
      const s = await stream('/events?' + [...names, 'c0'].map((c) => `channel=${c}`).join('&'));
      expect(fx.authorized).toHaveLength(255);
      await fx.hub.publish('c0', 'first');
      await fx.hub.publish('c254', 'last');
      await s.waitFor(2);
      expect(s.events.map((e) => e.data)).toEqual(['first', 'last']);
      expect(fx.hub.stats()).toMatchObject({ connections: 1, channels: 255 });
    });

    test('path form takes one percent-decoded segment; select may be async', async () => {
      const fx = await start();
      const s = await stream('/events/order%3A7');
      const m = await stream('/multi');
      await fx.hub.publish('order:7', 'x');
      await fx.hub.publish('b', 'y');
      await s.waitFor(1);
      await m.waitFor(1);
      expect(s.events.map((e) => e.data)).toEqual(['x']);
      expect(m.events.map((e) => e.data)).toEqual(['y']);
    });
  });

  describe('refusals: nothing subscribed, nothing echoed', () => {
    test.each([
      ['/events?channel=bad%20name'],
      ['/events?channel=' + 'x'.repeat(201)],
      ['/events?channel='],
      ['/events'],
      ['/events?channel=a&channel=%3Cscript%3E'],
      ['/events/a%2Fb/c'],
      ['/events/%E0%A4%A'],
      ['/events?' + Array.from({ length: 257 }, (_, i) => `channel=c${i}`).join('&')],
    ])('%s -> 400 before authorize runs', async (path) => {
      const fx = await start();
      const res = await request(path);
      expect(res.status).toBe(400);
      expect(res.body).toBe('Bad Request');
      expect(fx.authorized).toEqual([]);
      expect(fx.hub.stats()).toMatchObject({ connections: 0, channels: 0 });
    });

    test('any channel refused -> 403, no stream, no subscription, no echo', async () => {
      const fx = await start();
      const res = await request('/events?channel=a&channel=secret:42');
      expect(res.status).toBe(403);
      expect(res.body).toBe('Forbidden');
      expect(res.headers['content-type']).toBe('text/plain; charset=utf-8');
      expect(fx.hub.stats()).toMatchObject({ connections: 0, channels: 0 });
      // nothing subscribed: a publish reaches no stream
      await fx.hub.publish('a', 'x');
      expect(fx.hub.stats().delivered).toBe(0);
    });

    test('authorize throwing or rejecting goes to next(err): no stream, no echo', async () => {
      const fx = await start({
        authorize: async (_req, channel) => {
          if (channel === 'boom') throw new Error('db down for boom');
          return true;
        },
      });
      const res = await request('/events?channel=a&channel=boom');
      expect(res.status).toBe(500);
      expect(res.body).toBe('Internal Server Error');
      expect((fx.errors[0] as Error).message).toBe('db down for boom');
      expect(fx.hub.stats()).toMatchObject({ connections: 0, channels: 0 });
    });

    test('select throwing goes to next(err)', async () => {
      const fx = await start();
      const res = await request('/select-throws');
      expect(res.status).toBe(500);
      expect(res.body).not.toContain('secret');
      expect(fx.errors).toHaveLength(1);
    });

    test('methods other than GET/HEAD go to next()', async () => {
      const fx = await start();
      const res = await request('/events?channel=a', 'POST');
      expect(res.status).toBe(404);
      expect(fx.authorized).toEqual([]);
    });

    test('only a strict true authorises', async () => {
      await start({ authorize: () => 'yes' as unknown as boolean });
      expect((await request('/events/a')).status).toBe(403);
    });
  });
});

describe('methods', () => {
  test('HEAD answers the stream head and ends', async () => {
    const fx = await start();
    const res = await request('/events/a', 'HEAD');
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toBe('text/event-stream; charset=utf-8');
    expect(fx.hub.stats().connections).toBe(0);
  });
});
