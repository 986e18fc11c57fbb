import { describe, expect, it } from 'vitest';
import { splitSqlStatements } from '../index.js';

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
    expect(out[2]).toMatch(/^create trigger t[\s\S]*end$/);
    expect(out[3]).toContain('$body$ select 1; $body$');
    expect(out[4]).toBe("select 'it''s; fine'");
  });

  it('drops empty and comment-only statements', () => {
    expect(splitSqlStatements(';; -- nothing\n/* x */;')).toEqual([]);
  });
});
