import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { SluiceError } from '../../sdk/errors.ts';
import { testContext } from '../../sdk/testing.ts';
import type { RecordValue, SinkInstance, SluiceRecord } from '../../sdk/types.ts';
import { fileSink, parseSize } from './sink.ts';
import { duckQuery, listFiles, makeTempDir } from './test-util.ts';

let root: string;
let n = 0;
/** A fresh folder (relative to root) per test. */
const fresh = () => `case-${++n}`;
const ctx = (runId = 'run1') => testContext({ baseDir: root, runId });
const create = (config: Record<string, unknown>, runId?: string): Promise<SinkInstance> =>
  Promise.resolve(fileSink.create(fileSink.config.parse(config), ctx(runId)));
const toRecords = (values: RecordValue[]): SluiceRecord[] => values.map((value) => ({ value, meta: {} }));

const ROWS: RecordValue[] = Array.from({ length: 10 }, (_, i) => ({
  id: i + 1,
  name: `name "${i}", with comma`,
  country: ['FR', 'DE', 'US/CA'][i % 3],
  amount: i + 0.5,
  paid: i % 2 === 0,
  at: new Date(Date.UTC(2024, 0, 1, 0, 0, i)),
}));

/** What DuckDB reads back gives `at` as a Date (parquet) or as text: compare on ISO text. */
function normalise(rows: RecordValue[]): RecordValue[] {
  return rows
    .map(
      (r): RecordValue => ({
        ...r,
        at: r.at instanceof Date ? r.at.toISOString() : String(r.at).replace(' ', 'T'),
      }),
    )
    .sort((a, b) => Number(a.id) - Number(b.id));
}

before(async () => {
  root = await makeTempDir('sluice-file-sink-');
});
after(async () => {
  await fs.rm(root, { recursive: true, force: true });
});

describe('file sink: formats read back with DuckDB', () => {
  for (const [format, reader] of [
    [
      'jsonl',
      `read_json('%s', format = 'newline_delimited', columns = {'id': 'BIGINT', 'name': 'VARCHAR', 'country': 'VARCHAR', 'amount': 'DOUBLE', 'paid': 'BOOLEAN', 'at': 'VARCHAR'})`,
    ],
    [
      'csv',
      `read_csv('%s', header = true, columns = {'id': 'BIGINT', 'name': 'VARCHAR', 'country': 'VARCHAR', 'amount': 'DOUBLE', 'paid': 'BOOLEAN', 'at': 'VARCHAR'})`,
    ],
    ['parquet', `read_parquet('%s')`],
  ] as const) {
    it(`${format}: writes part files that DuckDB reads back as the same rows`, async () => {
      const out = fresh();
      const sink = await create({ path: `${out}/`, format });
      assert.equal((await sink.write(toRecords(ROWS.slice(0, 6))))?.rejected, undefined);
      await sink.write(toRecords(ROWS.slice(6)));
      await sink.close();
      const files = await listFiles(path.join(root, out));
      assert.deepEqual(files, [`part-run1-00001.${format}`]);
      assert.deepEqual(sink.outputs?.(), [path.join(root, out, files[0]!)]);
      const rows = await duckQuery(`SELECT * FROM ${reader.replace('%s', path.join(root, out, '*'))}`);
      assert.deepEqual(normalise(rows), normalise(ROWS));
    });
  }

  it('parquet: keeps first-seen field order and exact types', async () => {
    const out = fresh();
    const sink = await create({ path: `${out}/data.parquet` });
    await sink.write(
      toRecords([
        { z: 1, a: 'x', when: new Date(0), nested: { k: [1.5] } },
        { z: 2, extra: true },
      ]),
    );
    await sink.close();
    const info = await duckQuery(
      `DESCRIBE SELECT * FROM read_parquet('${path.join(root, out, 'data.parquet')}')`,
    );
    assert.deepEqual(
      info.map((r) => [r.column_name, r.column_type]),
      [
        ['z', 'BIGINT'],
        ['a', 'VARCHAR'],
        ['when', 'TIMESTAMP'],
        ['nested', 'STRUCT(k DOUBLE[])'],
        ['extra', 'BOOLEAN'],
      ],
    );
  });

  it('gzip and zstd output carry the extension and read back', async () => {
    for (const compression of ['gzip', 'zstd'] as const) {
      const out = fresh();
      const sink = await create({ path: `${out}/`, format: 'jsonl', compression });
      await sink.write(toRecords([{ a: 1 }, { a: 2 }]));
      await sink.close();
      const ext = compression === 'gzip' ? 'gz' : 'zst';
      assert.deepEqual(await listFiles(path.join(root, out)), [`part-run1-00001.jsonl.${ext}`]);
      const rows = await duckQuery(
        `SELECT sum(a)::INT AS s FROM read_json('${path.join(root, out)}/*.jsonl.${ext}')`,
      );
      assert.deepEqual(rows, [{ s: 3 }]);
    }
  });
});

