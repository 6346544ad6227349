/**
 * The hub's request handlers: `subscribe(select)` and `router()`. They turn a
 * request into a validated channel list (anything else: 400, nothing
 * subscribed) and hand it to the open pipeline.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { pathOf, queryOf, type Handler, type NextFunction } from '../http';

import { CHANNEL_NAME } from '../channel-name';

export { CHANNEL_NAME, checkChannelArg } from '../channel-name';

/** Most channels one stream may ask for; more is a 400. */
export const MAX_CHANNELS_PER_STREAM = 256;

export type SelectChannels = (req: IncomingMessage) => string | readonly string[] | Promise<string | readonly string[]>;

/** What the routes hand a validated request to. */
export interface Open {
  (req: IncomingMessage, res: ServerResponse, next: NextFunction, channels: readonly string[]): void;
  /** Answers (and counts) a request refused before it reached the pipeline. */
  refused(res: ServerResponse, status: number): void;
}

/** The distinct channels of `list` (a name or names), or undefined when any is not a channel name. */
export function validateChannels(list: unknown): string[] | undefined {
  const input = typeof list === 'string' ? [list] : list;
  if (!Array.isArray(input) || input.length === 0 || input.length > MAX_CHANNELS_PER_STREAM) return undefined;
  const out: string[] = [];
  for (const name of input) {
    if (typeof name !== 'string' || !CHANNEL_NAME.test(name)) return undefined;
    if (!out.includes(name)) out.push(name);
  }
  return out;
}

function withChannels(
  open: Open,
  req: IncomingMessage,
  res: ServerResponse,
  next: NextFunction,
  selected: unknown,
): void {
  const channels = validateChannels(selected);
  if (channels === undefined) open.refused(res, 400);
  else open(req, res, next, channels);
}

/** A handler that subscribes the request to the channels `select` names. */
export function subscribeHandler(open: Open, select: SelectChannels): Handler {
  if (typeof select !== 'function') {
    throw new TypeError('sse-relay: hub.subscribe(select) expects a function (req) => channel | channel[]');
  }
  return (req, res, next) => {
    let selected: ReturnType<SelectChannels>;
    try {
      selected = select(req);
    } catch (err) {
      next(err);
      return;
    }
    if (
      selected !== null &&
      typeof selected === 'object' &&
      typeof (selected as Promise<unknown>).then === 'function'
    ) {
      (selected as Promise<string | readonly string[]>).then(
        (list) => withChannels(open, req, res, next, list),
        (err: unknown) => next(err),
      );
    } else {
      withChannels(open, req, res, next, selected);
    }
  };
}

/** `GET /?channel=a&channel=b` and `GET /<channel>` (one percent-decoded segment); other methods go to `next()`. */
export function routerHandler(open: Open): Handler {
  return (req, res, next) => {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      next();
      return;
    }
    const path = pathOf(req);
    if (path === '/' || path === '') {
      withChannels(open, req, res, next, queryOf(req).getAll('channel'));
      return;
    }
    const segment = path.slice(1);
    if (segment.includes('/')) {
      open.refused(res, 400);
      return;
    }
    let channel: string;
    try {
      channel = decodeURIComponent(segment);
    } catch {
      open.refused(res, 400);
      return;
    }
    withChannels(open, req, res, next, [channel]);
  };
}
