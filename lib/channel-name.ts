/** What a channel name is, for every entry point (hub, publish endpoint, CLI): one leaf module, no imports. */

/** A channel name: 1 to 200 of `A-Z a-z 0-9 _ . : -`. */
export const CHANNEL_NAME = /^[A-Za-z0-9_.:-]{1,200}$/;

/** Throws a TypeError unless `channel` is a channel name (for calls, not requests). */
export function checkChannelArg(channel: unknown): string {
  if (typeof channel !== 'string' || !CHANNEL_NAME.test(channel)) {
    throw new TypeError(`sse-relay: a channel name must match ${CHANNEL_NAME}, got ${JSON.stringify(channel)}`);
  }
  return channel;
}