describe('file sink: part files', () => {
  it('rolls by max_records into N files, within and across batches', async () => {
    const out = fresh();
    const sink = await create({ path: `${out}/`, format: 'jsonl', roll: { max_records: 3 } });
    await sink.write(toRecords(ROWS.slice(0, 7)));
    await sink.write(toRecords(ROWS.slice(7)));
    await sink.close();
    const files = await listFiles(path.join(root, out));
    assert.deepEqual(files, [
      'part-run1-00001.jsonl',
      'part-run1-00002.jsonl',
      'part-run1-00003.jsonl',
      'part-run1-00004.jsonl',
    ]);
    const counts = await Promise.all(
      files.map(async (f) => (await fs.readFile(path.join(root, out, f), 'utf8')).trim().split('\n').length),
    );
    assert.deepEqual(counts, [3, 3, 3, 1]);
  });

  it('rolls by max_bytes', async () => {
    const out = fresh();
    const sink = await create({ path: `${out}/`, format: 'csv', roll: { max_bytes: '100B' } });
    await sink.write(toRecords(ROWS));
    await sink.close();
    const files = await listFiles(path.join(root, out));
    assert.ok(files.length > 2, `expected several files, got ${files.length}`);
    for (const f of files) {
      const text = await fs.readFile(path.join(root, out, f), 'utf8');
      assert.ok(text.startsWith('id,name,country,amount,paid,at\n'), 'every CSV part has a header');
    }
  });

  it('writes Hive partitions that DuckDB reads back with hive_partitioning, without the partition fields', async () => {
    const out = fresh();
    const sink = await create({ path: `${out}/`, format: 'parquet', partition_by: ['country', 'paid'] });
    await sink.write(
      toRecords([...ROWS, { id: 99, country: null, paid: true, amount: 1, name: 'n', at: new Date(0) }]),
    );
    await sink.close();
    const files = await listFiles(path.join(root, out));
    assert.ok(files.includes('country=US%2FCA/paid=true/part-run1-00003.parquet'), files.join(', '));
    assert.ok(files.some((f) => f.startsWith('country=__HIVE_DEFAULT_PARTITION__/paid=true/')));
    const direct = await duckQuery(
      `DESCRIBE SELECT * FROM read_parquet('${path.join(root, out, files[0]!)}', hive_partitioning = false)`,
    );
    assert.ok(direct.some((r) => r.column_name === 'id'));
    assert.ok(!direct.some((r) => r.column_name === 'country' || r.column_name === 'paid'));
    const rows = await duckQuery(
      `SELECT id, country, paid FROM read_parquet('${path.join(root, out)}/**/*.parquet', hive_partitioning = true, hive_types = {'paid': 'BOOLEAN'}) ORDER BY id`,
    );
    assert.deepEqual(
      rows,
      [...ROWS, { id: 99, country: null, paid: true }].map((r) => ({
        id: r.id,
        country: r.country,
        paid: r.paid,
      })),
    );
  });

  it('commit() makes the open files visible and later writes start new part files', async () => {
    const out = fresh();
    const sink = await create({ path: `${out}/`, format: 'jsonl' });
    await sink.write(toRecords(ROWS.slice(0, 2)));
    assert.deepEqual(await listFiles(path.join(root, out)), ['.part-run1-00001.jsonl.inprogress']);
    await sink.commit();
    assert.deepEqual(await listFiles(path.join(root, out)), ['part-run1-00001.jsonl']);
    await sink.commit(); // nothing new: no empty file
    await sink.write(toRecords(ROWS.slice(2, 3)));
    assert.deepEqual(await listFiles(path.join(root, out)), [
      '.part-run1-00002.jsonl.inprogress',
      'part-run1-00001.jsonl',
    ]);
    await sink.close();
    assert.deepEqual(await listFiles(path.join(root, out)), [
      'part-run1-00001.jsonl',
      'part-run1-00002.jsonl',
    ]);
  });

  it('temporary files are hidden and nothing appears under a final name before commit', async () => {
    const out = fresh();
    const sink = await create({
      path: `${out}/`,
      format: 'parquet',
      partition_by: ['country'],
      roll: { max_records: 2 },
    });
    await sink.write(toRecords(ROWS));
    const files = await listFiles(path.join(root, out));
    assert.ok(files.length > 0);
    for (const f of files)
      assert.match(path.basename(f), /^\.part-run1-\d{5}\.parquet(\.staging)?\.inprogress$/);
    const visible = await duckQuery(
      `SELECT count(*)::INT AS n FROM glob('${path.join(root, out)}/**/*.parquet')`,
    );
    assert.deepEqual(visible, [{ n: 0 }]);
    await sink.abort();
  });

  it('never reuses the name of a committed file (a resumed run keeps its run id)', async () => {
    const out = fresh();
    for (let i = 0; i < 2; i++) {
      const sink = await create({ path: `${out}/`, format: 'jsonl' });
      await sink.write(toRecords([{ i }]));
      await sink.close();
    }
    assert.deepEqual(await listFiles(path.join(root, out)), [
      'part-run1-00001.jsonl',
      'part-run1-00002.jsonl',
    ]);
  });
});

