// @ts-check
'use strict';

const { html, raw } = require('./html');
const { USERS, STATUSES, STATUS_LABELS } = require('./store');

// htmx settings: no eval (the CSP forbids it), no injected <style>, and swap 422
// responses too, so a form can show its validation message.
const HTMX_CONFIG = JSON.stringify({
  allowEval: false,
  includeIndicatorStyles: false,
  responseHandling: [
    { code: '204', swap: false },
    { code: '[23]..', swap: true },
    { code: '422', swap: true, error: false },
    { code: '[45]..', swap: false, error: true },
  ],
});

const NAV = [
  { href: '/dashboard', label: 'Dashboard' },
  { href: '/orders', label: 'Orders' },
  { href: '/notifications', label: 'Notifications' },
  { href: '/jobs', label: 'Jobs' },
  { href: '/warehouse', label: 'Warehouse', role: 'staff' },
  { href: '/ops', label: 'Operations', role: 'admin' },
];

function displayName(user) {
  return USERS[user]?.display ?? user;
}

function time(ms) {
  const d = new Date(ms);
  return html`<time datetime="${d.toISOString()}">${d.toLocaleTimeString('en-GB')}</time>`;
}

/** @param {{ title: unknown, user?: string, active?: string, body: unknown, scripts?: string[] }} page */
function layout({ title, user, active, body, scripts = [] }) {
  const me = user ? USERS[user] : undefined;
  return html`<!doctype html>
    <html lang="en">
      <head>
        <meta charset="utf-8" />
        <meta name="viewport" content="width=device-width, initial-scale=1" />
        <meta name="htmx-config" content="${HTMX_CONFIG}" />
        <title>${title} · sse-relay demo</title>
        <link rel="stylesheet" href="/static/style.css" />
        <script src="/vendor/htmx.min.js" defer></script>
        <script src="/vendor/sse.js" defer></script>
        <script src="/static/app.js" defer></script>
        ${scripts.map((src) => html`<script src="${src}" defer></script> `)}
      </head>
      <body hx-ext="sse">
        <header class="topbar">
          <div class="topbar-inner">
            <a class="brand" href="/">sse-relay <span>demo</span></a>
            ${
              me
                ? html`<nav>
                      ${NAV.filter((n) => n.role === undefined || me.role === n.role).map(
                        (n) =>
                          html`<a href="${n.href}" ${n.href === active ? raw(' aria-current="page"') : ''}
                            >${n.label}</a
                          >`,
                      )}
                    </nav>
                    <form class="whoami" method="post" action="/logout">
                      <span
                        >Signed in as
                        <strong>${me.display}</strong
                        >${me.role !== 'customer' ? html` <em>(${me.role})</em>` : ''}</span
                      >
                      <button type="submit" class="link">Log out</button>
                    </form>`
                : ''
            }
          </div>
        </header>
        <main class="container">${body}</main>
      </body>
    </html> `;
}

/**
 * The part of a page that streams: one EventSource for the section. A `reset`
 * event (the server could not replay everything since the page was rendered)
 * refetches the section, with fresh state and a fresh resume point.
 * @param {{ url: string, page: string, close?: string, title: unknown, body: unknown }} section
 */
function liveSection({ url, page, close, title, body }) {
  return html`<section id="live" class="live" sse-connect="${url}" ${close ? html` sse-close="${close}"` : ''}>
    <div hidden hx-get="${page}" hx-select="#live" hx-target="#live" hx-swap="outerHTML" hx-trigger="sse:reset"></div>
    <div class="page-head">
      <h1>${title}</h1>
      <span class="live-status" aria-live="polite"></span>
    </div>
    ${body}
  </section>`;
}

/** `/events/<channel>` or `/events?channel=a&channel=b`, resuming from `cursor`. */
function eventsUrl(channels, cursor) {
  const resume = 'lastEventId=' + encodeURIComponent(cursor);
  if (channels.length === 1) return `/events/${encodeURIComponent(channels[0])}?${resume}`;
  return '/events?' + channels.map((c) => 'channel=' + encodeURIComponent(c)).join('&') + '&' + resume;
}

