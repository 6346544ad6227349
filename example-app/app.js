// @ts-check
'use strict';

const { fork } = require('node:child_process');
const { randomBytes, timingSafeEqual } = require('node:crypto');
const path = require('node:path');
const express = require('express');
const { createHub, MemoryBroker } = require('sse-relay');
const { hostname } = require('node:os');
const { createSessions } = require('./session');
const ops = require('./ops');
const { createStore, USERS, STATUSES, STATUS_LABELS } = require('./store');
const views = require('./views');

const CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

/**
 * The app's event catalog: every event it publishes, mapped to its payload.
 * Each payload is an HTML fragment rendered by views.js (escaped by html.js),
 * sent as a string; htmx swaps it in (`sse-swap="<event>"`) or refetches on it
 * (`hx-trigger="sse:<event>"`). There is no `message` entry, so every publish
 * must name its event. (`reset` is sent by the hub itself, never published.)
 * The hub below is typed with it, so `tsc -p tsconfig.example.json` rejects a
 * publish with an unknown event name or a payload of the wrong type.
 *
 * @typedef {string} Fragment
 * @typedef {object} AppEvents
 * @property {Fragment} status `order:<id>`: the order's new status badge
 * @property {Fragment} notification `user:<name>:notifications`: a new notification
 * @property {Fragment} activity `dashboard:activity`: a new activity feed item
 * @property {Fragment} stats `dashboard:stats`: the shop stats panel
 * @property {Fragment} progress `job:<user>:<id>`: the job's progress bar (coalesced)
 * @property {Fragment} done `job:<user>:<id>`: the finished job's state
 * @property {string} metrics `ops:metrics` (admins only): the hub's figures, JSON (see ops.js)
 */

const MAX_TEXT = 280;
const MAX_RUNNING_JOBS = 5;

/**
 * May `user` subscribe to `channel`? Each user sees only their own channels
 * (`user:<name>:notifications`, `job:<name>:<id>`) and the shared ones they may
 * see (`order:<id>` for orders they own, `dashboard:*` for everyone signed in).
 */
function canSubscribe(store, user, channel) {
  if (typeof user !== 'string' || !Object.hasOwn(USERS, user)) return false;
  const parts = channel.split(':');
  switch (parts[0]) {
    case 'user':
      return parts.length === 3 && parts[1] === user && parts[2] === 'notifications';
    case 'job':
      return parts.length === 3 && parts[1] === user && /^[a-z0-9]{1,32}$/.test(parts[2]);
    case 'order':
      return parts.length === 2 && store.order(parts[1])?.owner === user;
    case 'dashboard':
      return parts.length === 2 && parts[1] !== '';
    case 'ops':
      return parts.length === 2 && parts[1] === 'metrics' && ops.isAdmin(user);
    default:
      return false;
  }
}

/**
 * The demo app: `{ app, hub, close }`. Options:
 * - `broker`: where events go (default: a MemoryBroker, one process; pass a
 *   RedisBroker to share events between processes);
 * - `secret`: the session signing key (default: random per process);
 * - `redisUrl`: the Redis of that RedisBroker, for the job worker (it then
 *   publishes with the `sse-relay` CLI over Redis instead of the HTTP endpoint);
 * - `publishToken`: the bearer token of `POST /internal/publish` (default:
 *   random per process, handed to the worker it forks);
 * - `jobTickMs` (100) and `jobStep` (5 %): the pace of the demo background jobs;
 * - `reauthorizeEvery` (60000 ms): how often open streams are authorised again;
 * - `opsIntervalMs` (1000 ms): how often the figures of the operations page are published.
 */
