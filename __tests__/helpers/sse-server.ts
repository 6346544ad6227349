/**
 * Servers and streams for sse() and hub tests on 127.0.0.1. Everything made
 * here is closed by `cleanup()` (helpers/cleanup.ts), newest first.
 */
import type { RequestListener, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import { sse, type Hub, type SseMiddleware, type SseOptions } from '../../lib';
import {
  closeServer,
  expectEvents,
  listen,
  openStream,
  runningClocks,
  type OpenStreamOptions,
  type TestStream,
} from '../../lib/testing';
import { defer } from './cleanup';
import type { Handler, Host, Mw, Req, Route } from './hosts';
import { until } from './wait';

/** Serves `handler` (an Express app or any request listener) on a free loopback port. */
export async function serve(handler: RequestListener): Promise<{ server: Server; port: number }> {
  const server = await listen(handler);
  defer(() => closeServer(server));
  return { server, port: (server.address() as AddressInfo).port };
}

/** `host`'s app with `before` in front of `routes`, served. */
export async function start(host: Host, before: Mw[], routes: Route[]): Promise<Server> {
  return (await serve(host.app(before, routes))).server;
}

/** Opens a stream (the test kit's client); `options` for the method, body and timeouts. */
export async function open(
  server: Server,
  path: string,
  headers: Record<string, string> = {},
  options: Omit<OpenStreamOptions, 'headers'> = {},
): Promise<TestStream> {
  const s = await openStream({ server, path }, { ...options, headers });
  defer(() => s.close());
  return s;
}

export function useSse(options?: SseOptions): SseMiddleware {
  const mw = sse(options);
  defer(() => mw.close());
  return mw;
}

export function useHub(hub: Hub): Hub {
  defer(() => hub.close());
  return hub;
}

/** Every stream has ended: no shared stream clock may be left running. */
export async function expectNoRunningClocks(): Promise<void> {
  await until(() => runningClocks() === 0, 'every shared timer to stop', 5000);
  expect(runningClocks()).toBe(0);
}

/** Server side of one request, handed from the route to the test. */
export interface Seen {
  req: Req;
  res: ServerResponse;
  /** res.listenerCount('close') before the stream opened. */
  closeListenersBefore: number;
}

/** A route handler that records each request (after `then` ran) for the test to pick up with `next()`. */
export function inbox(then: (req: Req, res: ServerResponse) => void = (_req, res) => void res.sse.open()) {
  const seen: Seen[] = [];
  const waiting: Array<(s: Seen) => void> = [];
  const handler: Handler = (req, res) => {
    const entry: Seen = { req, res, closeListenersBefore: res.listenerCount('close') };
    then(req, res);
    const w = waiting.shift();
    if (w) w(entry);
    else seen.push(entry);
  };
  function next(timeoutMs = 5000): Promise<Seen> {
    const ready = seen.shift();
    if (ready) return Promise.resolve(ready);
    return new Promise<Seen>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no request reached the route')), timeoutMs);
      waiting.push((s) => {
        clearTimeout(timer);
        resolve(s);
      });
    });
  }
  return { handler, next };
}

/** An app with one sse() route at /s that opens, says hello, and keeps each response by its `x-name` header. */
export function helloApp(mw: SseMiddleware): { app: express.Express; held: Map<string, ServerResponse> } {
  const held = new Map<string, ServerResponse>();
  const app = express();
  app.get('/s', mw, (req, res) => {
    if (!res.sse.send('hello')) return;
    const name = req.headers['x-name'];
    if (typeof name === 'string') held.set(name, res);
  });
  return { app, held };
}

/** The head every admitted stream carries. */
export const SSE_HEAD = {
  'content-type': 'text/event-stream; charset=utf-8',
  'cache-control': 'no-cache, no-transform',
  'x-accel-buffering': 'no',
};

/** Asserts an admitted helloApp stream: 200, the stream head, `hello` first. */
export async function expectAdmitted(s: TestStream): Promise<void> {
  expect(s.status).toBe(200);
  expect(s.headers).toMatchObject(SSE_HEAD);
  expectEvents(await s.waitFor(1), [{ data: 'hello', event: 'message' }]);
  expect(s.ended).toBe(false);
}

/** Asserts the maxConnections refusal: 200 with the stream head, exactly `retry: <n>\n\n`, ended; returns n. */
export async function expectRetryOnly(s: TestStream): Promise<number> {
  expect(s.status).toBe(200);
  expect(s.headers).toMatchObject(SSE_HEAD);
  await s.waitForEnd();
  const m = /^retry: (\d+)\n\n$/.exec(s.raw());
  expect(m).not.toBeNull();
  const n = Number(m![1]);
  expect(n).toBeGreaterThanOrEqual(1000); // a few seconds
  expect(n).toBeLessThanOrEqual(10000);
  expect(s.events).toEqual([]);
  return n;
}
