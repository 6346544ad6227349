/** Re-authorisation of open streams fails closed: a no, a throw, or an answer that never comes. */
import { openStream } from '../lib/testing';
import { startHub } from './helpers/hub-server';

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
