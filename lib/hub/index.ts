/**
 * createHub(): authorised channel subscriptions, fan-out through a broker,
 * history and resume. This file is the facade: options, publish, cursor,
 * stats and close; the rest lives beside it (routes, open, fan-out, channels,
 * reauthorize, stream).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import {
  MAX_HISTORY,
  MAX_IDEMPOTENCY_KEY,
  MAX_PARTITIONS,
  type Broker,
  type BrokerEvent,
  type PublishInput,
} from '../brokers/broker';
import { MemoryBroker } from '../brokers/memory';
import { SseRelayError } from '../errors';
import type { AnyEvents, EventMap } from '../events';
import { RETRY, jitter, refuse, type Handler, type NextFunction } from '../http';
import { checkIdempotencyKey, checkOptions, intInRange, nonEmptyString, positiveInt, show } from '../options';
import { formatCursor } from '../positions';
import { checkFieldValue, dataToText, encodeData, encodeFrame, encodeRetry } from '../protocol/encode';
import { publishTraced, tracePublish } from '../diagnostics';
import type { Counters } from '../metrics/counters';
import { labelCounts, registerSource, type SourceGauges } from '../metrics/registry';
import { Admission, droppedTotal } from '../stream/admission';
import type { Connection } from '../stream/connection';
import { checkFrameSize, resolveOptions } from '../stream/options';
import { turn } from '../stream/turn';
import { Channels } from './channels';
import { Delivery } from './fan-out';
import { openStream, type OpenContext } from './open';
import { createPublisher, type PublisherHandler, type PublisherOptions } from '../publisher';
import { Reauthorizer, type Authorize } from './reauthorize';
import { checkChannelArg, routerHandler, subscribeHandler, type Open, type SelectChannels } from './routes';
import type { HubStream } from './stream';
import type { Hub, HubOptions, HubStats, PublishOptions } from './types';

export { CHANNEL_NAME, type SelectChannels } from './routes';
export type { Authorize } from './reauthorize';
export type { Handler } from '../http';
export type { Hub, HubOptions, HubStats, PublishOptions } from './types';

/** Stands for the longest id a stream could be sent with an event, when sizing it. */
const LONGEST_ID = 'x'.repeat(128);

const HUB_OPTIONS = ['authorize', 'broker', 'history', 'reauthorizeEvery', 'reauthorizeTimeout', 'sse'] as const;
const PUBLISH_OPTIONS = ['event', 'coalesce', 'idempotencyKey'] as const;
const BROKER_METHODS = ['publish', 'subscribe', 'unsubscribe', 'replay', 'close'] as const;

function checkBroker(broker: unknown): { partitions: number; partitionOf: (channel: string) => number } {
  const b = broker as Record<string, unknown> | null;
  if (b === null || typeof b !== 'object')
    throw new TypeError(`sse-relay: createHub option broker must implement Broker, got ${show(broker)}`);
  for (const method of BROKER_METHODS) {
    if (typeof b[method] !== 'function')
      throw new TypeError(`sse-relay: createHub option broker must implement Broker (missing ${method}())`);
  }
  const partitions = b.partitions ?? 1;
  if (
    typeof partitions !== 'number' ||
    !Number.isInteger(partitions) ||
    partitions < 1 ||
    partitions > MAX_PARTITIONS
  ) {
    throw new RangeError(
      `sse-relay: a broker's partitions must be an integer from 1 to ${MAX_PARTITIONS}, got ${show(partitions)}`,
    );
  }
  if (partitions === 1) return { partitions, partitionOf: () => 0 };
  if (typeof b.partitionOf !== 'function')
    throw new TypeError('sse-relay: a broker with several partitions must implement partitionOf()');
  const of = (b.partitionOf as (channel: string) => number).bind(broker);
  return {
    partitions,
    partitionOf: (channel) => {
      const p = of(channel);
      if (!Number.isInteger(p) || p < 0 || p >= partitions)
        throw new RangeError(`sse-relay: broker.partitionOf returned ${show(p)}`);
      return p;
    },
  };
}

