// @ts-check
'use strict';

const { randomBytes } = require('node:crypto');

/**
 * The demo's data, in this process's memory (a real app keeps it in its database).
 * With two instances on one Redis the live events are shared, the data is not.
 */

const USERS = {
  alice: { name: 'alice', display: 'Alice', role: 'customer' },
  bob: { name: 'bob', display: 'Bob', role: 'customer' },
  carol: { name: 'carol', display: 'Carol', role: 'staff' },
  // Sees the operations page (/ops) and /metrics.
  dave: { name: 'dave', display: 'Dave', role: 'admin' },
};

const STATUSES = ['pending', 'paid', 'packed', 'shipped', 'delivered', 'cancelled'];
const STATUS_LABELS = {
  pending: 'Pending',
  paid: 'Paid',
  packed: 'Packed',
  shipped: 'Shipped',
  delivered: 'Delivered',
  cancelled: 'Cancelled',
};

/** @typedef {{ id: string, from: string, text: string, at: number }} NotificationEntry */

const MAX_NOTIFICATIONS = 50;
const MAX_ACTIVITY = 20;

function createStore() {
  const now = Date.now();
  const orders = new Map(
    [
      { id: '1001', owner: 'alice', item: 'Espresso machine', total: 349, status: 'paid' },
      { id: '1002', owner: 'alice', item: 'Burr coffee grinder', total: 129, status: 'pending' },
      { id: '1003', owner: 'bob', item: 'Gooseneck kettle', total: 59, status: 'shipped' },
      { id: '1004', owner: 'bob', item: 'Loose-leaf tea set', total: 42, status: 'pending' },
    ].map((o) => [o.id, { ...o, updatedAt: now }]),
  );
  /** user -> notifications, newest first. @type {Map<string, NotificationEntry[]>} */
  const notifications = new Map(Object.keys(USERS).map((u) => [u, []]));
  /** id -> { id, owner, progress, state: 'running' | 'done', startedAt, finishedAt } */
  const jobs = new Map();
  /** Shared activity feed, newest first. */
  const activity = [];
  let notificationsSent = 0;

  return {
    /**
     * A random id: instances that share one Redis must not mint the same job
     * channel or the same element id for two different things.
     */
    newId: () => randomBytes(4).toString('hex'),

    ordersOf: (user) => [...orders.values()].filter((o) => o.owner === user),
    allOrders: () => [...orders.values()],
    order: (id) => orders.get(id),
    setStatus(order, status) {
      order.status = status;
      order.updatedAt = Date.now();
    },

    notificationsOf: (user) => notifications.get(user) ?? [],
    addNotification(user, n) {
      const list = /** @type {NotificationEntry[]} */ (notifications.get(user));
      list.unshift(n);
      if (list.length > MAX_NOTIFICATIONS) list.length = MAX_NOTIFICATIONS;
      notificationsSent++;
    },

    jobsOf: (user) => [...jobs.values()].filter((j) => j.owner === user).reverse(),
    job: (id) => jobs.get(id),
    addJob: (job) => jobs.set(job.id, job),
    allJobs: () => [...jobs.values()],

    activity: () => activity,
    addActivity(entry) {
      activity.unshift(entry);
      if (activity.length > MAX_ACTIVITY) activity.length = MAX_ACTIVITY;
    },

    stats() {
      const byStatus = Object.fromEntries(STATUSES.map((s) => [s, 0]));
      for (const o of orders.values()) byStatus[o.status]++;
      let running = 0;
      let done = 0;
      for (const j of jobs.values()) {
        if (j.state === 'done') done++;
        else running++;
      }
      return { byStatus, notificationsSent, jobsRunning: running, jobsDone: done };
    },
  };
}

module.exports = { createStore, USERS, STATUSES, STATUS_LABELS };
