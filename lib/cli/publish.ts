/**
 * `sse-relay publish`: one event, through Redis (a RedisBroker, exactly what a
 * hub on that Redis does) or through an HTTP publish endpoint. Resolves with
 * the event's id; rejects with a `Refused` (exit 1) when it could not publish.
 */
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { PublishCommand, RedisTarget } from './args';
import { openBroker } from './broker';

/** The publish did not happen (or its outcome is unknown): exit status 1. */
export class Refused extends Error {
  override readonly name = 'Refused';
}

const MAX_STDIN = 16 * 1024 * 1024;

/** The data from stdin for `-`: UTF-8, one trailing newline removed (as `$(…)` would). */
export async function readStdin(stdin: NodeJS.ReadableStream): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of stdin) {
    const buf = typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Buffer);
    size += buf.length;
    if (size > MAX_STDIN) throw new Refused(`the data on stdin is over ${MAX_STDIN} bytes`);
    chunks.push(buf);
  }
  return Buffer.concat(chunks)
    .toString('utf8')
    .replace(/\r?\n$/, '');
}

async function viaRedis(
  cmd: PublishCommand,
  data: string,
  target: { redis: RedisTarget; prefix: string | undefined; history: number },
): Promise<string> {
  const broker = await openBroker(target.redis, target.prefix, cmd.timeout);
  try {
    const input: { data: string; event?: string; coalesce?: string; idempotencyKey?: string } = { data };
    if (cmd.event !== undefined) input.event = cmd.event;
    if (cmd.coalesce !== undefined) input.coalesce = cmd.coalesce;
    if (cmd.idempotencyKey !== undefined) input.idempotencyKey = cmd.idempotencyKey;
    const ev = await broker.publish(cmd.channel, input, target.history);
    return ev.id;
  } catch (err) {
    throw new Refused((err as Error).message.replace(/^sse-relay: /, ''), { cause: err });
  } finally {
    await broker.close().catch(() => undefined);
  }
}

function viaHttp(cmd: PublishCommand, data: string, target: { url: URL; token: string | undefined }): Promise<string> {
  const body = JSON.stringify({ channel: cmd.channel, data, event: cmd.event, coalesce: cmd.coalesce });
  const headers: Record<string, string> = {
    'Content-Type': 'application/json',
    'Content-Length': String(Buffer.byteLength(body)),
    Accept: 'application/json',
  };
  if (target.token !== undefined) headers.Authorization = `Bearer ${target.token}`;
  if (cmd.idempotencyKey !== undefined) headers['Idempotency-Key'] = cmd.idempotencyKey;
  const request = target.url.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise<string>((resolve, reject) => {
    const req = request(target.url, { method: 'POST', headers, agent: false, timeout: cmd.timeout }, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        size += c.length;
        if (size <= 64 * 1024) chunks.push(c);
      });
      res.on('error', (err) => reject(new Refused(`the endpoint's response broke off (${err.message})`)));
      res.on('end', () => {
        const status = res.statusCode ?? 0;
        if (status !== 201) {
          const retry = res.headers['retry-after'];
          const hint = retry !== undefined ? ` (retry after ${retry} s)` : '';
          return reject(new Refused(`the endpoint answered ${status} ${res.statusMessage ?? ''}`.trimEnd() + hint));
        }
        let id: unknown;
        try {
          id = (JSON.parse(Buffer.concat(chunks).toString('utf8')) as { id?: unknown }).id;
        } catch {
          id = undefined;
        }
        if (typeof id !== 'string' || !/^[A-Za-z0-9._-]{1,128}$/.test(id)) {
          return reject(
            new Refused('the endpoint answered 201 without a valid {"id"}: is --url a sse-relay publisher?'),
          );
        }
        resolve(id);
      });
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${cmd.timeout} ms`)));
    req.on('error', (err: NodeJS.ErrnoException) =>
      reject(new Refused(`could not reach the endpoint (${err.code ?? err.message})`)),
    );
    req.end(body);
  });
}

/** Publishes and resolves with the id; rejects with `Refused`. */
export async function publish(cmd: PublishCommand, stdin: NodeJS.ReadableStream): Promise<string> {
  const data = cmd.data === '-' ? await readStdin(stdin) : cmd.data;
  return 'redis' in cmd.target ? viaRedis(cmd, data, cmd.target) : viaHttp(cmd, data, cmd.target);
}