describe('file sink: abort and close', () => {
  it('abort() deletes every uncommitted file and the folders it created; abort and close after it are harmless', async () => {
    const out = fresh();
    const sink = await create({
      path: `${out}/deep/`,
      format: 'parquet',
      partition_by: ['country'],
      roll: { max_records: 2 },
    });
    await sink.write(toRecords(ROWS));
    assert.ok((await listFiles(path.join(root, out))).length > 0);
    await sink.abort();
    await sink.abort();
    await sink.close();
    assert.deepEqual(await listFiles(path.join(root, out)), []);
    await assert.rejects(fs.stat(path.join(root, out)), /ENOENT/);
    await assert.rejects(sink.write(toRecords(ROWS)), /after abort/);
  });

  it('abort() keeps what was committed before it', async () => {
    const out = fresh();
    const sink = await create({ path: `${out}/`, format: 'csv' });
    await sink.write(toRecords(ROWS.slice(0, 2)));
    await sink.commit();
    await sink.write(toRecords(ROWS.slice(2)));
    await sink.abort();
    assert.deepEqual(await listFiles(path.join(root, out)), ['part-run1-00001.csv']);
  });

  it('close() twice is harmless and abort() after close() removes nothing', async () => {
    const out = fresh();
    const sink = await create({ path: `${out}/result.jsonl` });
    await sink.write(toRecords(ROWS.slice(0, 1)));
    await sink.close();
    await sink.close();
    await sink.abort();
    assert.deepEqual(await listFiles(path.join(root, out)), ['result.jsonl']);
  });
});

