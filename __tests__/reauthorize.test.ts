/** Re-authorisation of open streams (reauthorizeEvery) fails closed: a no, a throw, or an answer that never comes. */
import { openStream } from '../lib/testing';
import { startHub } from './helpers/hub-server';
import { hubSuite } from './helpers/hub-suite';

const { start, stream, untilConnections } = hubSuite();

test('a re-authorisation that never settles closes the stream after reauthorizeTimeout', async () => {
  let calls = 0;
  const fx = await startHub({
    authorize: () => (++calls === 1 ? true : new Promise<boolean>(() => undefined)), // the second answer never comes
    reauthorizeEvery: 50,
    reauthorizeTimeout: 300,
  });
  try {
    const s = await openStream({ server: fx.server, path: '/events/orders' });
    await s.waitForEnd(10_000);
    expect(calls).toBeGreaterThanOrEqual(2);
    expect(fx.hub.stats().connections).toBe(0);
  } finally {
    await fx.close();
  }
});

test('reauthorizeTimeout must be a positive integer', async () => {
  await expect(startHub({ reauthorizeTimeout: 0 })).rejects.toThrow(RangeError);
});

test('reauthorizeEvery: a no closes the stream', async () => {
  let allowed = true;
  const fx = await start({ authorize: () => allowed, reauthorizeEvery: 30 });
  const s = await stream('/events/a');
  await untilConnections(1);
  await fx.hub.publish('a', 'before');
  await s.waitFor(1);
  allowed = false;
  await s.waitForEnd(5000);
  expect(fx.hub.stats()).toMatchObject({ connections: 0, channels: 0 });
});
