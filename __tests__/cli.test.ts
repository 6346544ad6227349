/**
 * The `sse-relay` command line, as installed: the built dist/cli.js run in a
 * child process against a real redis-server (the global setup's REDIS_URL)
 * and a real publish endpoint. Exit status, stdout and stderr are checked
 * exactly; every child is bounded by a timeout and killed if it overruns.
 */
import Redis from 'ioredis';
import type { ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { createHub, RedisBroker, type Hub } from '../lib';
import { HELP } from '../lib/cli/args';
import type { PublishOptions } from '../lib/hub';
import { createPublisher, type PublishFn } from '../lib/publisher';
import { closeServer, listen, openStream, type TestStream } from '../lib/testing';
import { CLI, ROOT, killAll, run, start } from './helpers/cli-run';
import { freePort } from './helpers/redis-server';

if (!existsSync(CLI)) throw new Error('the CLI tests run the built dist/cli.js: run `npm run build` first');
const REDIS_URL = process.env.REDIS_URL;
if (!REDIS_URL)
  throw new Error('REDIS_URL is not set: the global setup starts a redis-server (is /usr/bin/redis-server installed?)');

afterAll(killAll);

const publishOn =
  (hub: Hub): PublishFn =>
  (c, d, o) =>
    hub.publish(c, d, o as PublishOptions<never>);

describe('sse-relay --help and usage errors', () => {
  test.each([['--help'], ['-h'], ['help'], ['publish', '--help'], ['tail', '-h']])(
    '%s %s prints the usage, exit 0',
    async (...args) => {
      const r = await run(args.filter((a) => a !== undefined));
      expect(r).toEqual({ code: 0, stdout: HELP, stderr: '' });
      expect(HELP).toContain('Exit status: 0 ok, 1 refused (the endpoint said no, Redis unreachable), 2 usage error.');
    },
  );

  test.each<[string[], string]>([
    [[], 'missing <command>'],
    [['send', 'a', 'b'], 'unknown command "send" (publish, tail or help)'],
    [['publish'], 'missing <channel>'],
    [['publish', 'a'], 'missing <data> (use - to read it from stdin)'],
    [['publish', 'a b', 'x', '--redis', 'redis://127.0.0.1:1'], '<channel> must be 1 to 200 of A-Z a-z 0-9 _ . : -'],
    [['publish', 'a', 'x'], 'publish needs one of --redis URL, --cluster HOST:PORT,… or --url URL'],
    [
      ['publish', 'a', 'x', '--redis', 'redis://h', '--url', 'http://h/'],
      'publish needs one of --redis URL, --cluster HOST:PORT,… or --url URL',
    ],
    [
      ['publish', 'a', 'x', '--redis', 'redis://h', '--cluster', 'h:1'],
      '--redis and --cluster are exclusive: one Redis, or the startup nodes of a cluster',
    ],
    [['publish', 'a', 'x', '--cluster', 'h'], '--cluster must be HOST:PORT[,HOST:PORT...], got "h"'],
    [['publish', 'a', 'x', '--cluster', 'h:1,h:70000'], '--cluster must be HOST:PORT[,HOST:PORT...], got "h:70000"'],
    [['publish', 'a', 'x', 'y', '--redis', 'redis://h'], 'publish takes <channel> <data> (quote data that has spaces)'],
    [
      ['publish', 'a', 'x', '--url', 'http://h/', '--history', '5'],
      "--history and --prefix apply to --redis and --cluster only (the endpoint uses its hub's)",
    ],
    [['publish', 'a', 'x', '--redis', 'redis://h', '--token', 't'], '--token applies to --url only'],
    [
      ['publish', 'a', 'x', '--redis', 'redis://h', '--history=-1'],
      '--history must be an integer from 0 to 1000000, got "-1"',
    ],
    [
      ['publish', 'a', 'x', '--redis', 'redis://h', '--history', 'ten'],
      '--history must be an integer from 0 to 1000000, got "ten"',
    ],
    [
      ['publish', 'a', 'x', '--redis', 'redis://h', '--history', '1000001'],
      '--history must be an integer from 0 to 1000000, got "1000001"',
    ],
    [
      ['publish', 'a', 'x', '--redis', 'redis://h', '--timeout', '3600001'],
      '--timeout must be an integer from 1 to 3600000, got "3600001"',
    ],
    [
      ['publish', 'a', 'x', '--redis', 'redis://h', '--idempotency-key', 'two words'],
      '--idempotency-key must be 1 to 200 visible ASCII characters (no spaces)',
    ],
    [
      ['publish', 'a', 'x', '--url', 'http://h/', '--idempotency-key', 'k'.repeat(201)],
      '--idempotency-key must be 1 to 200 visible ASCII characters (no spaces)',
    ],
    [['publish', 'a', 'x', '--redis', 'http://h'], '--redis must be a redis:// or rediss:// URL'],
    [['publish', 'a', 'x', '--url', 'ftp://h'], '--url must be an http:// or https:// URL'],
    [
      ['publish', 'a', 'x', '--redis', 'redis://h', '--event', 'a\nb'],
      '--event must be a non-empty string without CR, LF or NUL',
    ],
    [['publish', 'a', 'x', '--redis', 'redis://h', '--bogus'], "Unknown option '--bogus'"],
    [['tail', 'a'], 'tail needs --redis URL or --cluster HOST:PORT,…'],
    [['tail', 'a', '--redis', 'redis://h', '--event', 'e'], '--event does not apply to tail'],
  ])('%j: exit 2 with a message', async (args, message) => {
    const r = await run(args);
    expect(r).toEqual({ code: 2, stdout: '', stderr: `sse-relay: ${message}\nRun "sse-relay --help" for usage.\n` });
  });
});

describe('sse-relay publish / tail --redis', () => {
  const prefix = `cli-${randomBytes(4).toString('hex')}:`;
  let hub: Hub;
  let server: Server;
  const streams: TestStream[] = [];

  beforeAll(async () => {
    hub = createHub({ authorize: () => true, broker: new RedisBroker({ url: REDIS_URL, prefix }) });
    server = await listen((req, res) => hub.router()(req, res, () => res.writeHead(404).end()));
  });
  afterEach(async () => {
    await Promise.all(streams.splice(0).map((s) => s.close()));
  });
  afterAll(async () => {
    await hub.close();
    await closeServer(server);
  });

  async function stream(channel: string): Promise<TestStream> {
    const s = await openStream({ server, path: `/${channel}` });
    streams.push(s);
    expect(s.status).toBe(200);
    return s;
  }

  test('publish prints the id; the event reaches a hub on the same Redis with it', async () => {
    const s = await stream('order:1');
    const r = await run([
      'publish',
      'order:1',
      '<span>Shipped</span>',
      '--event',
      'status',
      '--coalesce',
      'status',
      '--redis',
      REDIS_URL!,
      '--prefix',
      prefix,
    ]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^[A-Za-z0-9._-]{1,128}\n$/);
    const [ev] = await s.waitFor(1);
    expect(ev).toEqual({ id: r.stdout.trim(), event: 'status', data: '<span>Shipped</span>' });
    // In order with the hub's own publishes.
    const next = await hub.publish('order:1', 'after');
    const [, second] = await s.waitFor(2);
    expect(second).toEqual({ id: next, event: 'message', data: 'after' });
  });

  test('publish - reads the data from stdin (one trailing newline dropped)', async () => {
    const s = await stream('job:7');
    const r = await run(['publish', 'job:7', '-', '--redis', REDIS_URL!, '--prefix', prefix], {
      stdin: 'line 1\nline 2\n',
    });
    expect([r.code, r.stderr]).toEqual([0, '']);
    const [ev] = await s.waitFor(1);
    expect(ev).toEqual({ id: r.stdout.trim(), event: 'message', data: 'line 1\nline 2' });
  });

  test('publish to an unreachable Redis: exit 1, a message, no id', async () => {
    const port = await freePort();
    const r = await run(['publish', 'a', 'x', '--redis', `redis://127.0.0.1:${port}`, '--timeout', '500']);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/^sse-relay: Redis is unavailable \(.*ECONNREFUSED.*\)\n$/);
  });

  /** Starts `tail` and resolves once it says it is subscribed. */
  function startTail(
    channel: string,
    under = prefix,
  ): Promise<{ child: ChildProcess; lines: string[]; stderr: () => string; exited: Promise<number | null> }> {
    const child = start(['tail', channel, '--redis', REDIS_URL!, '--prefix', under]);
    const lines: string[] = [];
    let out = '';
    let err = '';
    child.stdout!.on('data', (c: Buffer) => {
      out += c.toString();
      const parts = out.split('\n');
      out = parts.pop()!;
      lines.push(...parts);
    });
    const exited = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`tail did not subscribe within 10 s: ${err}`)), 10_000);
      child.stderr!.on('data', (c: Buffer) => {
        err += c.toString();
        if (err.includes('\n')) {
          clearTimeout(timer);
          resolve({ child, lines, stderr: () => err, exited });
        }
      });
      child.once('close', (code) => {
        clearTimeout(timer);
        reject(new Error(`tail exited with ${code}: ${err}`));
      });
    });
  }

  async function until(cond: () => boolean, what: string): Promise<void> {
    for (let i = 0; i < 1000 && !cond(); i++) await new Promise((r) => setTimeout(r, 10));
    if (!cond()) throw new Error(`timed out waiting for ${what}`);
  }

  test.each(['SIGINT', 'SIGTERM'] as const)(
    'tail prints each live event as one JSON line and ends cleanly on %s',
    async (signal) => {
      const tail = await startTail('feed');
      expect(tail.stderr()).toBe('sse-relay: tailing feed (Ctrl-C to stop)\n');
      const a = await hub.publish('feed', 'two\nlines', { event: 'note' });
      const other = await hub.publish('elsewhere', 'not mine');
      const cli = await run(['publish', 'feed', '{"n":1}', '--redis', REDIS_URL!, '--prefix', prefix]);
      expect(cli.code).toBe(0);
      await until(() => tail.lines.length >= 2, 'two lines from tail');
      expect(other).toBeDefined();
      expect(tail.lines).toEqual([
        JSON.stringify({ id: a, event: 'note', data: 'two\nlines' }),
        JSON.stringify({ id: cli.stdout.trim(), event: 'message', data: '{"n":1}' }),
      ]);
      tail.child.kill(signal);
      expect(await tail.exited).toBe(0);
      expect(tail.stderr()).toBe('sse-relay: tailing feed (Ctrl-C to stop)\n');
    },
  );

  test('tail on an unreachable Redis: exit 1', async () => {
    const port = await freePort();
    const r = await run(['tail', 'a', '--redis', `redis://127.0.0.1:${port}`, '--timeout', '500']);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/^sse-relay: Redis is unavailable \(.*\)\n$/);
  });

  test('publish under a prefix with no layout record (before the app starts, or after a data loss) writes none: the app then starts with its own', async () => {
    const other = `cli-${randomBytes(4).toString('hex')}:`;
    const r = await run(['publish', 'a', 'x', '--redis', REDIS_URL!, '--prefix', other]);
    expect([r.code, r.stderr]).toEqual([0, '']);
    const admin = new Redis(REDIS_URL!);
    let four: RedisBroker | undefined;
    try {
      expect(await admin.get(`${other}layout`)).toBeNull();
      four = new RedisBroker({ url: REDIS_URL, prefix: other, partitions: 4 }); // (only now: it writes the record)
      const ev = await four.publish('a', { data: 'the app, on 4 partitions' }, 10); // not refused
      expect(ev.partition).toBe(four.partitionOf('a'));
      expect(await admin.get(`${other}layout`)).toBe('v1 partitions=4');
    } finally {
      admin.disconnect();
      await four?.close();
    }
  });

  test('publish and tail under a prefix whose layout record names 4 partitions: they follow it, where the app listens and publishes', async () => {
    const other = `cli-${randomBytes(4).toString('hex')}:`;
    const four = new RedisBroker({ url: REDIS_URL, prefix: other, partitions: 4 });
    const got: string[] = [];
    const listener = { onEvent: (e: { id: string }) => void got.push(e.id), onReset: () => void got.push('reset') };
    try {
      await four.subscribe('a', listener); // (writes the record: 4)
      const r = await run(['publish', 'a', 'x', '--redis', REDIS_URL!, '--prefix', other]);
      expect([r.code, r.stderr]).toEqual([0, '']);
      await until(() => got.length > 0, "the app's process getting the event");
      expect(got).toEqual([r.stdout.trim()]);
      const tail = await startTail('b', other);
      const ev = await four.publish('b', { data: 'from the app' }, 10);
      await until(() => tail.lines.length > 0, 'tail printing the event');
      expect(tail.lines).toEqual([JSON.stringify({ id: ev.id, event: 'message', data: 'from the app' })]);
      tail.child.kill('SIGTERM');
      expect(await tail.exited).toBe(0);
      const admin = new Redis(REDIS_URL!);
      try {
        expect(await admin.keys(`${other}{0}*`)).toEqual([]); // nothing of the one-partition layout written
        expect(await admin.get(`${other}layout`)).toBe('v1 partitions=4');
      } finally {
        admin.disconnect();
      }
    } finally {
      await four.close();
    }
  });
});

