/**
 * Headless Chromium for the browser tests: Debian's /usr/bin/chromium driven by
 * playwright-core (never `npx playwright install`), with the flags a closed
 * network needs. A missing browser fails the suite with a clear message.
 */
import { existsSync } from 'node:fs';
import { chromium, type Browser } from 'playwright-core';

export const CHROMIUM = '/usr/bin/chromium';

const FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** Throws (at import time of the test file that calls it) when Chromium is not installed. */
export function requireChromium(): void {
  if (!existsSync(CHROMIUM)) {
    throw new Error(
      `The e2e tests need Chromium at ${CHROMIUM}: install it with \`apt-get install -y chromium\` (not \`npx playwright install\`).`,
    );
  }
}

/** Launches it (playwright gives it a fresh temp profile and removes it on close). */
export function launchChromium(extraArgs: readonly string[] = []): Promise<Browser> {
  return chromium.launch({ executablePath: CHROMIUM, timeout: 30_000, args: [...FLAGS, ...extraArgs] });
}