function createApp(options = {}) {
  const {
    broker,
    secret,
    redisUrl,
    jobTickMs = 100,
    jobStep = 5,
    reauthorizeEvery = 60_000,
    opsIntervalMs = 1000,
  } = options;
  const publishToken = options.publishToken ?? randomBytes(24).toString('base64url');
  const store = createStore();
  const sessions = createSessions(secret);
  const currentUser = (req) => {
    const session = sessions.read(req);
    return session !== undefined && Object.hasOwn(USERS, session.user) ? session.user : undefined;
  };

  /** @type {import('sse-relay').Hub<AppEvents>} */
  const hub = createHub({
    broker: broker ?? new MemoryBroker(),
    authorize: (req, channel) => canSubscribe(store, currentUser(req), channel),
    // A logged-out session's streams (in other tabs) end at the next re-authorisation.
    reauthorizeEvery,
    sse: {
      keepAlive: 15_000,
      maxConnectionsPerKey: 20,
      connectionKey: (req) => currentUser(req) ?? req.socket.remoteAddress ?? 'unknown',
    },
  });

  // The operations page's figures, published on ops:metrics every opsIntervalMs.
  const instance = `${hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`;
  const opsFeed = ops.startOpsFeed(hub, { instance, intervalMs: opsIntervalMs });

  /**
   * Data for the stream is always a rendered, escaped fragment.
   * @template {keyof AppEvents} K
   * @param {string} channel
   * @param {import('./html').SafeHtml} fragment
   * @param {K} event
   */
  const publish = (channel, fragment, event) => hub.publish(channel, String(fragment), { event });

  /**
   * The resume point for a page is taken BEFORE its state is read: an event
   * published in between is then replayed to the page (and skipped by
   * public/app.js if it is already shown), never lost.
   */
  async function snapshot(channels, read) {
    const cursor = hub.cursor(channels);
    const state = read();
    return { url: views.eventsUrl(channels, await cursor), ...state };
  }

  async function announce(text) {
    const entry = { id: store.newId(), text, at: Date.now() };
    store.addActivity(entry);
    await Promise.all([
      publish('dashboard:activity', views.activityItem(entry), 'activity'),
      publish('dashboard:stats', views.stats(store.stats()), 'stats'),
    ]);
  }

  async function notify(to, from, text) {
    const n = { id: store.newId(), from, text, at: Date.now() };
    store.addNotification(to, n);
    await publish(`user:${to}:notifications`, views.notificationItem(n), 'notification');
  }

  // ---- background jobs ------------------------------------------------------
  // A separate process (worker.js) runs them and publishes their progress itself:
  // through POST /internal/publish below, or through the CLI over Redis. It tells
  // this process each new state first (store.js stands in for a shared database).

  let closed = false;
  /** @type {import('node:child_process').ChildProcess | undefined} */
  let worker;

  /** The URL of this app's publish endpoint, as seen by a process on this machine. */
  function publishUrl(req) {
    const address = req.socket.localAddress ?? '127.0.0.1';
    const host =
      address.includes(':') && !address.startsWith('::ffff:') ? `[${address}]` : address.replace(/^::ffff:/, '');
    return `http://${host}:${req.socket.localPort}/internal/publish`;
  }

  function onWorkerMessage(message) {
    const job = store.job(message?.id);
    if (job === undefined) return;
    if (message.type === 'update') {
      if (typeof message.progress === 'number') job.progress = message.progress;
      if (message.state === 'done') {
        job.state = 'done';
        job.finishedAt = Date.now();
      }
      worker?.send({ type: 'updated', ref: message.ref, job: { ...job } });
    } else if (message.type === 'finished') {
      announce(`${USERS[job.owner].display}'s job #${job.id} finished`).catch((err) => console.error(err));
    } else if (message.type === 'failed' && !closed) {
      console.error(`job #${job.id}: ${message.error}`);
    }
  }

  /** The worker process, forked at the first job (it needs this app's address). */
  function workerFor(req) {
    if (worker !== undefined) return worker;
    /** @type {NodeJS.ProcessEnv} */
    const env = { ...process.env, SSE_RELAY_TOKEN: publishToken };
    if (redisUrl) env.REDIS_URL = redisUrl;
    else {
      delete env.REDIS_URL;
      env.SSE_RELAY_PUBLISH_URL = publishUrl(req);
    }
    const child = fork(path.join(__dirname, 'worker.js'), [], { env, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    child.on('message', onWorkerMessage);
    child.on('error', (err) => console.error('job worker:', err));
    child.once('exit', (code) => {
      if (worker === child) worker = undefined;
      if (!closed && code !== 0) console.error(`job worker exited with ${code}`);
    });
    worker = child;
    return child;
  }

  function startJob(req, user) {
    const job = { id: store.newId(), owner: user, progress: 0, state: 'running', startedAt: Date.now(), finishedAt: 0 };
    store.addJob(job);
    workerFor(req).send({
      type: 'start',
      job: { id: job.id, channel: `job:${user}:${job.id}` },
      tickMs: jobTickMs,
      step: jobStep,
    });
    return job;
  }

  /** Only the worker (holding the token) may publish here, and only to job channels. */
  const expected = Buffer.from(`Bearer ${publishToken}`);
  function workerAuthorize(req, channel) {
    const got = req.headers.authorization;
    if (got === undefined) return 'unauthenticated';
    const given = Buffer.from(got);
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) return false;
    return channel.startsWith('job:');
  }

  // ---- app ----------------------------------------------------------------

  const app = express();
  app.disable('x-powered-by');
  app.use((req, res, next) => {
    res.set({
      'Content-Security-Policy': CSP,
      'X-Content-Type-Options': 'nosniff',
      'Referrer-Policy': 'same-origin',
    });
    next();
  });
  app.use(express.urlencoded({ extended: false }));

  // Front-end files from node_modules: no CDN, works offline.
  app.use('/vendor', express.static(path.dirname(require.resolve('htmx.org')), { index: false }));
  app.use('/vendor', express.static(path.dirname(require.resolve('htmx-ext-sse')), { index: false }));
  app.use('/static', express.static(path.join(__dirname, 'public'), { index: false }));
  app.get('/favicon.ico', (req, res) => res.status(204).end());

  const sendPage = (res, page, status = 200) => res.status(status).type('html').send(String(page));
  const isHtmx = (req) => req.get('HX-Request') === 'true';

  function requireUser(req, res, next) {
    const user = currentUser(req);
    if (user === undefined) {
      if (isHtmx(req)) {
        res.set('HX-Redirect', '/login').status(401).end();
      } else {
        res.redirect(303, '/login');
      }
      return;
    }
    req.user = user;
    next();
  }

  const notFound = (req, res) =>
    sendPage(res, views.errorPage({ user: req.user, status: 404, message: 'There is nothing here.' }), 404);

  // ---- login --------------------------------------------------------------

  app.get('/login', (req, res) => {
    if (currentUser(req) !== undefined) return res.redirect(303, '/dashboard');
    sendPage(res, views.loginPage());
  });

  app.post('/login', (req, res) => {
    const user = req.body?.user;
    if (typeof user !== 'string' || !Object.hasOwn(USERS, user)) {
      return sendPage(res, views.loginPage({ error: 'Pick one of the demo users.' }), 422);
    }
    sessions.login(req, res, user);
    res.redirect(303, '/dashboard');
  });

  app.post('/logout', (req, res) => {
    sessions.logout(req, res);
    res.redirect(303, '/login');
  });

  // ---- the event streams --------------------------------------------------
  // GET /events/<channel> and GET /events?channel=a&channel=b, authorised per channel.

  app.use('/events', hub.router());

  // ---- the publish endpoint (for the job worker) --------------------------

  app.post('/internal/publish', hub.publisher({ authorize: workerAuthorize }));

  // ---- operations: /metrics (a scraper on this host, or an admin) and /ops (admins) ----

  app.get('/metrics', ops.metricsRoute(currentUser));

  app.get('/ops', requireUser, (req, res) => {
    if (!ops.isAdmin(req.user)) {
      return sendPage(res, views.errorPage({ user: req.user, status: 403, message: 'Operations is for admins.' }), 403);
    }
    sendPage(
      res,
      ops.opsPage({
        layout: views.layout,
        user: String(req.user),
        figures: opsFeed.latest(),
        intervalMs: opsIntervalMs,
      }),
    );
  });

  // ---- pages --------------------------------------------------------------

  app.get('/', requireUser, (req, res) => res.redirect(303, '/dashboard'));

  app.get('/dashboard', requireUser, async (req, res) => {
    const user = req.user;
    const orders = store.ordersOf(user);
    const channels = [
      'dashboard:stats',
      'dashboard:activity',
      `user:${user}:notifications`,
      ...orders.map((o) => `order:${o.id}`),
    ];
    const page = await snapshot(channels, () => ({
      orders: store.ordersOf(user),
      notifications: store.notificationsOf(user),
      stats: store.stats(),
      activity: store.activity(),
    }));
    sendPage(res, views.dashboardPage({ user, channelCount: channels.length, ...page }));
  });

  // Fragments the dashboard refetches when an SSE event triggers them.
  app.get('/dashboard/orders', requireUser, (req, res) => sendPage(res, views.ordersTable(store.ordersOf(req.user))));
  app.get('/dashboard/notifications', requireUser, (req, res) =>
    sendPage(res, views.latestNotifications(store.notificationsOf(req.user))),
  );

  app.get('/orders', requireUser, (req, res) =>
    sendPage(res, views.ordersPage({ user: req.user, orders: store.ordersOf(req.user) })),
  );

  app.get('/orders/:id', requireUser, async (req, res) => {
    const order = store.order(req.params.id);
    if (order === undefined || order.owner !== req.user) return notFound(req, res);
    const page = await snapshot([`order:${order.id}`], () => ({ order: { ...order } }));
    sendPage(res, views.orderPage({ user: req.user, ...page }));
  });

  // The owner (a demo shortcut) or staff may change an order's status.
  app.post('/orders/:id/status', requireUser, async (req, res) => {
    const user = req.user;
    const order = store.order(req.params.id);
    if (order === undefined || (order.owner !== user && USERS[user].role !== 'staff')) return notFound(req, res);
    const status = req.body?.status;
    if (typeof status !== 'string' || !STATUSES.includes(status)) {
      return sendPage(res, views.flash('Unknown status.', 'error'), 422);
    }
    store.setStatus(order, status);
    const label = STATUS_LABELS[status];
    await Promise.all([
      publish(`order:${order.id}`, views.badge(status), 'status'),
      notify(order.owner, 'shop', `Order #${order.id} (${order.item}) is now ${label.toLowerCase()}.`),
      announce(`${USERS[user].display} set order #${order.id} to ${label.toLowerCase()}`),
    ]);
    if (req.body.view === 'row') return sendPage(res, views.warehouseRow(order));
    if (isHtmx(req)) return sendPage(res, views.flash(`Order #${order.id} is now ${label.toLowerCase()}.`));
    res.redirect(303, order.owner === user ? `/orders/${order.id}` : '/warehouse');
  });

  app.get('/notifications', requireUser, async (req, res) => {
    const user = req.user;
    const page = await snapshot([`user:${user}:notifications`], () => ({
      notifications: [...store.notificationsOf(user)],
    }));
    sendPage(res, views.notificationsPage({ user, ...page }));
  });

  app.post('/notifications', requireUser, async (req, res) => {
    const to = req.body?.to;
    const text = typeof req.body?.text === 'string' ? req.body.text.trim() : '';
    if (typeof to !== 'string' || !Object.hasOwn(USERS, to)) {
      return sendPage(res, views.flash('Pick a user to notify.', 'error'), 422);
    }
    if (text === '' || text.length > MAX_TEXT) {
      return sendPage(res, views.flash(`Write a message of 1 to ${MAX_TEXT} characters.`, 'error'), 422);
    }
    await notify(to, req.user, text);
    await publish('dashboard:stats', views.stats(store.stats()), 'stats');
    if (isHtmx(req)) return sendPage(res, views.flash(`Sent to ${USERS[to].display}.`));
    res.redirect(303, '/notifications');
  });

  app.get('/jobs', requireUser, (req, res) =>
    sendPage(res, views.jobsPage({ user: req.user, jobs: store.jobsOf(req.user) })),
  );

  app.post('/jobs', requireUser, async (req, res) => {
    const running = store.jobsOf(req.user).filter((j) => j.state === 'running').length;
    if (running >= MAX_RUNNING_JOBS) {
      return sendPage(
        res,
        views.errorPage({ user: req.user, status: 429, message: `You already have ${running} jobs running.` }),
        429,
      );
    }
    const job = startJob(req, req.user);
    await announce(`${USERS[req.user].display} started job #${job.id}`);
    res.redirect(303, `/jobs/${job.id}`);
  });

  app.get('/jobs/:id', requireUser, async (req, res) => {
    const job = store.job(req.params.id);
    if (job === undefined || job.owner !== req.user) return notFound(req, res);
    const page = await snapshot([`job:${job.owner}:${job.id}`], () => ({ job: { ...job } }));
    sendPage(res, views.jobPage({ user: req.user, ...page }));
  });

  app.get('/warehouse', requireUser, (req, res) => {
    if (USERS[req.user].role !== 'staff') {
      return sendPage(
        res,
        views.errorPage({ user: req.user, status: 403, message: 'The warehouse is for staff.' }),
        403,
      );
    }
    sendPage(res, views.warehousePage({ user: req.user, orders: store.allOrders() }));
  });

  app.use((req, res) => {
    req.user = currentUser(req);
    notFound(req, res);
  });

  app.use((err, req, res, _next) => {
    console.error(err);
    if (res.headersSent) return res.destroy();
    sendPage(res, views.errorPage({ user: currentUser(req), status: 500, message: 'Something went wrong.' }), 500);
  });

  /** Stops the job worker and closes the hub (ends every stream, releases the broker). */
  async function close() {
    closed = true;
    opsFeed.stop();
    const child = worker;
    if (child !== undefined && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      if (child.connected) child.disconnect(); // the worker exits on disconnect
      const timer = setTimeout(() => child.kill('SIGKILL'), 2000);
      await exited;
      clearTimeout(timer);
    }
    await hub.close();
  }

  return { app, hub, close };
}

module.exports = { createApp, canSubscribe };
