/**
 * Typed event catalogs. A catalog maps event names to payload types:
 *
 * ```ts
 * interface Events {
 *   status: { orderId: string; state: 'paid' | 'shipped' };
 *   message: string; // events sent without a name
 * }
 * const hub = createHub<Events>({ authorize });
 * hub.publish('order:1', { orderId: '1', state: 'paid' }, { event: 'status' }); // checked
 * ```
 *
 * Without a catalog (the default, `AnyEvents`) any name and any payload go.
 */

/** Event name -> payload type: any object type (an interface works). */
export type EventMap = object;

/** The default catalog: any event name, any payload. */
export type AnyEvents = { [event: string]: unknown };

/** Names of a catalog's events. */
export type EventName<E extends EventMap> = keyof E & string;

/**
 * The payload of an event sent without a name (dispatched as `message`): the
 * catalog's `message` entry, `unknown` without a catalog, and `never` (not
 * allowed) for a catalog that has no `message` entry.
 */
export type MessageData<E extends EventMap> = string extends keyof E
  ? unknown
  : 'message' extends keyof E
    ? E['message']
    : never;
