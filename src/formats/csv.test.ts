import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { RecordValue, Rejection, SourceBatch } from '../sdk/types.ts';
import { CsvEncoder, convertCsvValue, csvReadOptionsSchema, decodeCsv } from './csv.ts';

async function* chunked(text: string, size: number): AsyncGenerator<Buffer> {
  const bytes = Buffer.from(text);
  for (let i = 0; i < bytes.length; i += size) yield bytes.subarray(i, i + size);
}

interface Decoded {
  rows: { line: number; value: RecordValue }[];
  rejected: Rejection[];
  batches: SourceBatch[];
}

async function decode(
  text: string,
  csv: Record<string, unknown> = {},
  size = 1 << 20,
  batchSize = 100,
): Promise<Decoded> {
  const out: Decoded = { rows: [], rejected: [], batches: [] };
  for await (const batch of decodeCsv(chunked(text, size), {
    partition: 'in.csv',
    batchSize,
    csv: csvReadOptionsSchema.parse(csv),
  })) {
    out.batches.push(batch);
    for (const r of batch.records) out.rows.push({ line: r.meta.position!.offset, value: r.value });
    out.rejected.push(...(batch.rejected ?? []));
  }
  out.rejected.sort((a, b) => a.position!.offset - b.position!.offset);
  return out;
}

const TRICKY =
  'id,name,note\r\n' +
  '1,plain,"has, comma"\r\n' +
  '\r\n' +
  '2,"multi\nline\nvalue","quote ""inside"""\r\n' +
  '3,é ünïcødé,5\'10"\r\n' +
  '4,,last';

