'use strict';
// `npm run bench`: sse-relay against a raw node:http baseline and better-sse.
//
// This file is the runner: it reads the options, runs the scenarios of
// bench/scenarios/ in order, prints their tables (ratios against the raw row
// measured in the same run) and writes bench/results/latest.json.
//
// Every server under test runs in its own child process (bench/server.js);
// load comes from separate client processes (bench/client.js) over raw TCP on
// 127.0.0.1. Servers publish on command with process.hrtime.bigint() in the
// event data; clients on the same machine read the same CLOCK_MONOTONIC, so
// publish -> receive latency needs no clock sync.
//
// Options (each also as an environment variable):
//   --quick                a ~1-minute smoke run (smaller counts)         BENCH_QUICK=1
//   --only a,b             only these scenarios (--list names them)        BENCH_ONLY=a,b
//   --servers a,b          only these servers (raw, better-sse, sse-relay, sse-relay-redis;  BENCH_SERVERS=a,b
//                          raw-direct, a control, only when named)
//   --cluster nodes|auto|none  publish-rate on a Redis Cluster too (default auto: one of its own)
//                          (127.0.0.1:port,...) or "auto" (3 masters started here)  BENCH_REDIS_CLUSTER
//   --flood-events N       events in the flood (default 1,000,000)        BENCH_FLOOD_EVENTS
//   --flood-runs N         flood repeats (default 1)                       BENCH_FLOOD_RUNS
//   --list                 print the scenarios and exit
// Diagnosis (environment only):
//   BENCH_PROF=kind[,kind]  run those servers under --cpu-prof (bench/results/prof/)
//   BENCH_SERVER_FLAGS="--trace-gc ..."  extra node flags for the server processes
//   BENCH_HUB_OPTIONS='{"history":0}'  extra createHub options for the sse-relay servers (experiments)
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { settings, killAll, startRedis } = require('./procs');
const { createHarness } = require('./harness');
const { parseNodes } = require('./cluster');
const { table } = require('./report');

// In the order they run and print.
const SCENARIOS = [
  'fanout',
  'throughput',
  'large',
  'paced',
  'idle',
  'redis',
  'publish-rate',
  'light-load',
  'multi-channel',
  'flood',
  'tracing',
].map((name) => require(`./scenarios/${name}`));
const SERVERS = ['raw', 'better-sse', 'sse-relay', 'sse-relay-redis'];
// Also accepted by --servers, never run by default: raw-direct, a control (raw written with
// sse-relay's direct-path write pattern, see bench/server.js), not a contender.
const ALL_SERVERS = ['raw', 'raw-direct', 'better-sse', 'sse-relay', 'sse-relay-redis'];
const RESULTS = path.join(__dirname, 'results');

// ---- options ----------------------------------------------------------------------

const OPTIONS = {
  quick: { flag: true, env: 'BENCH_QUICK', help: 'a ~1-minute smoke run (smaller counts)' },
  only: { env: 'BENCH_ONLY', help: 'comma-separated scenarios to run' },
  servers: {
    env: 'BENCH_SERVERS',
    help: `comma-separated servers (${SERVERS.join(', ')}; raw-direct only when named)`,
  },
  cluster: {
    env: 'BENCH_REDIS_CLUSTER',
    help: 'publish-rate on a Redis Cluster: 127.0.0.1:port,..., auto (default: one of its own) or none',
  },
  'flood-events': { env: 'BENCH_FLOOD_EVENTS', int: [1, 100_000_000], help: 'events in the flood (default 1,000,000)' },
  'flood-runs': { env: 'BENCH_FLOOD_RUNS', int: [1, 100], help: 'flood repeats (default 1)' },
  list: { flag: true, help: 'print the scenarios and exit' },
  help: { flag: true, help: 'print this help and exit' },
};

/** Levenshtein distance, for "did you mean". */
function distance(a, b) {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...new Array(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0][j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
  }
  return d[a.length][b.length];
}

function didYouMean(word, choices) {
  const best = choices.map((c) => [c, distance(word, c)]).sort((x, y) => x[1] - y[1])[0];
  return best && best[1] <= Math.max(2, Math.floor(word.length / 3)) ? ` (did you mean "${best[0]}"?)` : '';
}

