'use strict';
// One server under test, in its own process. argv: <kind> <json options>
//   kind: raw | raw-direct | better-sse | sse-relay | sse-relay-redis | publisher-redis
//   options: { redisUrl, channels, hubOptions, env } (hubOptions: extra createHub options; env: extra
//   environment, both for A/B rows and experiments)
// Every GET is an event stream on the channel "bench" (channels > 1, sse-relay
// servers: on "bench" and "bench.1" ... "bench.<channels-1>", with the events
// published round-robin over them). Commands arrive over
// IPC (see serveRpc): count, mark, publish, read, mem, exit.
const http = require('node:http');
const { payloadMaker, serveRpc } = require('./common');

const kind = process.argv[2];
const options = JSON.parse(process.argv[3] || '{}');
// A row's environment (e.g. SSE_RELAY_WRITE_PATH=node for the A/B rows), before the library loads.
Object.assign(process.env, options.env);
const CHANNEL = 'bench';
const CHANNELS = Array.from({ length: options.channels || 1 }, (_, i) => (i === 0 ? CHANNEL : `${CHANNEL}.${i}`));
const EVENT = 'tick';
const now = () => process.hrtime.bigint();
const CRLF = Buffer.from('\r\n', 'latin1');

const STREAM_HEADERS = {
  'Content-Type': 'text/event-stream; charset=utf-8',
  'Cache-Control': 'no-cache, no-transform',
  Connection: 'keep-alive',
  'X-Accel-Buffering': 'no',
};

let handle; // (req, res) => void
let publishOne; // (data, seq) => void | Promise
let subscribers; // () => number
let delivered = () => Infinity; // frames handed to streams (for the Redis in-flight gate)
let hub;

/** The raw servers' stream handler: the head flushed at once, Nagle off, the response kept in `clients`. */
function rawHandler(clients) {
  return (req, res) => {
    res.writeHead(200, STREAM_HEADERS);
    res.flushHeaders();
    req.socket.setNoDelay(true);
    clients.add(res);
    res.on('close', () => clients.delete(res));
  };
}

if (kind === 'raw') {
  // The baseline: plain node:http, each event encoded once into a Buffer and
  // written to every response.
  const clients = new Set();
  handle = rawHandler(clients);
  publishOne = (data, seq) => {
    const frame = Buffer.from('id: ' + seq + '\nevent: ' + EVENT + '\ndata: ' + data + '\n\n');
    for (const res of clients) res.write(frame);
  };
  subscribers = () => clients.size;
} else if (kind === 'raw-direct') {
  // A control, not a contender (opt-in: --servers raw,raw-direct,...): raw, but written the way
  // sse-relay's direct path writes (lib/stream/direct.ts): the frames of one turn joined into one
  // HTTP/1.1 chunk, encoded once, one socket.write per client at the end of the turn. Same bytes on
  // the wire as raw; it tells what the write pattern alone does to a row (e.g. the kernel's socket
  // buffers on loopback, which no writableNeedDrain check sees).
  const clients = new Set();
  handle = rawHandler(clients);
  let frames = [];
  const writeTurn = () => {
    const body = Buffer.concat(frames);
    frames = [];
    const chunk = Buffer.concat([Buffer.from(body.length.toString(16) + '\r\n', 'latin1'), body, CRLF]);
    for (const res of clients) res.socket.write(chunk);
  };
  publishOne = (data, seq) => {
    if (frames.length === 0) process.nextTick(writeTurn);
    frames.push(Buffer.from('id: ' + seq + '\nevent: ' + EVENT + '\ndata: ' + data + '\n\n'));
  };
  subscribers = () => clients.size;
} else if (kind === 'better-sse') {
  // better-sse's idiomatic channel: createSession + channel.register + channel.broadcast.
  const { createSession, createChannel } = require('better-sse');
  const channel = createChannel();
  handle = (req, res) => {
    createSession(req, res).then(
      (session) => channel.register(session),
      () => res.destroy(),
    );
  };
  publishOne = (data) => {
    channel.broadcast(data, EVENT);
  };
  subscribers = () => channel.sessionCount;
} else if (kind === 'sse-relay' || kind === 'sse-relay-redis' || kind === 'publisher-redis') {
  const lib = require('../dist');
  let broker;
  if (kind !== 'sse-relay') {
    if (typeof lib.RedisBroker !== 'function') throw new Error('RedisBroker is not exported by dist/');
    broker = new lib.RedisBroker({ url: options.redisUrl });
  }
  hub = lib.createHub({ ...options.hubOptions, authorize: () => true, broker });
  const select = CHANNELS.length === 1 ? () => CHANNEL : () => CHANNELS;
  const handler = hub.subscribe(select);
  handle = (req, res) =>
    handler(req, res, (err) => {
      res.statusCode = err ? 500 : 404;
      res.end();
    });
  publishOne =
    CHANNELS.length === 1
      ? (data) => hub.publish(CHANNEL, data, { event: EVENT })
      : (data, seq) => hub.publish(CHANNELS[seq % CHANNELS.length], data, { event: EVENT });
  subscribers = () => hub.stats().connections;
  delivered = () => hub.stats().delivered;
} else {
  throw new Error('unknown server kind ' + kind);
}

