import type { Config } from 'jest';

/**
 * End-to-end tests (`npm run test:e2e`), with real parts from Debian:
 * headless Chromium (/usr/bin/chromium, driven by playwright-core) against the
 * example app and over HTTP/2; nginx (/usr/sbin/nginx) and Caddy
 * (/usr/bin/caddy) with the README's recipes in front of an sse-relay app on a
 * redis-server each test file starts. They need the built library
 * (`npm run build`). `.ci/run` installs the packages when missing.
 */
const config: Config = {
  testEnvironment: 'node',
  roots: ['<rootDir>/e2e'],
  testMatch: ['<rootDir>/e2e/**/*.e2e.test.ts'],
  transform: {
    '^.+\\.ts$': ['ts-jest', { tsconfig: 'tsconfig.json', diagnostics: false }],
  },
  testTimeout: 60000,
  // One browser at a time: the machines have few cores.
  maxWorkers: 1,
};

export default config;
