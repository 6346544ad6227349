/**
 * Runs the built `sse-relay` command (dist/cli.js) in a child process, bounded:
 * `run` to its end (killed after 15 s), `start` for one that runs until
 * stopped (tail). `killAll` in an afterAll reaps whatever is left.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';

export const ROOT = path.join(__dirname, '..', '..');
export const CLI = path.join(ROOT, 'dist', 'cli.js');

export interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

const children = new Set<ChildProcess>();

export function start(args: string[], env: NodeJS.ProcessEnv = {}): ChildProcess {
  if (!existsSync(CLI)) throw new Error('the CLI tests run the built dist/cli.js: run `npm run build` first');
  const childEnv = { ...process.env, ...env };
  if (env.SSE_RELAY_TOKEN === undefined) delete childEnv.SSE_RELAY_TOKEN;
  const child = spawn(process.execPath, [CLI, ...args], { env: childEnv, stdio: ['pipe', 'pipe', 'pipe'] });
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

/** Runs the CLI to its end (killed after 15 s); `stdin` is written and closed. */
export function run(args: string[], options: { stdin?: string; env?: NodeJS.ProcessEnv } = {}): Promise<Run> {
  const child = start(args, options.env);
  return new Promise((resolve, reject) => {
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`sse-relay ${args.join(' ')} did not end within 15 s; stderr: ${stderr}`));
    }, 15_000);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    child.stdin!.end(options.stdin ?? '');
  });
}

export function killAll(): void {
  for (const child of children) child.kill('SIGKILL');
}
