/**
 * Nothing is left behind: a client that leaves releases the stream's
 * listeners, its place and the shared clock (under every host), and after
 * 1,000 connect/abort cycles the hub has no stream, no channel and no running
 * shared clock.
 */
import { once } from 'node:events';
import http from 'node:http';
import { sse } from '../lib';
import { runningClocks } from '../lib/testing';
import { cleanup } from './helpers/cleanup';
import { HOSTS } from './helpers/hosts';
import { hubSuite } from './helpers/hub-suite';
import { expectNoRunningClocks, inbox, open, start as startHost } from './helpers/sse-server';
import { until } from './helpers/wait';

const { start } = hubSuite(); // declared first: its hub is closed before the clock check below
afterEach(async () => {
  await cleanup();
  await expectNoRunningClocks();
});

describe.each(HOSTS)('sse() under $name', (host) => {
  test('client leaves: closed, signal aborted, calls return false, every listener and timer released', async () => {
    const mw = sse({ keepAlive: 50 });
    const box = inbox();
    const server = await startHost(host, [mw], [{ method: 'GET', path: '/s', handler: box.handler }]);
    const stream = await open(server, '/s');
    const { res, closeListenersBefore } = await box.next();
    const s = res.sse;
    const aborted = once(s.signal, 'abort');
    expect(s.closed).toBe(false);
    expect(s.signal.aborted).toBe(false);
    expect(mw.connections).toBe(1);
    expect(runningClocks()).toBe(1);
    expect(res.listenerCount('close')).toBe(closeListenersBefore + 1);

    await stream.close();
    await aborted;
    expect(s.closed).toBe(true);
    expect(s.signal.aborted).toBe(true);
    expect(mw.connections).toBe(0);
    expect(runningClocks()).toBe(0);
    expect(res.listenerCount('close')).toBe(closeListenersBefore);
    expect(res.listenerCount('drain')).toBe(0);
    expect(s.send('late')).toBe(false);
    expect(s.send('late', { event: 'e', id: 1 })).toBe(false);
    expect(s.comment('late')).toBe(false);
    expect(s.retry(10)).toBe(false);
    expect(s.open()).toBe(false);
    expect(() => s.close()).not.toThrow();
    expect(mw.connections).toBe(0);
  });
});

describe('leaks', () => {
  test('1,000 connect/abort cycles leave nothing behind', async () => {
    const fx = await start();
    for (let i = 0; i < 1000; i++) {
      await new Promise<void>((resolve, reject) => {
        const req = http.get(
          { host: '127.0.0.1', port: fx.port, path: `/events?channel=a&channel=c${i % 7}` },
          (res) => {
            res.once('data', () => undefined);
            req.destroy();
            resolve();
          },
        );
        req.on('error', (err) => ((err as NodeJS.ErrnoException).code === 'ECONNRESET' ? resolve() : reject(err)));
      });
    }
    await until(() => fx.hub.stats().connections === 0, 'every aborted stream to be released', 2000);
    expect(fx.hub.stats()).toMatchObject({ connections: 0, channels: 0 });
    expect(runningClocks()).toBe(0);
  });
});
