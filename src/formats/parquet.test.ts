import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { JsonEncoder } from './jsonl.ts';
import { type DuckDB, duckdbToJs, openDuckDB, stagedJsonlToParquet, TypeTracker } from './parquet.ts';

describe('TypeTracker', () => {
  it('names exact DuckDB types in first-seen order', () => {
    const t = new TypeTracker();
    t.observe({
      i: 1,
      f: 1,
      s: 'a',
      b: true,
      d: new Date(0),
      o: { x: 1, y: 'z' },
      l: [1, 2],
      n: null,
      m: 1,
      j: { a: 1 },
    });
    t.observe({
      i: 2,
      f: 1.5,
      s: null,
      b: false,
      d: null,
      o: { x: null, w: [true] },
      l: [],
      n: null,
      m: 'x',
      j: [1],
      z: 3n,
      h: 2n ** 70n,
    });
    assert.deepEqual(t.columns(), [
      ['i', 'BIGINT'],
      ['f', 'DOUBLE'],
      ['s', 'VARCHAR'],
      ['b', 'BOOLEAN'],
      ['d', 'TIMESTAMP'],
      ['o', 'STRUCT("x" BIGINT, "y" VARCHAR, "w" BOOLEAN[])'],
      ['l', 'BIGINT[]'],
      ['n', 'VARCHAR'],
      ['m', 'VARCHAR'],
      ['j', 'JSON'],
      ['z', 'BIGINT'],
      ['h', 'DECIMAL(38,0)'],
    ]);
  });
});

describe('Parquet through DuckDB', () => {
  let dir: string;
  let db: DuckDB;
  before(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'sluice-parquet-'));
    db = await openDuckDB({ threads: 1 });
  });
  after(async () => {
    db.close();
    await fs.rm(dir, { recursive: true, force: true });
  });

  it('converts staged JSON Lines with the tracked types, and reads values back as plain JS', async () => {
    const staged = path.join(dir, 'staged.jsonl');
    const out = path.join(dir, 'out.parquet');
    const tracker = new TypeTracker();
    const values = [
      { id: 1, at: new Date('2024-01-02T03:04:05.678Z'), tags: ['a'], big: 9007199254740993n },
      { id: 2, at: null, tags: [], big: 5n },
    ];
    for (const v of values) tracker.observe(v);
    const json = new JsonEncoder();
    await fs.writeFile(staged, values.map((v) => json.encode(v)).join('\n'));
    await stagedJsonlToParquet(db.connection, staged, tracker.columns(), out, { compression: 'zstd' });
    const reader = await db.connection.runAndReadAll(
      `SELECT *, 12.5::DECIMAL(10,2) AS dec, 9007199254740993::BIGINT AS unsafe FROM read_parquet('${out}') ORDER BY id`,
    );
    assert.deepEqual(reader.columnTypes().map(String), [
      'BIGINT',
      'TIMESTAMP',
      'VARCHAR[]',
      'BIGINT',
      'DECIMAL(10,2)',
      'BIGINT',
    ]);
    assert.deepEqual(reader.convertRowObjects(duckdbToJs), [
      {
        id: 1,
        at: new Date('2024-01-02T03:04:05.678Z'),
        tags: ['a'],
        big: '9007199254740993',
        dec: 12.5,
        unsafe: '9007199254740993',
      },
      { id: 2, at: null, tags: [], big: 5, dec: 12.5, unsafe: '9007199254740993' },
    ]);
  });
});
