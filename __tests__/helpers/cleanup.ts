/**
 * Everything a test opens is closed after it, newest first. Fixtures call
 * `defer(fn)`; a test file that uses them runs `afterEach(cleanup)`.
 * Each jest test file has its own module registry, so the list is per file.
 */
const pending: Array<() => unknown> = [];

export function defer(fn: () => unknown): void {
  pending.push(fn);
}

/** Runs every deferred clean-up (even after one fails), then rethrows the first failure. */
export async function cleanup(): Promise<void> {
  let failure: unknown;
  let failed = false;
  while (pending.length > 0) {
    try {
      await pending.pop()!();
    } catch (err) {
      if (!failed) failure = err;
      failed = true;
    }
  }
  if (failed) throw failure;
}
