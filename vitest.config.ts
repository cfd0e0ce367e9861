import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['src/**/*.test.ts', 'test/**/*.test.ts'],
    setupFiles: ['test/setup.ts'],
    testTimeout: 120_000,
    hookTimeout: 60_000,
    // Integration tests spawn several processes each; two at a time fit 2 cores.
    pool: 'forks',
    maxWorkers: 2,
  },
});
