'use strict';
// Shared by run.js, server.js and client.js: the latency histogram, the event
// payload and a tiny request/reply layer over the IPC channel.

// Log buckets of ~1% width over microseconds: bucket 0 = < 1 µs, bucket b
// (b >= 1) = [e^((b-1)/100), e^(b/100)) µs. 2100 buckets reach ~1,300 s.
const BUCKETS = 2100;

function bucketOf(us) {
  if (!(us >= 1)) return 0;
  const b = 1 + Math.floor(Math.log(us) * 100);
  return b < BUCKETS ? b : BUCKETS - 1;
}

/** The value (µs) at quantile q (0..1) of a histogram (array of counts). */
function quantile(hist, q) {
  let total = 0;
  for (let i = 0; i < hist.length; i++) total += hist[i];
  if (total === 0) return NaN;
  const rank = Math.max(1, Math.ceil(q * total));
  let seen = 0;
  for (let b = 0; b < hist.length; b++) {
    seen += hist[b];
    if (seen >= rank) return b === 0 ? 0.5 : Math.exp((b - 0.5) / 100);
  }
  return NaN;
}

function mergeHist(into, from) {
  for (let i = 0; i < from.length; i++) into[i] += from[i];
  return into;
}

// The event data: "t=<process.hrtime.bigint() at publish>;<seq>;xxxx…" padded to
// `size` characters. No CR/LF, no '=' anywhere else, so a client finds the
// timestamp with one indexOf('t=') and never needs to parse the frame.
function payloadMaker(size) {
  const pad = 'x'.repeat(size);
  return (seq) => {
    const head = 't=' + process.hrtime.bigint() + ';' + seq + ';';
    return size > head.length ? head + pad.slice(0, size - head.length) : head;
  };
}

/** Answers `{ id, cmd, ...args }` messages from the parent with `{ id, ok, ...result }` or `{ id, error }`. */
function serveRpc(handlers) {
  process.on('message', (msg) => {
    if (msg === null || typeof msg !== 'object' || msg.id === undefined) return;
    const handler = handlers[msg.cmd];
    Promise.resolve()
      .then(() => {
        if (handler === undefined) throw new Error('unknown command ' + msg.cmd);
        return handler(msg);
      })
      .then(
        (result) => process.send({ id: msg.id, ok: true, ...result }),
        (err) => process.send({ id: msg.id, error: String((err && err.stack) || err) }),
      );
  });
  // The orchestrator went away (even killed with SIGKILL): never linger.
  process.on('disconnect', () => process.exit(0));
}

module.exports = { BUCKETS, bucketOf, quantile, mergeHist, payloadMaker, serveRpc };