// ---- fragments (also sent as SSE data) -------------------------------------

const BADGE_LABELS = { ...STATUS_LABELS, running: 'Running', done: 'Completed' };

function badge(status) {
  return html`<span class="badge badge-${status}">${BADGE_LABELS[status] ?? status}</span>`;
}

function flash(text, kind = 'ok') {
  return html`<span class="flash flash-${kind}">${text}</span>`;
}

function notificationItem(n) {
  return html`<li id="notification-${n.id}" class="notification">
    <div class="meta"><strong>${n.from === 'shop' ? 'Shop' : `From ${displayName(n.from)}`}</strong> ${time(n.at)}</div>
    <p>${n.text}</p>
  </li>`;
}

function activityItem(a) {
  return html`<li id="activity-${a.id}">${time(a.at)} <span>${a.text}</span></li>`;
}

function progress(job) {
  return html`<progress value="${job.progress}" max="100" aria-label="Job progress">${job.progress}%</progress>
    <span class="pct">${job.progress}%</span>`;
}

function jobDone(job) {
  const secs = ((job.finishedAt - job.startedAt) / 1000).toFixed(1);
  return html`${badge('done')} <span class="muted">finished in ${secs} s</span>`;
}

function stats(s) {
  return html`<dl class="stats">
    ${STATUSES.map(
      (st) =>
        html`<div>
          <dt>${STATUS_LABELS[st]}</dt>
          <dd>${s.byStatus[st]}</dd>
        </div>`,
    )}
    <div>
      <dt>Messages sent</dt>
      <dd>${s.notificationsSent}</dd>
    </div>
    <div>
      <dt>Jobs running</dt>
      <dd>${s.jobsRunning}</dd>
    </div>
    <div>
      <dt>Jobs done</dt>
      <dd>${s.jobsDone}</dd>
    </div>
  </dl>`;
}

function ordersTable(orders, { links = true } = {}) {
  if (orders.length === 0) return html`<p class="muted">No orders.</p>`;
  return html`<table class="table">
    <thead>
      <tr>
        <th>Order</th>
        <th>Item</th>
        <th class="num">Total</th>
        <th>Status</th>
      </tr>
    </thead>
    <tbody>
      ${orders.map(
        (o) =>
          html`<tr>
            <td>${links ? html`<a href="/orders/${o.id}">#${o.id}</a>` : html`#${o.id}`}</td>
            <td>${o.item}</td>
            <td class="num">€${o.total}</td>
            <td>${badge(o.status)}</td>
          </tr>`,
      )}
    </tbody>
  </table>`;
}

function latestNotifications(list) {
  if (list.length === 0) return html`<p class="muted">Nothing yet.</p>`;
  return html`<p class="muted">${list.length} in total — <a href="/notifications">see all</a></p>
    <ul class="feed compact">
      ${list.slice(0, 3).map(notificationItem)}
    </ul>`;
}

/**
 * @param {{ id: string, status: string }} order
 * @param {{ target: string, swap?: string, view?: string }} where
 */
function statusForm(order, { target, swap, view }) {
  const action = `/orders/${order.id}/status`;
  return html`<form
    class="button-row"
    method="post"
    action="${action}"
    hx-post="${action}"
    hx-target="${target}"
    ${swap ? html` hx-swap="${swap}"` : ''}
  >
    ${view ? html`<input type="hidden" name="view" value="${view}" />` : ''}
    ${STATUSES.map((s) => html`<button type="submit" name="status" value="${s}" class="secondary">${STATUS_LABELS[s]}</button>`)}
  </form>`;
}

