/**
 * The control plane's /metrics, scraped from a real server after a real job, passes Prometheus's
 * own linter (`promtool check metrics`). promtool comes from scripts/tools/promtool.sh, which .ci/run
 * calls first; without it this test fails, saying how to get it.
 */
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import type { ApiJob } from './jobs.ts';
import type { RunningServer } from './server.ts';
import { type Api, generateSpec, startTestServer, waitForJob } from './test-util.ts';

const ROOT = path.resolve(import.meta.dirname, '../..');

async function promtool(): Promise<string> {
  try {
    const { stdout } = await promisify(execFile)(path.join(ROOT, 'scripts/tools/promtool.sh'));
    return stdout.trim();
  } catch (err) {
    throw new Error(
      `promtool is needed to lint /metrics and scripts/tools/promtool.sh could not get it: ${(err as { stderr?: string }).stderr ?? err}`,
    );
  }
}

/** `promtool check metrics` over the text: its exit code and what it printed. */
function checkMetrics(bin: string, text: string): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(bin, ['check', 'metrics'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d) => {
      output += d;
    });
    child.stderr.on('data', (d) => {
      output += d;
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, output }));
    child.stdin.end(text);
  });
}

describe('GET /metrics and promtool', () => {
  let work: string;
  let server: RunningServer;
  let api: Api;
  let bin: string;

  before(async () => {
    bin = await promtool();
    work = await mkdtemp(path.join(tmpdir(), 'sluice-promtool-'));
    ({ server, api } = await startTestServer(path.join(work, 'sluice.db'), path.join(work, 'state')));
  });
  after(async () => {
    await server?.close();
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('is lint-clean with job, queue, request and process series present', async () => {
    const submitted = await api.call<{ job: ApiJob }>('POST', '/v1/jobs', {
      spec: `${generateSpec('promtool-lint', { count: 2000 })}steps:\n  - filter: id > 10\n`,
      base_dir: work,
    });
    assert.equal(submitted.status, 201, JSON.stringify(submitted.body));
    const job = await waitForJob(api, submitted.body.job.id);
    assert.equal(job.state, 'succeeded', JSON.stringify(job));
    await api.call('GET', '/v1/nothing-here'); // a request series for an unmatched route too

    const scrape = await api.call<string>('GET', '/metrics');
    assert.equal(scrape.status, 200);
    assert.match(scrape.body, /^sluice_records_in_total\{job_id="/m, 'the job series are in the scrape');
    assert.match(scrape.body, /^sluice_server_nodejs_active_handles\{/m, 'the process series are in it');

    const lint = await checkMetrics(bin, scrape.body);
    assert.equal(lint.code, 0, `promtool check metrics:\n${lint.output}`);
    assert.equal(lint.output.trim(), '', 'promtool has nothing to say');
  });
});
