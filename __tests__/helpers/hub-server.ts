/** Shared fixtures: a hub (or any handler) on a real 127.0.0.1 server, and a lean counting SSE client. */
import express from 'express';
import http, { type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createHub, type Hub, type HubOptions } from '../../lib';
import { closeServer, listen, openStream, type TestStream } from '../../lib/testing';
import { defer } from './cleanup';

export interface HubServer {
  hub: Hub;
  server: Server;
  port: number;
  close(): Promise<void>;
}

/** A hub behind `app.use('/events', hub.router())` on a free loopback port. */
export async function startHub(options: Partial<HubOptions> = {}): Promise<HubServer> {
  const hub = createHub({ authorize: () => true, ...options });
  const app = express();
  app.use('/events', hub.router());
  const server = app.listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  const port = (server.address() as AddressInfo).port;
  return {
    hub,
    server,
    port,
    async close() {
      await hub.close();
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
}

/**
 * A client that keeps only counts and the ids it saw (no payloads), so many of
 * them can read big replays without the test's own memory hiding the server's.
 */
export interface CountingClient {
  readonly ids: string[];
  readonly events: string[];
  /** Resolves when `n` events arrived; rejects when the stream ended first or `ms` passed. */
  waitFor(n: number, ms?: number): Promise<void>;
  readonly ended: Promise<void>;
  pause(): void;
  resume(): void;
  close(): void;
}

export function countingClient(
  port: number,
  path: string,
  headers: Record<string, string> = {},
): Promise<CountingClient> {
  return new Promise((resolve, reject) => {
    const ids: string[] = [];
    const events: string[] = [];
    let carry: Buffer = Buffer.alloc(0);
    let id = '';
    let event = 'message';
    let inEvent = false;
    let waiter: { n: number; resolve: () => void; reject: (e: Error) => void } | undefined;
    let endResolve: () => void = () => undefined;
    const ended = new Promise<void>((r) => (endResolve = r));
    const check = (): void => {
      if (waiter !== undefined && ids.length >= waiter.n) {
        waiter.resolve();
        waiter = undefined;
      }
    };
    /** One line (without its LF): Buffers, not strings, so reading 20 MiB allocates little. */
    const line = (b: Buffer, from: number, to: number): void => {
      if (to === from) {
        if (inEvent) {
          ids.push(id);
          events.push(event);
        }
        inEvent = false;
        event = 'message';
        return;
      }
      const c = b[from];
      if (c === 0x69 /* i */ && b[from + 1] === 0x64 && b[from + 2] === 0x3a) {
        id = b.toString('latin1', from + 4, to);
        inEvent = true;
      } else if (c === 0x65 /* e */ && b[from + 5] === 0x3a) {
        event = b.toString('latin1', from + 7, to);
        inEvent = true;
      } else if (c === 0x64 /* d */) {
        inEvent = true;
      }
    };
    const req = http.get(
      { host: '127.0.0.1', port, path, agent: false, headers: { Accept: 'text/event-stream', ...headers } },
      (res) => {
        if (res.statusCode !== 200) {
          reject(new Error(`answered ${res.statusCode}`));
          res.resume();
          return;
        }
        res.on('data', (chunk: Buffer) => {
          const b = carry.length === 0 ? chunk : Buffer.concat([carry, chunk]);
          let from = 0;
          let nl: number;
          while ((nl = b.indexOf(10, from)) !== -1) {
            line(b, from, nl);
            from = nl + 1;
          }
          carry = from === b.length ? Buffer.alloc(0) : Buffer.from(b.subarray(from));
          check();
        });
        const done = (): void => {
          endResolve();
          if (waiter !== undefined) {
            waiter.reject(new Error(`the stream ended after ${ids.length} of ${waiter.n} events`));
            waiter = undefined;
          }
        };
        res.on('end', done);
        res.on('close', done);
        res.on('error', done);
        resolve({
          ids,
          events,
          ended,
          waitFor(n, ms = 30_000) {
            if (ids.length >= n) return Promise.resolve();
            return new Promise<void>((ok, fail) => {
              const timer = setTimeout(
                () => fail(new Error(`timed out after ${ms} ms with ${ids.length} of ${n} events`)),
                ms,
              );
              waiter = {
                n,
                resolve: () => {
                  clearTimeout(timer);
                  ok();
                },
                reject: (e) => {
                  clearTimeout(timer);
                  fail(e);
                },
              };
            });
          },
          pause: () => res.pause(),
          resume: () => res.resume(),
          close: () => req.destroy(),
        });
      },
    );
    req.on('error', reject);
  });
}

/** The seq of a one-partition id `<epoch>.<seq>`. */
export function seqOf(id: string): number {
  return Number(id.slice(id.lastIndexOf('.') + 1));
}

/**
 * A hub behind `app.use('/events', hub.router())`, closed (with its server) by
 * the file's `afterEach(cleanup)` (helpers/cleanup.ts); `base` is its URL.
 */
export async function expressHub(
  options: Partial<HubOptions> = {},
): Promise<{ hub: Hub; server: Server; base: string }> {
  const hub = createHub({ authorize: () => true, ...options });
  const app = express();
  app.use('/events', hub.router());
  const server = await listen(app);
  defer(async () => {
    await hub.close();
    await closeServer(server);
  });
  return { hub, server, base: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

/** openStream, closed by the file's `afterEach(cleanup)`. */
export async function openDeferred(url: string, headers: Record<string, string> = {}): Promise<TestStream> {
  const s = await openStream(url, { headers });
  defer(() => s.close());
  return s;
}
