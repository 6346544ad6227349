/**
 * Starts and stops a real `redis-server` (Debian package) on a free loopback
 * port with its own temp dir. Used by the global setup (one shared server for
 * the whole run) and by fault tests that need a server of their own to kill
 * or restart. A missing binary is a failure with a clear message, never a skip.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface RedisServer {
  readonly url: string;
  readonly port: number;
  readonly dir: string;
  readonly process: ChildProcess;
  /** Stops the server (SIGTERM, then SIGKILL) and, unless `keepDir`, removes its dir. */
  stop(options?: { keepDir?: boolean }): Promise<void>;
  /** SIGKILL (no shutdown save), keeping the dir for a restart from what was last saved. */
  kill(): Promise<void>;
}

export function redisServerBinary(): string {
  for (const candidate of [process.env.REDIS_SERVER_BIN, '/usr/bin/redis-server', '/usr/local/bin/redis-server']) {
    if (candidate && existsSync(candidate)) return candidate;
  }
  throw new Error(
    'redis-server was not found. The integration tests need a real Redis: install the Debian package ' +
      '(apt-get install -y redis-server; .ci/run does this) or set REDIS_URL to a running server.',
  );
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

/** Whether nothing listens on 127.0.0.1:`port` now (a cluster node also needs its bus port, port + 10000). */
export function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.unref();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}

/** Resolves once the server answers PING (bounded: 200 tries, 25 ms apart). */
export async function waitForRedis(port: number): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const ok = await new Promise<boolean>((resolve) => {
      const sock = createConnection({ host: '127.0.0.1', port }, () => sock.write('PING\r\n'));
      sock.setTimeout(500, () => sock.destroy());
      sock.once('data', (d) => {
        sock.destroy();
        resolve(d.toString().startsWith('+PONG'));
      });
      sock.once('error', () => resolve(false));
      sock.once('close', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`redis-server on 127.0.0.1:${port} did not answer PING within 5 s`);
}

export interface StartOptions {
  /** Port to use (to restart on the same port); default a free one. */
  port?: number;
  /** Data dir to use (to restart with its AOF); default a new temp dir. */
  dir?: string;
  /** `appendonly yes` (persistence across restarts). Default false. */
  appendonly?: boolean;
  /** More `--name value` arguments, e.g. `['--enable-debug-command', 'yes']`. */
  args?: readonly string[];
}

export async function startRedis(options: StartOptions = {}): Promise<RedisServer> {
  const bin = redisServerBinary();
  const port = options.port ?? (await freePort());
  const dir = options.dir ?? mkdtempSync(join(tmpdir(), 'sse-relay-redis-'));
  const args = [
    '--port',
    String(port),
    '--bind',
    '127.0.0.1',
    '--dir',
    dir,
    '--save',
    '',
    '--appendonly',
    options.appendonly ? 'yes' : 'no',
    '--appendfsync',
    'always',
    '--daemonize',
    'no',
    '--protected-mode',
    'yes',
    '--loglevel',
    'warning',
    ...(options.args ?? []),
  ];
  // (its log goes to stdout: kept, the last few KB, for the message when it exits at start)
  const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  const keep = (d: Buffer): void => {
    stderr = (stderr + d.toString()).slice(-4096);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  try {
    await Promise.race([
      waitForRedis(port),
      exited.then(() => {
        throw new Error(`redis-server exited at start: ${stderr.trim()}`);
      }),
    ]);
  } catch (err) {
    child.kill('SIGKILL');
    throw err;
  }
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    dir,
    process: child,
    async kill() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGKILL');
        await exited;
      }
      child.stdout?.destroy();
      child.stderr?.destroy();
    },
    async stop(stopOptions = {}) {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
        await exited;
        clearTimeout(timer);
      }
      child.stdout?.destroy();
      child.stderr?.destroy();
      if (!stopOptions.keepDir && options.dir === undefined) rmSync(dir, { recursive: true, force: true });
    },
  };
}