function usage() {
  const lines = Object.entries(OPTIONS).map(
    ([k, o]) => `  --${k}${o.flag ? '' : ' <value>'}`.padEnd(26) + o.help + (o.env ? ` [${o.env}]` : ''),
  );
  return `usage: node bench/run.js [options]\n${lines.join('\n')}\nscenarios: ${SCENARIOS.map((s) => s.name).join(', ')}`;
}

/** argv (then the environment) -> { quick, only, servers, ... }; throws on anything it does not know. */
function parseArgs(argv) {
  const out = {};
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const m = /^--([a-z-]+)(?:=(.*))?$/.exec(arg);
    const name = m && m[1];
    if (!m || !Object.hasOwn(OPTIONS, name)) {
      throw new TypeError(
        `bench: unknown option ${JSON.stringify(arg)}${m ? didYouMean(name, Object.keys(OPTIONS)).replace('"', '"--') : ''}\n${usage()}`,
      );
    }
    const key = name.replace(/-([a-z])/g, (_, c) => c.toUpperCase());
    if (OPTIONS[name].flag) {
      if (m[2] !== undefined) throw new TypeError(`bench: --${name} takes no value`);
      out[key] = true;
    } else {
      const value = m[2] !== undefined ? m[2] : argv[++i];
      if (value === undefined || value.startsWith('--')) throw new TypeError(`bench: --${name} needs a value`);
      out[key] = out[key] === undefined ? value : `${out[key]},${value}`;
    }
  }
  for (const [name, o] of Object.entries(OPTIONS)) {
    const key = name.replace(/-([a-z])/g, (_, c) => c.toUpperCase());
    if (out[key] !== undefined || !o.env || !process.env[o.env]) continue;
    out[key] = o.flag ? process.env[o.env] === '1' : process.env[o.env];
  }
  for (const [name, o] of Object.entries(OPTIONS)) {
    const key = name.replace(/-([a-z])/g, (_, c) => c.toUpperCase());
    if (!o.int || out[key] === undefined) continue;
    const n = Number(out[key]);
    if (!/^\d+$/.test(out[key]) || n < o.int[0] || n > o.int[1]) {
      throw new RangeError(
        `bench: --${name} must be an integer from ${o.int[0]} to ${o.int[1]}, got ${JSON.stringify(out[key])}`,
      );
    }
    out[key] = n;
  }
  if (out.cluster !== undefined && out.cluster !== 'auto' && out.cluster !== 'none') parseNodes(out.cluster); // throws for a bad node
  const list = (s) =>
    (s || '')
      .split(',')
      .map((x) => x.trim())
      .filter(Boolean);
  const names = SCENARIOS.map((s) => s.name);
  const only = list(out.only);
  for (const n of only) {
    if (!names.includes(n))
      throw new RangeError(`bench: unknown scenario "${n}"${didYouMean(n, names)}; scenarios: ${names.join(', ')}`);
  }
  const servers = list(out.servers);
  for (const s of servers) {
    if (!ALL_SERVERS.includes(s))
      throw new RangeError(
        `bench: unknown server "${s}"${didYouMean(s, ALL_SERVERS)}; servers: ${ALL_SERVERS.join(', ')}`,
      );
  }
  return {
    ...out,
    quick: out.quick === true,
    only,
    servers: servers.length > 0 ? ALL_SERVERS.filter((s) => servers.includes(s)) : SERVERS,
  };
}

// ---- main ---------------------------------------------------------------------------

