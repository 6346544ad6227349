/**
 * drainTimeout: a client whose socket stays backed up (no 'drain') for
 * drainTimeout is dropped, even while its backlog is far below
 * maxBufferedBytes. Real sockets on 127.0.0.1; the only bound on time is
 * "not before drainTimeout".
 */
import express from 'express';
import { once } from 'node:events';
import type { ServerResponse } from 'node:http';
import { performance } from 'node:perf_hooks';
import { cleanup, defer } from './helpers/cleanup';
import { pausedClient } from './helpers/clients';
import { KiB, MiB } from './helpers/data';
import { serve, useSse } from './helpers/sse-server';
import { until } from './helpers/wait';

afterEach(cleanup);

const turn = (): Promise<void> => new Promise((r) => setImmediate(r));

/** Resolves with `promise`, or fails naming `what` after `ms`. */
async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

describe('drainTimeout', () => {
  test('a client that does not drain for drainTimeout is dropped although its backlog stays under maxBufferedBytes', async () => {
    const mw = useSse({ drainTimeout: 200, maxBufferedBytes: 16 * MiB });
    let res: ServerResponse | undefined;
    const app = express();
    app.get('/p', mw, (_req, r) => {
      if (r.sse.open()) res = r;
    });
    const { port } = await serve(app);
    await pausedClient(port, '/p');
    await until(() => res !== undefined, 'the paused stream to open');

    const r = res!;
    const socket = r.socket!;
    const chunk = 'x'.repeat(16 * KiB - 20);
    let drainedSinceStall = true;
    let stalled = 0;
    r.on('drain', () =>
      // After the stream's own 'drain' listener: did writing its held-back frames stall it again?
      queueMicrotask(() => {
        if (r.writableNeedDrain) stalled = performance.now();
        else drainedSinceStall = true;
      }),
    );
    const burst = (): void => {
      for (let i = 0; i < 16; i++) {
        if (!r.sse.send(chunk) && drainedSinceStall) {
          drainedSinceStall = false;
          stalled = performance.now(); // the stream starts waiting for 'drain' here
        }
      }
    };
    // Fill the kernel buffers until the socket stays backed up. The fence: after a full event-loop
    // turn (libuv had its chance to write on POLLOUT) the socket still holds bytes the kernel did not
    // take, so only the client reading could bring a 'drain'. (A write handed to the kernel still
    // counts in writableLength until its callback, hence the turn.)
    let bursts = 0;
    for (; bursts < 32 && !r.sse.closed; bursts++) {
      burst(); // 256 KiB
      await turn();
      if (!drainedSinceStall && socket.writableLength > 0) break;
    }
    if (bursts === 32)
      throw new Error('8 MiB written and the kernel still takes everything: the socket never backed up');
    expect(drainedSinceStall).toBe(false);
    expect(socket.writableLength).toBeGreaterThan(0);
    expect(r.sse.closed).toBe(false);

    // A trickle that keeps the backlog tiny: only the drain timeout can cut it. (Should the kernel
    // still take the backlog after all, the stall restarts and so does the clock.) The test waits
    // for the drop itself, not for a number of trickles.
    let trickled = 0;
    const trickle = setInterval(() => {
      if (r.sse.closed) return;
      if (drainedSinceStall) burst();
      else r.sse.comment('tick');
      trickled++;
    }, 10);
    defer(() => clearInterval(trickle));
    const dropped = r.sse.signal.aborted ? Promise.resolve() : once(r.sse.signal, 'abort').then(() => undefined);
    await within(dropped, 5000, 'the stalled stream to be dropped by drainTimeout (200 ms)');
    const elapsed = performance.now() - stalled;
    clearInterval(trickle);
    expect(r.sse.closed).toBe(true);
    expect(r.sse.signal.aborted).toBe(true);
    expect(mw.dropped).toBe(1);
    expect(mw.connections).toBe(0);
    // Not before drainTimeout (timer rounding aside); the upper bound is only the wait's bound.
    expect(elapsed).toBeGreaterThanOrEqual(195);
    expect(trickled).toBeGreaterThan(1);
  });
});
