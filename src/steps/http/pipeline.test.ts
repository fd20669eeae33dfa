/** The `http` step in a real run: `sluice run` (a child process) against the test server. */
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { EXIT } from '../../cli/exit-codes.ts';
import { sluice } from '../../cli/test-util.ts';
import type { ErrorRecordValue } from '../../engine/error-channel.ts';
import type { RunSummary } from '../../engine/run.ts';
import { startTestServer, type TestServer } from './test-server.ts';

let server: TestServer;
let work: string;
before(async () => {
  server = await startTestServer();
  work = await mkdtemp(path.join(tmpdir(), 'sluice-http-'));
});
after(async () => {
  await server.close();
  await rm(work, { recursive: true, force: true });
});

async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true }).catch(() => []);
  return entries
    .filter((e) => e.isFile())
    .map((e) => path.join(e.parentPath, e.name))
    .sort();
}

async function jsonLines<T>(files: string[]): Promise<T[]> {
  const out: T[] = [];
  for (const file of files) {
    const text = await readFile(file, 'utf8');
    for (const line of text.split('\n')) if (line) out.push(JSON.parse(line) as T);
  }
  return out;
}

describe('http step in a pipeline run', () => {
  it('generate → http → filter → file: outputs in order, drops 404s, sends failures to the errors sink, never records the token', async () => {
    const out = path.join(work, 'out');
    const runs = path.join(work, 'runs');
    const spec = path.join(work, 'enrich.yaml');
    await writeFile(
      spec,
      `apiVersion: sluice/v1
kind: Pipeline
metadata: { name: enrich }
source:
  generate: { count: 60, fields: { id: seq } }
steps:
  - name: score
    http:
      request: { url: "${server.origin}/enrich/{{ id }}" }
      auth: { bearer: "\${env:ENRICH_TOKEN}" }
      concurrency: 8
      retry: { attempts: 3, initial: 5ms, max: 20ms, on: [5xx] }
      on_status: { 404: drop }
  - filter: response.score < 0.5
sink:
  file: { path: ${out}/, format: jsonl }
settings: { batch_size: 16 }
`,
    );
    const result = await sluice(['run', spec, '--run-dir', runs, '--progress', 'none'], work, undefined, {
      ENRICH_TOKEN: server.token,
    });
    assert.equal(result.code, EXIT.ok, result.stderr + result.stdout);

    // ids 1..60: multiples of 10 answer 404 (dropped), 7, 32 and 57 answer 500 three times (errors),
    // ids ending in 3 answer 503 once (retried), scores of 0.5 and more are filtered out.
    const expected = Array.from({ length: 49 }, (_, i) => i + 1).filter(
      (id) => id % 10 !== 0 && id % 25 !== 7,
    );
    const written = await jsonLines<{ id: number; response: { id: number; score: number } }>(
      await filesUnder(out),
    );
    assert.deepEqual(
      written.map((r) => r.id),
      expected,
      'in input order, across batches',
    );
    for (const r of written) assert.deepEqual(r.response, { id: r.id, score: r.id / 100 });
    assert.equal(server.hits('/enrich/3').length, 2, 'a 503 was retried');
    assert.equal(server.hits('/enrich/7').length, 3);
    assert.ok(server.maxInFlight <= 8, `at most 8 calls in flight (${server.maxInFlight})`);

    const runFiles = await filesUnder(runs);
    const summary = JSON.parse(
      await readFile(runFiles.find((f) => f.endsWith('run.json'))!, 'utf8'),
    ) as RunSummary;
    assert.deepEqual(summary.records, { read: 60, written: 43, filtered: 14, failed: 3, skipped: 0 });
    const step = summary.operators.find((o) => o.name === 'score')!;
    assert.deepEqual([step.component, step.in, step.out, step.filtered, step.failed], ['http', 60, 51, 6, 3]);
    assert.deepEqual(summary.errors.by_code, { SLUICE_HTTP_STATUS: 3 });

    const errors = await jsonLines<ErrorRecordValue>(runFiles.filter((f) => /[\\/]errors[\\/]/.test(f)));
    assert.deepEqual(
      errors.map((e) => [e.record?.id, e.code, e.attempts, e.operator, e.details?.status]),
      [
        [7, 'SLUICE_HTTP_STATUS', 3, 'score', 500],
        [32, 'SLUICE_HTTP_STATUS', 3, 'score', 500],
        [57, 'SLUICE_HTTP_STATUS', 3, 'score', 500],
      ],
    );
    assert.match(String(errors[0]!.details?.body), /^\{"error":"failed with Bearer \[REDACTED\]"\}$/);
    assert.match(
      errors[0]!.message,
      /^GET http:\/\/127\.0\.0\.1:\d+\/enrich\/7 answered 500 Internal Server Error after 3 attempts$/,
    );

    // The token reached the server, and nothing Sluice wrote holds it.
    for (const file of [...runFiles, ...(await filesUnder(out))])
      assert.ok(!(await readFile(file, 'utf8')).includes(server.token), `the token is in ${file}`);
    assert.ok(!(result.stdout + result.stderr).includes(server.token));
  });
});
