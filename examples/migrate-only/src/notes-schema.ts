// The schema of a small "calculation notebook" application, as code migrations. Nothing here
// knows about jobs or queues: @crystalmath/migrate is used on its own, for any schema.

import { codeMigrations, type MigrationSource } from '@crystalmath/migrate';

/** Version 1 of the schema: two tables and an index, plain SQL for both dialects. */
export const v1 = {
  '0001_structures': {
    sql: `create table structures (
      id integer primary key,
      formula text not null,
      lattice_a real not null
    );`,
  },
  '0002_calculations': {
    sql: `create table calculations (
      id integer primary key,
      structure_id integer not null references structures(id),
      code text not null,
      energy_ev real
    );
    create index calculations_structure on calculations(structure_id);`,
  },
} as const;

/** Version 2 adds a column, with SQL that differs by dialect, and a migration in code. */
export const v2 = {
  ...v1,
  '0003_calculation_status': {
    sqlite: `alter table calculations add column status text not null default 'done';`,
    postgres: `alter table calculations add column status text not null default 'done';`,
  },
  '0004_tags': {
    async up(db) {
      await db.schema
        .createTable('tags')
        .addColumn('calculation_id', 'integer', (c) => c.notNull().references('calculations.id'))
        .addColumn('tag', 'text', (c) => c.notNull())
        .addPrimaryKeyConstraint('tags_pk', ['calculation_id', 'tag'])
        .execute();
    },
  },
} satisfies Parameters<typeof codeMigrations>[0];

/** A broken version 3: its second statement fails, so the whole migration must roll back. */
export const v3Broken = {
  ...v2,
  '0005_half_done': {
    sql: `create table runs (id integer primary key);
    insert into no_such_table values (1);`,
  },
} satisfies Parameters<typeof codeMigrations>[0];

export const schema = (record: Parameters<typeof codeMigrations>[0]): MigrationSource =>
  codeMigrations(record);
