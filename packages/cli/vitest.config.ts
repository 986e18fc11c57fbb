import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['src/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // The process-level tests (signals, tmux) run the built `dist/bin.js`.
    globalSetup: ['./vitest.global-setup.ts'],
    // Load workspace packages' built files natively, as `node dist/bin.js` does: the queue's
    // code migrations are checksummed from their source text, which vite's transform changes,
    // and the spawned CLI and the in-process one share one store.
    server: { deps: { external: [/\/packages\/[^/]+\/dist\//] } },
  },
});
