'use strict';
// A load generator: many raw TCP streams to one server, in its own process.
// Per read it takes one clock reading, counts "\n\n"-terminated frames, and
// for every "t=<ns>;" in the stream records publish -> receive latency.
// Chunked transfer-encoding is not decoded: every server under test writes
// whole frames per write(), so a chunk boundary never splits a frame, and the
// chunk-size lines ("\r\n1a\r\n") contain neither "\n\n" nor "t=".
const net = require('node:net');
const { BUCKETS, bucketOf, serveRpc } = require('./common');

const MARK = Buffer.from('t=');
const NL = 10;
const T = 116; // 't'
const EQ = 61; // '='
const SEMI = 59; // ';'

let hist = new Uint32Array(BUCKETS);
let received = 0; // events (timestamps) seen
let frames = 0; // "\n\n"-terminated frames, keep-alives and retry: included
let bytes = 0;
let lastRecv = 0; // ns, CLOCK_MONOTONIC like the server's hrtime
let firstRecv = 0;
let cpu0 = process.cpuUsage();
let t0 = process.hrtime.bigint();

let sockets = [];
let opened = 0; // streams that got a 200 head
let failed = 0; // streams refused or closed before their head
let closedEarly = 0; // open streams closed by the server
let errors = 0;
let lastError = '';
let closing = false;

function record(now, ts) {
  received++;
  lastRecv = now;
  if (firstRecv === 0) firstRecv = now;
  hist[bucketOf((now - ts) / 1000)]++;
}

/** Reads timestamp digits from p; returns where it stopped (st.dig stays true if the read ended first). */
function digits(st, buf, p, now) {
  let v = st.v;
  const len = buf.length;
  while (p < len) {
    const c = buf[p++];
    if (c === SEMI) {
      st.dig = false;
      record(now, v);
      return p;
    }
    v = v * 10 + (c - 48);
  }
  st.v = v;
  return p;
}

function scan(st, buf, from, now) {
  const len = buf.length;
  if (from >= len) return;
  // Frames: count "\n\n", also when the pair straddles two reads.
  let i = from;
  if (st.nl && buf[i] === NL) {
    frames++;
    i++;
  }
  st.nl = false;
  while ((i = buf.indexOf(NL, i)) !== -1) {
    if (i + 1 === len) {
      st.nl = true;
      break;
    }
    if (buf[i + 1] === NL) {
      frames++;
      i += 2;
    } else i++;
  }
  // Timestamps: "t=<digits>;", any part of which may end a read.
  let p = from;
  if (st.dig) p = digits(st, buf, p, now);
  else if (st.t && buf[p] === EQ) {
    st.dig = true;
    st.v = 0;
    p = digits(st, buf, p + 1, now);
  }
  while (!st.dig && p < len && (p = buf.indexOf(MARK, p)) !== -1) {
    st.dig = true;
    st.v = 0;
    p = digits(st, buf, p + 2, now);
  }
  st.t = !st.dig && buf[len - 1] === T;
}

function onData(buf) {
  const st = this.st;
  const now = Number(process.hrtime.bigint());
  bytes += buf.length;
  if (st.head !== null) {
    const prev = st.head.length;
    st.head += buf.toString('latin1');
    const end = st.head.indexOf('\r\n\r\n');
    if (end === -1) {
      if (st.head.length > 16384) this.destroy();
      return;
    }
    const status = st.head.slice(0, 12);
    st.head = null;
    if (status !== 'HTTP/1.1 200') {
      failed++;
      lastError = 'status ' + status;
      st.refused = true;
      this.destroy();
      st.done();
      return;
    }
    st.open = true;
    opened++;
    st.done();
    scan(st, buf, end + 4 - prev, now);
    return;
  }
  scan(st, buf, 0, now);
}

function connect({ port, count, path, concurrency }) {
  closing = false;
  failed = 0;
  closedEarly = 0;
  errors = 0;
  lastError = '';
  const request = Buffer.from(
    `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n`,
  );
  return new Promise((resolve) => {
    let started = 0;
    let settled = 0;
    const target = count;
    const next = () => {
      while (started < target && started - settled < concurrency) open();
      if (settled === target) resolve({ opened, failed, errors, lastError });
    };
    const open = () => {
      started++;
      const socket = net.connect({ port, host: '127.0.0.1' });
      let counted = false;
      const st = {
        head: '',
        open: false,
        refused: false,
        nl: false,
        t: false,
        dig: false,
        v: 0,
        done: () => {
          if (counted) return;
          counted = true;
          settled++;
          next();
        },
      };
      socket.st = st;
      socket.on('connect', () => socket.write(request));
      socket.on('data', onData);
      socket.on('error', (err) => {
        errors++;
        lastError = err.code || err.message;
      });
      socket.on('close', () => {
        if (!st.open && !st.refused) {
          failed++;
          st.done();
        } else if (st.open && !closing) closedEarly++;
      });
      sockets.push(socket);
    };
    next();
  });
}

serveRpc({
  connect: (msg) => connect(msg),

  /** Starts a measurement window: zero the counters. */
  reset: () => {
    hist = new Uint32Array(BUCKETS);
    received = 0;
    frames = 0;
    bytes = 0;
    lastRecv = 0;
    firstRecv = 0;
    cpu0 = process.cpuUsage();
    t0 = process.hrtime.bigint();
    return {};
  },

  stats: ({ withHist }) => {
    const cpu = process.cpuUsage(cpu0);
    return {
      received,
      frames,
      bytes,
      firstRecv,
      lastRecv,
      t0: String(t0),
      tNow: String(process.hrtime.bigint()),
      cpuUser: cpu.user,
      cpuSystem: cpu.system,
      opened,
      failed,
      closedEarly,
      errors,
      lastError,
      hist: withHist ? Array.from(hist) : undefined,
    };
  },

  /** Closes every stream (the client side sends FIN). */
  close: () => {
    closing = true;
    for (const s of sockets) s.destroy();
    sockets = [];
    opened = 0;
    return {};
  },

  exit: () => {
    closing = true;
    setTimeout(() => process.exit(0), 20);
    return {};
  },
});

process.send({ type: 'ready', pid: process.pid });
