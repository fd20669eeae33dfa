/**
 * A reader for DuckDB's sqllogictest files (the dialect of DuckDB's own test runner): records
 * separated by blank lines, `statement ok|error|maybe`, `query <types> [sort mode]` with results
 * after `----`, `loop`/`foreach` expanded with `${var}`, `require`, `mode skip|unskip`,
 * `onlyif`/`skipif`, and the runner commands the conformance suite must notice (`load`, `restart`,
 * `sleep`, ...). No maintained parser of DuckDB's dialect exists as a package, so this is small
 * and only as strict as the suite needs: what it does not know becomes a `command` record.
 */

export interface SltStatement {
  kind: 'statement';
  expect: 'ok' | 'error' | 'maybe';
  sql: string;
  /** 1-based line of the `statement` line. */
  line: number;
}

export interface SltQuery {
  kind: 'query';
  /** Column type letters (`I`, `T`, `R`, ...). */
  types: string;
  sortMode?: string;
  sql: string;
  /** The expected result lines (DuckDB 1.5.5's; the suite's oracle is the DuckDB it runs). */
  expected: string[];
  line: number;
}

/** A runner command: `require`, `load`, `restart`, `sleep`, `set`, `halt`, ... */
export interface SltCommand {
  kind: 'command';
  name: string;
  args: string[];
  line: number;
}

export type SltRecord = SltStatement | SltQuery | SltCommand;

/** The type lists DuckDB's runner substitutes for `foreach x <name>`. */
const INTEGRAL = [
  'tinyint',
  'smallint',
  'integer',
  'bigint',
  'hugeint',
  'utinyint',
  'usmallint',
  'uinteger',
  'ubigint',
  'uhugeint',
];
const TYPE_LISTS: Record<string, string[]> = {
  '<signed>': ['tinyint', 'smallint', 'integer', 'bigint', 'hugeint'],
  '<unsigned>': ['utinyint', 'usmallint', 'uinteger', 'ubigint', 'uhugeint'],
  '<integral>': INTEGRAL,
  '<numeric>': [...INTEGRAL, 'float', 'double'],
  '<alltypes>': [...INTEGRAL, 'float', 'double', 'bool', 'interval', 'varchar'],
  // the columns of test_all_types(): only a query over that table uses them, never in scope
  '<all_types_columns>': [],
};

interface Line {
  text: string;
  no: number;
}

interface Block {
  /** A loop or foreach: its variable and values, and the blocks inside. */
  loop?: { name: string; values: string[]; body: Block[] };
  /** A plain record's lines (a command, a statement or a query). */
  lines?: Line[];
}

/** Parses a test file into records, loops expanded, skipped records (mode skip, onlyif other engines) left out. */
export function parseSlt(text: string): SltRecord[] {
  const lines = text.split(/\r?\n/).map((t, i) => ({ text: t, no: i + 1 }));
  let pos = 0;
  const readBlocks = (inLoop: boolean): Block[] => {
    const blocks: Block[] = [];
    while (pos < lines.length) {
      const first = lines[pos]!;
      const trimmed = first.text.trim();
      if (trimmed === '' || trimmed.startsWith('#')) {
        pos++;
        continue;
      }
      const words = trimmed.split(/\s+/);
      const head = words[0]!;
      if (head === 'endloop') {
        pos++;
        if (inLoop) return blocks;
        continue;
      }
      if (head === 'loop' || head === 'concurrentloop') {
        pos++;
        const [name, from, to] = words.slice(1);
        const values: string[] = [];
        for (let i = Number(from); i < Number(to); i++) values.push(String(i));
        blocks.push({ loop: { name: name!, values, body: readBlocks(true) } });
        continue;
      }
      if (head === 'foreach' || head === 'concurrentforeach') {
        pos++;
        const values = words.slice(2).flatMap((w) => TYPE_LISTS[w] ?? [w]);
        blocks.push({ loop: { name: words[1]!, values, body: readBlocks(true) } });
        continue;
      }
      // a record: its lines up to the next blank line
      const rec: Line[] = [];
      while (pos < lines.length && lines[pos]!.text.trim() !== '') rec.push(lines[pos++]!);
      blocks.push({ lines: rec });
    }
    return blocks;
  };
  const blocks = readBlocks(false);

  const out: SltRecord[] = [];
  let skipping = false;
  const emit = (rec: Line[], vars: Map<string, string>): void => {
    const sub = (s: string) =>
      vars.size ? s.replace(/\$\{(\w+)\}/g, (m, name: string) => vars.get(name) ?? m) : s;
    let i = 0;
    // conditions apply to the record that follows them
    let skip = false;
    while (i < rec.length) {
      const words = rec[i]!.text.trim().split(/\s+/);
      if (words[0] === 'onlyif') {
        if (words[1] !== 'duckdb') skip = true;
        i++;
      } else if (words[0] === 'skipif') {
        if (words[1] === 'duckdb') skip = true;
        i++;
      } else break;
    }
    // comment lines inside a record (before its command) are allowed
    while (i < rec.length && rec[i]!.text.trim().startsWith('#')) i++;
    if (i >= rec.length) return;
    const head = rec[i]!;
    const words = sub(head.text.trim()).split(/\s+/);
    const body = rec.slice(i + 1).map((l) => sub(l.text));
    if (words[0] === 'mode') {
      if (words[1] === 'skip') skipping = true;
      else if (words[1] === 'unskip') skipping = false;
      return;
    }
    if (skipping || skip) return;
    if (words[0] === 'statement') {
      const sep = body.indexOf('----');
      const sql = (sep < 0 ? body : body.slice(0, sep)).join('\n');
      out.push({ kind: 'statement', expect: words[1] as SltStatement['expect'], sql, line: head.no });
      return;
    }
    if (words[0] === 'query') {
      const sep = body.indexOf('----');
      out.push({
        kind: 'query',
        types: words[1] ?? '',
        ...(words[2] ? { sortMode: words[2] } : {}),
        sql: (sep < 0 ? body : body.slice(0, sep)).join('\n'),
        expected: sep < 0 ? [] : body.slice(sep + 1),
        line: head.no,
      });
      return;
    }
    out.push({ kind: 'command', name: words[0]!, args: words.slice(1), line: head.no });
  };
  const walk = (bs: Block[], vars: Map<string, string>): void => {
    for (const b of bs) {
      if (b.lines) emit(b.lines, vars);
      else if (b.loop) {
        for (const v of b.loop.values) walk(b.loop.body, new Map([...vars, [b.loop.name, v]]));
      }
    }
  };
  walk(blocks, new Map());
  return out;
}