class HubImpl implements Hub, OpenContext {
  readonly broker: Broker;
  readonly authorize: Authorize;
  readonly history: number;
  readonly admission: Admission<Connection>;
  readonly channels: Channels;
  readonly delivery: Delivery;
  readonly reauth: Reauthorizer;
  readonly streams = new Set<HubStream>();
  readonly partitionCount: number;
  readonly partitionOf: (channel: string) => number;
  closed = false;
  private readonly unregisterMetrics: () => void;
  private readonly open: Open = Object.assign(
    (req: IncomingMessage, res: ServerResponse, next: NextFunction, channels: readonly string[]): void => {
      openStream(this, req, res, next, channels).catch((err: unknown) => {
        // Only a bug in sse-relay lands here: never leave the request hanging.
        if (!res.headersSent) next(err);
        else if (!res.writableEnded) res.destroy();
      });
    },
    { refused: (res: ServerResponse, status: number) => refuse(res, status) },
  );

  constructor(options: HubOptions) {
    if (options === null || typeof options !== 'object') {
      throw new TypeError('sse-relay: createHub expects an options object with an authorize function');
    }
    const o = checkOptions('createHub', options, HUB_OPTIONS);
    if (typeof o.authorize !== 'function') {
      throw new TypeError('sse-relay: createHub option authorize must be a function (req, channel) => boolean');
    }
    const history = o.history === undefined ? 1000 : intInRange('history', o.history, 0, MAX_HISTORY);
    const every = o.reauthorizeEvery ?? false;
    if (every !== false) positiveInt('reauthorizeEvery', every);
    const timeout =
      o.reauthorizeTimeout === undefined ? 10_000 : positiveInt('reauthorizeTimeout', o.reauthorizeTimeout);
    const broker = o.broker ?? new MemoryBroker();
    const { partitions, partitionOf } = checkBroker(broker);
    this.authorize = o.authorize;
    this.history = history;
    this.broker = broker;
    this.partitionCount = partitions;
    this.partitionOf = partitionOf;
    this.admission = new Admission(resolveOptions(o.sse, 'createHub sse'), 'hub');
    this.delivery = new Delivery(
      (channel) => this.channels.of(channel),
      partitions,
      this.admission.counters,
      (channels, after) => this.broker.replay(channels, after, 1),
    );
    this.channels = new Channels(broker, this.delivery, (group) => this.delivery.fanOut.forget(group));
    this.reauth = new Reauthorizer(this.authorize, every === false ? 0 : every, timeout, () => this.streams);
    this.open.refused = (res, status) => {
      this.counters.refused[status as 400]++;
      refuse(res, status);
    };
    this.unregisterMetrics = registerSource(this);
  }

  /** The metrics source's counters (lib/metrics): the same object the hub's streams count in. */
  get counters(): Counters {
    return this.admission.counters;
  }

  /** Metrics gauges, read at scrape time. */
  gauges(): SourceGauges {
    const stats = (this.broker as Broker & { stats?: () => { recoveries?: unknown } }).stats?.();
    const recoveries = stats?.recoveries;
    return {
      connections: this.admission.open.size,
      channels: this.channels.size,
      brokerRecoveries: typeof recoveries === 'number' ? recoveries : undefined,
    };
  }

  subscribe(select: SelectChannels): Handler {
    return subscribeHandler(this.open, select);
  }

  router(): Handler {
    return routerHandler(this.open);
  }

  publish(channel: string, data: unknown, options?: PublishOptions): Promise<string> {
    // One layer of promises (store): what is wrong with the call rejects, as it would in an async function.
    let input: PublishInput;
    try {
      input = this.publishInput(channel, data, options);
    } catch (err) {
      return Promise.reject(err);
    }
    if (!publishTraced()) return this.store(channel, input);
    const { event, coalesce } = input;
    return tracePublish({ channel, event, coalesce, size: input.data.length }, () => this.store(channel, input));
  }

