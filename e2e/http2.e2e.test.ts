/**
 * HTTP/2 in a real browser: a hub served by node:http2's
 * createSecureServer({ allowHTTP1: true }) through a bare Connect-style chain,
 * with a certificate made at test time (openssl), read by headless Chromium.
 * One page opens 10 EventSources at once: over HTTP/1.1 a browser allows only
 * six connections per origin, so the seventh to tenth would never open; over
 * HTTP/2 all ten are streams of one connection. The page sees all ten open and
 * each gets its live events; the server sees ten HTTP/2 streams on one session.
 */
import http2, { type Http2SecureServer, type ServerHttp2Session } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { type Browser, type BrowserContext, type Page } from 'playwright-core';
import { launchChromium, requireChromium } from './helpers/browser';
import { createHub, type Hub } from '../lib';
import { selfSignedCertificate } from '../__tests__/helpers/certificate';
import { chain, mount } from '../__tests__/helpers/connect-chain';

const STREAMS = 10;
const WAIT = 15_000;

requireChromium();

/** The page: ten EventSources, one per channel, recording opens and messages. */
const PAGE = `<!doctype html>
<meta charset="utf-8">
<title>ten streams</title>
<script src="/page.js"></script>`;
const SCRIPT = `
window.__es = { opened: [], messages: [], errors: 0 };
for (let i = 0; i < ${STREAMS}; i++) {
  const es = new EventSource('/events/stream-' + i);
  es.onopen = () => window.__es.opened.push(i);
  es.onerror = () => window.__es.errors++;
  es.addEventListener('tick', (e) => window.__es.messages.push([i, e.data, e.lastEventId]));
}
`;

let server: Http2SecureServer;
let hub: Hub;
let origin: string;
let browser: Browser;
let context: BrowserContext;
let page: Page;
const sessions = new Set<ServerHttp2Session>();
/** Every /events request the server saw: its HTTP version and the session that carried it. */
const requests: { url: string; httpVersion: string; session: ServerHttp2Session | undefined }[] = [];

beforeAll(async () => {
  const cert = selfSignedCertificate();
  hub = createHub({ authorize: () => true, sse: { keepAlive: 15_000 } });
  const app = chain(
    (req, res, next) => {
      if (req.url?.startsWith('/events/')) {
        const stream = (req as unknown as { stream?: { session?: ServerHttp2Session } }).stream;
        requests.push({ url: req.url, httpVersion: req.httpVersion, session: stream?.session });
      }
      next();
    },
    mount('/events', hub.router() as never),
    (req, res, next) => {
      if (req.url === '/') {
        res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' }).end(PAGE);
      } else if (req.url === '/page.js') {
        res.writeHead(200, { 'Content-Type': 'text/javascript; charset=utf-8' }).end(SCRIPT);
      } else if (req.url === '/favicon.ico') {
        res.writeHead(204).end();
      } else next();
    },
  );
  server = http2.createSecureServer({ key: cert.key, cert: cert.cert, allowHTTP1: true }, app as never);
  server.on('session', (session) => {
    sessions.add(session);
    session.once('close', () => sessions.delete(session));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  origin = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;

  // playwright gives the browser a fresh temp profile (--user-data-dir) and removes it on close.
  browser = await launchChromium(['--ignore-certificate-errors']);
  context = await browser.newContext({ ignoreHTTPSErrors: true });
  context.setDefaultTimeout(WAIT);
  page = await context.newPage();
});

afterAll(async () => {
  await context?.close().catch(() => undefined);
  await browser?.close().catch(() => undefined);
  await hub?.close();
  if (server !== undefined) {
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    for (const s of sessions) s.destroy();
    await closed;
  }
});

interface Recorded {
  opened: number[];
  messages: [number, string, string][];
  errors: number;
}

test(`one page, ${STREAMS} EventSources over HTTP/2: all open at once on one connection, each gets its live events`, async () => {
  await page.goto(origin + '/');
  expect(await page.evaluate("performance.getEntriesByType('navigation')[0].nextHopProtocol")).toBe('h2');

  // All ten open (over HTTP/1.1 the seventh would wait for one of the first six to close).
  await page.waitForFunction((n) => (globalThis as unknown as { __es: Recorded }).__es.opened.length === n, STREAMS);
  expect(hub.stats().connections).toBe(STREAMS);

  // The server saw ten HTTP/2 streams, all on the one session that also carried the page.
  const streams = requests.filter((r) => r.url.startsWith('/events/stream-'));
  expect(streams.map((r) => r.httpVersion)).toEqual(new Array(STREAMS).fill('2.0'));
  expect(new Set(streams.map((r) => r.session)).size).toBe(1);
  expect(streams[0]!.session).toBeDefined();
  expect(sessions.size).toBe(1);

  // Live events: two rounds, each awaited before the next (every stream is live, not just open).
  const ids: string[][] = [];
  for (let round = 1; round <= 2; round++) {
    ids.push(
      await Promise.all(
        Array.from({ length: STREAMS }, (_, i) =>
          hub.publish(`stream-${i}`, `round ${round} for ${i}`, { event: 'tick' }),
        ),
      ),
    );
    await page.waitForFunction(
      (want) => (globalThis as unknown as { __es: Recorded }).__es.messages.length === want,
      round * STREAMS,
    );
  }
  const recorded = (await page.evaluate('window.__es')) as Recorded;
  expect(recorded.errors).toBe(0);
  for (let i = 0; i < STREAMS; i++) {
    expect(recorded.messages.filter(([n]) => n === i)).toEqual([
      [i, `round 1 for ${i}`, ids[0]![i]],
      [i, `round 2 for ${i}`, ids[1]![i]],
    ]);
  }
});
