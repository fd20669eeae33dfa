/** The `http` sink and source in pipeline runs (PipelineRun) against a real local HTTP server. */
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { PipelineRun, type RunOptions } from '../../engine/run.ts';
import { defaultRegistry } from '../../registry.ts';
import type { RecordValue } from '../../sdk/types.ts';
import { loadPipeline } from '../../spec/validate.ts';
import type { Arrived, PageServer } from './test-server.ts';
import { startPageServer } from './test-server.ts';

const silent = { debug() {}, info() {}, warn() {}, error() {} };
const TOKEN = 'pipeline-token-19ad-SECRET';

let server: PageServer;
let work: string;
before(async () => {
  server = await startPageServer();
  work = await mkdtemp(path.join(tmpdir(), 'sluice-http-connectors-'));
});
after(async () => {
  await server.close();
  await rm(work, { recursive: true, force: true });
});

async function run(name: string, yaml: string, extra: Partial<RunOptions> = {}) {
  const dir = path.join(work, name);
  const file = path.join(dir, 'pipeline.yaml');
  await rm(dir, { recursive: true, force: true });
  await import('node:fs/promises').then((fs) => fs.mkdir(dir, { recursive: true }));
  await writeFile(file, yaml);
  const pipeline = await loadPipeline({ file, text: yaml, registry: defaultRegistry() });
  const r = new PipelineRun({
    pipeline,
    runId: `${name}-run`,
    runDir: path.join(dir, 'run'),
    logger: silent,
    ...extra,
  });
  return r.run();
}

async function jsonLines(dir: string): Promise<RecordValue[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true }).catch(() => []);
  const out: RecordValue[] = [];
  for (const e of entries
    .filter((f) => f.isFile() && f.name.endsWith('.jsonl'))
    .sort((a, b) => a.name.localeCompare(b.name)))
    for (const line of (await readFile(path.join(e.parentPath, e.name), 'utf8')).split('\n'))
      if (line) out.push(JSON.parse(line) as RecordValue);
  return out;
}

/** An API that stores what is POSTed to /events (arrays) and lists it with cursor pages at GET /events. */
function eventsApi(stored: RecordValue[], opts: { failOnce?: string } = {}) {
  let failed = false;
  return (req: Arrived) => {
    if (req.headers.authorization !== `Bearer ${TOKEN}`)
      return { status: 401, body: { error: 'unauthorized' } };
    if (req.method === 'POST') {
      const body = JSON.parse(req.body) as RecordValue[];
      if (body.some((r) => r.id === 13)) return { status: 422, body: { error: 'id 13 is not allowed' } };
      stored.push(...body);
      return { status: 202 };
    }
    const cursor = req.query.get('after');
    if (cursor === opts.failOnce && !failed) {
      failed = true;
      return { status: 400, body: { error: 'bad cursor (once)' } };
    }
    const start = cursor ? Number(cursor) : 0;
    const limit = Number(req.query.get('limit'));
    const page = stored.slice(start, start + limit);
    return { body: { events: page, next: start + limit < stored.length ? String(start + limit) : null } };
  };
}

