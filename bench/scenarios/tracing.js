'use strict';
// Tracing hooks: CPU per hub.publish (100 streams) with no subscriber on the sse-relay:*
// diagnostics channels, and with one on every channel (issue #15: zero cost when nobody listens).
const { execFileSync } = require('node:child_process');
const path = require('node:path');
const { table } = require('../report');

module.exports = {
  name: 'tracing',
  title: 'tracing hooks',
  params: (h) => ({ name: 'tracing', title: 'tracing hooks', publishes: h.q(20000, 4000) }),
  needsRedis: () => false,

  async run(h, p) {
    const out = execFileSync(process.execPath, [path.join(__dirname, '..', 'tracing.js')], {
      env: { ...process.env, TRACING_PUBLISHES: String(p.publishes) },
      timeout: 120_000,
    });
    const line = out.toString().trim().split('\n').pop();
    return { rows: [JSON.parse(line)] };
  },

  print(_h, p, { rows }) {
    const r = rows[0];
    console.log(
      `\n## ${p.title}: hub.publish to ${r.streams} loopback streams, ${r.publishes} publishes, A/B x3 (median)`,
    );
    console.log(
      table(
        ['diagnostics subscribers', 'CPU us/publish', 'vs none'],
        [
          ['none', r.off.toFixed(2), '1.00x'],
          ['one on every sse-relay:* channel', r.on.toFixed(2), (r.on / r.off).toFixed(2) + 'x'],
        ],
      ),
    );
  },
};
