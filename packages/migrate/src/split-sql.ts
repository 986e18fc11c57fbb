// A real SQL statement splitter: semicolons inside quotes, comments, PostgreSQL dollar quotes
// and BEGIN ... END trigger bodies do not end a statement. Multi-statement strings are never
// handed to an API that commits implicitly (better-sqlite3's exec, Python's executescript).

const TRIGGER_START = /^\s*create\s+(temp\s+|temporary\s+)?trigger\b/i;

/** Splits SQL text into statements (without trailing semicolons), dropping empty ones. */
export function splitSqlStatements(text: string): string[] {
  const out: string[] = [];
  let start = 0;
  let i = 0;
  let depth = 0; // BEGIN/CASE ... END nesting inside a CREATE TRIGGER
  const n = text.length;
  const push = (end: number): void => {
    const stmt = text.slice(start, end).trim();
    if (stripComments(stmt).trim() !== '') out.push(stmt);
  };
  while (i < n) {
    const c = text[i]!;
    const next = text[i + 1];
    if (c === '-' && next === '-') {
      const eol = text.indexOf('\n', i);
      i = eol === -1 ? n : eol + 1;
    } else if (c === '/' && next === '*') {
      const end = text.indexOf('*/', i + 2);
      i = end === -1 ? n : end + 2;
    } else if (c === "'" || c === '"' || c === '`' || c === '[') {
      const close = c === '[' ? ']' : c;
      i++;
      while (i < n) {
        if (text[i] === close) {
          if (text[i + 1] === close && close !== ']')
            i += 2; // doubled quote escapes itself
          else break;
        } else i++;
      }
      i++;
    } else if (c === '$') {
      const m = /^\$([A-Za-z_][A-Za-z0-9_]*)?\$/.exec(text.slice(i));
      if (m) {
        const end = text.indexOf(m[0], i + m[0].length);
        i = end === -1 ? n : end + m[0].length;
      } else i++;
    } else if (/[A-Za-z_]/.test(c) && (i === 0 || !/[A-Za-z0-9_]/.test(text[i - 1]!))) {
      let j = i;
      while (j < n && /[A-Za-z0-9_]/.test(text[j]!)) j++;
      const word = text.slice(i, j).toLowerCase();
      if (TRIGGER_START.test(stripComments(text.slice(start, j)))) {
        if (word === 'begin' || word === 'case') depth++;
        else if (word === 'end' && depth > 0) depth--;
      }
      i = j;
    } else if (c === ';' && depth === 0) {
      push(i);
      start = i + 1;
      i++;
    } else i++;
  }
  push(n);
  return out;
}

function stripComments(sql: string): string {
  return sql.replace(/--[^\n]*/g, '').replace(/\/\*[\s\S]*?\*\//g, '');
}
