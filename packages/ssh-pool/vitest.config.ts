import { defineConfig } from 'vitest/config';

// One file at a time: sshd-restart.test.ts stops the testbed's sshd for a moment, which would
// fail the other files' commands if they ran beside it.
export default defineConfig({
  test: {
    include: ['src/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    fileParallelism: false,
  },
});
