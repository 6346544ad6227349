'use strict';
// The A/B rows of issue #16: sse-relay with one of its write features turned
// off, measured in the same run as the rows with everything on, so the
// difference each feature makes is read off one table (the machine is shared:
// rows from different runs do not compare).
//   batching off      createHub({ sse: { maxWriteDelay: 0 } }): every turn is written at its end
//   Node write path   SSE_RELAY_WRITE_PATH=node: every write through res.write, never to the socket directly
//   both off          both of the above (the write layer as before #16)
const VARIANTS = {
  'batching off': { hubOptions: { sse: { maxWriteDelay: 0 } } },
  'Node write path': { env: { SSE_RELAY_WRITE_PATH: 'node' } },
  'both off': { hubOptions: { sse: { maxWriteDelay: 0 } }, env: { SSE_RELAY_WRITE_PATH: 'node' } },
};

/** `scn` with the variant's server settings. */
function variant(scn, name) {
  const v = VARIANTS[name];
  return { ...scn, hubOptions: v.hubOptions, env: v.env };
}

/**
 * Measures sse-relay on `scn` once per variant in `names` and appends the rows
 * (server "sse-relay, <variant>"). Nothing when the sse-relay server is not selected.
 */
async function featureRows(h, scn, names, rows, skipped) {
  if (!h.servers.includes('sse-relay')) return;
  for (const name of names) {
    const run = async () => ({
      ...(await h.runLoad(variant(scn, name), 'sse-relay')),
      server: `sse-relay, ${name}`,
      variant: name,
    });
    await h.measure(`${scn.name} / sse-relay, ${name}`, run, rows, skipped);
  }
}

module.exports = { VARIANTS, variant, featureRows };
