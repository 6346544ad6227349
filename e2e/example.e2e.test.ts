/**
 * The example app in a real browser: headless Chromium (the system's
 * /usr/bin/chromium) driven by playwright-core. htmx and its SSE extension do
 * the work in the page; these tests only click, type and look.
 *
 * Screenshots of every page land in .test-artifacts/screenshots/.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { type Browser, type BrowserContext, type Page } from 'playwright-core';
import { launchChromium, requireChromium } from './helpers/browser';

const ROOT = path.join(__dirname, '..');
const SHOTS = path.join(ROOT, '.test-artifacts', 'screenshots');
const WAIT = 10_000; // every wait in this file is bounded by this

requireChromium();
if (!existsSync(path.join(ROOT, 'dist', 'index.js'))) {
  throw new Error('The e2e tests need the built library: run `npm run build` first.');
}

interface ExampleApp {
  app: (req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse) => void;
  hub: { stats(): { connections: number } };
  close(): Promise<void>;
}
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { createApp } = require('../example-app/app') as { createApp(options?: { secret?: string }): ExampleApp };

/** Recorded in every page before its scripts run: SSE lifecycle and messages, as htmx reports them. */
const RECORDER = `
  window.__sse = { open: 0, closes: [], messages: [] };
  document.addEventListener('htmx:sseOpen', () => window.__sse.open++);
  document.addEventListener('htmx:sseClose', (e) => window.__sse.closes.push(e.detail.type));
  document.addEventListener('htmx:sseMessage', (e) => window.__sse.messages.push(e.detail.type));
`;

interface Session {
  user: string;
  context: BrowserContext;
  page: Page;
}

let example: ExampleApp;
let server: Server;
let base: string;
let browser: Browser;
const sessions: Session[] = [];
const problems: string[] = [];

function watch(page: Page, user: string): Page {
  page.setDefaultTimeout(WAIT);
  page.on('pageerror', (err) => problems.push(`${user} ${page.url()}: ${err.message}`));
  page.on('console', (msg) => {
    if (msg.type() === 'error' || msg.type() === 'warning') problems.push(`${user} ${page.url()}: ${msg.text()}`);
  });
  return page;
}

async function shot(page: Page, name: string): Promise<void> {
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });
}

async function newPage(s: Session): Promise<Page> {
  return watch(await s.context.newPage(), s.user);
}

async function login(user: string, screenshot?: string): Promise<Session> {
  const context = await browser.newContext({ baseURL: base, viewport: { width: 1280, height: 800 } });
  context.setDefaultTimeout(WAIT);
  await context.addInitScript({ content: RECORDER });
  const s: Session = { user, context, page: undefined as unknown as Page };
  sessions.push(s);
  s.page = await newPage(s);
  await s.page.goto('/login');
  if (screenshot) await shot(s.page, screenshot);
  await s.page.check(`input[name="user"][value="${user}"]`);
  await Promise.all([s.page.waitForURL('**/dashboard'), s.page.click('form.login button[type="submit"]')]);
  return s;
}

/** The page's live section has an open EventSource. */
async function live(page: Page): Promise<void> {
  await page.waitForSelector('#live[data-sse="open"]', { timeout: WAIT });
}

beforeAll(async () => {
  mkdirSync(SHOTS, { recursive: true });
  example = createApp({ secret: 'e2e-secret' });
  server = createServer(example.app);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  browser = await launchChromium([]);
});

afterAll(async () => {
  for (const s of sessions) await s.context.close().catch(() => undefined);
  await browser?.close().catch(() => undefined);
  await example?.close();
  if (server?.listening) {
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  }
});

test("a status change made by staff swaps the badge on the owner's order page and refreshes the dashboard", async () => {
  const alice = await login('alice', 'login');
  await live(alice.page);
  const dashboard = alice.page;
  await shot(dashboard, 'dashboard');

  const order = await newPage(alice);
  await order.goto('/orders');
  await shot(order, 'orders');
  await order.click('a[href="/orders/1001"]');
  await order.waitForURL('**/orders/1001');
  await live(order);
  expect(await order.textContent('#order-status .badge')).toBe('Paid');
  await shot(order, 'order');

  // A second browser context: Carol, staff, in the warehouse.
  const carol = await login('carol');
  await carol.page.goto('/warehouse');
  await shot(carol.page, 'warehouse');
  await carol.page.click('#wh-row-1001 button[value="shipped"]');
  await carol.page.waitForSelector('#wh-row-1001 .badge-shipped');

  // Alice's order page: the badge was swapped by the `status` event (sse-swap).
  await order.waitForSelector('#order-status .badge-shipped');
  expect(await order.textContent('#order-status')).toBe('Shipped');
  await shot(order, 'order-shipped');

  // Alice's dashboard, on one connection for five channels: the `status` event triggered
  // a refetch of the orders table (hx-trigger="sse:status"), the activity feed got an
  // entry (afterbegin) and the stats were swapped.
  await dashboard.waitForSelector('#dash-orders .badge-shipped');
  await dashboard.waitForFunction(() => {
    const d = (globalThis as unknown as { document: { querySelector(s: string): { textContent: string } | null } })
      .document;
    return d.querySelector('#dash-activity')?.textContent?.includes('Carol set order #1001 to shipped') === true;
  });
  await dashboard.waitForFunction(() => {
    const d = (globalThis as unknown as { document: { querySelector(s: string): { textContent: string } | null } })
      .document;
    return d.querySelector('#dash-notifications')?.textContent?.includes('Order #1001') === true;
  });
  await shot(dashboard, 'dashboard-live');
});

