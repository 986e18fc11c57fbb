import { defineConfig } from 'vitest/config';

// The real-SLURM files mostly wait on the scheduler (the walltime test alone waits ~85 s), so
// they run side by side even on 2 cores.
export default defineConfig({
  test: {
    include: ['src/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    maxWorkers: 4,
    minWorkers: 1,
  },
});