describe('decodeCsv', () => {
  it('reads a header, quoted fields with delimiters, embedded newlines and doubled quotes', async () => {
    const { rows, rejected } = await decode(TRICKY);
    assert.deepEqual(rejected, []);
    assert.deepEqual(rows, [
      { line: 2, value: { id: '1', name: 'plain', note: 'has, comma' } },
      { line: 4, value: { id: '2', name: 'multi\nline\nvalue', note: 'quote "inside"' } },
      { line: 7, value: { id: '3', name: 'é ünïcødé', note: '5\'10"' } },
      { line: 8, value: { id: '4', name: null, note: 'last' } },
    ]);
  });

  it('gives the same records whatever the chunk boundaries (down to single bytes)', async () => {
    const whole = await decode(TRICKY);
    for (const size of [1, 2, 3, 5, 7, 13])
      assert.deepEqual((await decode(TRICKY, {}, size)).rows, whole.rows, `size ${size}`);
  });

  it('honours a custom delimiter, quote and escape', async () => {
    const { rows } = await decode("a;b\n'x;y';'it\\'s'\n", { delimiter: ';', quote: "'", escape: '\\' });
    assert.deepEqual(rows, [{ line: 2, value: { a: 'x;y', b: "it's" } }]);
  });

  it('converts declared column types', async () => {
    const text =
      'i,big,d,dec,b,day,ts,j,s\n' +
      '42,9007199254740993,1.5e3,12.34,yes,2024-02-29,2024-01-02 03:04:05.5+02:00,"{""k"":[1]}",007\n';
    const { rows, rejected } = await decode(text, {
      columns: {
        i: 'integer',
        big: 'bigint',
        d: 'double',
        dec: 'decimal',
        b: 'boolean',
        day: 'date',
        ts: 'timestamp',
        j: 'json',
      },
    });
    assert.deepEqual(rejected, []);
    assert.deepEqual(rows[0]?.value, {
      i: 42,
      big: '9007199254740993',
      d: 1500,
      dec: 12.34,
      b: true,
      day: new Date('2024-02-29T00:00:00Z'),
      ts: new Date('2024-01-02T01:04:05.500Z'),
      j: { k: [1] },
      s: '007',
    });
  });

  it('rejects a bad integer with file, line, column, value and type, then carries on', async () => {
    const { rows, rejected } = await decode('id,qty\n1,10\n2,ten\n3,30\n', { columns: { qty: 'integer' } });
    assert.deepEqual(
      rows.map((r) => r.value),
      [
        { id: '1', qty: 10 },
        { id: '3', qty: 30 },
      ],
    );
    assert.equal(rejected.length, 1);
    const r = rejected[0]!;
    assert.equal(r.error.code, 'SLUICE_DECODE');
    assert.equal(r.raw, '2,ten');
    assert.deepEqual(r.position, { partition: 'in.csv', offset: 3 });
    for (const part of ['in.csv:3', '"qty"', '"ten"', 'integer'])
      assert.match(r.error.message, new RegExp(part));
  });

  it('rejects a wrong field count and a bad closing quote, and keeps every other line', async () => {
    const text = 'a,b,c\n1,2,3\n4,5\n6,"bad"x,7\n8,9,10\n';
    const { rows, rejected } = await decode(text);
    assert.deepEqual(
      rows.map((r) => [r.line, r.value.a]),
      [
        [2, '1'],
        [5, '8'],
      ],
    );
    assert.deepEqual(
      rejected.map((r) => [r.position?.offset, r.raw]),
      [
        [3, '4,5'],
        [4, '6,"bad"x,7'],
      ],
    );
    assert.match(rejected[0]!.error.message, /in\.csv:3 \(row 2\): expected 3 fields, found 2/);
    assert.match(rejected[1]!.error.message, /in\.csv:4 \(row 3\): malformed CSV/);
  });

  it('drops only the first line of a quote never closed and re-reads the lines after it', async () => {
    const { rows, rejected } = await decode('a,b\n1,2\n"open,3\n4,5\n', {}, 4);
    assert.deepEqual(
      rows.map((r) => [r.line, r.value]),
      [
        [2, { a: '1', b: '2' }],
        [4, { a: '4', b: '5' }],
      ],
    );
    assert.equal(rejected.length, 1);
    assert.equal(rejected[0]!.raw, '"open,3');
    assert.match(rejected[0]!.error.message, /in\.csv:3 \(row 2\): .*not closed/);
  });

  it('rejects only the line of a quote closed by a later row, and keeps the rows it swallowed', async () => {
    const text = 'id,name\r\n1,"unclosed\r\n2,"ok"\r\n3,fine\r\n';
    for (const size of [1, 3, 1 << 20]) {
      const { rows, rejected } = await decode(text, {}, size);
      assert.deepEqual(
        rows.map((r) => [r.line, r.value]),
        [
          [3, { id: '2', name: 'ok' }],
          [4, { id: '3', name: 'fine' }],
        ],
        `chunks of ${size}`,
      );
      assert.equal(rejected.length, 1);
      const r = rejected[0]!;
      assert.equal(r.raw, '1,"unclosed');
      assert.deepEqual(r.position, { partition: 'in.csv', offset: 2 });
      assert.match(
        r.error.message,
        /^in\.csv:2 \(row 1\): malformed CSV: unexpected character "o".*resumes on line 3/,
      );
      assert.equal(r.error.details?.row, 1);
      assert.equal(r.error.details?.line, 2);
    }
  });

  it('re-reads the lines after an open quote that makes a record of the wrong width or type', async () => {
    // The quote opened on line 2 closes on line 3 and gives a record with three fields; the
    // quote opened on line 5 makes a (too long) integer of two lines.
    const text = 'a,b\n1,"x\n2,y",z\n3,4\n5,"6\n7"\n8,9\n';
    const { rows, rejected } = await decode(text, { columns: { b: 'integer' } });
    assert.deepEqual(
      rows.map((r) => [r.line, r.value]),
      [
        [4, { a: '3', b: 4 }],
        [7, { a: '8', b: 9 }],
      ],
    );
    assert.deepEqual(
      rejected.map((r) => [r.position?.offset, r.error.details?.row, r.raw]),
      [
        [2, 1, '1,"x'],
        [3, 2, '2,y",z'],
        [5, 4, '5,"6'],
        [6, 5, '7"'],
      ],
    );
    assert.match(rejected[0]!.error.message, /\(row 1\): expected 2 fields, found 3; .*resumes on line 3/);
    assert.match(
      rejected[2]!.error.message,
      /\(row 4\): column "b" .* is not a valid integer; .*resumes on line 6/,
    );
  });

  it('reads headerless input, naming columns by the declared map or column0..n', async () => {
    const named = await decode('x,1\ny,2\n', { header: false, columns: { code: 'string', n: 'integer' } });
    assert.deepEqual(
      named.rows.map((r) => [r.line, r.value]),
      [
        [1, { code: 'x', n: 1 }],
        [2, { code: 'y', n: 2 }],
      ],
    );
    const anon = await decode('x,1\n', { header: false });
    assert.deepEqual(anon.rows[0]?.value, { column0: 'x', column1: '1' });
  });

  it('reads configured null values as null, and de-duplicates header names', async () => {
    const { rows } = await decode('a,a,\nNULL,,z\n', { null_values: ['NULL'] });
    assert.deepEqual(rows[0]?.value, { a: null, a_1: '', column2: 'z' });
  });

  it('fails the read when a declared column is not in the header', async () => {
    await assert.rejects(decode('a,b\n1,2\n', { columns: { c: 'integer' } }), /csv\.columns declares "c"/);
  });

  it('strips a byte order mark and keeps offsets strictly increasing across batches', async () => {
    const lines = Array.from({ length: 50 }, (_, i) => `${i},"v\n${i}"`).join('\n');
    const { rows, batches } = await decode(`\ufeffk,v\n${lines}\n`, {}, 17, 7);
    assert.equal(rows.length, 50);
    assert.equal(rows[0]?.value.k, '0');
    assert.ok(batches.every((b) => b.records.length + (b.rejected?.length ?? 0) <= 7));
    for (let i = 1; i < rows.length; i++) assert.ok(rows[i]!.line > rows[i - 1]!.line);
    assert.deepEqual(
      rows.slice(0, 3).map((r) => r.line),
      [2, 4, 6],
    );
  });
});