test("a job's progress bar reaches 100% and its SSE connection closes", async () => {
  const alice = sessions.find((s) => s.user === 'alice')!;
  const page = await newPage(alice);
  await page.goto('/jobs');
  const before = example.hub.stats().connections;

  await Promise.all([page.waitForURL(/\/jobs\/[0-9a-f]+$/), page.click('text=Start a job')]);
  await page.waitForSelector('#job-progress progress[value="100"]');
  expect(await page.textContent('#job-progress .pct')).toBe('100%');
  await page.waitForSelector('#job-state .badge-done');

  // sse-close="done": htmx closed the EventSource when the `done` event arrived ...
  await page.waitForSelector('#live[data-sse="closed"]');
  const sse = (await page.evaluate('window.__sse')) as { open: number; closes: string[]; messages: string[] };
  expect(sse.open).toBe(1);
  expect(sse.closes).toEqual(['message']);
  // ... after many progress events (every ~100 ms), not one jump.
  expect(sse.messages.filter((m) => m === 'progress').length).toBeGreaterThanOrEqual(5);
  // ... and the server saw the stream end.
  const deadline = Date.now() + WAIT;
  while (example.hub.stats().connections > before && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  expect(example.hub.stats().connections).toBe(before);
  await shot(page, 'job');

  await page.goto('/jobs');
  await page.waitForSelector('td .badge-done');
  await shot(page, 'jobs');
  await page.close();
});

test("a user never sees another user's notifications", async () => {
  const alice = sessions.find((s) => s.user === 'alice')!;
  const carol = sessions.find((s) => s.user === 'carol')!;
  const bob = await login('bob');

  const aliceList = await newPage(alice);
  await aliceList.goto('/notifications');
  await live(aliceList);
  await bob.page.goto('/notifications');
  await live(bob.page);

  // Bob cannot even open Alice's channel.
  expect((await bob.context.request.get('/events/user:alice:notifications')).status()).toBe(403);

  // Carol sends one to Alice (with markup, which must show as text), then one to Bob.
  await carol.page.goto('/notifications');
  const send = async (to: string, text: string): Promise<void> => {
    await carol.page.selectOption('select[name="to"]', to);
    await carol.page.fill('input[name="text"]', text);
    await carol.page.click('form.stack button[type="submit"]');
    await carol.page.waitForFunction(
      (want) =>
        (globalThis as unknown as { document: { querySelector(s: string): { textContent: string } | null } }).document
          .querySelector('#send-result')
          ?.textContent?.includes(want) === true,
      `Sent to ${to === 'alice' ? 'Alice' : 'Bob'}.`,
    );
  };
  await send('alice', 'For Alice only <b>not bold</b>');
  await send('bob', 'Hello Bob');

  const item = aliceList.locator('#notifications li.notification', { hasText: 'For Alice only' });
  await item.waitFor();
  expect(await item.locator('p').textContent()).toBe('For Alice only <b>not bold</b>');
  expect(await item.locator('b').count()).toBe(0);
  await bob.page.locator('#notifications li.notification', { hasText: 'Hello Bob' }).waitFor();

  // Both events have arrived; each list holds only its own user's.
  expect(await bob.page.textContent('#notifications')).not.toContain('For Alice only');
  expect(await bob.page.textContent('#notifications')).not.toContain('Order #1001');
  expect(await aliceList.textContent('#notifications')).not.toContain('Hello Bob');
  await shot(aliceList, 'notifications');
  await shot(carol.page, 'notifications-send');
});

test('a resume that cannot be complete (reset) makes the page refetch its live section and carry on', async () => {
  const alice = sessions.find((s) => s.user === 'alice')!;
  const carol = sessions.find((s) => s.user === 'carol')!;
  const page = await newPage(alice);
  // The first stream of this page asks to resume from an id the server never gave out,
  // as after a restart with a MemoryBroker: the hub answers with a `reset` event.
  let rewritten = 0;
  await page.route('**/events/order*', (route) => {
    if (rewritten++ > 0) return route.continue();
    return route.continue({
      url: route
        .request()
        .url()
        .replace(/lastEventId=[^&]+/, 'lastEventId=unknown.1'),
    });
  });
  await page.goto('/orders/1001');
  // On `reset` (hx-trigger="sse:reset") the section is fetched again and swapped in whole:
  // the old EventSource is closed with its element, a new one opens from a fresh cursor.
  await page.waitForFunction(() => {
    const sse = (globalThis as unknown as { __sse: { open: number; closes: string[] } }).__sse;
    return sse.closes.includes('nodeReplaced') && sse.open >= 2;
  });
  await live(page);
  expect(rewritten).toBe(2);
  await page.unroute('**/events/order*');

  await carol.page.goto('/warehouse');
  await carol.page.click('#wh-row-1001 button[value="delivered"]');
  await page.waitForSelector('#order-status .badge-delivered');
  await page.close();
});

test('no page logged an error, a warning or a CSP violation', () => {
  expect(problems).toEqual([]);
});
