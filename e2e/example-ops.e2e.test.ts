/**
 * The example app's operations page in headless Chromium, under its strict
 * CSP (script-src 'self'): Dave (admin) sees the figures change and the SVG
 * chart grow from the `metrics` events of ops:metrics; Alice gets 403. No
 * console error, warning or CSP violation. Screenshot: .test-artifacts/screenshots/ops.png.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { type Browser, type Page } from 'playwright-core';
import { launchChromium, requireChromium } from './helpers/browser';

const ROOT = path.join(__dirname, '..');
const SHOTS = path.join(ROOT, '.test-artifacts', 'screenshots');
const WAIT = 10_000;

requireChromium();
if (!existsSync(path.join(ROOT, 'dist', 'index.js'))) {
  throw new Error('The e2e tests need the built library: run `npm run build` first.');
}

interface ExampleApp {
  app: (req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse) => void;
  close(): Promise<void>;
}
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { createApp } = require('../example-app/app') as {
  createApp(options?: { secret?: string; opsIntervalMs?: number }): ExampleApp;
};

/** What the page functions below use of the DOM (this project compiles without the DOM lib). */
interface Doc {
  document: {
    querySelector(s: string): { getAttribute(name: string): string | null; textContent: string | null } | null;
  };
}

let example: ExampleApp;
let server: Server;
let base: string;
let browser: Browser;
const problems: string[] = [];

beforeAll(async () => {
  mkdirSync(SHOTS, { recursive: true });
  example = createApp({ secret: 'e2e-ops', opsIntervalMs: 200 });
  server = createServer(example.app);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  browser = await launchChromium([]);
});

afterAll(async () => {
  await browser?.close().catch(() => undefined);
  await example?.close();
  if (server?.listening) {
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  }
});

async function loginAs(user: string): Promise<Page> {
  const context = await browser.newContext({ baseURL: base, viewport: { width: 1280, height: 800 } });
  context.setDefaultTimeout(WAIT);
  const page = await context.newPage();
  page.on('pageerror', (err) => problems.push(`${user}: ${err.message}`));
  page.on('console', (msg) => {
    if (msg.type() === 'error' || msg.type() === 'warning') problems.push(`${user} ${page.url()}: ${msg.text()}`);
  });
  await page.goto('/login');
  await page.check(`input[name="user"][value="${user}"]`);
  await Promise.all([page.waitForURL('**/dashboard'), page.click('form.login button[type="submit"]')]);
  return page;
}

const pointsOf = (page: Page, line: string): Promise<number> =>
  page.$eval(
    `#ops-line-${line}`,
    (el) => (el.getAttribute('points') ?? '').split(' ').filter((p: string) => p !== '').length,
  );

test("Dave's operations page goes live: figures from the stream, the chart grows", async () => {
  const page = await loginAs('dave');
  await page.click('nav a[href="/ops"]');
  await page.waitForURL('**/ops');
  await page.waitForSelector('#ops[data-sse="open"]');
  // Points are added per `metrics` event: wait for several (a chart that updates), not for time.
  await page.waitForFunction(() => {
    const line = (globalThis as unknown as Doc).document.querySelector('#ops-line-connections');
    return (line?.getAttribute('points') ?? '').split(' ').filter((p: string) => p !== '').length >= 5;
  });
  expect(await pointsOf(page, 'publishRate')).toBeGreaterThanOrEqual(5);
  // The dashboard's stream (the login landed there) closed with that page; this page's is the one open.
  await page.waitForFunction(
    () => (globalThis as unknown as Doc).document.querySelector('#ops-connections')?.textContent === '1',
  );
  await page.screenshot({ path: path.join(SHOTS, 'ops.png'), fullPage: true });
  await page.context().close();
});

test('Alice is no admin: no nav link, and /ops is 403', async () => {
  const page = await loginAs('alice');
  expect(await page.locator('nav a[href="/ops"]').count()).toBe(0);
  const res = await page.goto('/ops');
  expect(res?.status()).toBe(403);
  await page.context().close();
  // The 403 page logs a console error for its own status; that one is expected.
  const own = problems.filter((p) => p.startsWith('alice') && p.includes('403'));
  problems.splice(0, problems.length, ...problems.filter((p) => !own.includes(p)));
});

test('no page logged an error, a warning or a CSP violation', () => {
  expect(problems).toEqual([]);
});