// ---- HTTP ------------------------------------------------------------------

const sockets = new Set();
let server;
function listen() {
  server = http.createServer(handle);
  server.keepAliveTimeout = 0;
  server.requestTimeout = 0;
  server.headersTimeout = 60_000;
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ port: 0, host: '127.0.0.1', backlog: 4096 }, () => resolve(server.address().port));
  });
}

// ---- backpressure ----------------------------------------------------------

// How long the publisher waited for backpressure (reported with each publish).
const waits = { drain: 0, drainMs: 0, drainTimeouts: 0 };

/** Waits (bounded) until no socket has a write that returned false pending. */
async function drainAll(deadline) {
  const started = process.hrtime.bigint();
  let waited = false;
  for (;;) {
    let stuck;
    for (const s of sockets) {
      if (s.writableNeedDrain && !s.destroyed) {
        stuck = s;
        break;
      }
    }
    if (stuck === undefined) {
      if (waited) waits.drainMs += Number(process.hrtime.bigint() - started) / 1e6;
      return;
    }
    if (process.hrtime.bigint() > deadline) throw new Error('sockets did not drain in time');
    if (!waited) waits.drain++;
    waited = true;
    await new Promise((resolve) => {
      const done = (timedOut) => {
        if (timedOut === true) waits.drainTimeouts++;
        clearTimeout(timer);
        stuck.off('drain', done);
        stuck.off('close', done);
        resolve();
      };
      const timer = setTimeout(done, 50, true);
      stuck.once('drain', done);
      stuck.once('close', done);
    });
  }
}