function warehouseRow(o) {
  return html`<tr id="wh-row-${o.id}">
    <td>#${o.id}</td>
    <td>${displayName(o.owner)}</td>
    <td>${o.item}</td>
    <td>${badge(o.status)}</td>
    <td>${statusForm(o, { target: `#wh-row-${o.id}`, swap: 'outerHTML', view: 'row' })}</td>
  </tr>`;
}

// ---- pages ---------------------------------------------------------------

/** @param {{ error?: string }} [options] */
function loginPage({ error } = {}) {
  return layout({
    title: 'Sign in',
    body: html`<form class="card login" method="post" action="/login">
      <h1>Sign in</h1>
      <p class="muted">Pick a demo user — no passwords here.</p>
      ${error ? html`<p class="flash flash-error">${error}</p>` : ''}
      <fieldset class="user-picker">
        <legend>User</legend>
        ${Object.values(USERS).map(
          (u, i) =>
            html`<label
              ><input type="radio" name="user" value="${u.name}" ${i === 0 ? raw(' checked') : ''} />
              <strong>${u.display}</strong> <span class="muted">${u.role}</span></label
            >`,
        )}
      </fieldset>
      <button type="submit">Sign in</button>
    </form>`,
  });
}

function dashboardPage({ user, url, channelCount, orders, notifications, stats: s, activity }) {
  return layout({
    title: 'Dashboard',
    user,
    active: '/dashboard',
    body: liveSection({
      url,
      page: '/dashboard',
      title: html`Hello, ${displayName(user)}`,
      body: html`<div class="grid">
          <article class="card">
            <h2>Your orders</h2>
            <div id="dash-orders" hx-get="/dashboard/orders" hx-trigger="sse:status">${ordersTable(orders)}</div>
          </article>
          <article class="card">
            <h2>Notifications</h2>
            <div id="dash-notifications" hx-get="/dashboard/notifications" hx-trigger="sse:notification">
              ${latestNotifications(notifications)}
            </div>
          </article>
          <article class="card">
            <h2>Shop stats</h2>
            <div id="dash-stats" sse-swap="stats">${stats(s)}</div>
          </article>
          <article class="card">
            <h2>Activity</h2>
            <ul id="dash-activity" class="feed compact" sse-swap="activity" hx-swap="afterbegin">
              ${activity.map(activityItem)}
              <li class="empty muted">Nothing yet.</li>
            </ul>
          </article>
        </div>
        <p class="muted small">
          One connection, ${channelCount} channels: this page listens to the shop's stats and activity, your
          notifications and each of your orders.
        </p>`,
    }),
  });
}

function ordersPage({ user, orders }) {
  return layout({
    title: 'Orders',
    user,
    active: '/orders',
    body: html`<div class="page-head"><h1>Your orders</h1></div>
      <article class="card">${ordersTable(orders)}</article>`,
  });
}

function orderPage({ user, url, order }) {
  return layout({
    title: `Order #${order.id}`,
    user,
    active: '/orders',
    body: html`${liveSection({
        url,
        page: `/orders/${order.id}`,
        title: `Order #${order.id}`,
        body: html`<article class="card">
          <dl class="details">
            <div>
              <dt>Item</dt>
              <dd>${order.item}</dd>
            </div>
            <div>
              <dt>Total</dt>
              <dd>€${order.total}</dd>
            </div>
            <div>
              <dt>Status</dt>
              <dd id="order-status" sse-swap="status">${badge(order.status)}</dd>
            </div>
          </dl>
          <p class="muted small">The status badge changes live when the warehouse updates the order.</p>
        </article>`,
      })}
      <article class="card">
        <h2>Simulate the warehouse</h2>
        <p class="muted small">
          Open this page in a second window, or sign in as Carol (staff) in another browser, and change the status.
        </p>
        ${statusForm(order, { target: '#status-result' })}
        <p id="status-result" role="status"></p>
      </article>`,
  });
}

function notificationsPage({ user, url, notifications }) {
  return layout({
    title: 'Notifications',
    user,
    active: '/notifications',
    body: html`${liveSection({
        url,
        page: '/notifications',
        title: 'Notifications',
        body: html`<article class="card">
          <ul id="notifications" class="feed" sse-swap="notification" hx-swap="afterbegin">
            ${notifications.map(notificationItem)}
            <li class="empty muted">No notifications yet.</li>
          </ul>
        </article>`,
      })}
      <article class="card">
        <h2>Send a notification</h2>
        <form
          class="stack"
          method="post"
          action="/notifications"
          hx-post="/notifications"
          hx-target="#send-result"
          data-reset-on-success
        >
          <label
            >To
            <select name="to">
              ${Object.values(USERS).map(
                (u) => html`<option value="${u.name}" ${u.name === user ? raw(' selected') : ''}>${u.display}</option>`,
              )}
            </select>
          </label>
          <label
            >Message
            <input name="text" maxlength="280" required autocomplete="off" placeholder="Your parcel is on its way"
          /></label>
          <div class="button-row"><button type="submit">Send</button><span id="send-result" role="status"></span></div>
        </form>
      </article>`,
  });
}

function jobsPage({ user, jobs }) {
  return layout({
    title: 'Jobs',
    user,
    active: '/jobs',
    body: html`<div class="page-head"><h1>Background jobs</h1></div>
      <article class="card">
        <form method="post" action="/jobs" class="button-row">
          <button type="submit">Start a job</button>
          <span class="muted small">A job reports its progress every 100 ms over SSE.</span>
        </form>
      </article>
      <article class="card">
        <h2>Your jobs</h2>
        ${
          jobs.length === 0
            ? html`<p class="muted">No jobs yet.</p>`
            : html`<table class="table">
                <thead>
                  <tr>
                    <th>Job</th>
                    <th>Started</th>
                    <th>State</th>
                    <th class="num">Progress</th>
                  </tr>
                </thead>
                <tbody>
                  ${jobs.map(
                    (j) =>
                      html`<tr>
                        <td><a href="/jobs/${j.id}">#${j.id}</a></td>
                        <td>${time(j.startedAt)}</td>
                        <td>${badge(j.state === 'done' ? 'done' : 'running')}</td>
                        <td class="num">${j.progress}%</td>
                      </tr>`,
                  )}
                </tbody>
              </table>`
        }
      </article>`,
  });
}

function jobPage({ user, url, job }) {
  const content = html`<article class="card">
    <div id="job-progress" class="progress" sse-swap="progress">${progress(job)}</div>
    <p id="job-state" sse-swap="done">${job.state === 'done' ? jobDone(job) : html`${badge('running')}`}</p>
    <p class="muted small">
      When the job is done the server sends a <code>done</code> event and the page closes its connection
      (<code>sse-close="done"</code>).
    </p>
  </article>`;
  if (job.state === 'done') {
    return layout({
      title: `Job #${job.id}`,
      user,
      active: '/jobs',
      body: html`<section id="live">
        <div class="page-head"><h1>Job #${job.id}</h1></div>
        ${content}
      </section>`,
    });
  }
  return layout({
    title: `Job #${job.id}`,
    user,
    active: '/jobs',
    body: liveSection({ url, page: `/jobs/${job.id}`, close: 'done', title: `Job #${job.id}`, body: content }),
  });
}

