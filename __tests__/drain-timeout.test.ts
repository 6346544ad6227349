/**
 * drainTimeout: a client whose socket stays backed up (no 'drain') for
 * drainTimeout is dropped, even while its backlog is far below
 * maxBufferedBytes. Real sockets on 127.0.0.1; the only bound on time is
 * "not before drainTimeout".
 */
import express from 'express';
import type { ServerResponse } from 'node:http';
import { performance } from 'node:perf_hooks';
import { cleanup } from './helpers/cleanup';
import { pausedClient } from './helpers/clients';
import { KiB, MiB } from './helpers/data';
import { serve, useSse } from './helpers/sse-server';
import { sleep, until } from './helpers/wait';

afterEach(cleanup);

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

    // Fill the kernel buffers until the socket stays backed up (no 'drain') across turns. A write
    // handed to the kernel still counts in writableLength until the next turn, so a synchronous
    // loop alone would stop at the high-water mark while the kernel still has room.
    const r = res!;
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
    let bursts = 0;
    for (; bursts < 32 && !r.sse.closed; bursts++) {
      burst(); // 256 KiB
      await sleep(30);
      if (!drainedSinceStall) break;
    }
    expect(drainedSinceStall).toBe(false);
    expect(r.sse.closed).toBe(false);

    // A trickle that keeps the backlog tiny: only the drain timeout can cut it. (Should the kernel
    // still take the backlog after all, the stall restarts and so does the clock.)
    let trickled = 0;
    while (!r.sse.closed && trickled < 500) {
      if (drainedSinceStall) burst();
      else r.sse.comment('tick');
      trickled++;
      await sleep(10);
    }
    const elapsed = performance.now() - stalled;
    expect(r.sse.closed).toBe(true);
    expect(r.sse.signal.aborted).toBe(true);
    expect(mw.dropped).toBe(1);
    expect(mw.connections).toBe(0);
    // Not before drainTimeout (timer rounding aside); the upper bound is only the loop's bound.
    expect(elapsed).toBeGreaterThanOrEqual(195);
    expect(trickled).toBeGreaterThan(1);
  });
});
