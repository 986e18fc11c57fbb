import { defineConfig } from 'tsup';

// Three builds, into one `dist` (emptied by the build script: the builds run at once, so none
// may clean it).
// - The library entry (`index`) keeps its dependencies external, as any package does.
// - The executable's body (`main`, `cli-io`) is bundled with its pure-JavaScript dependencies
//   and the workspace packages it wires together: `crystalmath list` then parses a few files
//   instead of resolving and reading ~500 (kysely, zod and yaml alone are ~440 modules), which
//   was most of its start-up time. Native and optional modules stay external (and are
//   dependencies of this package); commands still load on demand (one chunk each).
// - `bin` stays a few lines with no import but node:fs, so `--version` reads one file.
const NATIVE = ['better-sqlite3', 'ssh2', 'cpu-features', 'pg', 'pg-native'];

export default defineConfig([
  {
    entry: { index: 'src/index.ts' },
    format: ['esm'],
    dts: { entry: { index: 'src/index.ts' } },
    sourcemap: true,
    target: 'node20',
  },
  {
    entry: { main: 'src/main.ts', 'cli-io': 'src/cli-io.ts' },
    format: ['esm'],
    sourcemap: true,
    target: 'node20',
    platform: 'node',
    splitting: true,
    noExternal: [/^(?!better-sqlite3$|ssh2$|cpu-features$|pg$|pg-native$)/],
    external: NATIVE,
    // Less text to parse at start-up. Whitespace and syntax only: identifiers (class and error
    // names) stay as written.
    esbuildOptions(options) {
      options.minifyWhitespace = true;
      options.minifySyntax = true;
      options.keepNames = true;
    },
    // CommonJS dependencies bundled into an ES module call `require` for Node's built-ins.
    banner: {
      js: "import { createRequire as __cmCreateRequire } from 'node:module';\nconst require = __cmCreateRequire(import.meta.url);",
    },
  },
  {
    entry: { bin: 'src/bin.ts' },
    format: ['esm'],
    sourcemap: true,
    target: 'node20',
    platform: 'node',
    external: ['./cli-io.js', './main.js'],
  },
]);
