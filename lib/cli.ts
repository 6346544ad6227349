#!/usr/bin/env node
/**
 * `sse-relay`, the command-line tool installed with the package (Node and
 * ioredis only): `publish` one event through Redis or an HTTP publish
 * endpoint, `tail` a channel's live events. Exit status 0 ok, 1 refused,
 * 2 usage. `sse-relay --help` prints the whole usage.
 */
import { HELP, UsageError, parseCommand } from './cli/args';
import { publish, Refused } from './cli/publish';
import { tail } from './cli/tail';

export const EXIT_OK = 0;
export const EXIT_REFUSED = 1;
export const EXIT_USAGE = 2;

function whenStopped(): { stop: Promise<void>; dispose(): void } {
  let dispose = (): void => undefined;
  const stop = new Promise<void>((resolve) => {
    const onSignal = (): void => resolve();
    const onStdoutError = (): void => resolve(); // EPIPE: whoever read our output is gone
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
    process.stdout.once('error', onStdoutError);
    dispose = () => {
      process.removeListener('SIGINT', onSignal);
      process.removeListener('SIGTERM', onSignal);
      process.stdout.removeListener('error', onStdoutError);
    };
  });
  return { stop, dispose: () => dispose() };
}

/** Runs one command line; resolves with the exit status. */
export async function main(argv: readonly string[]): Promise<number> {
  let command;
  try {
    command = parseCommand(argv, process.env);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    process.stderr.write(`sse-relay: ${err.message}\nRun "sse-relay --help" for usage.\n`);
    return EXIT_USAGE;
  }
  try {
    switch (command.command) {
      case 'help':
        process.stdout.write(HELP);
        return EXIT_OK;
      case 'publish':
        process.stdout.write((await publish(command, process.stdin)) + '\n');
        return EXIT_OK;
      case 'tail': {
        const stopped = whenStopped();
        try {
          await tail(command, { stdout: process.stdout, stderr: process.stderr, stop: stopped.stop });
        } finally {
          stopped.dispose();
        }
        return EXIT_OK;
      }
    }
  } catch (err) {
    if (!(err instanceof Refused)) throw err;
    process.stderr.write(`sse-relay: ${err.message}\n`);
    return EXIT_REFUSED;
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      process.stderr.write(`sse-relay: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exitCode = EXIT_REFUSED;
    },
  );
}
