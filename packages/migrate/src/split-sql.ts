// A real SQL statement splitter: semicolons inside quotes, comments, PostgreSQL dollar quotes
// and BEGIN ... END bodies (SQLite triggers, PostgreSQL `BEGIN ATOMIC` functions) do not end
// a statement. Multi-statement strings are never handed to an API that commits implicitly
// (better-sqlite3's exec, Python's executescript): each statement runs on its own, inside the
// migration's transaction.

const WORD_START = /[A-Za-z_]/;
const WORD_CHAR = /[A-Za-z0-9_$]/;
/** How many leading keywords of a statement are kept to classify it. */
const KEPT_WORDS = 6;

/**
 * Splits SQL text into statements (without their trailing semicolons), dropping empty and
 * comment-only ones. Comments inside or before a statement stay in its text.
 *
 * Understood: `'...'` (with `''`), PostgreSQL `E'...'` (with backslash escapes), `"..."`,
 * `` `...` ``, `[...]`, `$tag$...$tag$`, `-- ...`, `/* ... *\/`, and `BEGIN ... END` bodies
 * (with nested `CASE ... END`) in `CREATE TRIGGER` and `CREATE FUNCTION/PROCEDURE`.
 *
 * @example
 * splitSqlStatements("create table a (v text default 'x;y'); insert into a values ('1')")
 * // => ["create table a (v text default 'x;y')", "insert into a values ('1')"]
 */
export function splitSqlStatements(text: string): string[] {
  const out: string[] = [];
  const n = text.length;
  let start = 0;
  let i = 0;
  let words: string[] = [];
  let hasBody: boolean | undefined; // can this statement hold BEGIN ... END? (decided from its first words)
  let depth = 0;
  let content = false; // anything but whitespace and comments since `start`
  const push = (end: number): void => {
    if (content) out.push(text.slice(start, end).trim());
    words = [];
    hasBody = undefined;
    depth = 0;
    content = false;
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
      content = true;
      const close = c === '[' ? ']' : c;
      // PostgreSQL escape string E'...': a backslash escapes the next character.
      const backslash =
        c === "'" &&
        (text[i - 1] === 'E' || text[i - 1] === 'e') &&
        (i < 2 || !WORD_CHAR.test(text[i - 2]!));
      i++;
      while (i < n) {
        const d = text[i]!;
        if (backslash && d === '\\') i += 2;
        else if (d === close) {
          if (close !== ']' && text[i + 1] === close)
            i += 2; // a doubled quote escapes itself
          else break;
        } else i++;
      }
      i++;
    } else if (c === '$' && (i === 0 || !WORD_CHAR.test(text[i - 1]!))) {
      content = true;
      const m = /^\$([A-Za-z_][A-Za-z0-9_]*)?\$/.exec(text.slice(i, i + 66));
      if (m) {
        const end = text.indexOf(m[0], i + m[0].length);
        i = end === -1 ? n : end + m[0].length;
      } else i++;
    } else if (WORD_START.test(c) && (i === 0 || !WORD_CHAR.test(text[i - 1]!))) {
      content = true;
      let j = i + 1;
      while (j < n && WORD_CHAR.test(text[j]!)) j++;
      const word = text.slice(i, j).toLowerCase();
      if (words.length < KEPT_WORDS) {
        words.push(word);
        if (hasBody === undefined) hasBody = bodyStatement(words);
      }
      if (hasBody) {
        if (word === 'begin' || word === 'case') depth++;
        else if (word === 'end' && depth > 0) depth--;
      }
      i = j;
    } else if (c === ';' && depth === 0) {
      push(i);
      start = i + 1;
      i++;
    } else {
      if (!/\s/.test(c)) content = true;
      i++;
    }
  }
  push(n);
  return out;
}

/**
 * Whether a statement starting with `words` may contain `BEGIN ... END` with semicolons inside:
 * `CREATE [TEMP|TEMPORARY] TRIGGER` (SQLite) and `CREATE [OR REPLACE] FUNCTION|PROCEDURE`
 * (PostgreSQL `BEGIN ATOMIC`). Undefined while the first words are not all read yet.
 */
function bodyStatement(words: readonly string[]): boolean | undefined {
  if (words[0] !== 'create') return false;
  const rest = words.slice(1);
  const kinds = ['trigger', 'function', 'procedure'];
  const prefix = ['temp', 'temporary', 'or', 'replace', 'constraint'];
  for (const w of rest) {
    if (kinds.includes(w)) return true;
    if (!prefix.includes(w)) return false;
  }
  return words.length >= KEPT_WORDS ? false : undefined;
}

/** The first `count` keywords of one statement, lower-cased, skipping comments and whitespace. */
export function leadingWords(statement: string, count = 3): string[] {
  const words: string[] = [];
  let i = 0;
  const n = statement.length;
  while (i < n && words.length < count) {
    const c = statement[i]!;
    if (c === '-' && statement[i + 1] === '-') {
      const eol = statement.indexOf('\n', i);
      i = eol === -1 ? n : eol + 1;
    } else if (c === '/' && statement[i + 1] === '*') {
      const end = statement.indexOf('*/', i + 2);
      i = end === -1 ? n : end + 2;
    } else if (/\s/.test(c)) i++;
    else if (WORD_START.test(c)) {
      let j = i + 1;
      while (j < n && WORD_CHAR.test(statement[j]!)) j++;
      words.push(statement.slice(i, j).toLowerCase());
      i = j;
    } else break;
  }
  return words;
}

/** The statement without leading comments and whitespace. */
export function stripLeadingComments(statement: string): string {
  let i = 0;
  const n = statement.length;
  for (;;) {
    while (i < n && /\s/.test(statement[i]!)) i++;
    if (statement.startsWith('--', i)) {
      const eol = statement.indexOf('\n', i);
      i = eol === -1 ? n : eol + 1;
    } else if (statement.startsWith('/*', i)) {
      const end = statement.indexOf('*/', i + 2);
      i = end === -1 ? n : end + 2;
    } else return statement.slice(i);
  }
}
