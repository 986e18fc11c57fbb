// What a migration is, where migrations come from, and what a run reports. A migration's body
// receives the connection its transaction runs on, DDL included.

import type { Kysely } from 'kysely';

export type Dialect = 'sqlite' | 'postgres';

export interface MigrationContext {
  readonly dialect: Dialect;
}

// Migrations act on schemas the type system cannot know yet, as in kysely's own Migrator.
// biome-ignore lint/suspicious/noExplicitAny: a migration's database has no static schema
export type AnyKysely = Kysely<any>;

/** A migration written in code. `up` runs inside the migration's transaction. */
export interface Migration {
  up(db: AnyKysely, ctx: MigrationContext): Promise<void>;
  /**
   * SQLite only: run with `PRAGMA foreign_keys=OFF` (set outside the transaction, where it takes
   * effect), check `PRAGMA foreign_key_check` before commit, restore the setting after. Needed
   * for table rebuilds, which would otherwise cascade-delete child rows. See `rebuildTable`.
   */
  readonly disableForeignKeys?: boolean;
}

/** A migration with its name and the checksum of its source, as a source yields it. */
export interface NamedMigration extends Migration {
  readonly name: string;
  /** SHA-256 (hex) of the migration's text: a changed text is refused once applied. */
  readonly checksum: string;
}

/** Where migrations come from: code (`codeMigrations`) or a folder (`folderMigrations`). */
export interface MigrationSource {
  getMigrations(): Promise<readonly NamedMigration[]>;
}

export type MigrationStatus = 'Success' | 'Error' | 'NotExecuted';

/** The outcome for one migration of a run, as in kysely's `MigrationResult`. */
export interface MigrationResult {
  readonly migrationName: string;
  readonly status: MigrationStatus;
  readonly durationMs?: number;
}

export interface MigrationRunResult {
  readonly results: readonly MigrationResult[];
}

export interface MigrationState {
  readonly name: string;
  /** applied; pending (known, not applied); changed (applied, checksum differs); unknown (applied, not in the source). */
  readonly state: 'applied' | 'pending' | 'changed' | 'unknown';
  readonly appliedAt: string | null;
  readonly baseline: boolean;
}

export type MigrationEvent =
  | { readonly type: 'lock:wait'; readonly waitedMs: number }
  | { readonly type: 'lock:acquired'; readonly waitedMs: number }
  | { readonly type: 'migration:start'; readonly name: string }
  | { readonly type: 'migration:success'; readonly name: string; readonly durationMs: number }
  | { readonly type: 'migration:error'; readonly name: string; readonly error: Error }
  | { readonly type: 'migration:skip'; readonly name: string; readonly reason: string };
