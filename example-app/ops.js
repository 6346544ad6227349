// @ts-check
'use strict';

const { metricsHandler } = require('sse-relay');
const { html } = require('./html');
const { USERS } = require('./store');

/**
 * The operations side of the demo, for admins (role `admin`, the demo user
 * Dave):
 *
 * - `GET /ops`: a page with live figures (open streams, channels with a
 *   stream, publishes/s, deliveries/s, streams dropped, resets) and a small
 *   chart of the last minute, inline SVG drawn by public/ops.js. The figures
 *   come from `hub.stats()`, sse-relay's own counters, which the app
 *   publishes every second on the admin-only channel `ops:metrics` (event
 *   `metrics`, JSON, coalesced: a slow admin gets the newest figures).
 * - `GET /metrics`: sse-relay's `metricsHandler()`, the Prometheus text format
 *   for every hub in the process, for a Prometheus or an agent on this host
 *   (a loopback peer with no proxy header) or for a signed-in admin.
 */

const CHANNEL = 'ops:metrics';

/** @param {string | undefined} user */
function isAdmin(user) {
  return user !== undefined && Object.hasOwn(USERS, user) && USERS[user].role === 'admin';
}

/** A loopback peer, not forwarded by a proxy on this host (which would add one of these headers). */
function isLocalScraper(req) {
  const peer = req.socket.remoteAddress ?? '';
  const loopback = peer === '127.0.0.1' || peer === '::1' || peer === '::ffff:127.0.0.1';
  return loopback && req.headers['x-forwarded-for'] === undefined && req.headers.forwarded === undefined;
}

/**
 * @typedef {object} OpsFigures
 * @property {string} instance which app process these are from (several may share a Redis)
 * @property {number} at ms since the epoch
 * @property {number} connections open streams of the hub
 * @property {number} channels channels with an open stream here
 * @property {number} publishRate publishes/s over the last interval (the ops feed's own left out)
 * @property {number} deliveryRate event frames written to streams per second
 * @property {number} published total publishes (the ops feed's own left out)
 * @property {number} delivered total frames delivered
 * @property {number} dropped streams cut for a limit
 * @property {number} resets `reset` events sent
 */

/**
 * Publishes the hub's figures on `ops:metrics` every `intervalMs`.
 * @param {{ stats(): import('sse-relay').HubStats, publish: Function }} hub
 * @param {{ instance: string, intervalMs: number }} options
 */
function startOpsFeed(hub, { instance, intervalMs }) {
  let own = 0; // publishes of this feed, left out of the publish figures
  let previous = { at: Date.now(), published: 0, delivered: 0 };
  /** @type {OpsFigures} */
  let latest = figures();

  /** @returns {OpsFigures} */
  function figures() {
    const s = hub.stats();
    const at = Date.now();
    const published = s.published - own;
    const seconds = Math.max((at - previous.at) / 1000, 0.001);
    const out = {
      instance,
      at,
      connections: s.connections,
      channels: s.channels,
      publishRate: round((published - previous.published) / seconds),
      deliveryRate: round((s.delivered - previous.delivered) / seconds),
      published,
      delivered: s.delivered,
      dropped: s.dropped,
      resets: s.resets,
    };
    previous = { at, published, delivered: s.delivered };
    return out;
  }

  let publishing = false;
  const timer = setInterval(() => {
    latest = figures();
    if (publishing) return; // the broker is slow: skip a tick rather than pile up
    publishing = true;
    hub
      .publish(CHANNEL, JSON.stringify(latest), { event: 'metrics', coalesce: 'ops' })
      .then(() => own++)
      .catch(() => undefined) // broker unavailable: the next tick tries again
      .finally(() => (publishing = false));
  }, intervalMs);
  timer.unref();

  return {
    /** The newest figures (for the page's first render). */
    latest: () => latest,
    stop: () => clearInterval(timer),
  };
}

function round(n) {
  return Math.round(n * 10) / 10;
}

/** `(req, res, next)`: /metrics for a local scraper or an admin, else 403. */
function metricsRoute(currentUser) {
  const handler = metricsHandler({ channelLabel: 'namespace' });
  return (req, res, next) => {
    if (!isLocalScraper(req) && !isAdmin(currentUser(req))) {
      res.status(403).type('text/plain').send('Forbidden');
      return;
    }
    handler(req, res, next);
  };
}

// ---- view ------------------------------------------------------------------

const FIGURES = [
  ['connections', 'Open streams'],
  ['channels', 'Channels'],
  ['publishRate', 'Publishes/s'],
  ['deliveryRate', 'Deliveries/s'],
  ['dropped', 'Dropped'],
  ['resets', 'Resets'],
];

/**
 * The operations page. public/ops.js opens the stream (`data-events`), fills
 * the figures and draws the chart; without script the first figures show.
 * @param {{ layout: Function, user: string, figures: OpsFigures, intervalMs: number }} page
 */
function opsPage({ layout, user, figures, intervalMs }) {
  return layout({
    title: 'Operations',
    user,
    active: '/ops',
    scripts: ['/static/ops.js'],
    body: html`<section id="ops" class="live" data-events="/events/${CHANNEL}" data-instance="${figures.instance}">
      <div class="page-head">
        <h1>Operations</h1>
        <span class="live-status" aria-live="polite"></span>
      </div>
      <article class="card">
        <dl class="stats" id="ops-figures">
          ${FIGURES.map(
            ([key, label]) =>
              html`<div>
                <dt>${label}</dt>
                <dd id="ops-${key}">${figures[key]}</dd>
              </div>`,
          )}
        </dl>
      </article>
      <article class="card">
        <h2>Last minute</h2>
        <svg
          id="ops-chart"
          class="chart"
          viewBox="0 0 600 160"
          role="img"
          aria-label="Open streams and publishes per second, last 60 seconds"
        >
          <polyline id="ops-line-connections" class="line-connections" points=""></polyline>
          <polyline id="ops-line-publishRate" class="line-publishes" points=""></polyline>
        </svg>
        <p class="muted small">
          <span class="key key-connections">open streams</span>
          <span class="key key-publishes">publishes/s</span> (scaled to the largest value shown;
          <span id="ops-max">—</span>)
        </p>
      </article>
      <p class="muted small">
        Figures of this app process (${figures.instance}) from <code>hub.stats()</code>, published every
        ${intervalMs === 1000 ? 'second' : `${intervalMs} ms`} on the admin-only channel <code>${CHANNEL}</code>.
        Prometheus: <a href="/metrics">/metrics</a>.
      </p>
    </section>`,
  });
}

module.exports = { CHANNEL, isAdmin, isLocalScraper, startOpsFeed, metricsRoute, opsPage };
