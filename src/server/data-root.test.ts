/**
 * The default data root is the folder the server started in (a laptop's `sluice server` and
 * `sluice submit` from one clone), and the server's own state folder inside it stays out of reach.
 * A file of its own: DuckDB's confinement is per process, and this server's roots differ from
 * those of the other confinement tests.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { ApiJob } from './jobs.ts';
import type { RunningServer } from './server.ts';
import { type Api, readJsonLines, startTestServer, waitForJob } from './test-util.ts';

type ErrorBody = { error: { code: string; details?: { issues?: { code: string; message: string }[] } } };

const csvToJsonl = (name: string, from: string, to: string) => `apiVersion: sluice/v1
kind: Pipeline
metadata: { name: ${name} }
source:
  file: { path: ${from}, format: csv }
sink:
  file: { path: ${to}, format: jsonl }
`;

describe('the default data root', () => {
  let root: string;
  let server: RunningServer;
  let api: Api;
  const cwd = process.cwd();

  before(async () => {
    root = await mkdtemp(path.join(tmpdir(), 'sluice-data-root-'));
    await mkdir(path.join(root, 'examples', 'data'), { recursive: true });
    await writeFile(path.join(root, 'examples', 'data', 'rows.csv'), 'id,name\n1,a\n2,b\n');
    process.chdir(root);
    const stateDir = path.join(root, '.sluice', 'server');
    ({ server, api } = await startTestServer(path.join(stateDir, 'sluice.db'), stateDir, {
      dataRoot: undefined,
    }));
  });
  after(async () => {
    await server.close();
    process.chdir(cwd);
    await rm(root, { recursive: true, force: true });
  });

  const submit = (spec: string, extra: Record<string, unknown> = {}) =>
    api.call<ErrorBody & { job: ApiJob }>('POST', '/v1/jobs', { spec, ...extra });

  it('is the folder the server started in: a spec submitted from there runs', async () => {
    // What `sluice submit examples/x.yaml` sends: the spec's folder, absolute.
    const res = await submit(csvToJsonl('from-clone', 'data/rows.csv', 'out/'), {
      base_dir: path.join(root, 'examples'),
    });
    assert.equal(res.status, 201, JSON.stringify(res.body));
    assert.equal((await waitForJob(api, res.body.job.id)).state, 'succeeded');
    const rows = await readJsonLines(path.join(root, 'examples', 'out'));
    assert.deepEqual(
      rows.map((r) => r.id),
      ['1', '2'],
    );
  });

  for (const [title, from, to] of [
    ['read the job store', '.sluice/server/sluice.db', 'out/store/'],
    ["write into the jobs' folders", 'examples/data/rows.csv', '.sluice/server/jobs/planted/'],
  ] as const) {
    it(`keeps the server's state folder out of reach: a spec cannot ${title}`, async () => {
      const res = await submit(csvToJsonl('state', from, to));
      assert.equal(res.status, 422, JSON.stringify(res.body));
      const issue = res.body.error.details?.issues?.find((i) => i.code === 'SLUICE_SPEC_FORBIDDEN');
      assert.ok(issue, JSON.stringify(res.body));
      assert.match(issue.message, /the server's own state/);
    });
  }
});
