import type { Config } from 'jest';

/**
 * Browser tests (`npm run test:e2e`): headless Chromium from the system
 * (/usr/bin/chromium) driven by playwright-core against the example app.
 * They need the built library (`npm run build`).
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