  /** Checks a publish() call and turns it into the broker's input; throws what the caller gets. */
  private publishInput(channel: string, data: unknown, options: PublishOptions | undefined): PublishInput {
    checkChannelArg(channel);
    const o = checkOptions('publish', options, PUBLISH_OPTIONS);
    const event = o.event === undefined ? undefined : checkFieldValue('event', o.event);
    const coalesce = o.coalesce === undefined ? undefined : nonEmptyString('coalesce', o.coalesce);
    const idempotencyKey =
      o.idempotencyKey === undefined ? undefined : checkIdempotencyKey(o.idempotencyKey, MAX_IDEMPOTENCY_KEY);
    const text = dataToText(data, this.admission.opts.serialize);
    // The largest frame any stream could get (the longest id, the event line, every line's `data: `):
    // built only when a cheap bound says it might be over the limit.
    const max = this.admission.opts.maxEventBytes;
    if ((text.length + (event?.length ?? 0)) * 3 + 200 > max) {
      checkFrameSize(encodeFrame(LONGEST_ID, event, encodeData(text)), max);
    }
    if (this.closed) throw new SseRelayError('ERR_HUB_CLOSED', 'sse-relay: the hub is closed');
    return { data: text, event, coalesce, idempotencyKey };
  }

  /**
   * The broker part of publish(): store, count, stamp for latency, yield to
   * sockets after a big turn. Written with then() rather than async/await:
   * an await costs a context and two closures per call, and this runs once
   * per event.
   */
  private store(channel: string, input: PublishInput): Promise<string> {
    const t0 = performance.now();
    const delivery = this.delivery;
    delivery.publishing = t0;
    delivery.deliveredInPublish = false;
    let pending: Promise<BrokerEvent>;
    try {
      pending = this.broker.publish(channel, input, this.history);
    } catch (err) {
      return Promise.reject(err);
    } finally {
      delivery.publishing = undefined;
    }
    // A broker that delivered inside publish() (MemoryBroker) had its latency observed then: no closure needed.
    if (delivery.deliveredInPublish) return pending.then(this.storedHere);
    return pending.then((ev) => {
      const id = this.stored(ev, channel);
      if (this.channels.of(channel) !== undefined) delivery.stamp(ev, t0);
      return id;
    });
  }

  /** `stored` for an event the broker delivered here inside publish() (so its channel is the one published to). */
  private readonly storedHere = (ev: BrokerEvent): string | Promise<string> => this.stored(ev, ev.channel);

  /** The broker has the event: check it, count it, and resolve with its id (after socket I/O when the turn was big). */
  private stored(ev: BrokerEvent, channel: string): string | Promise<string> {
    const delivery = this.delivery;
    if (!delivery.valid(ev))
      throw new Error('sse-relay: the broker resolved publish() with an event that breaks the Broker contract');
    this.counters.published++;
    const label = labelCounts(this.counters, channel);
    if (label !== undefined) label.published++;
    const id = delivery.eventId(ev);
    const flushed = turn.afterFlush();
    return flushed === undefined ? id : flushed.then(() => id);
  }

  publisher(options: PublisherOptions): PublisherHandler {
    return createPublisher((channel, data, o) => this.publish(channel, data, o), options, this.counters.refused);
  }

  async cursor(channels: string | readonly string[]): Promise<string> {
    const list = typeof channels === 'string' ? [channels] : [...channels];
    for (const ch of list) checkChannelArg(ch);
    if (list.length === 0) throw new TypeError('sse-relay: hub.cursor() needs at least one channel');
    const { heads } = await this.broker.replay(list, undefined);
    const parts = [...new Set(list.map((ch) => this.partitionOf(ch)))].sort((a, b) => a - b);
    return formatCursor(
      this.partitionCount,
      parts.map((p) => {
        const head = heads.get(p);
        if (head === undefined) throw new Error('sse-relay: the broker returned no head for a partition');
        return [p, head] as const;
      }),
    );
  }

  stats(): HubStats {
    const c = this.counters;
    return {
      connections: this.admission.open.size,
      channels: this.channels.size,
      published: c.published,
      delivered: c.delivered,
      dropped: droppedTotal(c),
      droppedBy: { ...c.dropped },
      refused: { ...c.refused },
      replays: { ...c.replays },
      resets: c.resets,
      coalesced: c.coalesced,
      invalid: c.invalid,
    };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.unregisterMetrics();
    this.reauth.stop();
    this.admission.closeAll(() => encodeRetry(jitter(RETRY.unavailable)));
    await this.channels.close();
    await this.broker.close();
  }
}

/** Creates a hub: authorised channel subscriptions, fan-out through a broker, history and resume. */
export function createHub<E extends EventMap = AnyEvents>(options: HubOptions): Hub<E> {
  return new HubImpl(options) as Hub<E>;
}
