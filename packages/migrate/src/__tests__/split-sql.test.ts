import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { splitSqlStatements } from '../index.js';
import { leadingWords } from '../split-sql.js';

describe('splitSqlStatements', () => {
  it('splits on semicolons outside quotes, comments, dollar quotes and trigger bodies', () => {
    const text = `
      create table a (v text default 'x;y'); -- a comment; with semicolon
      /* block; comment */ insert into a values ("q;uoted");
      create trigger t after insert on a begin
        update a set v = 'z;' where v = new.v;
        select case when 1 then 2 else 3 end;
      end;
      create function f() returns int as $body$ select 1; $body$ language sql;
      select 'it''s; fine';
    `;
    const out = splitSqlStatements(text);
    expect(out).toHaveLength(5);
    expect(out[0]).toBe("create table a (v text default 'x;y')");
    expect(out[1]).toBe(
      '-- a comment; with semicolon\n      /* block; comment */ insert into a values ("q;uoted")',
    );
    expect(out[2]).toMatch(/^create trigger t[\s\S]*end$/);
    expect(out[3]).toContain('$body$ select 1; $body$');
    expect(out[4]).toBe("select 'it''s; fine'");
  });

  it('drops empty and comment-only statements', () => {
    expect(splitSqlStatements(';; -- nothing\n/* x */;')).toEqual([]);
    expect(splitSqlStatements('')).toEqual([]);
    expect(splitSqlStatements('select 1')).toEqual(['select 1']);
  });

  it('handles CASE before BEGIN, temp triggers, WHEN clauses and nested CASE in trigger bodies', () => {
    const text = `create temp trigger if not exists tt before update on a
      when case when new.v is null then 1 else 0 end = 0
      begin
        select raise(abort, 'no; way') where (case new.v when 'a' then case 1 when 1 then 0 end end) = 1;
        insert into log values ('end;');
      end;
      select 2`;
    const out = splitSqlStatements(text);
    expect(out).toHaveLength(2);
    expect(out[0]).toMatch(/end$/);
    expect(out[1]).toBe('select 2');
  });

  it('understands PostgreSQL: E-strings, dollar tags, BEGIN ATOMIC bodies, $n parameters', () => {
    const text = `select E'it\\'s; fine';
      create or replace function g(a int) returns int language sql begin atomic select a + 1; select case when a > 0 then 1 end; end;
      do $do$ begin perform 1; end $do$;
      select $1::int, x$y from t;
      select 'E''x;'`;
    const out = splitSqlStatements(text);
    expect(out).toEqual([
      "select E'it\\'s; fine'",
      expect.stringMatching(/^create or replace function g[\s\S]*end$/),
      'do $do$ begin perform 1; end $do$',
      'select $1::int, x$y from t',
      "select 'E''x;'",
    ]);
  });

  it('understands SQLite quoting: backticks, brackets, blobs; CRLF line endings', () => {
    const out = splitSqlStatements("select `a;b`, [c;d], x'3b' from t;\r\n-- c;\r\nselect 1;\r\n");
    expect(out).toEqual(["select `a;b`, [c;d], x'3b' from t", '-- c;\r\nselect 1']);
  });

  it('does not treat BEGIN/END outside CREATE TRIGGER/FUNCTION as a body', () => {
    expect(splitSqlStatements('begin; create table x (id int); end; commit')).toEqual([
      'begin',
      'create table x (id int)',
      'end',
      'commit',
    ]);
  });

  it('an unterminated quote swallows the rest (the database then reports the error)', () => {
    expect(splitSqlStatements("select 'oops; select 2")).toEqual(["select 'oops; select 2"]);
  });

  it('is linear: one text of 32 000 statements costs what 32 texts of 1 000 cost', () => {
    // Work, not a wall-clock budget: the same characters are split once as one large text and
    // once as 32 small ones. A linear splitter costs about the same both ways; a quadratic one
    // costs about 32 times as much for the large text. Each side is timed as the fastest of
    // several interleaved rounds: a busy machine only ever adds time, to both sides alike, so
    // the fastest round is the machine's own cost and the ratio does not move with the load.
    const PIECES = 32;
    const SMALL = 1_000;
    const ROUNDS = 7;
    /** Well above a linear splitter's ratio (about 1) and well below a quadratic one's (~32). */
    const LINEAR_RATIO_BOUND = 6;
    const statements = (from: number, count: number) =>
      Array.from({ length: count }, (_, i) => `insert into t values (${from + i}, 'v;${i}')`).join(
        ';\n',
      );
    const small = Array.from({ length: PIECES }, (_, k) => statements(k * SMALL, SMALL));
    const large = statements(0, PIECES * SMALL);
    const time = (run: () => void): number => {
      const started = performance.now();
      run();
      return performance.now() - started;
    };
    let largeMs = Number.POSITIVE_INFINITY;
    let smallMs = Number.POSITIVE_INFINITY;
    for (let round = 0; round < ROUNDS; round++) {
      largeMs = Math.min(
        largeMs,
        time(() => expect(splitSqlStatements(large)).toHaveLength(PIECES * SMALL)),
      );
      smallMs = Math.min(
        smallMs,
        time(() => {
          for (const text of small) expect(splitSqlStatements(text)).toHaveLength(SMALL);
        }),
      );
    }
    console.log(
      `split-sql: ${PIECES * SMALL} statements at once ${largeMs.toFixed(1)} ms, ` +
        `as ${PIECES} texts ${smallMs.toFixed(1)} ms (fastest of ${ROUNDS})`,
    );
    expect(largeMs / smallMs).toBeLessThan(LINEAR_RATIO_BOUND);
  });

  it('leadingWords skips comments', () => {
    expect(leadingWords('/* x */ -- y\n  Rollback To sp', 3)).toEqual(['rollback', 'to', 'sp']);
  });
});

describe('splitSqlStatements (property)', () => {
  // Statements built from pieces that may hide semicolons: the splitter must find exactly them.
  const word = fc.constantFrom('select', 'x', 'from', 't', 'where', 'v', '=', '1', '(', ')', ',');
  const semi = fc.string({ maxLength: 6 }).map((s) => `${s};`);
  const piece = fc.oneof(
    word,
    semi.map((s) => `'${s.replaceAll("'", "''")}'`),
    semi.map((s) => `"${s.replaceAll('"', '""')}"`),
    semi.map((s) => `$q$${s.replaceAll('$', '')}$q$`),
    semi.map((s) => `/* ${s.replaceAll('*/', '')} */`),
    semi.map((s) => `-- ${s.replaceAll('\n', ' ')}\n`),
  );
  const plain = fc.array(piece, { minLength: 1, maxLength: 8 }).map((p) => `select ${p.join(' ')}`);
  const trigger = fc
    .array(plain, { minLength: 1, maxLength: 3 })
    .map((body) => `create trigger tr after insert on t begin ${body.join('; ')}; end`);
  it('finds exactly the statements that were joined', () => {
    fc.assert(
      fc.property(fc.array(fc.oneof(plain, trigger), { minLength: 1, maxLength: 6 }), (stmts) => {
        expect(splitSqlStatements(stmts.join(';\n'))).toEqual(stmts.map((s) => s.trim()));
      }),
      { numRuns: 300 },
    );
  });
});
