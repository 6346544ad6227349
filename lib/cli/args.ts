/**
 * The command line of `sse-relay`: parsing, checks and the help text. Pure:
 * nothing here touches the network or the process.
 */
import { IDEMPOTENCY_KEY } from '../publisher/fields';
import { parseArgs } from 'node:util';
import { CHANNEL_NAME } from '../channel-name';

/** A usage error: exit status 2, the message and a pointer to --help on stderr. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

export const HELP = `Usage: sse-relay <command> [options]

Commands:
  publish <channel> <data>   publish one event; prints its id
  tail <channel>             print the live events of a channel, one JSON line each, until Ctrl-C
  help                       print this help (also --help, -h)

Publish through Redis (the same RedisBroker as the app's hub) or through an
HTTP publish endpoint (hub.publisher()):
  sse-relay publish order:123 '<span>Shipped</span>' --event status --redis redis://127.0.0.1:6379
  sse-relay publish order:123 '<span>Shipped</span>' --event status --url https://app.example/internal/publish
  echo '{"pct":50}' | sse-relay publish job:7 - --coalesce progress --redis redis://127.0.0.1:6379
  sse-relay tail order:123 --redis redis://127.0.0.1:6379
  sse-relay publish order:123 '<span>Shipped</span>' --cluster 10.0.0.1:6379,10.0.0.2:6379

Options:
  --redis URL            Redis of the app's RedisBroker (publish, tail)
  --cluster HOST:PORT,…  startup nodes of the app's Redis Cluster, instead of --redis
  --url URL              the app's publish endpoint (publish)
  --event NAME           event name (default: none, dispatched as "message")
  --coalesce KEY         latest-wins key
  --idempotency-key KEY  publish at most once per key
  --history N            events kept per channel, like createHub({ history }) (--redis, --cluster; default 1000)
  --prefix PREFIX        RedisBroker key prefix (--redis, --cluster; default "sse-relay:")
  --token TOKEN          sent as "Authorization: Bearer TOKEN" (--url; default: $SSE_RELAY_TOKEN)
  --timeout MS           give up after this long (default 5000)
  -h, --help             print this help

<data> "-" reads the data from stdin. tail prints {"id":…,"event":…,"data":…} per
event ("event" is "message" when the event has no name) and {"event":"reset"}
when Redis lost events of the channel; Ctrl-C (SIGINT) or SIGTERM ends it.

Exit status: 0 ok, 1 refused (the endpoint said no, Redis unreachable), 2 usage error.
`;

export interface PublishCommand {
  readonly command: 'publish';
  readonly channel: string;
  /** The data, or `-` to read it from stdin. */
  readonly data: string;
  readonly event: string | undefined;
  readonly coalesce: string | undefined;
  readonly idempotencyKey: string | undefined;
  readonly target:
    | { readonly redis: RedisTarget; readonly prefix: string | undefined; readonly history: number }
    | { readonly url: URL; readonly token: string | undefined };
  readonly timeout: number;
}

/** One Redis (`--redis URL`) or a Redis Cluster's startup nodes (`--cluster`). */
export type RedisTarget = { readonly url: string } | { readonly cluster: readonly { host: string; port: number }[] };

export interface TailCommand {
  readonly command: 'tail';
  readonly channel: string;
  readonly redis: RedisTarget;
  readonly prefix: string | undefined;
  readonly timeout: number;
}

export type Command = PublishCommand | TailCommand | { readonly command: 'help' };

const OPTIONS = {
  redis: { type: 'string' },
  cluster: { type: 'string' },
  url: { type: 'string' },
  event: { type: 'string' },
  coalesce: { type: 'string' },
  'idempotency-key': { type: 'string' },
  history: { type: 'string' },
  prefix: { type: 'string' },
  token: { type: 'string' },
  timeout: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

type Values = { [K in keyof typeof OPTIONS]?: (typeof OPTIONS)[K]['type'] extends 'boolean' ? boolean : string };

const FIELD_BREAK = /[\r\n\0]/;

function only(values: Values, allowed: ReadonlyArray<keyof Values>, command: string): void {
  for (const key of Object.keys(values) as Array<keyof Values>) {
    if (values[key] !== undefined && !allowed.includes(key))
      throw new UsageError(`--${key} does not apply to ${command}`);
  }
}

function channelArg(value: string | undefined): string {
  if (value === undefined) throw new UsageError('missing <channel>');
  if (!CHANNEL_NAME.test(value)) throw new UsageError('<channel> must be 1 to 200 of A-Z a-z 0-9 _ . : -');
  return value;
}

function nameOption(name: string, value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  if (value === '' || FIELD_BREAK.test(value))
    throw new UsageError(`--${name} must be a non-empty string without CR, LF or NUL`);
  return value;
}

function idempotencyOption(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  if (!IDEMPOTENCY_KEY.test(value))
    throw new UsageError('--idempotency-key must be 1 to 200 visible ASCII characters (no spaces)');
  return value;
}

function intOption(name: string, value: string | undefined, fallback: number, min: number, max: number): number {
  if (value === undefined) return fallback;
  if (!/^[0-9]{1,15}$/.test(value) || Number(value) < min || Number(value) > max) {
    throw new UsageError(`--${name} must be an integer from ${min} to ${max}, got ${JSON.stringify(value)}`);
  }
  return Number(value);
}

function redisOption(value: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new UsageError('--redis must be a URL like redis://127.0.0.1:6379');
  }
  if (url.protocol !== 'redis:' && url.protocol !== 'rediss:')
    throw new UsageError('--redis must be a redis:// or rediss:// URL');
  return value;
}

