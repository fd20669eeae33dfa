import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import zlib from 'node:zlib';
import type { SluiceError } from '../../sdk/errors.ts';
import { testContext } from '../../sdk/testing.ts';
import type { SluiceRecord, SourceInstance } from '../../sdk/types.ts';
import { fileSource } from './source.ts';
import { duckQuery, makeTempDir, readSource } from './test-util.ts';

let dir: string;
const ctx = (batchSize = 100) => testContext({ baseDir: dir, batchSize });
const open = async (config: Record<string, unknown>, batchSize = 100): Promise<SourceInstance> =>
  fileSource.create(fileSource.config.parse(config), ctx(batchSize));
const values = (records: SluiceRecord[]) => records.map((r) => r.value);
const positions = (records: SluiceRecord[]) =>
  records.map((r) => [r.meta.position?.partition, r.meta.position?.offset]);

function assertIncreasing(records: SluiceRecord[]): void {
  const last = new Map<string, number>();
  for (const r of records) {
    const { partition, offset } = r.meta.position!;
    const prev = last.get(partition);
    assert.ok(prev === undefined || offset > prev, `${partition}: ${offset} after ${prev}`);
    last.set(partition, offset);
  }
}

before(async () => {
  dir = await makeTempDir('sluice-file-source-');
});
after(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

describe('file source: CSV', () => {
  it('reads a header and quoted fields with embedded newlines and quotes, positioned by start line', async () => {
    await fs.writeFile(path.join(dir, 'quoted.csv'), 'id,text\n1,"two\nlines"\n2,"say ""hi"""\n');
    const { records, rejected } = await readSource(await open({ path: 'quoted.csv' }));
    assert.deepEqual(rejected, []);
    assert.deepEqual(values(records), [
      { id: '1', text: 'two\nlines' },
      { id: '2', text: 'say "hi"' },
    ]);
    assert.deepEqual(positions(records), [
      ['quoted.csv', 2],
      ['quoted.csv', 4],
    ]);
  });

  it('honours a custom delimiter and declared types; a bad integer is rejected and reading carries on', async () => {
    await fs.writeFile(path.join(dir, 'typed.txt'), 'id|amount|ok\n1|2.5|true\nx|3|false\n3|4|false\n');
    const source = await open({
      path: 'typed.txt',
      format: 'csv',
      csv: { delimiter: '|', columns: { id: 'integer', amount: 'double', ok: 'boolean' } },
    });
    const { records, rejected } = await readSource(source);
    assert.deepEqual(values(records), [
      { id: 1, amount: 2.5, ok: true },
      { id: 3, amount: 4, ok: false },
    ]);
    assert.equal(rejected.length, 1);
    assert.equal(rejected[0]!.raw, 'x|3|false');
    assert.deepEqual(rejected[0]!.position, { partition: 'typed.txt', offset: 3 });
    assert.match(
      rejected[0]!.error.message,
      /typed\.txt:3 \(row 2\): column "id" \(field 1\): "x" is not a valid integer/,
    );
  });

  it('rejects a malformed line and carries on', async () => {
    await fs.writeFile(path.join(dir, 'broken.csv'), 'a,b\n1,2\n3,"x"y\n4\n5,6\n');
    const { records, rejected } = await readSource(await open({ path: 'broken.csv' }));
    assert.deepEqual(values(records), [
      { a: '1', b: '2' },
      { a: '5', b: '6' },
    ]);
    assert.deepEqual(
      rejected.map((r) => [r.position?.offset, r.raw, r.error.code]),
      [
        [3, '3,"x"y', 'SLUICE_DECODE'],
        [4, '4', 'SLUICE_DECODE'],
      ],
    );
  });

  it('reads .tsv files as tab-delimited CSV', async () => {
    await fs.writeFile(path.join(dir, 'data.tsv'), 'a\tb\n1,5\t2\n');
    const { records } = await readSource(await open({ path: 'data.tsv' }));
    assert.deepEqual(values(records), [{ a: '1,5', b: '2' }]);
  });

  it('decompresses gzip and zstd by extension, and reports compressed bytes as progress', async () => {
    const text = 'n\n' + Array.from({ length: 1000 }, (_, i) => String(i)).join('\n') + '\n';
    await fs.writeFile(path.join(dir, 'nums.csv.gz'), zlib.gzipSync(text));
    await fs.writeFile(path.join(dir, 'nums.csv.zst'), zlib.zstdCompressSync(Buffer.from(text)));
    for (const name of ['nums.csv.gz', 'nums.csv.zst']) {
      const source = await open({ path: name, csv: { columns: { n: 'integer' } } });
      const size = (await fs.stat(path.join(dir, name))).size;
      assert.deepEqual(source.progress?.(), { bytesRead: 0, bytesTotal: size });
      const { records } = await readSource(source);
      assert.equal(records.length, 1000, name);
      assert.deepEqual(records[999]?.value, { n: 999 });
      assert.deepEqual(source.progress?.(), { bytesRead: size, bytesTotal: size });
    }
  });

  it('fails with SLUICE_SOURCE_IO on a corrupt compressed file', async () => {
    await fs.writeFile(
      path.join(dir, 'corrupt.jsonl.gz'),
      Buffer.concat([zlib.gzipSync('{"a":1}\n'.repeat(100)).subarray(0, 30), Buffer.from('garbage')]),
    );
    await assert.rejects(readSource(await open({ path: 'corrupt.jsonl.gz' })), (err: SluiceError) => {
      assert.equal(err.code, 'SLUICE_SOURCE_IO');
      assert.match(err.message, /cannot decompress corrupt\.jsonl\.gz \(gzip\)/);
      return true;
    });
  });
});

describe('file source: several files', () => {
  before(async () => {
    await fs.mkdir(path.join(dir, 'multi/sub'), { recursive: true });
    await fs.mkdir(path.join(dir, 'multi/.hidden'), { recursive: true });
    for (const [name, n] of [
      ['multi/b.jsonl', 2],
      ['multi/a.jsonl', 3],
      ['multi/sub/c.jsonl', 1],
      ['multi/_SUCCESS.jsonl', 1],
      ['multi/.tmp.jsonl', 1],
      ['multi/.hidden/d.jsonl', 1],
    ] as const) {
      await fs.writeFile(
        path.join(dir, name),
        Array.from({ length: n }, (_, i) => JSON.stringify({ file: name, i })).join('\n'),
      );
    }
  });

  it('expands a glob in sorted order, each file its own partition', async () => {
    const { records } = await readSource(await open({ path: 'multi/*.jsonl' }, 2));
    assert.deepEqual(positions(records), [
      ['multi/a.jsonl', 1],
      ['multi/a.jsonl', 2],
      ['multi/a.jsonl', 3],
      ['multi/b.jsonl', 1],
      ['multi/b.jsonl', 2],
    ]);
  });

  it('reads a directory recursively in sorted order, skipping hidden and _-prefixed entries', async () => {
    const { records } = await readSource(await open({ path: 'multi' }));
    assert.deepEqual(
      [...new Set(records.map((r) => r.meta.position?.partition))],
      ['multi/a.jsonl', 'multi/b.jsonl', 'multi/sub/c.jsonl'],
    );
    assertIncreasing(records);
  });

  it('keeps an absolute path absolute in positions', async () => {
    const abs = path.join(dir, 'multi/a.jsonl');
    const { records } = await readSource(await open({ path: abs }));
    assert.equal(records[0]?.meta.position?.partition, abs);
  });

  it('fails with SLUICE_SOURCE_IO naming the pattern when nothing matches', async () => {
    await assert.rejects(open({ path: 'multi/*.csv' }), (err: SluiceError) => {
      assert.equal(err.code, 'SLUICE_SOURCE_IO');
      assert.match(err.message, /no file matches multi\/\*\.csv/);
      return true;
    });
    await assert.rejects(open({ path: 'missing.csv' }), /no such file or directory: missing\.csv/);
  });

  it('names the valid formats when an extension says nothing', async () => {
    await fs.writeFile(path.join(dir, 'notes.txt'), 'x');
    await assert.rejects(open({ path: 'notes.txt' }), /set format to one of csv, jsonl, parquet/);
  });
});

describe('file source: JSON Lines', () => {
  it('rejects an invalid line with file:line and the JSON error, and carries on', async () => {
    await fs.writeFile(path.join(dir, 'events.ndjson'), '{"a":1}\n{"a":\n{"a":3}\n');
    const { records, rejected } = await readSource(await open({ path: 'events.ndjson' }));
    assert.deepEqual(values(records), [{ a: 1 }, { a: 3 }]);
    assert.deepEqual(positions(records), [
      ['events.ndjson', 1],
      ['events.ndjson', 3],
    ]);
    assert.equal(rejected.length, 1);
    assert.equal(rejected[0]!.raw, '{"a":');
    assert.match(rejected[0]!.error.message, /^events\.ndjson:2: invalid JSON: /);
  });

  it('stops reading when the signal aborts', async () => {
    await fs.writeFile(path.join(dir, 'long.jsonl'), '{"x":1}\n'.repeat(50_000));
    const controller = new AbortController();
    const source = await fileSource.create(
      fileSource.config.parse({ path: 'long.jsonl' }),
      testContext({ baseDir: dir, batchSize: 10, signal: controller.signal }),
    );
    let batches = 0;
    for await (const _ of source.read()) if (++batches === 2) controller.abort();
    assert.equal(batches, 2);
    await source.close();
    await source.close();
  });
});

describe('file source: Parquet', () => {
  it('streams rows with converted types, positioned by row index', async () => {
    const file = path.join(dir, 'rows.parquet');
    await duckQuery(
      `COPY (SELECT i AS id, (i * 1.25)::DECIMAL(10,2) AS amount, TIMESTAMP '2024-01-01 00:00:00' + to_seconds(i) AS at,
        CASE WHEN i = 0 THEN 9007199254740993 ELSE i END::BIGINT AS big, [i, i + 1] AS pair
       FROM range(5000) t(i)) TO '${file}' (FORMAT parquet)`,
    );
    const source = await open({ path: 'rows.parquet' }, 1000);
    const { records } = await readSource(source);
    assert.equal(records.length, 5000);
    assert.deepEqual(records[0]?.value, {
      id: 0,
      amount: 0,
      at: new Date('2024-01-01T00:00:00Z'),
      big: '9007199254740993',
      pair: [0, 1],
    });
    assert.deepEqual(records[3]?.value, {
      id: 3,
      amount: 3.75,
      at: new Date('2024-01-01T00:00:03Z'),
      big: 3,
      pair: [3, 4],
    });
    assert.deepEqual(records[4999]?.meta.position, { partition: 'rows.parquet', offset: 4999 });
    assertIncreasing(records);
    const size = (await fs.stat(file)).size;
    assert.deepEqual(source.progress?.(), { bytesRead: size, bytesTotal: size });
  });
});
