'use strict';
// Flood: the throughput workload (10 clients, batches of 100, as fast as
// backpressure allows) at a million events, counting the clients the server
// cut and the deliveries lost. A reader that keeps up should never be cut.
// Size and repeats: --flood-events N (default 1,000,000; quick 100,000) and
// --flood-runs N (default 1).
const { variant } = require('./feature-rows');
const { f, table, lostCell, noiseNotes } = require('../report');

module.exports = {
  name: 'flood',
  title: 'flood',
  params: (h) => ({
    name: 'flood',
    title: 'flood',
    clients: 10,
    events: h.opts.floodEvents !== undefined ? h.opts.floodEvents : h.q(1_000_000, 100_000),
    runs: h.opts.floodRuns !== undefined ? h.opts.floodRuns : 1,
    size: 100,
    batch: 100,
    rate: 0,
  }),
  needsRedis: () => false,

  async run(h, p) {
    const rows = [];
    const skipped = [];
    if (!h.servers.includes('sse-relay')) return { rows, skipped: ['flood: needs the sse-relay server'] };
    for (let i = 1; i <= p.runs; i++) {
      const run = async () => ({ ...(await h.runLoad(p, 'sse-relay')), run: `${i} of ${p.runs}` });
      await h.measure(`${p.name} / sse-relay / run ${i} of ${p.runs}`, run, rows, skipped);
    }
    // The A/B row: the write features of #16 off (the cut rule is the same on both).
    const off = async () => ({ ...(await h.runLoad(variant(p, 'both off'), 'sse-relay')), run: 'both off' });
    await h.measure(`${p.name} / sse-relay, both off`, off, rows, skipped);
    return { rows, skipped };
  },

  print(h, p, { rows, skipped }, all) {
    // deliv/s against raw's throughput row of this run, when there is one.
    const tp = all && all.throughput;
    const raw = tp && tp.rows.find((r) => r.server === 'raw');
    console.log(
      `\n## ${p.title}: ${p.clients} clients x ${f.int(p.events)} events of ${p.size} B, as fast as backpressure allows (batches of ${p.batch}), sse-relay MemoryBroker`,
    );
    const headers = [
      'run',
      'deliv/s',
      'vs raw (throughput)',
      'clients cut',
      'lost',
      'dropped',
      'p99 ms',
      'max ms',
      'srv peak RSS MB',
      'other load',
    ];
    const body = rows.map((r) => [
      r.run,
      f.int(r.deliveriesPerSec),
      raw ? f.x(r.deliveriesPerSec / raw.deliveriesPerSec) : '-',
      String(r.closedEarly),
      lostCell(r),
      r.dropped === undefined ? '-' : f.int(r.dropped),
      f.ms(r.p99Ms),
      f.ms(r.maxMs),
      f.mb(r.serverPeakRss),
      f.cores(r.otherCores),
    ]);
    console.log(table(headers, body));
    noiseNotes(rows);
    for (const s of skipped) console.log('  ' + s);
  },

  targets(h, p, { rows }) {
    if (rows.length === 0) return [];
    const cut = rows.reduce((a, r) => a + r.closedEarly, 0);
    const lost = rows.reduce((a, r) => a + r.lost, 0);
    return [
      {
        target: `flood: 0 clients cut and 0 lost in ${rows.length} run(s) (#16)`,
        value: `${cut} cut, ${f.int(lost)} lost`,
        ok: cut === 0 && lost === 0,
      },
    ];
  },
};
