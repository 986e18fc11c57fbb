import { defineConfig } from 'vitest/config';

// The real-Grid-Engine files mostly wait on the scheduler, so they run side by side even on 2
// cores; the queue has two slots, so more parallel files would only wait longer.
export default defineConfig({
  test: {
    include: ['src/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    maxWorkers: 3,
    minWorkers: 1,
  },
});
