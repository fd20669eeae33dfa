/**
 * Integers beyond ±2^53 from JSON Lines, through `sluice run` (real processes, real files) to
 * every file format, read back with DuckDB: the digits never change, the Parquet column gets the
 * narrowest exact type, and what a format cannot hold is an error record naming the field.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { DuckDBInstance } from '@duckdb/node-api';
import { sluice } from '../../cli/test-util.ts';

let dir: string;
before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'sluice-bigint-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function filesUnder(root: string): Promise<string[]> {
  const entries = await readdir(root, { recursive: true, withFileTypes: true }).catch(() => []);
  return entries
    .filter((e) => e.isFile())
    .map((e) => path.join(e.parentPath, e.name))
    .sort();
}

/** Runs JSONL `input` through an optional sql step to a file sink of `format`; returns its outputs. */
async function run(name: string, input: string, format: string, sql?: string) {
  await writeFile(path.join(dir, `${name}.jsonl`), input);
  await writeFile(
    path.join(dir, `${name}.yaml`),
    `apiVersion: sluice/v1
kind: Pipeline
metadata: { name: ${name} }
source:
  file: { path: ${name}.jsonl }
${sql ? `steps:\n  - sql: ${sql}\n` : ''}sinks:
  - file: { path: out-${name}/, format: ${format} }
`,
  );
  const result = await sluice(
    ['run', `${name}.yaml`, '--progress', 'none', '--run-dir', `runs-${name}`],
    dir,
  );
  assert.equal(result.code, 0, result.stderr + result.stdout);
  const [out] = await filesUnder(path.join(dir, `out-${name}`));
  assert.ok(out, `no output: ${result.stdout}`);
  const errorFiles = (await filesUnder(path.join(dir, `runs-${name}`))).filter((f) => f.includes('/errors/'));
  const errors = (await Promise.all(errorFiles.map((f) => readFile(f, 'utf8'))))
    .join('')
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line) as { code: string; message: string; details: Record<string, unknown> });
  return { out, errors };
}

async function duck(sql: string): Promise<Record<string, unknown>[]> {
  const instance = await DuckDBInstance.create(':memory:');
  const connection = await instance.connect();
  try {
    return (await connection.runAndReadAll(sql)).getRowObjectsJson() as Record<string, unknown>[];
  } finally {
    connection.closeSync();
    instance.closeSync();
  }
}

const INPUT = [
  '{"id":1,"n":9007199254740993}',
  '{"id":2,"n":-9223372036854775808}',
  '{"id":3,"n":12345678901234567890}',
  '{"id":4,"n":-123456789012345678901234567890}',
  '{"id":5,"n":7}',
].join('\n');

describe('integers beyond 2^53 from JSON Lines', () => {
  it('are written digit for digit to JSON Lines and CSV, through a sql step too', async () => {
    const jsonl = await run('tojsonl', INPUT, 'jsonl');
    assert.equal(await readFile(jsonl.out, 'utf8'), `${INPUT}\n`);
    const filtered = await run(
      'sqljsonl',
      INPUT,
      'jsonl',
      'SELECT id, n FROM input WHERE n > 9007199254740992',
    );
    assert.equal(
      await readFile(filtered.out, 'utf8'),
      '{"id":1,"n":9007199254740993}\n{"id":3,"n":12345678901234567890}\n',
    );
    const csv = await run('tocsv', INPUT, 'csv');
    assert.equal(
      await readFile(csv.out, 'utf8'),
      'id,n\n1,9007199254740993\n2,-9223372036854775808\n3,12345678901234567890\n4,-123456789012345678901234567890\n5,7\n',
    );
    assert.deepEqual([...jsonl.errors, ...filtered.errors, ...csv.errors], []);
  });

  it('are BIGINT in Parquet within 64 bits, DECIMAL(38,0) beyond, and an error record past 38 digits', async () => {
    const within = await run(
      'int64',
      '{"n":9007199254740993}\n{"n":-9223372036854775808}\n{"n":1}\n',
      'parquet',
    );
    assert.deepEqual(await duck(`SELECT n::VARCHAR AS n, typeof(n) AS t FROM '${within.out}'`), [
      { n: '9007199254740993', t: 'BIGINT' },
      { n: '-9223372036854775808', t: 'BIGINT' },
      { n: '1', t: 'BIGINT' },
    ]);
    const beyond = await run(
      'int128',
      `${INPUT}\n{"id":6,"n":1234567890123456789012345678901234567890}\n{"id":7,"list":[1,-99999999999999999999999999999999999999999]}\n`,
      'parquet',
    );
    assert.deepEqual(
      await duck(`SELECT id, n::VARCHAR AS n, typeof(n) AS t FROM '${beyond.out}' ORDER BY id`),
      [
        { id: '1', n: '9007199254740993', t: 'DECIMAL(38,0)' },
        { id: '2', n: '-9223372036854775808', t: 'DECIMAL(38,0)' },
        { id: '3', n: '12345678901234567890', t: 'DECIMAL(38,0)' },
        { id: '4', n: '-123456789012345678901234567890', t: 'DECIMAL(38,0)' },
        { id: '5', n: '7', t: 'DECIMAL(38,0)' },
      ],
    );
    assert.deepEqual(
      beyond.errors.map((e) => [e.code, e.details.field]),
      [
        ['SLUICE_SINK_REJECTED', 'n'],
        ['SLUICE_SINK_REJECTED', 'list[1]'],
      ],
    );
    assert.match(beyond.errors[0]!.message, /field "n" holds an integer of more than 38 digits/);
  });

  it('1e400 is a double infinity, as DuckDB reads it, and 1.0 the number 1', async () => {
    const { out, errors } = await run(
      'huge',
      '{"id":1,"x":1e400}\n{"id":2,"x":-1e400}\n{"id":3,"x":1.0}\n',
      'csv',
    );
    assert.equal(await readFile(out, 'utf8'), 'id,x\n1,Infinity\n2,-Infinity\n3,1\n');
    assert.deepEqual(errors, []);
  });
});
