'use strict';
// A publish-rate worker, in its own process: one RedisBroker (on one Redis or
// on a Redis Cluster client) publishing as fast as `inflight` outstanding
// publishes allow. Commands arrive over IPC (see serveRpc): open, run, exit.
const { payloadMaker, serveRpc } = require('./common');

let broker;
let cluster;

/**
 * Opens the broker: { url } for one Redis, or { nodes: [{ host, port }] } for
 * a cluster (an ioredis Cluster client handed over as `{ redis }`, keys under
 * `prefix` when given). Replies
 * { unsupported } when this build refuses the cluster client.
 */
async function open({ url, nodes, prefix }) {
  const lib = require('../dist');
  if (typeof lib.RedisBroker !== 'function') throw new Error('RedisBroker is not exported by dist/');
  if (nodes === undefined) {
    broker = new lib.RedisBroker({ url });
    return connected();
  }
  const { Cluster } = require('ioredis');
  cluster = new Cluster(nodes, { enableReadyCheck: true, lazyConnect: false });
  cluster.on('error', () => undefined); // reported by the publishes that fail
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('cluster client not ready in 10 s')), 10_000);
    cluster.once('ready', () => {
      clearTimeout(timer);
      resolve();
    });
  });
  try {
    broker = new lib.RedisBroker(prefix === undefined ? { redis: cluster } : { redis: cluster, prefix });
  } catch (err) {
    return { unsupported: String(err.message || err) };
  }
  return connected();
}

/**
 * One publish before any burst: the broker connects on its first command, and
 * 64 commands waiting for that connection would each add their own
 * ready/end listeners (ioredis MaxListenersExceededWarning), which is not
 * what this scenario measures.
 */
async function connected() {
  await broker.publish('bench.pr.connect', { data: 'connect' }, 1);
  return {};
}

/**
 * Publishes `n` events of `size` characters round-robin over `channels`
 * channels with at most `inflight` unresolved at once. Replies with the
 * time it took and this process's CPU.
 */
async function run({ n, inflight, size, channels, history, timeoutMs }) {
  const names = Array.from({ length: channels }, (_, i) => `bench.pr.${i}`);
  const make = payloadMaker(size);
  const deadline = Date.now() + timeoutMs;
  const burst = async (count) => {
    if (count === 0) return;
    let issued = 0;
    let done = 0;
    let failure;
    await new Promise((resolve) => {
      const next = () => {
        while (failure === undefined && issued < count && issued - done < inflight) {
          const seq = ++issued;
          broker.publish(names[seq % channels], { data: make(seq) }, history).then(
            () => {
              done++;
              if (done === count || (failure !== undefined && done === issued)) resolve();
              else if (Date.now() > deadline) {
                failure = failure || new Error(`publishing took over ${timeoutMs} ms`);
                if (done === issued) resolve();
              } else next();
            },
            (err) => {
              done++;
              failure = failure || err;
              if (done === issued) resolve();
            },
          );
        }
      };
      next();
    });
    if (failure !== undefined) throw failure;
  };
  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  await burst(n);
  const wallS = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpu = process.cpuUsage(cpu0);
  return { published: n, wallS, cpuUser: cpu.user, cpuSystem: cpu.system };
}

serveRpc({
  open: (msg) => open(msg),
  run: (msg) => run(msg),
  exit: async () => {
    const closing = [];
    if (broker !== undefined) closing.push(Promise.resolve(broker.close()).catch(() => undefined));
    await Promise.race([Promise.all(closing), new Promise((r) => setTimeout(r, 2000))]);
    if (cluster !== undefined) cluster.disconnect();
    setTimeout(() => process.exit(0), 20);
    return {};
  },
});

process.send({ type: 'ready', pid: process.pid });
