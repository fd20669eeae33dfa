/** A real control plane for tests: in this process, or as a `sluice server` child process. */
import { type ChildProcess, spawn } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { BIN } from '../cli/test-util.ts';
import type { Logger } from '../sdk/types.ts';
import type { Workspace } from '../spec/workspace.ts';
import type { ApiJob } from './jobs.ts';
import { type RunningServer, type ServerOptions, startServer } from './server.ts';

/** A workspace over `dataRoot` as `sluice server` makes it by default: no env, no scripts. */
export function testWorkspace(dataRoot: string): Workspace {
  return { dataRoot, extraRoots: [], env: [], scripts: false };
}

export const quietLogger: Logger = { debug() {}, info() {}, warn() {}, error() {} };

export interface Api {
  url: string;
  token: string;
  call<T = Record<string, unknown>>(
    method: string,
    route: string,
    body?: unknown,
    headers?: Record<string, string>,
  ): Promise<{ status: number; body: T; headers: Headers }>;
}

export function apiClient(url: string, token: string): Api {
  return {
    url,
    token,
    async call(method, route, body, headers = {}) {
      const res = await fetch(`${url}${route}`, {
        method,
        headers: {
          authorization: `Bearer ${token}`,
          ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
          ...headers,
        },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      });
      const text = await res.text();
      let parsed: unknown = text;
      try {
        parsed = text ? JSON.parse(text) : undefined;
      } catch {
        // text bodies (logs, metrics) stay text
      }
      return { status: res.status, body: parsed as never, headers: res.headers };
    },
  };
}

export async function startTestServer(
  database: string,
  stateDir: string,
  options: Partial<ServerOptions> = {},
): Promise<{ server: RunningServer; api: Api }> {
  const server = await startServer({
    database,
    stateDir,
    // Tests keep their specs' files beside the state folder.
    dataRoot: path.dirname(stateDir),
    port: 0,
    logger: quietLogger,
    pollMs: 100,
    cancelGraceMs: 10_000,
    ...options,
  });
  if (!server.adminToken) throw new Error('expected a fresh store with a new admin token');
  return { server, api: apiClient(server.url, server.adminToken) };
}

/** `sluice server` as a child process, for tests that kill the server itself. */
export async function spawnServer(
  args: string[],
  cwd: string,
): Promise<{ child: ChildProcess; url: string; token: string | undefined; stderr: () => string }> {
  const child = spawn(process.execPath, [BIN, 'server', '--port', '0', ...args], {
    cwd,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (d) => {
    stderr += d;
  });
  const deadline = Date.now() + 20_000;
  for (;;) {
    const url = /listening on (http:\/\/\S+)/.exec(stderr)?.[1];
    if (url) {
      // `sluice server` writes the token line with the listening line, in one write.
      const token = /admin token \(shown once\): (\S+)/.exec(stderr)?.[1];
      return { child, url, token, stderr: () => stderr };
    }
    if (child.exitCode !== null || Date.now() > deadline) {
      throw new Error(`sluice server did not start:\n${stderr}`);
    }
    await sleep(50);
  }
}

export const FINAL = ['succeeded', 'failed', 'cancelled'];

/** Polls a job until `done` says so (default: a final state). */
export async function waitForJob(
  api: Api,
  id: string,
  done: (job: ApiJob) => boolean = (j) => FINAL.includes(j.state),
  timeoutMs = 180_000,
): Promise<ApiJob> {
  const deadline = Date.now() + timeoutMs;
  let last: ApiJob | undefined;
  while (Date.now() < deadline) {
    const res = await api.call<{ job: ApiJob }>('GET', `/v1/jobs/${id}`);
    if (res.status === 200) {
      last = res.body.job;
      if (done(last)) return last;
    }
    await sleep(100);
  }
  throw new Error(`job ${id} did not get there in ${timeoutMs} ms; last: ${JSON.stringify(last)}`);
}

/** Every JSON line of every file under `dir`, parsed. */
export async function readJsonLines(dir: string): Promise<Record<string, unknown>[]> {
  const rows: Record<string, unknown>[] = [];
  const entries = await readdir(dir, { recursive: true, withFileTypes: true }).catch(() => []);
  for (const e of entries) {
    if (!e.isFile() || !e.name.endsWith('.jsonl')) continue;
    const text = await readFile(path.join(e.parentPath, e.name), 'utf8');
    for (const line of text.split('\n')) if (line) rows.push(JSON.parse(line));
  }
  return rows;
}

/** A generate → JSON Lines pipeline; with `rate` it takes count/rate seconds. */
export function generateSpec(
  name: string,
  opts: { count?: number; rate?: string; out?: string; checkpoint?: string; attempts?: number } = {},
): string {
  return `apiVersion: sluice/v1
kind: Pipeline
metadata: { name: ${name} }
source:
  generate:
    ${opts.count !== undefined ? `count: ${opts.count}` : ''}
    ${opts.rate ? `rate: ${opts.rate}` : ''}
    seed: 3
    fields: { id: seq, v: "int(1, 1000)" }
sink:
  file: { path: ${opts.out ?? `out/${name}/`}, format: jsonl }
settings:
  batch_size: 200
  checkpoint_interval: ${opts.checkpoint ?? '200ms'}
  restart: { attempts: ${opts.attempts ?? 3}, backoff: 100ms }
`;
}
