'use strict';
// Number formats and the plain-text tables every scenario prints.

const f = {
  int: (n) => (Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : '-'),
  x: (n) => (Number.isFinite(n) ? n.toFixed(2) + 'x' : '-'),
  ms: (n) => (Number.isFinite(n) ? (n < 10 ? n.toFixed(2) : n.toFixed(1)) : '-'),
  us: (n) => (Number.isFinite(n) ? (n < 10 ? n.toFixed(2) : n.toFixed(1)) : '-'),
  pct: (n) => (Number.isFinite(n) ? Math.round(n * 100) + '%' : '-'),
  cores: (n) => (Number.isFinite(n) ? n.toFixed(2) : '-'),
  mb: (n) => (Number.isFinite(n) ? (n / 1048576).toFixed(0) : '-'),
};

function table(headers, rows) {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => String(r[i]).length)));
  const line = (cells) =>
    cells.map((c, i) => (i === 0 ? String(c).padEnd(widths[i]) : String(c).padStart(widths[i]))).join('  ');
  const out = [line(headers), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)];
  return out.join('\n');
}

const lostCell = (r) => r.lost + (r.closedEarly ? ` (${r.closedEarly} cut)` : '');

/** The table of a load scenario (fan-out, throughput, large payloads, paced, ...), ratios against its raw row. */
function printLoad(scn, rows, skipped) {
  const raw = rows.find((r) => r.server === 'raw');
  const paced = scn.rate > 0;
  console.log(
    `\n## ${scn.title}: ${scn.clients} clients x ${scn.events} events of ${scn.size} B, ` +
      (paced ? `paced at ${scn.rate}/s` : `as fast as backpressure allows (batches of ${scn.batch})`),
  );
  const headers = [
    'server',
    'deliv/s',
    'vs raw',
    'srv us/deliv',
    'vs raw',
    'p50 ms',
    'p99 ms',
    'lost',
    'srv cpu',
    'client cpu max',
    'bound',
    'other load',
    'srv peak RSS MB',
  ];
  const body = rows.map((r) => [
    r.server,
    f.int(r.deliveriesPerSec),
    raw ? f.x(r.deliveriesPerSec / raw.deliveriesPerSec) : '-',
    f.us(r.serverUsPerDelivery),
    raw ? f.x(r.serverUsPerDelivery / raw.serverUsPerDelivery) : '-',
    f.ms(r.p50Ms),
    f.ms(r.p99Ms),
    lostCell(r),
    f.pct(r.serverUtil),
    f.pct(r.clientUtilMax),
    r.bound,
    f.cores(r.otherCores),
    f.mb(r.serverPeakRss),
  ]);
  console.log(table(headers, body));
  noiseNotes(rows);
  for (const s of skipped) console.log('  ' + s);
}

function noiseNotes(rows) {
  if (rows.some((r) => r.otherCores >= 0.25)) {
    console.log(
      '  other load: cores busy with processes outside this bench during the row (shared machine); >= 0.25 makes that row noisy.',
    );
  }
  if (rows.some((r) => r.bound && r.bound.includes('CLIENT'))) {
    console.log('  CLIENT: a load-generator process was pegged; that row measures the client, not the server.');
  }
}

/** sse-relay against raw and better-sse in one load scenario's rows. */
function relayTargets(name, rows) {
  const out = [];
  const get = (server) => rows.find((r) => r.server === server);
  const raw = get('raw');
  const bs = get('better-sse');
  const relay = get('sse-relay');
  if (!relay) return out;
  if (raw) {
    const r = relay.deliveriesPerSec / raw.deliveriesPerSec;
    out.push({ target: `${name}: deliveries/s >= 1.0x raw`, value: f.x(r), ok: r >= 1.0 });
    out.push({
      target: `${name}: p99 <= raw p99 (${f.ms(raw.p99Ms)} ms)`,
      value: f.ms(relay.p99Ms) + ' ms',
      ok: relay.p99Ms <= raw.p99Ms,
    });
    const same = get('sse-relay @ raw rate');
    if (same) {
      out.push({
        target: `${name}: p99 paced at raw's rate <= raw p99 (${f.ms(raw.p99Ms)} ms)`,
        value: f.ms(same.p99Ms) + ' ms',
        ok: same.p99Ms <= raw.p99Ms,
      });
    }
  }
  if (bs) {
    const r = relay.deliveriesPerSec / bs.deliveriesPerSec;
    out.push({ target: `${name}: deliveries/s >= 1.5x better-sse`, value: f.x(r), ok: r >= 1.5 });
  }
  return out;
}

module.exports = { f, table, printLoad, noiseNotes, lostCell, relayTargets };