function warehousePage({ user, orders }) {
  return layout({
    title: 'Warehouse',
    user,
    active: '/warehouse',
    body: html`<div class="page-head"><h1>Warehouse</h1></div>
      <article class="card">
        <p class="muted small">
          Every customer's orders. A status change is pushed to the owner's order page and dashboard.
        </p>
        <table class="table">
          <thead>
            <tr>
              <th>Order</th>
              <th>Customer</th>
              <th>Item</th>
              <th>Status</th>
              <th>Set status</th>
            </tr>
          </thead>
          <tbody>
            ${orders.map(warehouseRow)}
          </tbody>
        </table>
      </article>`,
  });
}

function errorPage({ user, status, message }) {
  return layout({
    title: String(status),
    user,
    body: html`<article class="card">
      <h1>${status}</h1>
      <p>${message}</p>
      <p><a href="/dashboard">Back to the dashboard</a></p>
    </article>`,
  });
}

module.exports = {
  layout,
  eventsUrl,
  badge,
  flash,
  notificationItem,
  activityItem,
  progress,
  jobDone,
  stats,
  ordersTable,
  latestNotifications,
  warehouseRow,
  loginPage,
  dashboardPage,
  ordersPage,
  orderPage,
  notificationsPage,
  jobsPage,
  jobPage,
  warehousePage,
  errorPage,
};
