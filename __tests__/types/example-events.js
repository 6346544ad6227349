// @ts-check
'use strict';

/**
 * Type test for the example app's event catalog (`AppEvents` in
 * example-app/app.js), checked by `tsc -p tsconfig.example.json` (part of
 * `npm run typecheck`); never run. Every `@ts-expect-error` line MUST be an
 * error: if the app's hub stopped being typed with its catalog, tsc fails with
 * "Unused '@ts-expect-error' directive".
 *
 * @typedef {import('../../example-app/app').AppEvents} AppEvents
 * @typedef {ReturnType<typeof import('../../example-app/app').createApp>['hub']} AppHub
 */

/** @param {AppHub} hub the hub createApp() returns */
async function publishWithTheAppCatalog(hub) {
  await hub.publish('order:1001', '<span class="badge badge-paid">Paid</span>', { event: 'status' });
  await hub.publish('job:alice:1', '<progress value="50" max="100"></progress>', {
    event: 'progress',
    coalesce: 'progress',
  });
  // @ts-expect-error unknown event name (a typo of `status`)
  await hub.publish('order:1001', '<span class="badge">Paid</span>', { event: 'statsu' });
  // @ts-expect-error `reset` is the hub's own event, never published by the app
  await hub.publish('order:1001', '', { event: 'reset' });
  // @ts-expect-error a payload is a rendered fragment (string), not an object
  await hub.publish('order:1001', { status: 'paid' }, { event: 'status' });
  // @ts-expect-error the catalog has no `message` entry: every publish names its event
  await hub.publish('dashboard:stats', '<dl></dl>');
}

/** @type {keyof AppEvents} */
const known = 'notification';
// @ts-expect-error not an event of the catalog
/** @type {keyof AppEvents} */ const unknown = 'notifications';

module.exports = { publishWithTheAppCatalog, known, unknown };