describe('convertCsvValue', () => {
  it('accepts the documented spellings and refuses the rest', () => {
    assert.equal(convertCsvValue(' -12 ', 'integer'), -12);
    assert.throws(() => convertCsvValue('1.5', 'integer'), /not a valid integer/);
    assert.throws(() => convertCsvValue('9007199254740993', 'integer'), /not a valid integer/);
    assert.equal(convertCsvValue('-9223372036854775808', 'bigint'), '-9223372036854775808');
    assert.throws(() => convertCsvValue('9223372036854775808', 'bigint'), /not a valid bigint/);
    assert.equal(convertCsvValue('-inf', 'double'), -Infinity);
    assert.throws(() => convertCsvValue('0x10', 'double'), /not a valid double/);
    assert.equal(convertCsvValue('F', 'boolean'), false);
    assert.throws(() => convertCsvValue('maybe', 'boolean'), /not a valid boolean/);
    assert.throws(() => convertCsvValue('2023-02-29', 'date'), /not a valid date/);
    assert.throws(() => convertCsvValue('2024-01-02T25:00:00', 'timestamp'), /not a valid timestamp/);
    assert.deepEqual(convertCsvValue('2024-01-02T03:04:05Z', 'timestamp'), new Date('2024-01-02T03:04:05Z'));
    assert.deepEqual(
      convertCsvValue('2024-01-02T03:04:05.123456-0130', 'timestamp'),
      new Date('2024-01-02T04:34:05.123Z'),
    );
    assert.throws(() => convertCsvValue('{', 'json'), /not a valid json/);
  });
});

describe('CsvEncoder', () => {
  it('writes a header once, quotes what needs it, and formats dates, objects and nulls', () => {
    const enc = new CsvEncoder({ header: true, delimiter: ';' });
    const line = enc.encode({
      a: 'x;y',
      b: 'say "hi"',
      c: '',
      d: null,
      e: new Date('2024-01-02T03:04:05Z'),
      f: { k: 1 },
      g: 12n,
    });
    assert.equal(enc.takeHeader(), 'a;b;c;d;e;f;g');
    assert.equal(enc.takeHeader(), undefined);
    assert.equal(line, '"x;y";"say ""hi""";"";;2024-01-02T03:04:05.000Z;"{""k"":1}";12');
    assert.equal(enc.encode({ b: 'only b' }), ';only b;;;;;');
  });

  it('rejects a record with a field outside the columns of the file', () => {
    const enc = new CsvEncoder({ header: true });
    enc.encode({ a: 1 });
    assert.throws(
      () => enc.encode({ a: 2, extra: 3 }),
      (err: Error & { code?: string }) => err.code === 'SLUICE_SINK_REJECTED' && /"extra"/.test(err.message),
    );
  });
});