/** Waits until every socket's user-space buffer is empty (everything handed to the kernel). */
async function flushedAll(deadline) {
  for (;;) {
    let pending = false;
    for (const s of sockets) {
      if (s.writableLength > 0 && !s.destroyed) {
        pending = true;
        break;
      }
    }
    if (!pending) return;
    if (process.hrtime.bigint() > deadline) throw new Error('sockets did not flush in time');
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

const yieldTurn = () => new Promise((resolve) => setImmediate(resolve));
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// ---- measurement window ----------------------------------------------------

let mark = null;
let sampler;
function startMark() {
  const m = process.memoryUsage();
  mark = { t: now(), cpu: process.cpuUsage(), peakRss: m.rss, peakHeap: m.heapUsed, start: m };
  clearInterval(sampler);
  sampler = setInterval(() => {
    const u = process.memoryUsage();
    if (u.rss > mark.peakRss) mark.peakRss = u.rss;
    if (u.heapUsed > mark.peakHeap) mark.peakHeap = u.heapUsed;
  }, 250);
  sampler.unref();
}

// ---- commands --------------------------------------------------------------

serveRpc({
  count: () => ({ subscribers: subscribers(), sockets: sockets.size }),

  mark: () => {
    startMark();
    return {};
  },

  /**
   * Publishes n events of `size` characters in batches of `batch`, yielding a
   * turn between batches and waiting while any socket is backed up (and, for a
   * Redis hub, while more than `lag` events are still on their way back from
   * Redis). rate 0: as fast as that allows; rate > 0: paced at `rate` events/s.
   */
  publish: async ({ n, size, rate, batch, lag, timeoutMs }) => {
    const make = payloadMaker(size);
    const deadline = now() + BigInt(timeoutMs) * 1_000_000n;
    const clients = Math.max(1, subscribers());
    waits.drain = waits.drainMs = waits.drainTimeouts = 0;
    const t0 = now();
    let seq = 0;
    // rate > 0: `batch` events every batch/rate seconds (absolute schedule, no drift).
    const interval = rate > 0 ? (1000 * batch) / rate : 0;
    const start = Date.now();
    const pending = [];
    const batchUs = [];
    for (let tick = 0; seq < n; tick++) {
      if (rate > 0) {
        const wait = start + tick * interval - Date.now();
        if (wait > 0) await sleep(wait);
      }
      const k = Math.min(batch, n - seq);
      const tBatch = now();
      for (let j = 0; j < k; j++) {
        seq++;
        const p = publishOne(make(seq), seq);
        if (p) pending.push(p);
      }
      // Server-side fan-out time of this batch: first payload -> every write issued
      // (the check phase after the turn's writes), without the clients' share.
      setImmediate(() => batchUs.push(Number(now() - tBatch) / 1000));
      if (pending.length > 0) {
        await Promise.all(pending);
        pending.length = 0;
      }
      await yieldTurn();
      await drainAll(deadline);
      if (hub !== undefined && kind !== 'publisher-redis') {
        // Streams the server cut (a flood) no longer take deliveries: count the ones still open.
        while (delivered() < (seq - lag) * Math.min(clients, subscribers())) {
          if (now() > deadline) throw new Error('events did not come back from the broker in time');
          await sleep(1);
        }
      }
      if (now() > deadline) throw new Error('publishing took too long');
    }
    const t1 = now();
    batchUs.sort((a, b) => a - b);
    const at = (q) => batchUs[Math.min(batchUs.length - 1, Math.floor(q * batchUs.length))];
    const batchFanout = { n: batchUs.length, p50Us: at(0.5), p99Us: at(0.99), maxUs: batchUs[batchUs.length - 1] };
    return { t0: String(t0), t1: String(t1), published: seq, waits: { ...waits }, batchFanout };
  },

  /** Closes the measurement window once every byte left user space. */
  read: async ({ timeoutMs }) => {
    if (mark === null) throw new Error('read without mark');
    await flushedAll(now() + BigInt(timeoutMs) * 1_000_000n);
    const cpu = process.cpuUsage(mark.cpu);
    const m = process.memoryUsage();
    clearInterval(sampler);
    return {
      t0: String(mark.t),
      t1: String(now()),
      cpuUser: cpu.user,
      cpuSystem: cpu.system,
      rss: m.rss,
      heapUsed: m.heapUsed,
      peakRss: Math.max(mark.peakRss, m.rss),
      peakHeap: Math.max(mark.peakHeap, m.heapUsed),
      delivered: hub === undefined ? undefined : hub.stats().delivered,
      dropped: hub === undefined ? undefined : hub.stats().dropped,
    };
  },

  /** Heap and RSS after full garbage collections (needs --expose-gc). */
  mem: async () => {
    for (let i = 0; i < 4; i++) {
      globalThis.gc();
      await sleep(50);
    }
    const m = process.memoryUsage();
    return { rss: m.rss, heapUsed: m.heapUsed, external: m.external, arrayBuffers: m.arrayBuffers };
  },

  exit: () => {
    setTimeout(() => process.exit(0), 20);
    return {};
  },
});

(async () => {
  const port = kind === 'publisher-redis' ? 0 : await listen();
  process.send({ type: 'ready', port, pid: process.pid });
})().catch((err) => {
  process.send({ type: 'fatal', error: String((err && err.stack) || err) });
  setTimeout(() => process.exit(1), 20);
});
