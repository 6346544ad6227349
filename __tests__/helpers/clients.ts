/**
 * Raw clients for backpressure tests: one that never reads, one that can stop
 * and start reading. Both are destroyed by `cleanup()` (helpers/cleanup.ts).
 */
import { request, type IncomingMessage } from 'node:http';
import net from 'node:net';
import { StringDecoder } from 'node:string_decoder';
import { createParser, type ParsedEvent } from '../../lib/testing';
import { defer } from './cleanup';

/**
 * A raw client that sends the GET and then never reads: `pause()` before the
 * connection is even up, so not one byte of the response leaves the kernel.
 */
export async function pausedClient(port: number, path: string): Promise<net.Socket> {
  const socket = net.connect({ host: '127.0.0.1', port });
  socket.pause();
  socket.on('error', () => undefined); // a reset from the server is expected
  const closed = new Promise<void>((r) => socket.once('close', () => r()));
  defer(() => {
    socket.destroy();
    return closed;
  });
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  socket.write(
    `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nAccept: text/event-stream\r\nConnection: close\r\n\r\n`,
  );
  return socket;
}

/** A client that can stop reading (`pause()`: the socket is no longer read once 16 KiB are buffered) and resume. */
export interface PausableClient<T> {
  /** What `keep` made of each event, in arrival order. */
  readonly events: T[];
  pause(): void;
  resume(): void;
}

/** Opens `path` and keeps `keep(event)` for every event; rejects unless the answer is 200. */
export function pausableClient<T>(
  port: number,
  path: string,
  headers: Record<string, string>,
  keep: (event: ParsedEvent) => T,
): Promise<PausableClient<T>> {
  return new Promise((resolve, reject) => {
    const events: T[] = [];
    const parser = createParser((ev) => events.push(keep(ev)));
    const req = request(
      { host: '127.0.0.1', port, path, agent: false, headers: { Accept: 'text/event-stream', ...headers } },
      (res: IncomingMessage) => {
        if (res.statusCode !== 200) {
          res.destroy();
          reject(new Error(`pausable client: ${path} answered ${res.statusCode}`));
          return;
        }
        const decoder = new StringDecoder('utf8');
        res.on('data', (chunk: Buffer) => parser.feed(decoder.write(chunk)));
        res.on('error', () => undefined);
        resolve({ events, pause: () => res.pause(), resume: () => res.resume() });
      },
    );
    req.on('error', reject);
    const closed = new Promise<void>((r) => req.once('close', () => r()));
    defer(() => {
      req.destroy();
      return closed;
    });
    req.end();
  });
}
