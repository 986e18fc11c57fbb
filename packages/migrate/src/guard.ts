// The kysely instance a migration's `up` receives: the connection that holds the migration's
// transaction, with every way of leaving that transaction closed. A `COMMIT` in a SQL file, a
// `db.transaction()` in code (PostgreSQL would only warn on the nested BEGIN, then its COMMIT
// would commit half a migration), or an SQLite `PRAGMA foreign_keys` (a silent no-op inside a
// transaction, which is how child rows got cascade-deleted) fail loudly instead, before they run.

import type { CompiledQuery, QueryExecutor } from 'kysely';
import type { AnyKysely, Dialect } from './migration.js';
import { MigrationError } from './migration-error.js';
import { leadingWords, splitSqlStatements, stripLeadingComments } from './split-sql.js';

/** Marks a kysely instance as a migration's transaction (see `isMigrationDb`). */
const IN_MIGRATION = Symbol.for('crystalmath.migrate.inMigration');

const FK_PRAGMA =
  /^pragma\s+(?:(?:"[^"]*"|`[^`]*`|\[[^\]]*\]|\w+)\s*\.\s*)?(?:"foreign_keys"|`foreign_keys`|\[foreign_keys\]|foreign_keys)\s*(?:=|\()/i;

/**
 * Why `statement` must not run inside a migration's transaction, or undefined if it may.
 * Transaction control (BEGIN, COMMIT, END, ROLLBACK but not ROLLBACK TO, START TRANSACTION,
 * ABORT, PREPARE TRANSACTION) and, on SQLite, setting `PRAGMA foreign_keys`.
 */
export function forbiddenReason(statement: string, dialect: Dialect): string | undefined {
  const [w0, w1, w2] = leadingWords(statement, 3);
  const control =
    w0 === 'begin' ||
    w0 === 'commit' ||
    w0 === 'end' ||
    w0 === 'abort' ||
    (w0 === 'rollback' && w1 !== 'to' && !(w1 === 'transaction' && w2 === 'to')) ||
    (w0 === 'start' && w1 === 'transaction') ||
    (w0 === 'prepare' && w1 === 'transaction');
  if (control) {
    return `"${w0}${w1 && w0 !== 'begin' ? ` ${w1}` : ''}" controls the transaction, but each migration already runs in exactly one transaction with its history row: remove transaction statements from migrations`;
  }
  if (dialect === 'sqlite' && FK_PRAGMA.test(stripLeadingComments(statement))) {
    return 'PRAGMA foreign_keys has no effect inside a transaction (SQLite ignores it there): declare the migration with disableForeignKeys: true (code), or put PRAGMA foreign_keys = OFF in the SQL text, which the migrator then applies outside the transaction';
  }
  return undefined;
}

function check(query: CompiledQuery, dialect: Dialect): void {
  const statements = splitSqlStatements(query.sql);
  for (const stmt of statements.length ? statements : [query.sql]) {
    const reason = forbiddenReason(stmt, dialect);
    if (reason) {
      throw new MigrationError('E_MIGRATION_SOURCE', `refused inside a migration: ${reason}`, {
        details: { statement: stmt.slice(0, 200) },
      });
    }
  }
}

function guardExecutor(executor: QueryExecutor, dialect: Dialect): QueryExecutor {
  return new Proxy(executor, {
    get(target, prop) {
      if (prop === 'executeQuery') {
        return (query: CompiledQuery, ...rest: unknown[]) => {
          check(query, dialect);
          return (target.executeQuery as (...a: unknown[]) => unknown)(query, ...rest);
        };
      }
      if (prop === 'stream') {
        return (query: CompiledQuery, ...rest: unknown[]) => {
          check(query, dialect);
          return (target.stream as (...a: unknown[]) => unknown)(query, ...rest);
        };
      }
      const value = Reflect.get(target, prop, target);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}

const refuse = (what: string) => (): never => {
  throw new MigrationError(
    'E_MIGRATION_SOURCE',
    `refused inside a migration: db.${what}() would leave the migration's transaction; use the db passed to up() directly`,
  );
};

/**
 * Wraps the kysely instance bound to the migration's connection so that nothing run through
 * it can end, nest or escape the transaction. Builders (`db.schema...`, `db.insertInto...`)
 * never produce transaction control; raw SQL (`sql\`...\`.execute(db)`, `db.executeQuery`) is
 * checked statement by statement before it runs.
 */
export function guardMigrationDb(db: AnyKysely, dialect: Dialect): AnyKysely {
  const executor = guardExecutor(db.getExecutor(), dialect);
  const wrap =
    (method: 'withPlugin' | 'withoutPlugins' | 'withSchema' | 'withTables') =>
    (...args: unknown[]) =>
      guardMigrationDb((db[method] as (...a: unknown[]) => AnyKysely).apply(db, args), dialect);
  return new Proxy(db, {
    get(target, prop) {
      switch (prop) {
        case IN_MIGRATION:
          return true;
        case 'isTransaction':
          return true;
        case 'getExecutor':
          return () => executor;
        case 'executeQuery':
          return (query: CompiledQuery | { compile(): CompiledQuery }) =>
            executor.executeQuery('compile' in query ? query.compile() : query);
        case 'transaction':
          return refuse('transaction');
        case 'startTransaction':
          return refuse('startTransaction');
        case 'connection':
          return refuse('connection');
        case 'destroy':
          return refuse('destroy');
        case 'withPlugin':
        case 'withoutPlugins':
        case 'withSchema':
        case 'withTables':
          return wrap(prop);
      }
      const value = Reflect.get(target, prop, target);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}

/** True for the `db` a migration's `up` receives (it is inside the migration's transaction). */
export function isMigrationDb(db: AnyKysely): boolean {
  return (db as unknown as Record<symbol, unknown>)[IN_MIGRATION] === true;
}