describe('http connectors in a pipeline run', () => {
  it('generate → http sink (batches), then http source (cursor) → file: every record arrives once, in order', async () => {
    const stored: RecordValue[] = [];
    server.reset();
    server.handler = eventsApi(stored);
    const sent = await run(
      'to-api',
      `apiVersion: sluice/v1
kind: Pipeline
metadata: { name: to-api }
source:
  generate: { count: 60, fields: { id: seq, kind: "pick(a, b)" } }
sink:
  http:
    url: ${server.origin}/events
    batch: { max_records: 8 }
    body: { id: "{{ id }}", kind: "{{ kind }}" }
    idempotency_key: "{{ id }}"
    auth: { bearer: "${TOKEN}" }
    concurrency: 2
settings: { batch_size: 20 }
`,
    );
    assert.equal(sent.status, 'succeeded', JSON.stringify(sent.failure));
    // The batch holding id 13 (ids 9..16) was refused: its 8 records are in the errors sink.
    assert.deepEqual(sent.records, { read: 60, written: 52, filtered: 0, failed: 8, skipped: 0 });
    assert.deepEqual(sent.errors.by_code, { SLUICE_HTTP_STATUS: 8 });
    assert.deepEqual(
      stored.map((r) => r.id),
      [...Array.from({ length: 8 }, (_, i) => i + 1), ...Array.from({ length: 44 }, (_, i) => i + 17)].sort(
        (a, b) => a - b,
      ),
    );
    const posts = server.requests.filter((r) => r.method === 'POST');
    assert.equal(posts.length, 9, '3 writes of 20 records, each cut into requests of 8, 8 and 4');
    assert.ok(posts.every((r) => r.headers['idempotency-key']?.length === 64));

    stored.sort((a, b) => Number(a.id) - Number(b.id));
    const out = path.join(work, 'from-api-out');
    const read = await run(
      'from-api',
      `apiVersion: sluice/v1
kind: Pipeline
metadata: { name: from-api }
source:
  http:
    url: ${server.origin}/events
    query: { limit: 7 }
    records: events
    pagination: { cursor: { path: next, param: after } }
    auth: { bearer: "${TOKEN}" }
sink:
  file: { path: ${out}/, format: jsonl }
`,
    );
    assert.equal(read.status, 'succeeded', JSON.stringify(read.failure));
    assert.equal(read.records.read, 52);
    assert.deepEqual(await jsonLines(out), stored);
    const runJson = await readFile(path.join(work, 'from-api/run/run.json'), 'utf8').catch(() => '');
    assert.ok(!runJson.includes(TOKEN));
  });

  it('http source → file: a run that fails on a page resumes from its last checkpoint, writing each record once', async () => {
    const stored = Array.from({ length: 40 }, (_, i) => ({ id: i + 1 }));
    server.reset();
    server.handler = eventsApi(stored, { failOnce: '25' });
    const out = path.join(work, 'resume-out');
    const yaml = `apiVersion: sluice/v1
kind: Pipeline
metadata: { name: resume }
source:
  http:
    url: ${server.origin}/events
    query: { limit: 5 }
    records: events
    pagination: { cursor: { path: next, param: after } }
    auth: { bearer: "${TOKEN}" }
sink:
  file: { path: ${out}/, format: jsonl }
settings: { batch_size: 3, checkpoint_interval: 0ms }
`;
    let saved: Record<string, number> | undefined;
    const onCheckpoint: RunOptions['onCheckpoint'] = async (positions) => {
      saved = positions;
    };
    const first = await run('resume', yaml, { onCheckpoint });
    assert.equal(first.status, 'failed');
    assert.equal(first.failure?.code, 'SLUICE_SOURCE_IO');
    assert.match(
      first.failure?.message ?? '',
      /^http source: page 6: GET .*\/events\?limit=5&after=25 answered 400 Bad Request/,
    );
    assert.ok(saved && Object.keys(saved).some((p) => p.startsWith('cursor:')), JSON.stringify(saved));
    // The page of the last committed record: the cursor of the partition with the highest offset.
    const [lastPage] = Object.entries(saved!)
      .filter(([p]) => p.startsWith('cursor:'))
      .sort((a, b) => b[1] - a[1])[0]!;
    const cursor = lastPage.slice('cursor:'.length);
    server.requests.length = 0;
    const second = await run('resume', yaml, { resume: { positions: saved! }, onCheckpoint });
    assert.equal(second.status, 'succeeded', JSON.stringify(second.failure));
    assert.equal(
      server.requests[0]!.url,
      `/events?limit=5${cursor ? `&after=${cursor}` : ''}`,
      'resumed at the page of the last checkpoint',
    );
    assert.ok(second.records.read < 40, `read ${second.records.read}: the resumed run did not start over`);
    assert.deepEqual(
      (await jsonLines(out)).map((r) => r.id),
      stored.map((r) => r.id),
    );
  });
});
