'use strict';
// Publish rate: how many publishes/s one process gets through RedisBroker
// with 64 in flight (history on, the hub's default 1,000 per channel, 16
// channels round-robin), and the redis-server CPU each publish costs
// (INFO cpu used_cpu_sys + used_cpu_user, delta over the timed window /
// publishes). On one Redis always; on a 3-master Redis Cluster too when
// --cluster gives its startup nodes (127.0.0.1:port,...) or is "auto" (the
// bench starts three masters and reaps them).
const { f, table } = require('../report');
const { Proc, withTimeout, redisCommand, redisCpuS } = require('../procs');
const { parseNodes, masters, startCluster } = require('../cluster');

const NOT_SUPPORTED = 'cluster: not supported by this build';

/** One timed run of the publisher worker against `target` ({ url } or { nodes }); Redis CPU from `ports`. */
async function measureRate(h, p, target, ports) {
  const worker = new Proc('publisher', 'publisher.js', []);
  try {
    await withTimeout(worker.ready, 15_000, 'publisher did not start');
    const opened = await worker.call('open', target, 20_000);
    if (opened.unsupported) return { unsupported: opened.unsupported };
    const timeoutMs = h.q(120_000, 60_000);
    const args = { inflight: p.inflight, size: p.size, channels: p.channels, history: p.history, timeoutMs };
    // Warm-up first (untimed, its Redis CPU left out): it fills every channel's history, so the timed publishes trim.
    await worker.call('run', { ...args, n: p.warmup }, timeoutMs + 30_000);
    const cpu0 = await Promise.all(ports.map(redisCpuS));
    const busy0 = Date.now();
    const r = await worker.call('run', { ...args, n: p.publishes }, timeoutMs + 30_000);
    const cpu1 = await Promise.all(ports.map(redisCpuS));
    const perNodeS = cpu1.map((c, i) => c - cpu0[i]);
    const redisS = perNodeS.reduce((a, b) => a + b, 0);
    return {
      published: r.published,
      wallS: r.wallS,
      publishesPerSec: r.published / r.wallS,
      // Redis CPU read right before and after the timed publishes.
      redisUsPerPublish: (redisS * 1e6) / r.published,
      redisCores: redisS / ((Date.now() - busy0) / 1000),
      perNodeUsPerPublish: perNodeS.map((s) => (s * 1e6) / r.published),
      publisherUsPerPublish: (r.cpuUser + r.cpuSystem) / r.published,
      publisherUtil: (r.cpuUser + r.cpuSystem) / 1e6 / r.wallS,
      nodes: ports.length,
      otherCores: 0,
    };
  } finally {
    await worker.stop();
  }
}