function clusterOption(value: string): { host: string; port: number }[] {
  const nodes = value.split(',').map((part) => {
    const m = /^([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\]):([0-9]{1,5})$/.exec(part.trim());
    const port = m === null ? 0 : Number(m[2]);
    if (m === null || port < 1 || port > 65535) {
      throw new UsageError(`--cluster must be HOST:PORT[,HOST:PORT...], got ${JSON.stringify(part)}`);
    }
    return { host: m[1]!.replace(/^\[|\]$/g, ''), port };
  });
  return nodes;
}

/** --redis URL or --cluster nodes (at most one), or undefined when neither is given. */
function redisTarget(values: Values): RedisTarget | undefined {
  if (values.redis !== undefined && values.cluster !== undefined) {
    throw new UsageError('--redis and --cluster are exclusive: one Redis, or the startup nodes of a cluster');
  }
  if (values.redis !== undefined) return { url: redisOption(values.redis) };
  if (values.cluster !== undefined) return { cluster: clusterOption(values.cluster) };
  return undefined;
}

function urlOption(value: string): URL {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new UsageError('--url must be an http:// or https:// URL');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    throw new UsageError('--url must be an http:// or https:// URL');
  return url;
}

/** Parses `argv` (without node and the script); `env` supplies SSE_RELAY_TOKEN. Throws UsageError. */
export function parseCommand(argv: readonly string[], env: NodeJS.ProcessEnv): Command {
  let parsed: { values: Values; positionals: string[] };
  try {
    parsed = parseArgs({ args: [...argv], options: OPTIONS, allowPositionals: true, strict: true }) as typeof parsed;
  } catch (err) {
    // node's own wording, on one line, without its hint about positionals that start with "-".
    throw new UsageError((err as Error).message.replace(/\. To specify a positional[\s\S]*$/, '').replace(/\n/g, ' '));
  }
  const { values, positionals } = parsed;
  const [command, ...rest] = positionals;
  if (values.help === true || command === 'help' || command === undefined) {
    if (command === undefined && values.help !== true) throw new UsageError('missing <command>');
    return { command: 'help' };
  }
  const timeout = intOption('timeout', values.timeout, 5000, 1, 3_600_000);
  switch (command) {
    case 'publish': {
      only(
        values,
        ['redis', 'cluster', 'url', 'event', 'coalesce', 'idempotency-key', 'history', 'prefix', 'token', 'timeout'],
        'publish',
      );
      if (rest.length > 2) throw new UsageError('publish takes <channel> <data> (quote data that has spaces)');
      const channel = channelArg(rest[0]);
      const data = rest[1];
      if (data === undefined) throw new UsageError('missing <data> (use - to read it from stdin)');
      const viaRedis = values.redis !== undefined || values.cluster !== undefined;
      if (viaRedis === (values.url !== undefined))
        throw new UsageError('publish needs one of --redis URL, --cluster HOST:PORT,… or --url URL');
      let target: PublishCommand['target'];
      if (viaRedis) {
        if (values.token !== undefined) throw new UsageError('--token applies to --url only');
        target = {
          redis: redisTarget(values)!,
          prefix: values.prefix,
          history: intOption('history', values.history, 1000, 0, 1_000_000),
        };
      } else {
        if (values.history !== undefined || values.prefix !== undefined) {
          throw new UsageError(
            "--history and --prefix apply to --redis and --cluster only (the endpoint uses its hub's)",
          );
        }
        const token = values.token ?? (env.SSE_RELAY_TOKEN || undefined);
        target = { url: urlOption(values.url!), token };
      }
      return {
        command: 'publish',
        channel,
        data,
        event: nameOption('event', values.event),
        coalesce: nameOption('coalesce', values.coalesce),
        idempotencyKey: idempotencyOption(values['idempotency-key']),
        target,
        timeout,
      };
    }
    case 'tail': {
      only(values, ['redis', 'cluster', 'prefix', 'timeout'], 'tail');
      if (rest.length > 1) throw new UsageError('tail takes one <channel>');
      const channel = channelArg(rest[0]);
      const redis = redisTarget(values);
      if (redis === undefined) throw new UsageError('tail needs --redis URL or --cluster HOST:PORT,…');
      return { command: 'tail', channel, redis, prefix: values.prefix, timeout };
    }
    default:
      throw new UsageError(`unknown command ${JSON.stringify(command)} (publish, tail or help)`);
  }
}
