/**
 * `sse-relay tail`: prints the live events of one channel, one JSON line
 * each, until SIGINT/SIGTERM (or stdout closes); then it unsubscribes, closes
 * its Redis connections and resolves.
 */
import type { TailCommand } from './args';
import { openBroker } from './broker';
import { Refused } from './publish';

export interface TailIo {
  readonly stdout: NodeJS.WritableStream;
  readonly stderr: NodeJS.WritableStream;
  /** Resolves when the tail should stop (a signal, stdout gone). */
  readonly stop: Promise<void>;
}

export async function tail(cmd: TailCommand, io: TailIo): Promise<void> {
  const broker = await openBroker(cmd.redis, cmd.prefix, cmd.timeout);
  const listener = {
    onEvent(ev: { id: string; event: string | undefined; data: string }): void {
      io.stdout.write(JSON.stringify({ id: ev.id, event: ev.event ?? 'message', data: ev.data }) + '\n');
    },
    onReset(): void {
      io.stdout.write('{"event":"reset"}\n');
    },
  };
  try {
    try {
      await broker.subscribe(cmd.channel, listener);
    } catch (err) {
      throw new Refused((err as Error).message.replace(/^sse-relay: /, ''), { cause: err });
    }
    io.stderr.write(`sse-relay: tailing ${cmd.channel} (Ctrl-C to stop)\n`);
    await io.stop;
    await broker.unsubscribe(cmd.channel, listener).catch(() => undefined);
  } finally {
    await broker.close().catch(() => undefined);
  }
}
