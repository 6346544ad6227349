/**
 * HTTP/2 for real: sse() and a hub served by node:http2's
 * createSecureServer({ allowHTTP1: true }) through a bare Connect-style chain
 * (Express has no HTTP/2), with a certificate made at test time, read by
 * node:http2's own client: the exact head and bytes, no hop-by-hop header,
 * ten streams on one connection, and flow control: a stream whose reader
 * stopped is cut at maxBufferedBytes while the other streams of the same
 * connection keep flowing.
 */
import http2, { type ClientHttp2Session, type ClientHttp2Stream, type Http2SecureServer } from 'node:http2';
import https from 'node:https';
import type { IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createHub, sse, type Hub } from '../lib';
import { createParser, type ParsedEvent } from '../lib/testing';
import { selfSignedCertificate, type Certificate } from './helpers/certificate';
import { chain, mount } from './helpers/connect-chain';
import { until } from './helpers/wait';

let cert: Certificate;
let server: Http2SecureServer;
let hub: Hub;
let origin: string;
let tcpConnections = 0;
const events = sse({ keepAlive: false });
const sessions: ClientHttp2Session[] = [];
const serverSessions = new Set<http2.ServerHttp2Session>();
const http1Sockets = new Set<import('node:tls').TLSSocket>();

beforeAll(async () => {
  cert = selfSignedCertificate();
  hub = createHub({ authorize: () => true, sse: { keepAlive: false, maxBufferedBytes: 64 * 1024 } });
  const app = chain(events as never, mount('/events', hub.router() as never), (req, res, next) => {
    if (req.url !== '/hello') return next();
    res.sse.retry(2000);
    res.sse.send('a\nb', { event: 'greeting', id: '1' });
  });
  server = http2.createSecureServer({ key: cert.key, cert: cert.cert, allowHTTP1: true }, app as never);
  server.on('secureConnection', (socket) => {
    tcpConnections++;
    http1Sockets.add(socket);
    socket.once('close', () => http1Sockets.delete(socket));
  });
  server.on('session', (session) => {
    serverSessions.add(session);
    session.once('close', () => serverSessions.delete(session));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  origin = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  // Streams first (retry: + end), then the client sessions, then the server's own sessions.
  await hub.close();
  events.close();
  for (const s of sessions) s.destroy();
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  for (const s of serverSessions) s.destroy();
  for (const socket of http1Sockets) socket.destroy();
  await closed;
});

function connect(): Promise<ClientHttp2Session> {
  const session = http2.connect(origin, { ca: cert.cert });
  sessions.push(session);
  session.on('error', () => undefined);
  return new Promise((resolve, reject) => {
    session.once('connect', () => resolve(session));
    session.once('error', reject);
  });
}

interface H2Stream {
  stream: ClientHttp2Stream;
  headers: http2.IncomingHttpHeaders & http2.IncomingHttpStatusHeader;
  bytes(): string;
  events: ParsedEvent[];
  closed: Promise<number>;
}

async function get(session: ClientHttp2Session, path: string, headers: Record<string, string> = {}): Promise<H2Stream> {
  const stream = session.request({ ':path': path, accept: 'text/event-stream', ...headers });
  const chunks: Buffer[] = [];
  const received: ParsedEvent[] = [];
  const parser = createParser((ev) => received.push(ev));
  stream.on('data', (chunk: Buffer) => {
    chunks.push(chunk);
    parser.feed(chunk.toString('utf8'));
  });
  stream.on('error', () => undefined);
  const closed = new Promise<number>((resolve) => stream.once('close', () => resolve(stream.rstCode ?? 0)));
  const head = await new Promise<H2Stream['headers']>((resolve, reject) => {
    stream.once('response', resolve);
    stream.once('error', reject);
  });
  return { stream, headers: head, bytes: () => Buffer.concat(chunks).toString('utf8'), events: received, closed };
}

test('sse(): the stream head over HTTP/2 has no Connection header; exact bytes', async () => {
  const session = await connect();
  const s = await get(session, '/hello');
  expect(s.headers[':status']).toBe(200);
  expect(s.headers['content-type']).toBe('text/event-stream; charset=utf-8');
  expect(s.headers['cache-control']).toBe('no-cache, no-transform');
  expect(s.headers['x-accel-buffering']).toBe('no');
  expect(s.headers.connection).toBeUndefined();
  expect(s.headers['keep-alive']).toBeUndefined();
  expect(s.headers['transfer-encoding']).toBeUndefined();
  const want = 'retry: 2000\n\nid: 1\nevent: greeting\ndata: a\ndata: b\n\n';
  await until(() => s.bytes().length >= want.length, 'the frames');
  expect(s.bytes()).toBe(want);
  s.stream.close();
  await s.closed;
  await until(() => events.connections === 0, 'the sse() stream to close');
});

test('the same server over HTTP/1.1 (allowHTTP1) still sends Connection: keep-alive', async () => {
  const res = await new Promise<IncomingMessage>((resolve, reject) => {
    const req = https.request(
      `${origin}/hello`,
      { ca: cert.cert, ALPNProtocols: ['http/1.1'], agent: false } as https.RequestOptions,
      resolve,
    );
    req.on('error', reject);
    req.end();
  });
  expect(res.httpVersion).toBe('1.1');
  expect(res.headers.connection).toBe('keep-alive');
  expect(res.headers['content-type']).toBe('text/event-stream; charset=utf-8');
  res.destroy();
  await until(() => events.connections === 0, 'the HTTP/1.1 stream to close');
});

test('a hub stream over HTTP/2: exact bytes of a published event, resume with Last-Event-ID', async () => {
  const session = await connect();
  const s = await get(session, '/events/order:1');
  expect(s.headers[':status']).toBe(200);
  expect(s.headers.connection).toBeUndefined();
  await until(() => hub.stats().connections === 1, 'the hub stream');
  const id = await hub.publish('order:1', '<b>Shipped</b>', { event: 'status' });
  await until(() => s.events.length === 1, 'the event');
  expect(s.bytes()).toBe(`id: ${id}\nevent: status\ndata: <b>Shipped</b>\n\n`);
  s.stream.close();
  await s.closed;
  await until(() => hub.stats().connections === 0, 'the server to see the stream close');
  const next = await hub.publish('order:1', 'after');
  const resumed = await get(session, '/events/order:1', { 'last-event-id': id });
  await until(() => resumed.events.length === 1, 'the replayed event');
  expect(resumed.bytes()).toBe(`id: ${next}\ndata: after\n\n`);
  resumed.stream.close();
  await resumed.closed;
  await until(() => hub.stats().connections === 0, 'the hub streams to close');
});

test('one client, ten streams on ONE connection, all live', async () => {
  const before = tcpConnections;
  const session = await connect();
  const streams = await Promise.all(
    Array.from({ length: 10 }, (_, i) => get(session, `/events?channel=room&channel=own:${i}`)),
  );
  expect(tcpConnections - before).toBe(1);
  await until(() => hub.stats().connections === 10, 'ten hub streams');
  const ids: string[] = [];
  for (let n = 0; n < 5; n++) ids.push(await hub.publish('room', `m${n}`));
  for (let i = 0; i < 10; i++) await hub.publish(`own:${i}`, `only ${i}`);
  for (const [i, s] of streams.entries()) {
    await until(() => s.events.length === 6, `stream ${i}'s six events`);
    expect(s.events.map((e) => e.data)).toEqual(['m0', 'm1', 'm2', 'm3', 'm4', `only ${i}`]);
    expect(s.events.slice(0, 5).map((e) => e.id)).toEqual(ids);
  }
  for (const s of streams) s.stream.close();
  await Promise.all(streams.map((s) => s.closed));
  await until(() => hub.stats().connections === 0, 'the streams to close');
});

test('flow control: a stream whose reader stopped is cut at maxBufferedBytes; the other stream of the same connection gets every event', async () => {
  const session = await connect();
  // A browser-sized connection window, so one stalled stream (its own 64 KiB window full) cannot stall the connection.
  session.setLocalWindowSize(8 * 1024 * 1024);
  const stalled = await get(session, '/events/big');
  const healthy = await get(session, '/events/big');
  await until(() => hub.stats().connections === 2, 'two streams');
  stalled.stream.pause(); // stops reading: its HTTP/2 stream window is not replenished
  const droppedBefore = hub.stats().dropped;
  const chunk = 'z'.repeat(8 * 1024);
  const ids: string[] = [];
  for (let i = 0; i < 400 && hub.stats().dropped === droppedBefore; i++) {
    ids.push(await hub.publish('big', `${i}:${chunk}`));
    if (i % 8 === 7) await new Promise((r) => setImmediate(r)); // let the sockets move
  }
  expect(hub.stats().dropped).toBe(droppedBefore + 1);
  // The cut: the server reset the stalled stream; once its reader resumes, it sees the end
  // after only part of the events (it would reconnect and resume with Last-Event-ID).
  stalled.stream.resume();
  await stalled.closed;
  expect(stalled.events.length).toBeLessThan(ids.length);
  expect(stalled.events.map((e) => e.id)).toEqual(ids.slice(0, stalled.events.length));
  expect(session.destroyed).toBe(false);
  for (let i = 0; i < 5; i++) ids.push(await hub.publish('big', `tail ${i}`));
  await until(() => healthy.events.length === ids.length, `all ${ids.length} events on the healthy stream`, 20000);
  expect(healthy.events.map((e) => e.id)).toEqual(ids);
  expect(hub.stats().connections).toBe(1);
  healthy.stream.close();
  await healthy.closed;
});