describe('file sink: two-phase commit', () => {
  type Token = { sink: string; run_id: string; root: string; files: { temp: string; final: string }[] };

  it('prepareCommit finishes the open files under hidden names; commitPrepared renames them, and again is harmless', async () => {
    const out = fresh();
    const sink = await create({ path: `${out}/`, format: 'jsonl', partition_by: ['country'] });
    await sink.write(toRecords(ROWS.slice(0, 5)));
    const token = (await sink.prepareCommit!()) as Token;
    assert.deepEqual(JSON.parse(JSON.stringify(token)), token, 'a checkpoint can keep it as JSON');
    assert.equal(token.files.length, 3);
    const hidden = await listFiles(path.join(root, out));
    assert.equal(hidden.length, 3);
    assert.ok(
      hidden.every((f) => path.basename(f).startsWith('.')),
      hidden.join(),
    );
    // Written after the prepare: a new part file, not part of the token.
    await sink.write(toRecords(ROWS.slice(5, 6)));
    await sink.commitPrepared!(token);
    await sink.commitPrepared!(token);
    assert.deepEqual(
      (await listFiles(path.join(root, out))).filter((f) => !path.basename(f).startsWith('.')),
      [
        'country=DE/part-run1-00002.jsonl',
        'country=FR/part-run1-00001.jsonl',
        'country=US%2FCA/part-run1-00003.jsonl',
      ],
    );
    assert.deepEqual(
      sink.outputs?.(),
      token.files.map((f) => f.final),
    );
    await sink.close();
    assert.equal(sink.outputs?.().length, 4);
  });

  it('abort() keeps prepared files (a saved checkpoint may name them); close() publishes them', async () => {
    const out = fresh();
    const aborted = await create({ path: `${out}/`, format: 'csv' });
    await aborted.write(toRecords(ROWS.slice(0, 2)));
    await aborted.prepareCommit!();
    await aborted.write(toRecords(ROWS.slice(2, 4)));
    await aborted.abort();
    assert.deepEqual(await listFiles(path.join(root, out)), ['.part-run1-00001.csv.inprogress']);

    const closed = await create({ path: `${out}/`, format: 'csv' }, 'run2');
    await closed.write(toRecords(ROWS.slice(0, 2)));
    await closed.prepareCommit!();
    await closed.close();
    assert.ok((await listFiles(path.join(root, out))).includes('part-run2-00001.csv'));
  });

  it("a new instance publishes a checkpoint's token and deletes only that run's other temporary files", async () => {
    const out = fresh();
    const killed = await create({ path: `${out}/`, format: 'parquet', partition_by: ['country'] }, 'job-1');
    await killed.write(toRecords(ROWS.slice(0, 2)));
    const token = JSON.parse(JSON.stringify(await killed.prepareCommit!())) as Token;
    // After the checkpoint: parquet staging files of run job-1, never to be published.
    await killed.write(toRecords(ROWS.slice(2, 6)));
    // Another run writing to the same folder, whose run id starts the same way: not touched.
    const other = await create({ path: `${out}/`, format: 'parquet', partition_by: ['country'] }, 'job-1-a2');
    await other.write(toRecords(ROWS.slice(0, 1)));
    const before = await listFiles(path.join(root, out));
    assert.ok(
      before.some((f) => /\.part-job-1-\d+\.parquet\.staging\.inprogress$/.test(f)),
      before.join(),
    );

    const resumed = await create(
      { path: `${out}/`, format: 'parquet', partition_by: ['country'] },
      'job-1-a3',
    );
    await resumed.commitPrepared!(token);
    assert.deepEqual(await listFiles(path.join(root, out)), [
      'country=DE/part-job-1-00002.parquet',
      'country=FR/.part-job-1-a2-00001.parquet.staging.inprogress',
      'country=FR/part-job-1-00001.parquet',
    ]);
    assert.deepEqual(
      resumed.outputs?.(),
      token.files.map((f) => f.final),
    );
    const rows = await duckQuery(
      `SELECT id FROM read_parquet('${path.join(root, out)}/*/part-*.parquet') ORDER BY id`,
    );
    assert.deepEqual(rows, [{ id: 1 }, { id: 2 }]);
    await other.abort();
    await resumed.close();
  });

  it('refuses a token naming anything but its hidden part files, and one whose files are gone', async () => {
    const out = fresh();
    const sink = await create({ path: `${out}/`, format: 'jsonl' });
    await sink.write(toRecords(ROWS.slice(0, 1)));
    const token = (await sink.prepareCommit!()) as Token;
    const file = token.files[0]!;
    const elsewhere = path.join(root, 'victim.jsonl');
    for (const bad of [
      { ...token, files: [{ temp: path.join(root, out, 'data.jsonl'), final: elsewhere }] },
      { ...token, files: [{ temp: path.join(root, '.victim.jsonl.inprogress'), final: elsewhere }] },
      { ...token, sink: 'postgres' },
      'not a token',
    ]) {
      await assert.rejects(sink.commitPrepared!(bad), (err: SluiceError) => err.code === 'SLUICE_CHECKPOINT');
    }
    assert.deepEqual(
      await listFiles(path.join(root, out)),
      [path.basename(file.temp)],
      'nothing was renamed',
    );
    await fs.unlink(file.temp);
    await assert.rejects(sink.commitPrepared!(token), (err: SluiceError) => {
      assert.equal(err.code, 'SLUICE_SINK_IO');
      assert.ok(err.message.includes(file.temp), err.message);
      return true;
    });
  });

  it('a single file has no two-phase commit: it is renamed into place only at close', async () => {
    const sink = await create({ path: `${fresh()}/result.jsonl` });
    assert.equal(sink.prepareCommit, undefined);
    assert.equal(sink.commitPrepared, undefined);
    await sink.abort();
  });
});

