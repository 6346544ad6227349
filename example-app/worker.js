// @ts-check
'use strict';

/**
 * The demo's job runner: a separate process (app.js forks it at the first job;
 * it ends when the app disconnects). For each job it paces the work, records
 * the job's new state in the app (over IPC: the app's store stands in for a
 * database row) and then publishes the progress ITSELF, the way a worker in
 * any language would:
 *
 * - through the app's HTTP publish endpoint (`POST /internal/publish` with a
 *   bearer token: SSE_RELAY_PUBLISH_URL + SSE_RELAY_TOKEN) when the app runs on
 *   a MemoryBroker;
 * - through the `sse-relay` command line over Redis when REDIS_URL is set (the
 *   same RedisBroker the app's hub uses, so ids, history and resume just work).
 *
 * State first, then publish: a page that renders after the event was published
 * reads the new state; one that rendered before gets the event replayed.
 */
const { execFile } = require('node:child_process');
const path = require('node:path');
const views = require('./views');

const PUBLISH_URL = process.env.SSE_RELAY_PUBLISH_URL;
const TOKEN = process.env.SSE_RELAY_TOKEN;
const REDIS_URL = process.env.REDIS_URL;

/** The installed `sse-relay` command (package.json "bin"), run with this node. */
function cliPath() {
  const pkgFile = require.resolve('sse-relay/package.json');
  const pkg = require(pkgFile);
  return path.join(path.dirname(pkgFile), pkg.bin['sse-relay']);
}

/** Running CLI children, killed if the worker is told to stop. */
const children = new Set();

/**
 * @param {string} channel
 * @param {string} data
 * @param {{ event: string, coalesce?: string }} options
 * @returns {Promise<string>} the event's id
 */
function publishViaCli(channel, data, options) {
  const args = [cliPath(), 'publish', channel, data, '--event', options.event, '--redis', String(REDIS_URL)];
  if (options.coalesce !== undefined) args.push('--coalesce', options.coalesce);
  return new Promise((resolve, reject) => {
    const child = execFile(process.execPath, args, { timeout: 10_000 }, (err, stdout, stderr) => {
      children.delete(child);
      if (err) reject(new Error(`sse-relay publish failed (${err.code ?? err.signal}): ${String(stderr).trim()}`));
      else resolve(String(stdout).trim());
    });
    children.add(child);
  });
}

/**
 * @param {string} channel
 * @param {string} data
 * @param {{ event: string, coalesce?: string }} options
 * @returns {Promise<string>} the event's id
 */
async function publishViaHttp(channel, data, options) {
  const res = await fetch(String(PUBLISH_URL), {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${TOKEN}` },
    body: JSON.stringify({ channel, data, ...options }),
    signal: AbortSignal.timeout(10_000),
  });
  const text = await res.text();
  if (res.status !== 201) throw new Error(`the publish endpoint answered ${res.status} ${text}`);
  return JSON.parse(text).id;
}

const publish = REDIS_URL ? publishViaCli : publishViaHttp;

// ---- talking to the app ------------------------------------------------------

let nextRef = 0;
/** ref -> resolve, for the app's answers. */
const pending = new Map();

/** @param {object} message */
function send(message) {
  if (process.connected) process.send?.(message);
}

/**
 * Records the job's new state in the app and resolves with the job as stored.
 * @param {{ id: string, progress?: number, state?: 'done' }} change
 */
function update(change) {
  return new Promise((resolve, reject) => {
    if (!process.connected) return reject(new Error('the app is gone'));
    const ref = ++nextRef;
    pending.set(ref, resolve);
    send({ type: 'update', ref, ...change });
  });
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
let stopping = false;

/** @param {{ id: string, channel: string }} job @param {number} tickMs @param {number} step */
async function run(job, tickMs, step) {
  try {
    for (let progress = 0; progress < 100 && !stopping;) {
      await sleep(tickMs);
      progress = Math.min(100, progress + step);
      const stored = await update({ id: job.id, progress });
      // coalesce: a client that falls behind gets the newest progress, not a backlog.
      await publish(job.channel, String(views.progress(stored)), { event: 'progress', coalesce: 'progress' });
    }
    if (stopping) return;
    const done = await update({ id: job.id, state: 'done' });
    await publish(job.channel, String(views.jobDone(done)), { event: 'done' });
    send({ type: 'finished', id: job.id });
  } catch (err) {
    if (!stopping) send({ type: 'failed', id: job.id, error: err instanceof Error ? err.message : String(err) });
  }
}

process.on('message', (/** @type {any} */ message) => {
  if (message?.type === 'start') run(message.job, message.tickMs, message.step);
  else if (message?.type === 'updated') {
    const resolve = pending.get(message.ref);
    pending.delete(message.ref);
    resolve?.(message.job);
  }
});

// The app closed (or died): stop at once, with the publishes under way.
process.on('disconnect', () => {
  stopping = true;
  for (const child of children) child.kill('SIGKILL');
  process.exit(0);
});

if (!process.send) {
  console.error('example-app/worker.js is started by app.js (child_process.fork), not on its own.');
  process.exitCode = 2;
} else if (!REDIS_URL && (!PUBLISH_URL || !TOKEN)) {
  console.error('worker.js needs SSE_RELAY_PUBLISH_URL and SSE_RELAY_TOKEN (or REDIS_URL)');
  process.exit(2);
}
