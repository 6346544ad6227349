/**
 * Real reverse proxies for the e2e tests: nginx (Debian's /usr/sbin/nginx) and
 * Caddy (/usr/bin/caddy), each in its own temp prefix (config, pid, logs, temp
 * paths), in the foreground, on loopback ports only. A missing binary is a
 * failure with a clear message, never a skip. `stop()` ends the process and
 * removes the dir.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';

export interface Proxy {
  readonly port: number;
  readonly dir: string;
  readonly process: ChildProcess;
  /** What the proxy wrote to its error log and stderr so far (for failure messages). */
  log(): string;
  stop(): Promise<void>;
}

export const NGINX = '/usr/sbin/nginx';
export const CADDY = '/usr/bin/caddy';

function need(bin: string, pkg: string): void {
  if (!existsSync(bin)) {
    throw new Error(
      `The proxy e2e tests need ${bin}: install it with \`apt-get install -y ${pkg}\` (.ci/run does this).`,
    );
  }
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = createConnection({ host: '127.0.0.1', port }, () => {
      sock.destroy();
      resolve(true);
    });
    sock.once('error', () => resolve(false));
  });
}

async function started(child: ChildProcess, port: number, log: () => string, name: string): Promise<void> {
  const exited = new Promise<never>((_, reject) =>
    child.once('exit', (code, signal) => reject(new Error(`${name} exited at start (${code ?? signal}):\n${log()}`))),
  );
  exited.catch(() => undefined);
  for (let i = 0; i < 200; i++) {
    if (await Promise.race([accepts(port), exited])) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`${name} did not listen on 127.0.0.1:${port} within 5 s:\n${log()}`);
}

function stopper(child: ChildProcess, dir: string): () => Promise<void> {
  return async () => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.kill('SIGTERM'); // nginx: fast shutdown; caddy: graceful stop
      const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
      await exited;
      clearTimeout(timer);
    }
    child.stderr?.destroy();
    child.stdout?.destroy();
    rmSync(dir, { recursive: true, force: true });
  };
}

/**
 * nginx with `httpBlock` (what goes inside `http { }`, e.g. the README's
 * recipe) listening on `port`. Everything nginx writes stays in its temp dir.
 */
export async function startNginx(httpBlock: string, port: number): Promise<Proxy> {
  need(NGINX, 'nginx');
  const dir = mkdtempSync(path.join(tmpdir(), 'sse-relay-nginx-'));
  chmodSync(dir, 0o755); // nginx's workers (user nobody when run as root) create their temp dirs here
  mkdirSync(path.join(dir, 'logs'));
  const conf = `# written by e2e/helpers/proxy.ts
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/logs/error.log warn;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path ${dir}/client_body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;

  # ---- README.md recipe (verbatim but for the marked substitutions) ----
${httpBlock}
  # ---- end of README.md recipe ----
}
`;
  const file = path.join(dir, 'nginx.conf');
  writeFileSync(file, conf);
  const child = spawn(NGINX, ['-p', dir, '-e', `${dir}/logs/error.log`, '-c', file, '-g', 'daemon off;'], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr?.on('data', (d) => (stderr += d));
  const log = (): string => {
    const errorLog = path.join(dir, 'logs', 'error.log');
    return stderr + (existsSync(errorLog) ? readFileSync(errorLog, 'utf8') : '');
  };
  try {
    await started(child, port, log, 'nginx');
  } catch (err) {
    await stopper(child, dir)();
    throw err;
  }
  return { port, dir, process: child, log, stop: stopper(child, dir) };
}

/** Caddy with `caddyfile` (global options are added: no admin API, no automatic HTTPS, storage in the temp dir). */
export async function startCaddy(caddyfile: string, port: number): Promise<Proxy> {
  need(CADDY, 'caddy');
  const dir = mkdtempSync(path.join(tmpdir(), 'sse-relay-caddy-'));
  const conf = `{
\tadmin off
\tauto_https off
\tstorage file_system ${dir}/data
}

${caddyfile}`;
  const file = path.join(dir, 'Caddyfile');
  writeFileSync(file, conf);
  const child = spawn(CADDY, ['run', '--config', file, '--adapter', 'caddyfile'], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      HOME: dir,
      XDG_DATA_HOME: `${dir}/data`,
      XDG_CONFIG_HOME: `${dir}/config`,
    },
  });
  let output = '';
  child.stdout?.on('data', (d) => (output += d));
  child.stderr?.on('data', (d) => (output += d));
  const log = (): string => output;
  try {
    await started(child, port, log, 'caddy');
  } catch (err) {
    await stopper(child, dir)();
    throw err;
  }
  return { port, dir, process: child, log, stop: stopper(child, dir) };
}
