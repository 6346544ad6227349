/**
 * Keep-alive comments, under every host: after keepAlive ms of silence and
 * only then, never earlier than keepAlive ms after opening whatever else is
 * open (the shared clock), and every write restarts the silence.
 *
 * Timing: the only clocks here are small keep-alive intervals; tests assert
 * ordering, "at least" and "none", never how fast anything is.
 */
import { sse } from '../lib';
import { cleanup } from './helpers/cleanup';
import { HOSTS } from './helpers/hosts';
import { expectNoRunningClocks, inbox, open, start } from './helpers/sse-server';

afterEach(async () => {
  await cleanup();
  await expectNoRunningClocks();
});

describe.each(HOSTS)('sse() under $name', (host) => {
  test('keep-alive comments come after keepAlive ms of silence, and only comments', async () => {
    const keepAlive = 50;
    const mw = sse({ keepAlive });
    const box = inbox();
    const server = await start(host, [mw], [{ method: 'GET', path: '/s', handler: box.handler }]);
    const stream = await open(server, '/s');
    await box.next();
    await stream.waitUntil(() => stream.comments.length >= 3, 5000, 'three keep-alives');
    expect(stream.comments.every((c) => c === 'keep-alive')).toBe(true);
    expect(stream.raw()).toBe(': keep-alive\n\n'.repeat(stream.comments.length));
    expect(stream.events).toEqual([]);
  });

  test('the first keep-alive comes no earlier than keepAlive ms after opening, whatever else is open', async () => {
    const keepAlive = 50;
    const mw = sse({ keepAlive });
    let openedAt = 0;
    const box = inbox((_req, res) => {
      openedAt = performance.now();
      res.sse.open();
    });
    const server = await start(host, [mw], [{ method: 'GET', path: '/s', handler: box.handler }]);
    // Another stream keeps the shared timer running, so the streams below join it at arbitrary moments.
    await open(server, '/s');
    await box.next();
    const delays: number[] = [];
    for (let i = 0; i < 10; i++) {
      await new Promise((r) => setTimeout(r, i)); // land at different points of the 10 ms tick
      const stream = await open(server, '/s');
      await box.next();
      const startedAt = openedAt;
      await stream.waitUntil(() => stream.comments.length >= 1, 5000, 'a keep-alive');
      delays.push(performance.now() - startedAt);
      expect(stream.raw()).toBe(': keep-alive\n\n');
      await stream.close();
    }
    // At least keepAlive ms (a couple of ms of timer granularity allowed); never an upper bound.
    expect(Math.min(...delays)).toBeGreaterThanOrEqual(keepAlive - 3);
  });

  test('writes reset the keep-alive timer: no keep-alive while sending every 20 ms, one after', async () => {
    const mw = sse({ keepAlive: 50 });
    const box = inbox();
    const server = await start(host, [mw], [{ method: 'GET', path: '/s', handler: box.handler }]);
    const stream = await open(server, '/s');
    const { res } = await box.next();
    const COUNT = 15; // 15 x 20 ms = 300 ms of steady writes
    let sent = 0;
    res.sse.send(String(sent++));
    await new Promise<void>((resolve) => {
      const timer = setInterval(() => {
        res.sse.send(String(sent++));
        if (sent === COUNT) {
          clearInterval(timer);
          resolve();
        }
      }, 20);
    });
    await stream.waitFor(COUNT);
    const dataFrames = Array.from({ length: COUNT }, (_, i) => `data: ${i}\n\n`).join('');
    // Silence now: a keep-alive follows, and nothing came between the data frames.
    await stream.waitUntil(() => stream.comments.length >= 1, 5000, 'a keep-alive after the writes stop');
    expect(stream.raw()).toBe(dataFrames + ': keep-alive\n\n'.repeat(stream.comments.length));
  });
});
