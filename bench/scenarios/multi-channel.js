'use strict';
// Multi-channel streams: every stream subscribed to 10 channels, the events
// published round-robin over them (so each stream still gets every event),
// against the same workload on one channel, both measured here, in the
// fan-out and throughput shapes. What it shows: server CPU per delivery when
// a stream leaves the single-channel path.
const { variant } = require('./feature-rows');
const { f, table, lostCell, noiseNotes } = require('../report');
const fanout = require('./fanout');
const throughput = require('./throughput');

const CHANNELS = 10;

module.exports = {
  name: 'multi-channel',
  title: 'multi-channel streams',
  params: (h) => ({
    name: 'multi-channel',
    title: 'multi-channel streams',
    channels: CHANNELS,
    shapes: [fanout.params(h), throughput.params(h)],
  }),
  needsRedis: () => false,

  async run(h, p) {
    const rows = [];
    const skipped = [];
    if (!h.servers.includes('sse-relay')) return { rows, skipped: ['multi-channel: needs the sse-relay server'] };
    for (const shape of p.shapes) {
      for (const channels of [1, p.channels]) {
        const scn = { ...shape, name: `${p.name}-${shape.name}`, channels };
        const run = async () => ({
          ...(await h.runLoad(scn, 'sse-relay')),
          shape: shape.name,
          server: `sse-relay, ${channels} channel${channels > 1 ? 's' : ''}`,
        });
        await h.measure(
          `${p.name} / ${shape.name} / ${channels} channel${channels > 1 ? 's' : ''}`,
          run,
          rows,
          skipped,
        );
      }
      // Where the rest of the gap is: the same two rows with history 0 (the broker keeps one
      // history per channel, ten of them here; the stream layer's work is the same).
      for (const channels of [1, p.channels]) {
        const scn = { ...shape, name: `${p.name}-${shape.name}`, channels, hubOptions: { history: 0 } };
        const label = `${channels} channel${channels > 1 ? 's' : ''}, history 0`;
        const run = async () => ({
          ...(await h.runLoad(scn, 'sse-relay')),
          shape: shape.name,
          variant: 'history 0',
          server: `sse-relay, ${label}`,
        });
        await h.measure(`${p.name} / ${shape.name} / ${label}`, run, rows, skipped);
      }
      // The same events retained in total as one channel with the default 1,000: ten channels
      // keeping 100 each. With 1,000 each, every event lives ten times as long, long enough to
      // be copied and promoted by the collector, which is what history costs, not the streams.
      {
        const scn = { ...shape, name: `${p.name}-${shape.name}`, channels: p.channels, hubOptions: { history: 100 } };
        const label = `${p.channels} channels, history 100 (1,000 retained in all)`;
        const run = async () => ({
          ...(await h.runLoad(scn, 'sse-relay')),
          shape: shape.name,
          variant: 'equal retention',
          server: `sse-relay, ${label}`,
        });
        await h.measure(`${p.name} / ${shape.name} / ${label}`, run, rows, skipped);
      }
      // The A/B row: 10 channels with the write features of #16 off.
      const scn = variant({ ...shape, name: `${p.name}-${shape.name}`, channels: p.channels }, 'both off');
      const off = async () => ({
        ...(await h.runLoad(scn, 'sse-relay')),
        shape: shape.name,
        variant: 'both off',
        server: `sse-relay, ${p.channels} channels, both off`,
      });
      await h.measure(`${p.name} / ${shape.name} / ${p.channels} channels, both off`, off, rows, skipped);
    }
    return { rows, skipped };
  },

  print(h, p, { rows, skipped }) {
    console.log(
      `\n## ${p.title}: ${p.channels} channels per stream (events round-robin over them) vs 1, sse-relay MemoryBroker`,
    );
    const headers = [
      'shape',
      'server',
      'deliv/s',
      'srv us/deliv',
      'vs 1 channel',
      'p50 ms',
      'p99 ms',
      'lost',
      'bound',
      'other load',
    ];
    const body = rows.map((r) => {
      const base = r.variant === 'history 0' ? 'history 0' : undefined; // equal retention: against the default row
      const one = rows.find((o) => o.shape === r.shape && o.channels === 1 && o.variant === base);
      const shape = p.shapes.find((s) => s.name === r.shape);
      return [
        `${r.shape}: ${shape.clients} x ${shape.events}`,
        r.server,
        f.int(r.deliveriesPerSec),
        f.us(r.serverUsPerDelivery),
        one ? f.x(r.serverUsPerDelivery / one.serverUsPerDelivery) : '-',
        f.ms(r.p50Ms),
        f.ms(r.p99Ms),
        lostCell(r),
        r.bound,
        f.cores(r.otherCores),
      ];
    });
    console.log(table(headers, body));
    noiseNotes(rows);
    for (const s of skipped) console.log('  ' + s);
  },

  targets(h, p, { rows }) {
    const out = [];
    for (const shape of p.shapes) {
      const one = rows.find((r) => r.shape === shape.name && r.channels === 1 && r.variant === undefined);
      const many = rows.find((r) => r.shape === shape.name && r.channels === p.channels && r.variant === undefined);
      if (!one || !many) continue;
      const r = many.serverUsPerDelivery / one.serverUsPerDelivery;
      out.push({
        target: `multi-channel/${shape.name}: CPU per delivery, ${p.channels} channels <= 1.05x one (#16)`,
        value: f.x(r),
        ok: r <= 1.05,
      });
    }
    return out;
  },
};