async function main(opts, h) {
  const machine = {
    nproc: h.ncpu,
    cpu: os.cpus()[0] && os.cpus()[0].model,
    node: process.version,
    platform: `${os.platform()} ${os.release()}`,
    memGiB: +(os.totalmem() / 2 ** 30).toFixed(1),
    clientProcesses: h.clientProcs,
  };
  console.log(
    `sse-relay bench${h.quick ? ' (quick)' : ''}: ${machine.nproc} cores (${machine.cpu}), node ${machine.node}, ` +
      `${h.clientProcs} client processes, all on 127.0.0.1`,
  );
  const results = { machine, quick: h.quick, startedAt: new Date().toISOString(), scenarios: {}, notes: h.notes };
  const save = () => {
    fs.mkdirSync(RESULTS, { recursive: true });
    results.elapsedS = (Date.now() - h.started) / 1000;
    fs.writeFileSync(path.join(RESULTS, 'latest.json'), JSON.stringify(results, null, 2) + '\n');
  };

  const wanted = SCENARIOS.filter((s) => opts.only.length === 0 || opts.only.includes(s.name));
  const params = new Map(wanted.map((s) => [s, s.params(h)]));
  for (const s of wanted) if (s.prepare) s.prepare(h, params.get(s));

  if (wanted.some((s) => s.needsRedis(h))) {
    const r = await startRedis();
    if (r.skip) {
      h.redisSkip = r.skip;
      console.log(r.skip);
    } else h.redis = r;
  }

  for (const s of wanted) {
    const p = params.get(s);
    const result = await s.run(h, p);
    results.scenarios[s.name] = { params: { ...p }, ...result };
    save();
  }

  // The tables, all together at the end.
  const targets = [];
  for (const s of wanted) {
    const result = results.scenarios[s.name];
    s.print(h, params.get(s), result, results.scenarios);
    if (s.targets) targets.push(...s.targets(h, params.get(s), result));
  }
  for (const s of wanted) {
    for (const r of results.scenarios[s.name].rows || []) {
      if (r.lost !== undefined && r.lost !== 0)
        targets.push({ target: `${s.name}/${r.server}: lost deliveries = 0`, value: String(r.lost), ok: false });
    }
  }
  results.targets = targets;
  if (targets.length > 0) {
    console.log('\n## targets (sse-relay, MemoryBroker unless stated)');
    console.log(
      table(
        ['target', 'measured', ''],
        targets.map((t) => [t.target, t.value, t.ok ? 'ok' : 'MISS']),
      ),
    );
  }
  console.log(
    '\ndeliv/s = received events / (last receipt - first publish); srv us/deliv = server CPU (user+sys) per delivered event; ' +
      'latency = publish hrtime in the event -> client read; cpu = busy share of one core over the run; ' +
      'bound = which side was pegged (>= 85% of a core; machine = all cores busy, clients included); ' +
      "'@ raw rate' = sse-relay paced at raw's measured deliveries/s, for latency at equal load.",
  );
  save();
  console.log(
    `\nwrote ${path.relative(process.cwd(), path.join(RESULTS, 'latest.json'))} in ${((Date.now() - h.started) / 1000).toFixed(0)} s`,
  );
}

function start() {
  let opts;
  try {
    opts = parseArgs(process.argv.slice(2));
  } catch (err) {
    console.error(err.message);
    process.exit(2);
  }
  if (opts.help || opts.list) {
    if (opts.help) console.log(usage());
    else for (const s of SCENARIOS) console.log(`${s.name.padEnd(14)} ${s.title}`);
    process.exit(0);
  }
  const ncpu = os.cpus().length;
  const quick = opts.quick;
  settings.prof = (process.env.BENCH_PROF || '').split(',').filter(Boolean);
  const h = createHarness({
    opts,
    quick,
    ncpu,
    // Load generators: one per core (at least 2) so no single client process is the limit.
    clientProcs: Math.max(2, ncpu),
    servers: opts.servers,
    redis: null,
    redisSkip: '',
    budgetMs: quick ? 240_000 : 900_000, // hard stop: everything killed
    started: Date.now(),
    notes: [],
  });

  // Everything started here dies with us, whatever happens.
  const watchdog = setTimeout(() => {
    console.error(`\nbench: over the ${h.budgetMs / 1000} s budget, stopping everything`);
    killAll();
    process.exit(2);
  }, h.budgetMs);
  watchdog.unref();
  process.on('exit', killAll);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
    process.on(sig, () => {
      killAll();
      process.exit(130);
    });
  }
  process.on('uncaughtException', (err) => {
    console.error(err);
    killAll();
    process.exit(1);
  });

  main(opts, h).then(
    () => {
      killAll();
      process.exit(0);
    },
    (err) => {
      console.error('\nbench failed:', err);
      killAll();
      process.exit(1);
    },
  );
}

start();
