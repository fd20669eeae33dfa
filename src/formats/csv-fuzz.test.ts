/**
 * Seeded fuzz of the CSV decoder's recovery: random valid rows (quoted fields with delimiters,
 * doubled quotes and LF or CRLF line breaks, empty fields, unicode) with exactly one corrupt row
 * each. Every valid row must come out exactly, and the corrupt row alone must be rejected, with
 * its data row number and file line, whole and in chunks of a few bytes (rows and characters split
 * across reads).
 *
 * Two limits keep the oracle exact, as no reader can do better there: a quoted field starts with
 * a letter (an open quote before a field starting with a delimiter or a line break can close into
 * a record that is valid), and the corrupt row is on one line (a row meant to span lines, broken
 * after its first line, has its later lines read again as records: see docs/concepts.md).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { RecordValue, Rejection } from '../sdk/types.ts';
import { rng as random } from '../sql/fuzz.ts';
import { csvReadOptionsSchema, decodeCsv } from './csv.ts';

const LETTERS = ['a', 'b', 'z', 'Q', 'é', 'ü', '日', '本', '🦆', 'ß', 'Ω'];
const INSIDE_QUOTES = [...LETTERS, ',', '""', '\n', '\r\n', ' ', '0', '9'];

interface Case {
  text: string;
  /** The valid rows, in order: their first file line and value. */
  rows: { line: number; value: RecordValue }[];
  bad: { row: number; line: number; raw: string; kind: string };
}

function makeCase(seed: number): Case {
  const rand = random(seed);
  const int = (n: number) => Math.floor(rand() * n);
  const pick = <T>(items: readonly T[]): T => items[int(items.length)]!;
  const word = (chars: readonly string[], min: number, max: number) =>
    Array.from({ length: min + int(max - min + 1) }, () => pick(chars)).join('');
  const width = 3 + int(3);
  const columns = ['id', 'n', ...Array.from({ length: width - 2 }, (_, i) => `c${i}`)];
  const rowCount = 1 + int(40);
  const badRow = 1 + int(rowCount);
  const eol = () => (rand() < 0.5 ? '\n' : '\r\n');

  let text = `${columns.join(',')}${eol()}`;
  let line = 2;
  const rows: Case['rows'] = [];
  let bad: Case['bad'] | undefined;
  for (let row = 1; row <= rowCount; row++) {
    const n = int(2_000_000) - 1_000_000;
    const fields = [`r${row}`, String(n)];
    const value: RecordValue = { id: `r${row}`, n };
    const corrupt = row === badRow;
    for (let c = 2; c < width; c++) {
      const shape = rand();
      let field: string;
      let v: string | null;
      if (shape < 0.2) [field, v] = ['', null];
      else if (shape < 0.5) {
        v = word(LETTERS, 1, 6);
        field = v;
      } else {
        // A quoted field starting with a letter (see the header); the corrupt row's stay on one line.
        const inside = corrupt ? INSIDE_QUOTES.filter((ch) => !ch.includes('\n')) : INSIDE_QUOTES;
        const content = pick(LETTERS) + word(inside, 0, 8);
        field = `"${content}"`;
        v = content.replaceAll('""', '"');
      }
      fields.push(field);
      value[columns[c]!] = v;
    }
    if (corrupt) {
      const kinds = [
        'open quote',
        'text after closing quote',
        'extra field',
        'missing field',
        'not an integer',
      ];
      const kind = pick(kinds);
      const at = 2 + int(width - 2);
      if (kind === 'open quote') fields[at] = `"${pick(LETTERS)}${word(LETTERS, 0, 4)}`;
      else if (kind === 'text after closing quote') fields[at] = `"${pick(LETTERS)}"${pick(LETTERS)}`;
      else if (kind === 'extra field') fields.push(word(LETTERS, 0, 3));
      else if (kind === 'missing field') fields.splice(at, 1);
      else fields[1] = `${n}${pick(LETTERS)}`;
      const raw = fields.join(',');
      bad = { row, line, raw, kind };
      text += raw;
    } else {
      const record = fields.join(',');
      rows.push({ line, value });
      text += record;
      line += record.split('\n').length - 1;
    }
    // The last row may end the file without a line break.
    if (row < rowCount || rand() < 0.7) text += eol();
    line++;
  }
  return { text, rows, bad: bad! };
}

async function decode(text: string, chunkSizes: () => number) {
  async function* chunks(): AsyncGenerator<Buffer> {
    const bytes = Buffer.from(text);
    for (let i = 0; i < bytes.length; ) {
      const size = chunkSizes();
      yield bytes.subarray(i, i + size);
      i += size;
    }
  }
  const rows: { line: number; value: RecordValue }[] = [];
  const rejected: Rejection[] = [];
  for await (const batch of decodeCsv(chunks(), {
    partition: 'fuzz.csv',
    batchSize: 16,
    csv: csvReadOptionsSchema.parse({ columns: { n: 'integer' } }),
  })) {
    for (const r of batch.records) rows.push({ line: r.meta.position!.offset, value: r.value });
    rejected.push(...(batch.rejected ?? []));
  }
  return { rows, rejected };
}

describe('CSV recovery fuzz', () => {
  it('keeps every valid row and rejects the corrupt one alone, whatever the read chunks', async () => {
    const kinds = new Map<string, number>();
    for (let seed = 1; seed <= 300; seed++) {
      const c = makeCase(seed);
      kinds.set(c.bad.kind, (kinds.get(c.bad.kind) ?? 0) + 1);
      const rand = random(seed * 7919);
      for (const [how, sizes] of [
        ['whole', () => 1 << 20],
        ['small chunks', () => 1 + Math.floor(rand() * 12)],
      ] as const) {
        const context = `seed ${seed}, ${how}, ${c.bad.kind}: ${JSON.stringify(c.text)}`;
        const { rows, rejected } = await decode(c.text, sizes);
        assert.deepEqual(rows, c.rows, context);
        assert.equal(rejected.length, 1, context);
        const r = rejected[0]!;
        assert.equal(r.raw, c.bad.raw, context);
        assert.deepEqual(r.position, { partition: 'fuzz.csv', offset: c.bad.line }, context);
        assert.equal(r.error.details?.row, c.bad.row, context);
        assert.ok(r.error.message.startsWith(`fuzz.csv:${c.bad.line} (row ${c.bad.row}): `), context);
      }
    }
    // Every kind of corruption was tried, many times.
    assert.equal(kinds.size, 5);
    for (const [kind, count] of kinds) assert.ok(count >= 30, `${kind}: ${count} cases`);
  });
});