describe('sse-relay publish --url (a publish endpoint)', () => {
  const TOKEN = 'cli-secret';
  let hub: Hub;
  let server: Server;
  let url: string;
  const seen: Array<Parameters<PublishFn>[2]> = [];
  const streams: TestStream[] = [];

  beforeAll(async () => {
    hub = createHub({ authorize: () => true }); // MemoryBroker
    const publisher = createPublisher(
      (c, d, o) => {
        seen.push(o);
        return publishOn(hub)(c, d, o);
      },
      {
        authorize: (req) =>
          req.headers.authorization === undefined ? 'unauthenticated' : req.headers.authorization === `Bearer ${TOKEN}`,
      },
    );
    const events = hub.router();
    server = await listen((req, res) => {
      if (req.url === '/publish') return publisher(req, res);
      req.url = req.url!.slice('/events'.length);
      events(req, res, () => res.writeHead(404).end());
    });
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/publish`;
  });
  afterEach(async () => {
    seen.length = 0;
    await Promise.all(streams.splice(0).map((s) => s.close()));
  });
  afterAll(async () => {
    await hub.close();
    await closeServer(server);
  });

  test.each([
    ['--token', (args: string[]) => ({ args: [...args, '--token', TOKEN], env: {} })],
    ['SSE_RELAY_TOKEN', (args: string[]) => ({ args, env: { SSE_RELAY_TOKEN: TOKEN } })],
  ])('publish with %s prints the id the endpoint answered; the event reaches the stream', async (how_, how) => {
    const s = await openStream({ server, path: '/events/order:9' });
    streams.push(s);
    // One key per case: the hub's broker deduplicates a key it has seen (that is the point of it).
    const key = `k-${how_}`;
    const { args, env } = how([
      'publish',
      'order:9',
      'paid',
      '--event',
      'status',
      '--idempotency-key',
      key,
      '--url',
      url,
    ]);
    const r = await run(args, { env });
    expect([r.code, r.stderr]).toEqual([0, '']);
    const [ev] = await s.waitFor(1);
    expect(ev).toEqual({ id: r.stdout.trim(), event: 'status', data: 'paid' });
    expect(seen).toEqual([{ event: 'status', idempotencyKey: key }]);
  });

  test('refusals exit 1 with the status: 401 without a token, 403 with a wrong one, 400 for a bad channel', async () => {
    expect(await run(['publish', 'a', 'x', '--url', url])).toEqual({
      code: 1,
      stdout: '',
      stderr: 'sse-relay: the endpoint answered 401 Unauthorized\n',
    });
    expect(await run(['publish', 'a', 'x', '--url', url, '--token', 'guess'])).toEqual({
      code: 1,
      stdout: '',
      stderr: 'sse-relay: the endpoint answered 403 Forbidden\n',
    });
    expect(seen).toEqual([]);
  });

  test('an endpoint that is not there: exit 1', async () => {
    const port = await freePort();
    const r = await run(['publish', 'a', 'x', '--url', `http://127.0.0.1:${port}/publish`, '--token', TOKEN]);
    expect(r).toEqual({ code: 1, stdout: '', stderr: 'sse-relay: could not reach the endpoint (ECONNREFUSED)\n' });
  });
});

describe('the installed command', () => {
  test('package.json bin points at dist/cli.js, an executable node script that npm pack ships', () => {
    const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as {
      bin: Record<string, string>;
      files: string[];
    };
    expect(pkg.bin).toEqual({ 'sse-relay': './dist/cli.js' });
    expect(pkg.files).toContain('dist');
    expect(readFileSync(CLI, 'utf8').startsWith('#!/usr/bin/env node\n')).toBe(true);
    expect(statSync(CLI).mode & 0o111).toBe(0o111);
  });
});
