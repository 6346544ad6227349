/**
 * Adaptive write batching (lib/stream/turn.ts, option maxWriteDelay): an idle
 * process writes a turn's frames at its end, as without batching; a busy one
 * lets the frames of later turns join one write per socket, for at most
 * maxWriteDelay ms; 4 KiB waiting, a keep-alive and close() write at once.
 *
 * "A write" is observed on the server's socket: one socket.write call that
 * carries frames (on Node's path, the call with the chunk's data). "Busy" is
 * made by running the event loop without a break (a bounded spin), "idle" by
 * letting it wait on a timer; the windows here are 1000 ms (the largest
 * maxWriteDelay) so no window can close early by accident. Nothing asserts
 * how fast anything is.
 */
import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { sse } from '../lib';
import { countingClient, startHub, type CountingClient, type HubServer } from './helpers/hub-server';

const WINDOW = 1000;

let fx: HubServer | undefined;
let client: CountingClient | undefined;
afterEach(async () => {
  client?.close();
  client = undefined;
  await fx?.close();
  fx = undefined;
});

/** Runs the event loop without a break for `ms` (no I/O wait: the process is busy). */
function spin(ms: number): void {
  const end = performance.now() + ms;
  while (performance.now() < end) {
    /* busy */
  }
}

const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
/**
 * Lets the loop wait on a timer: afterwards the process counts as idle. (Idle means: at least
 * half of the time since the last write-out spent waiting; 100 ms of waiting outweighs the test's
 * own work since then even on a loaded machine, where 20 ms once did not. Still well inside WINDOW.)
 */
const idle = (): Promise<void> => sleep(100);

/** The data of every frame-carrying write on the server's sockets, in order. */
interface Writes {
  readonly list: string[];
  /** The writes that carry `data: <text>`. */
  with(text: string): string[];
}

async function start(sseOptions: Record<string, unknown>): Promise<Writes> {
  fx = await startHub({ sse: { keepAlive: false, ...sseOptions } });
  const list: string[] = [];
  fx.server.on('connection', (socket: Socket) => {
    const write = socket.write;
    socket.write = function (this: Socket, chunk: unknown, ...rest: unknown[]) {
      const text = Buffer.isBuffer(chunk) ? chunk.toString('utf8') : String(chunk);
      if (text.includes('data: ') || text.includes(': keep-alive')) list.push(text);
      return (write as (...a: unknown[]) => boolean).call(this, chunk, ...rest);
    } as typeof socket.write;
  });
  client = await countingClient(fx.port, '/events/feed');
  await sleep(20); // idle, so the warm-up is not batched with what the previous test wrote
  await fx.hub.publish('feed', 'warm');
  await client.waitFor(1);
  return { list, with: (text) => list.filter((w) => w.includes('data: ' + text + '\n')) };
}

