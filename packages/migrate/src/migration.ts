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

/**
 * A migration written in code. `up` runs inside the migration's transaction, on the `db` it is
 * given (never on an outer kysely instance: on SQLite that would wait for the connection the
 * migration holds). `db.transaction()`, `db.connection()` and statements that end or open a
 * transaction (`COMMIT`, `BEGIN`, `ROLLBACK`, ...) are refused there.
 */
export interface Migration {
  up(db: AnyKysely, ctx: MigrationContext): Promise<void>;
  /**
   * SQLite only: run with `PRAGMA foreign_keys=OFF` (set outside the transaction, where it takes
   * effect), check `PRAGMA foreign_key_check` before commit, restore the setting after. Needed
   * for table rebuilds, which would otherwise cascade-delete child rows. See `rebuildTable`.
   * Ignored on PostgreSQL.
   */
  readonly disableForeignKeys?: boolean;
  /**
   * `codeMigrations` only: the text whose SHA-256 is the checksum, instead of `up.toString()`.
   * Set it to keep the checksum stable when a bundler or compiler changes the function's text
   * (the migration itself must still never change once applied).
   */
  readonly checksumText?: string;
}

/** A migration with its name and the checksum of its source, as a source yields it. */
export interface NamedMigration extends Migration {
  readonly name: string;
  /** SHA-256 (hex) of the migration's text: a changed text is refused once applied. */
  readonly checksum: string;
  /**
   * Per-dialect checksums for migrations whose text differs by dialect (`{ sqlite, postgres }`):
   * each database is checked against the text that runs on it, so fixing the other dialect's
   * text does not invalidate it. Falls back to `checksum`.
   */
  readonly dialectChecksums?: Readonly<Partial<Record<Dialect, string>>>;
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
  /** One entry per migration this call tried to apply; migrations another process applied meanwhile are absent. */
  readonly results: readonly MigrationResult[];
}

export interface MigrationState {
  readonly name: string;
  /** applied; pending (known, not applied); changed (applied, checksum differs); unknown (applied, not in the source). */
  readonly state: 'applied' | 'pending' | 'changed' | 'unknown';
  readonly appliedAt: string | null;
  readonly durationMs: number | null;
  readonly baseline: boolean;
}

export type MigrationEvent =
  | { readonly type: 'lock:wait'; readonly waitedMs: number }
  | { readonly type: 'lock:acquired'; readonly waitedMs: number }
  | { readonly type: 'migration:start'; readonly name: string }
  | { readonly type: 'migration:success'; readonly name: string; readonly durationMs: number }
  | { readonly type: 'migration:error'; readonly name: string; readonly error: Error }
  | { readonly type: 'migration:skip'; readonly name: string; readonly reason: string };

const PREFIX = /^(\d+)/;

/**
 * The order migrations apply in: by numeric prefix (so `10000_x` follows `9999_y`), then by
 * the whole name. Names without a numeric prefix compare as strings.
 */
export function compareMigrationNames(a: string, b: string): number {
  const pa = PREFIX.exec(a)?.[1];
  const pb = PREFIX.exec(b)?.[1];
  if (pa !== undefined && pb !== undefined) {
    const na = BigInt(pa);
    const nb = BigInt(pb);
    if (na !== nb) return na < nb ? -1 : 1;
  }
  return a < b ? -1 : a > b ? 1 : 0;
}
