import { defineConfig } from 'vitest/config';

// The SLURM smoke test may wait up to 60 s for its job.
export default defineConfig({ test: { include: ['src/**/*.test.ts'], testTimeout: 90_000 } });