describe('adaptive write batching', () => {
  test('idle: a frame is written at the end of its turn, before any timer', async () => {
    const writes = await start({ maxWriteDelay: WINDOW });
    await idle();
    await fx!.hub.publish('feed', 'a');
    await nextTurn();
    expect(writes.with('a')).toHaveLength(1);
  });

  test('busy: the frames of later turns wait and go out in one write', async () => {
    const writes = await start({ maxWriteDelay: WINDOW });
    await idle();
    await fx!.hub.publish('feed', 'a');
    await nextTurn();
    expect(writes.with('a')).toHaveLength(1); // idle: at once
    spin(5);
    await fx!.hub.publish('feed', 'b');
    await nextTurn();
    spin(2);
    await fx!.hub.publish('feed', 'c');
    await nextTurn();
    expect(writes.with('b')).toEqual([]); // waiting in the window
    await client!.waitFor(4);
    const [bc] = writes.with('b');
    expect(bc).toBeDefined();
    expect(bc).toContain('data: c\n');
    expect(bc!.indexOf('data: b\n')).toBeLessThan(bc!.indexOf('data: c\n'));
  });

  test('maxWriteDelay: 0 turns it off: every turn is written at its end, busy or not', async () => {
    const writes = await start({ maxWriteDelay: 0 });
    spin(5);
    await fx!.hub.publish('feed', 'b');
    await nextTurn();
    expect(writes.with('b')).toHaveLength(1);
    spin(2);
    await fx!.hub.publish('feed', 'c');
    await nextTurn();
    expect(writes.with('c')).toHaveLength(1);
    expect(writes.with('b')[0]).not.toContain('data: c\n');
  });

  test('4 KiB waiting for one stream (or group) is written at once, window or not', async () => {
    const writes = await start({ maxWriteDelay: WINDOW });
    await idle();
    await fx!.hub.publish('feed', 'a');
    await nextTurn();
    spin(5);
    await fx!.hub.publish('feed', 'b');
    await nextTurn();
    expect(writes.with('b')).toEqual([]);
    const big = 'x'.repeat(5000);
    await fx!.hub.publish('feed', big);
    await nextTurn();
    const [both] = writes.with('b');
    expect(both).toBeDefined();
    expect(both).toContain('data: ' + big + '\n');
  });

  test('a frame of 4 KiB for a stream of its own (a coalesce key) is written at once, window or not', async () => {
    const writes = await start({ maxWriteDelay: WINDOW });
    await idle();
    await fx!.hub.publish('feed', 'a');
    await nextTurn();
    spin(5);
    const big = 'k'.repeat(5000);
    await fx!.hub.publish('feed', big, { coalesce: 'state' });
    await nextTurn();
    expect(writes.with(big)).toHaveLength(1);
  });

  test('close() writes what waits at once, before the end of the body', async () => {
    const writes = await start({ maxWriteDelay: WINDOW });
    await idle();
    await fx!.hub.publish('feed', 'a');
    await nextTurn();
    spin(5);
    await fx!.hub.publish('feed', 'b');
    await nextTurn();
    expect(writes.with('b')).toEqual([]);
    const ended = client!.ended;
    const closing = fx!.hub.close();
    // Synchronously in close(): the waiting frame went out with the stream's last write.
    expect(writes.with('b')).toHaveLength(1);
    await closing;
    await ended;
    expect(client!.ids).toHaveLength(3);
  });

  test('a keep-alive writes what waits at once, in order before it', async () => {
    const writes = await start({ maxWriteDelay: WINDOW, keepAlive: 50 });
    await idle();
    await fx!.hub.publish('feed', 'a');
    await nextTurn();
    spin(5);
    await fx!.hub.publish('feed', 'b');
    // The keep-alive is due within ~100 ms, long before the 1000 ms window closes. (No check
    // that 'b' waits before it: on a loaded machine the keep-alive may already be due here; the
    // write that carries 'b' carrying the keep-alive after it is what shows 'b' waited.)
    await client!.waitFor(3);
    const [withB] = writes.with('b');
    expect(withB).toContain(': keep-alive\n');
    expect(withB!.indexOf('data: b\n')).toBeLessThan(withB!.indexOf(': keep-alive'));
  });
});

describe('option maxWriteDelay', () => {
  test.each([
    [-1, RangeError, /option maxWriteDelay must be a non-negative integer, got -1/],
    [1.5, RangeError, /option maxWriteDelay must be a non-negative integer, got 1.5/],
    [1001, RangeError, /option maxWriteDelay must be at most 1000 \(ms\), got 1001/],
    ['5', TypeError, /option maxWriteDelay must be a number, got "5"/],
  ])('%p is refused at sse() time', (value, type, message) => {
    expect(() => sse({ maxWriteDelay: value as number })).toThrow(type);
    expect(() => sse({ maxWriteDelay: value as number })).toThrow(message);
  });

  test('a typo is refused with a "did you mean"', () => {
    expect(() => sse({ maxWriteDelays: 5 } as never)).toThrow(
      /unknown sse\(\) option "maxWriteDelays" \(did you mean "maxWriteDelay"\?\)/,
    );
  });

  test('0 and 1000 are accepted', () => {
    expect(() => sse({ maxWriteDelay: 0 })).not.toThrow();
    expect(() => sse({ maxWriteDelay: 1000 })).not.toThrow();
  });
});