module.exports = {
  name: 'publish-rate',
  title: 'publish rate',
  params: (h) => ({
    name: 'publish-rate',
    title: 'publish rate',
    publishes: h.q(300_000, 30_000),
    warmup: h.q(20_000, 5_000), // fills every channel's history first: the timed publishes trim
    inflight: 64,
    size: 100,
    channels: 16,
    history: 1000,
    // On a 3-master cluster of its own unless told otherwise (`--cluster none` skips it).
    cluster: h.opts.cluster === 'none' ? '' : h.opts.cluster || 'auto',
  }),
  needsRedis: () => true,

  async run(h, p) {
    const rows = [];
    const skipped = [];
    if (!h.redis) return { rows, skipped: [`publish-rate: ${h.redisSkip || 'Redis skipped'}`] };
    await h.measure(
      `${p.name} / one Redis`,
      async () => {
        await redisCommand(h.redis.port, 'FLUSHALL');
        return {
          topology: 'one Redis',
          inflight: p.inflight,
          ...(await measureRate(h, p, { url: h.redis.url }, [h.redis.port])),
        };
      },
      rows,
      skipped,
    );
    if (!p.cluster) return { rows, skipped };

    let cluster;
    try {
      cluster =
        p.cluster === 'auto'
          ? { ...(await startCluster()), ours: true }
          : { nodes: parseNodes(p.cluster), stop: async () => undefined, ours: false };
      const ms = await masters(cluster.nodes[0]);
      // The row (64 in flight, like one Redis), then the same load per master as one
      // Redis gets (64 x masters in flight): a closed loop of 64 spread over 3 masters gives each
      // a third of the load, so its calls are a third as large.
      for (const inflight of [p.inflight, p.inflight * ms.length]) {
        const label = `${ms.length}-master cluster` + (inflight === p.inflight ? '' : `, ${inflight} in flight`);
        const row = await h.measure(
          `${p.name} / ${label}`,
          async () => {
            // A cluster the bench started is flushed; the caller's is not: its run gets a prefix of its own.
            const target = { nodes: cluster.nodes };
            if (cluster.ours) await Promise.all(ms.map((m) => redisCommand(m.port, 'FLUSHALL')));
            else target.prefix = `sse-relay-bench:${process.pid}-${Date.now()}:`;
            return {
              topology: label,
              inflight,
              ...(await measureRate(
                h,
                { ...p, inflight },
                target,
                ms.map((m) => m.port),
              )),
            };
          },
          [],
          skipped,
        );
        if (row && row.unsupported) {
          skipped.push(`${NOT_SUPPORTED} (${row.unsupported})`);
          break;
        } else if (row) rows.push(row);
        else if (skipped.length > 0) {
          // A build that takes the client but cannot publish on a cluster (CROSSSLOT, ...).
          const why = skipped.pop().replace(/^.*?FAILED /, '');
          skipped.push(`${NOT_SUPPORTED} (${why})`);
          break;
        }
      }
    } catch (err) {
      skipped.push(`cluster: ${err.message.split('\n')[0]}`);
    } finally {
      if (cluster) await cluster.stop();
    }
    return { rows, skipped };
  },

  print(h, p, { rows, skipped }) {
    const one = rows.find((r) => r.topology === 'one Redis');
    console.log(
      `\n## ${p.title}: RedisBroker.publish from one process, ${p.inflight} in flight, ${p.publishes.toLocaleString('en-US')} publishes of ${p.size} B ` +
        `over ${p.channels} channels, history ${p.history}`,
    );
    const headers = [
      'topology',
      'publishes/s',
      'vs one Redis',
      'redis us/publish',
      'per master',
      'redis cores',
      'publisher us/publish',
      'publisher cpu',
    ];
    const body = rows.map((r) => [
      r.topology,
      f.int(r.publishesPerSec),
      one ? f.x(r.publishesPerSec / one.publishesPerSec) : '-',
      f.us(r.redisUsPerPublish),
      r.nodes > 1 ? r.perNodeUsPerPublish.map(f.us).join(' / ') : '-',
      f.cores(r.redisCores),
      f.us(r.publisherUsPerPublish),
      f.pct(r.publisherUtil),
    ]);
    console.log(table(headers, body));
    if (!p.cluster)
      console.log('  cluster: not run (--cluster 127.0.0.1:port,... or --cluster auto, or BENCH_REDIS_CLUSTER)');
    for (const s of skipped) console.log('  ' + s);
  },

  targets(h, p, { rows }) {
    const out = [];
    const one = rows.find((r) => r.topology === 'one Redis');
    if (one) {
      out.push({
        target: 'publish-rate: >= 250k publishes/s from one process on one Redis (#13)',
        value: f.int(one.publishesPerSec),
        ok: one.publishesPerSec >= 250_000,
      });
      out.push({
        target: 'publish-rate: <= 4 us of Redis CPU per publish (#13)',
        value: f.us(one.redisUsPerPublish) + ' us',
        ok: one.redisUsPerPublish <= 4,
      });
    }
    const cl = rows.find((r) => r.topology !== 'one Redis' && r.inflight === p.inflight);
    if (one && cl) {
      out.push({
        target: 'publish-rate: cluster Redis CPU per publish <= one Redis (#13)',
        value: f.us(cl.redisUsPerPublish) + ' us',
        ok: cl.redisUsPerPublish <= one.redisUsPerPublish,
      });
    }
    return out;
  },
};
