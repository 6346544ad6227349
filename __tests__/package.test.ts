/**
 * What `npm publish` would ship, read from `npm pack --dry-run --json` over
 * the built dist/ (`npm test` builds first): exactly the compiled JavaScript
 * and declarations of every lib/ file, README.md, LICENSE and package.json.
 * No tests, no bench, no example app, no source maps (lib/ is not shipped, so
 * a map would point at nothing). Also: every entry point package.json names
 * is in the tarball, the CLI is executable with a shebang, and `engines` /
 * `peerDependencies` say what the code needs and what is tested.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';

const ROOT = path.join(__dirname, '..');
const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as {
  main: string;
  types: string;
  bin: Record<string, string>;
  exports: Record<string, string | { types: string; default: string }>;
  files: string[];
  engines: { node: string };
  peerDependencies: Record<string, string>;
  peerDependenciesMeta: Record<string, { optional?: boolean }>;
  devDependencies: Record<string, string>;
};

if (!existsSync(path.join(ROOT, 'dist', 'index.js'))) {
  throw new Error('package test needs the built library: run `npm run build` first');
}

interface PackedFile {
  path: string;
  size: number;
  mode: number;
}

let packed: PackedFile[];

beforeAll(() => {
  // --ignore-scripts: `prepare` would rebuild dist/ under the feet of the other test files.
  const out = execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], {
    cwd: ROOT,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    timeout: 60_000,
  });
  const report = JSON.parse(out) as Array<{ name: string; files: PackedFile[] }>;
  expect(report).toHaveLength(1);
  expect(report[0]!.name).toBe('sse-relay');
  packed = report[0]!.files;
});

/** Every .ts file under lib/, relative to lib/, without the extension. */
function libModules(dir = path.join(ROOT, 'lib'), prefix = ''): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (entry.isDirectory()) out.push(...libModules(path.join(dir, entry.name), `${prefix}${entry.name}/`));
    else if (entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts')) out.push(prefix + entry.name.slice(0, -3));
  }
  return out;
}

test('the tarball holds exactly dist JS + .d.ts of every lib module, README.md, LICENSE and package.json', () => {
  const modules = libModules();
  expect(modules.length).toBeGreaterThan(20);
  const expected = [
    'LICENSE',
    'README.md',
    'package.json',
    ...modules.flatMap((m) => [`dist/${m}.js`, `dist/${m}.d.ts`]),
  ].sort();
  expect(packed.map((f) => f.path).sort()).toEqual(expected);
});

test('no source maps, and no built file points at one', () => {
  expect(packed.filter((f) => f.path.endsWith('.map'))).toEqual([]);
  const pointing = packed
    .filter((f) => f.path.endsWith('.js') || f.path.endsWith('.d.ts'))
    .filter((f) => readFileSync(path.join(ROOT, f.path), 'utf8').includes('sourceMappingURL'))
    .map((f) => f.path);
  expect(pointing).toEqual([]);
});

test('every entry point package.json names is shipped; the CLI is executable with a node shebang', () => {
  const paths = new Set(packed.map((f) => f.path));
  const named = [pkg.main, pkg.types, ...Object.values(pkg.bin)];
  for (const [key, target] of Object.entries(pkg.exports)) {
    if (key === './package.json') continue;
    if (typeof target === 'string') named.push(target);
    else named.push(target.types, target.default);
  }
  for (const file of named) expect([file, paths.has(path.posix.normalize(file))]).toEqual([file, true]);

  expect(pkg.bin).toEqual({ 'sse-relay': './dist/cli.js' });
  const cli = packed.find((f) => f.path === 'dist/cli.js')!;
  expect(cli.mode & 0o111).toBe(0o111);
  expect(readFileSync(path.join(ROOT, 'dist', 'cli.js'), 'utf8').startsWith('#!/usr/bin/env node\n')).toBe(true);
});

test('LICENSE is the MIT text package.json declares', () => {
  expect((pkg as unknown as { license: string }).license).toBe('MIT');
  expect(readFileSync(path.join(ROOT, 'LICENSE'), 'utf8')).toMatch(/^MIT License\n/);
});

test('engines: Node >= 20, as the README says and the APIs used need (diagnostics_channel.tracingChannel: 19.9)', () => {
  expect(pkg.engines).toEqual({ node: '>=20' });
  expect(readFileSync(path.join(ROOT, 'README.md'), 'utf8')).toContain('(Node >= 20)');
  // The compile target must run on Node 20 (ES2022 is fully supported there).
  const tsconfig = readFileSync(path.join(ROOT, 'tsconfig.json'), 'utf8');
  expect(/"target":\s*"ES2022"/.test(tsconfig)).toBe(true);
});

test('the ioredis peer range is exactly the ranges the tests run against (ioredis 5 and the ioredis6 alias), optional', () => {
  const v5 = pkg.devDependencies.ioredis!;
  const v6 = pkg.devDependencies.ioredis6!.replace(/^npm:ioredis@/, '');
  expect(v5).toMatch(/^\^5\./);
  expect(v6).toMatch(/^\^6\./);
  expect(pkg.peerDependencies).toEqual({ ioredis: `${v5} || ${v6}` });
  expect(pkg.peerDependenciesMeta).toEqual({ ioredis: { optional: true } });
  // The installed versions are the ones those ranges name (what the tests actually ran).
  const installed5 = (
    JSON.parse(readFileSync(path.join(ROOT, 'node_modules/ioredis/package.json'), 'utf8')) as { version: string }
  ).version;
  const installed6 = (
    JSON.parse(readFileSync(path.join(ROOT, 'node_modules/ioredis6/package.json'), 'utf8')) as { version: string }
  ).version;
  expect(installed5.split('.')[0]).toBe('5');
  expect(installed6.split('.')[0]).toBe('6');
});
