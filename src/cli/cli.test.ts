import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { DuckDBInstance } from '@duckdb/node-api';
import type { RunSummary } from '../engine/run.ts';
import { assertCountsAddUp } from '../engine/test-util.ts';
import { waitUntil } from '../sdk/testing.ts';
import { EXIT } from './exit-codes.ts';
import { ROOT, sluice } from './test-util.ts';

async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true }).catch(() => []);
  return entries.filter((e) => e.isFile()).map((e) => path.join(e.parentPath, e.name));
}

async function summaryOf(runDir: string): Promise<RunSummary> {
  const [file] = (await filesUnder(runDir)).filter((f) => f.endsWith('run.json'));
  assert.ok(file, `no run.json under ${runDir}`);
  const summary = JSON.parse(await readFile(file, 'utf8')) as RunSummary;
  assertCountsAddUp(summary);
  return summary;
}

let work: string;
before(async () => {
  work = await mkdtemp(path.join(tmpdir(), 'sluice-cli-'));
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

describe('sluice run', () => {
  it('runs the quick start: outputs, summary, and the two broken CSV lines in the errors sink', async () => {
    const runs = path.join(work, 'qs-runs');
    const out = path.join(ROOT, 'out/quickstart');
    await rm(out, { recursive: true, force: true });
    const result = await sluice(
      ['run', 'examples/quickstart.yaml', '--run-dir', runs, '--progress', 'none'],
      ROOT,
    );
    assert.equal(result.code, EXIT.ok, result.stderr + result.stdout);
    assert.match(result.stdout, /operator\s+kind\s+component\s+in\s+out\s+filtered\s+failed\s+time/);
    assert.match(result.stdout, /succeeded in/);

    const summary = await summaryOf(runs);
    assert.equal(summary.status, 'succeeded');
    assert.equal(summary.records.read, 500);
    const source = summary.operators.find((o) => o.kind === 'source');
    assert.equal(source?.failed, 2, 'the two broken lines fail at decode');

    const errorsFile = (await filesUnder(runs)).find((f) => /[\\/]errors[\\/]part-[^/\\]+\.jsonl$/.test(f));
    assert.ok(errorsFile);
    const errors = (await readFile(errorsFile, 'utf8'))
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    const decode = errors.filter((e) => e.code === 'SLUICE_DECODE');
    assert.deepEqual(
      decode.map((e) => e.position.offset),
      [43, 138],
      'error records name the CSV line numbers',
    );
    assert.ok(
      decode.every((e) => typeof e.raw === 'string' && e.raw.startsWith(String(e.position.offset - 1))),
    );
    assert.equal(errors.length, summary.records.failed);

    const db = await (await DuckDBInstance.create(':memory:')).connect();
    const all = await db.runAndReadAll(`SELECT count(*) AS n FROM read_json('${out}/all/*.jsonl')`);
    const eu = await db.runAndReadAll(
      `SELECT count(*) AS n, count(*) FILTER (WHERE country NOT IN ('DE','FR','NL','ES','IT','SE')) AS other FROM read_parquet('${out}/europe/*.parquet')`,
    );
    const allRow = all.getRowObjectsJS()[0]!;
    const euRow = eu.getRowObjectsJS()[0]!;
    assert.equal(Number(allRow.n), summary.operators.find((o) => o.name === 'all')?.out);
    assert.equal(Number(euRow.other), 0, 'the route sends only European countries to Parquet');
    assert.ok(Number(euRow.n) > 0);
    // The unrouted sink sees every record that neither failed nor was filtered on the way.
    const failedUpstream = summary.operators
      .filter((o) => o.kind === 'source' || o.kind === 'step')
      .reduce((n, o) => n + o.failed, 0);
    assert.equal(Number(allRow.n), summary.records.read - summary.records.filtered - failedUpstream);
  });

  it('exits 1 with the limit and the counts when the error policy is exceeded', async () => {
    const spec = path.join(work, 'strict.yaml');
    const text = (await readFile(path.join(ROOT, 'examples/quickstart.yaml'), 'utf8'))
      .replace('path: data/payments.csv', `path: ${path.join(ROOT, 'examples/data/payments.csv')}`)
      .replaceAll('../out/quickstart', path.join(work, 'strict-out'))
      .concat('settings:\n  error_policy: { max_errors: 1 }\n');
    await writeFile(spec, text);
    const result = await sluice(
      ['run', spec, '--run-dir', path.join(work, 'strict-runs'), '--progress', 'none'],
      work,
    );
    assert.equal(result.code, EXIT.failed, result.stderr);
    assert.match(result.stdout, /SLUICE_ERROR_LIMIT: max_errors 1 exceeded: 2 records failed of \d+ read/);
    const finals = (await filesUnder(path.join(work, 'strict-out'))).filter(
      (f) => !path.basename(f).startsWith('.'),
    );
    assert.deepEqual(finals, [], 'a failed run commits no output');
  });

  it('refuses an invalid spec before any record moves (exit 2), listing every problem', async () => {
    const spec = path.join(work, 'bad.yaml');
    await writeFile(
      spec,
      [
        'apiVersion: sluice/v1',
        'kind: Pipeline',
        'metadata: { name: bad }',
        'source:',
        '  file: { path: in.csv, fromat: csv }',
        'steps:',
        '  - sql: SELECT upperr(x) FROM input',
        'sink:',
        '  fiel: { path: out/ }',
        '',
      ].join('\n'),
    );
    for (const command of ['validate', 'run']) {
      const result = await sluice([command, spec], work);
      assert.equal(result.code, EXIT.specInvalid, `${command}: ${result.stderr}`);
      assert.match(
        result.stderr,
        /bad\.yaml:5:\d+ +source\.file\.fromat: unknown key "fromat"; did you mean "format"\?/,
      );
      assert.match(result.stderr, /bad\.yaml:7:\d+ +steps\[0\]\.sql\.query: .*upperr/);
      assert.match(result.stderr, /bad\.yaml:9:3 +sink\.fiel: unknown sink "fiel"; did you mean "file"\?/);
    }
    assert.deepEqual(await filesUnder(path.join(work, 'out')), []);
  });

  it('--dry-run prints the plan and reads nothing', async () => {
    const runs = path.join(work, 'dry-runs');
    const result = await sluice(['run', 'examples/quickstart.yaml', '--dry-run', '--run-dir', runs], ROOT);
    assert.equal(result.code, EXIT.ok, result.stderr);
    assert.match(result.stdout, /valid; plan of pipeline quickstart/);
    assert.match(result.stdout, /sink\s+europe \(file\)\s+route: country IN/);
    assert.deepEqual(await filesUnder(runs), []);
  });

  it('on SIGINT drains, commits only complete files, and says how far it got', async () => {
    const out = path.join(work, 'sigint-out');
    const runs = path.join(work, 'sigint-runs');
    const spec = path.join(work, 'endless.yaml');
    await writeFile(
      spec,
      [
        'apiVersion: sluice/v1',
        'kind: Pipeline',
        'metadata: { name: endless }',
        'source:',
        '  generate:',
        '    rate: 20000/s',
        '    fields: { id: seq, name: name, amount: "float(0, 100, 2)" }',
        'sink:',
        `  file: { path: ${out}/, format: jsonl, roll: { max_records: 3000 } }`,
        'settings: { batch_size: 500 }',
        '',
      ].join('\n'),
    );
    let child: ChildProcess | undefined;
    const running = sluice(
      ['run', spec, '--run-dir', runs, '--progress', 'plain', '--progress-interval', '0.2'],
      work,
      (c) => {
        child = c;
      },
    );
    // Wait until records are flowing (a part file committed and the next one open), then interrupt.
    await waitUntil('the run writing its second part file', async () => {
      const files = await filesUnder(out);
      return files.some((f) => f.endsWith('.inprogress')) && files.length > 1;
    });
    child!.kill('SIGINT');
    const result = await running;
    assert.equal(result.code, EXIT.interrupted, result.stderr);
    assert.match(result.stderr, /SIGINT: draining and committing/);
    assert.match(
      result.stdout,
      /interrupted in .*\nstopped after [\d,]+ records; last committed: generate @ \d+/,
    );

    const files = await filesUnder(out);
    assert.deepEqual(
      files.filter((f) => path.basename(f).startsWith('.')),
      [],
      'no temporary file is left',
    );
    let lines = 0;
    for (const file of files) {
      const text = await readFile(file, 'utf8');
      assert.ok(text.endsWith('\n'), `${file} ends with a whole line`);
      for (const line of text.trimEnd().split('\n')) JSON.parse(line);
      lines += text.trimEnd().split('\n').length;
    }
    const summary = await summaryOf(runs);
    assert.equal(summary.status, 'interrupted');
    assert.equal(lines, summary.records.written, 'every record written is in a complete, committed file');
    assert.equal(summary.records.written, summary.records.read);
    assert.equal(summary.positions.generate, summary.records.read);
  });
});

describe('sluice components and schema', () => {
  it('lists components and shows one with fields and examples', async () => {
    const list = await sluice(['components'], ROOT);
    assert.equal(list.code, EXIT.ok);
    for (const name of ['file', 'generate', 'stdin', 'sql', 'filter', 'validate', 'script', 'stdout']) {
      assert.match(list.stdout, new RegExp(`\\b${name}\\b`));
    }
    const one = await sluice(['components', 'file'], ROOT);
    assert.match(one.stdout, /file \(source\)/);
    assert.match(one.stdout, /file \(sink\)/);
    assert.match(one.stdout, /partition_by/);
    const unknown = await sluice(['components', 'fil'], ROOT);
    assert.equal(unknown.code, EXIT.usage);
    assert.match(unknown.stderr, /did you mean "file"\?/);
  });

  it('prints a JSON Schema that names every component', async () => {
    const result = await sluice(['schema'], ROOT);
    assert.equal(result.code, EXIT.ok);
    const schema = JSON.parse(result.stdout);
    assert.equal(schema.title, 'Sluice pipeline (sluice/v1)');
    assert.ok(result.stdout.includes('"generate"') && result.stdout.includes('"partition_by"'));
  });

  it('rejects unknown commands and options with exit 64', async () => {
    assert.equal((await sluice(['frobnicate'], ROOT)).code, EXIT.usage);
    const bad = await sluice(['run', 'x.yaml', '--nope'], ROOT);
    assert.equal(bad.code, EXIT.usage);
    assert.match(bad.stderr, /--nope/);
  });
});