describe('file sink: single file', () => {
  it('writes exactly the named file, renamed into place at close (commit only flushes)', async () => {
    const out = fresh();
    const sink = await create({ path: `${out}/result.csv.gz` });
    await sink.write(toRecords(ROWS.slice(0, 4)));
    await sink.commit();
    assert.deepEqual(await listFiles(path.join(root, out)), ['.result.csv.gz.run1.inprogress']);
    await sink.write(toRecords(ROWS.slice(4)));
    await sink.close();
    assert.deepEqual(await listFiles(path.join(root, out)), ['result.csv.gz']);
    assert.deepEqual(sink.outputs?.(), [path.join(root, out, 'result.csv.gz')]);
    const rows = await duckQuery(
      `SELECT count(*)::INT AS n FROM read_csv('${path.join(root, out, 'result.csv.gz')}')`,
    );
    assert.deepEqual(rows, [{ n: 10 }]);
  });

  it('creates an empty file when nothing was written (text formats)', async () => {
    const out = fresh();
    const sink = await create({ path: `${out}/empty.jsonl` });
    await sink.close();
    assert.equal(await fs.readFile(path.join(root, out, 'empty.jsonl'), 'utf8'), '');
  });

  it('returns a record it cannot encode as rejected and writes the rest', async () => {
    const out = fresh();
    const circular: RecordValue = { id: 2 };
    circular.self = circular;
    const sink = await create({ path: `${out}/r.jsonl` });
    const result = await sink.write(toRecords([{ id: 1, big: 2n ** 64n }, circular, { id: 3 }]));
    assert.equal(result?.rejected?.length, 1);
    assert.equal(result?.rejected?.[0]?.record?.value, circular);
    assert.equal(result?.rejected?.[0]?.error.code, 'SLUICE_SINK_REJECTED');
    await sink.close();
    assert.equal(
      await fs.readFile(path.join(root, out, 'r.jsonl'), 'utf8'),
      '{"id":1,"big":18446744073709551616}\n{"id":3}\n',
    );
  });
});

describe('file sink: config', () => {
  const issues = (config: Record<string, unknown>) =>
    fileSink.config.safeParse(config).error?.issues.map((i) => `${i.path.join('.')}: ${i.message}`) ?? [];

  it('refuses roll and partition_by on a single file, and a directory without a format', () => {
    assert.deepEqual(issues({ path: 'out/result.jsonl' }), []);
    assert.match(
      issues({ path: 'out/result.jsonl', roll: { max_records: 5 } }).join(),
      /^roll: roll needs a directory path/,
    );
    assert.match(issues({ path: 'out/result.parquet', partition_by: ['a'] }).join(), /^partition_by: /);
    assert.match(issues({ path: 'out/' }).join(), /^format: format is required when path is a directory/);
    assert.match(issues({ path: 'out/x.csv', format: 'jsonl' }).join(), /does not match the file extension/);
    assert.match(
      issues({ path: 'out/', format: 'parquet', compression: 'gzip' }).join(),
      /parquet\.compression/,
    );
    assert.match(issues({ path: 'out/', format: 'csv', colour: 'red' }).join(), /Unrecognized key/);
  });

  it('reads sizes with units', () => {
    assert.equal(parseSize('128MB'), 128e6);
    assert.equal(parseSize('1GiB'), 1024 ** 3);
    assert.equal(parseSize(42), 42);
    assert.throws(() => parseSize('lots'));
  });
});
