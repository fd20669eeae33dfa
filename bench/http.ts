/**
 * The `http` step against a local server in its own process (bench/http-server.ts) that answers
 * after a fixed latency, side by side in one run (`npm run bench -- --only http`):
 *
 * - 512 in flight, 100 ms: Sluice's rate against Little's law (concurrency / latency);
 * - 4,096 in flight, 100 ms: Sluice against a bare undici harness and a harness on Node's fetch
 *   making the same calls (bench/http-harness.ts);
 * - failures: N records against `/fail`, where 5% of ids answer 503 once and 0.1% always 422:
 *   every record ends in the output or in the errors sink, and the counts add up exactly.
 */
import { execFileSync, spawn } from 'node:child_process';
import { mkdir, readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { runSluiceIn as runSluice } from './connectors.ts';

const ROOT = path.resolve(import.meta.dirname, '..');
const env = { ...process.env, PATH: `${path.dirname(process.execPath)}:${process.env.PATH}` };

export interface HttpBenchOptions {
  dataDir: string;
  /** Records for the failure run (1M by default). */
  failureRecords: number;
  /**
   * How long the 512-in-flight case lasts at Little's-law speed (a quarter of it for 4,096 in
   * flight): 20 s, so that opening 512 connections and the last round's tail weigh little.
   */
  seconds: number;
}

interface Server {
  origin: string;
  stop(): void;
}

async function startServer(latencyMs: number): Promise<Server> {
  const child = spawn(process.execPath, [path.join(ROOT, 'bench/http-server.ts'), String(latencyMs)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const port = await new Promise<number>((resolve, reject) => {
    child.stdout.once('data', (d: Buffer) => resolve(Number(/listening (\d+)/.exec(d.toString())?.[1])));
    child.once('exit', (code) => reject(new Error(`the bench server exited: ${code}`)));
  });
  return { origin: `http://127.0.0.1:${port}`, stop: () => child.kill() };
}

function harness(kind: 'undici' | 'fetch', origin: string, n: number, c: number) {
  const out = execFileSync(
    process.execPath,
    [path.join(ROOT, 'bench/http-harness.ts'), kind, origin, String(n), String(c)],
    {
      encoding: 'utf8',
      env,
    },
  );
  const r = JSON.parse(out) as { calls: number; elapsedMs: number; cpuMs: number };
  if (r.calls !== n) throw new Error(`${kind}: ${r.calls} of ${n} calls`);
  return r;
}

const spec = (name: string, origin: string, n: number, c: number, extra = '') => `apiVersion: sluice/v1
kind: Pipeline
metadata: { name: ${name} }
source:
  generate: { count: ${n}, fields: { id: seq } }
steps:
  - http:
      request: { url: "${origin}${extra ? '/fail' : '/score'}?id={{ id }}" }
      concurrency: ${c}
      ordered: false
      response: { into: score }
${extra}sinks:
  - file: { path: out/, format: jsonl }
settings: { batch_size: 1000 }
`;

const perSecond = (n: number, ms: number) => Math.round((n / ms) * 1000);
const fmt = (n: number) => `${n.toLocaleString('en-US')}/s`;

export async function benchHttp(o: HttpBenchOptions): Promise<string[][]> {
  const dir = path.join(o.dataDir, 'http');
  await mkdir(dir, { recursive: true });
  const rows: string[][] = [];
  const server = await startServer(100);
  try {
    // 512 in flight: Little's law gives 5,120 calls/s at 100 ms. The bare undici harness at the
    // same concurrency shows what this machine allows (its server shares the two cores).
    {
      const c = 512;
      const limit = c / 0.1;
      const n = Math.round(limit * o.seconds);
      const bare = harness('undici', server.origin, n, c);
      const s = await runSluice(dir, 'http-512', spec('http-512', server.origin, n, c));
      if (s.records.written !== n) throw new Error(`http-512: ${s.records.written} of ${n}`);
      const rate = perSecond(n, s.elapsed_ms);
      const bareRate = perSecond(n, bare.elapsedMs);
      rows.push([
        'bare undici Pool, 512 in flight (peer)',
        n.toLocaleString('en-US'),
        fmt(bareRate),
        `${((bareRate / limit) * 100).toFixed(1)}% of Little's law`,
      ]);
      rows.push([
        `Sluice http step, ${c} in flight`,
        n.toLocaleString('en-US'),
        fmt(rate),
        `${((rate / limit) * 100).toFixed(1)}% of Little's law (${fmt(limit)}; target ≥ 90%); ${((rate / bareRate) * 100).toFixed(1)}% of bare undici`,
      ]);
    }
    // 4,096 in flight: CPU-bound here; the three side by side.
    {
      const c = 4096;
      const n = Math.round((c / 0.1) * (o.seconds / 4));
      const bare = harness('undici', server.origin, n, c);
      const s = await runSluice(dir, 'http-4096', spec('http-4096', server.origin, n, c));
      if (s.status !== 'succeeded' || s.records.written !== n)
        throw new Error(`http-4096: ${JSON.stringify(s.failure)}`);
      const viaFetch = harness('fetch', server.origin, n, c);
      const ours = perSecond(n, s.elapsed_ms);
      const undiciRate = perSecond(n, bare.elapsedMs);
      const fetchRate = perSecond(n, viaFetch.elapsedMs);
      rows.push(['bare undici Pool, 4096 in flight (peer)', n.toLocaleString('en-US'), fmt(undiciRate), '']);
      rows.push(["Node's fetch, 4096 in flight (peer)", n.toLocaleString('en-US'), fmt(fetchRate), '']);
      rows.push([
        'Sluice http step, 4096 in flight',
        n.toLocaleString('en-US'),
        fmt(ours),
        `${((ours / undiciRate) * 100).toFixed(1)}% of bare undici (target ≥ 80%); ${(ours / fetchRate).toFixed(2)}x fetch (target ≥ 2x)`,
      ]);
    }
  } finally {
    server.stop();
  }
  // Failures: a shorter latency so that a million calls take a minute, not an hour.
  const fast = await startServer(2);
  try {
    const n = o.failureRecords;
    const retry = '      retry: { attempts: 3, initial: 10ms, max: 100ms, on: [503] }\n';
    const s = await runSluice(dir, 'http-failures', spec('http-failures', fast.origin, n, 256, retry));
    const permanent = Array.from({ length: n }, (_, i) => i + 1).filter((id) => id % 1000 === 3).length;
    const transient = Array.from({ length: n }, (_, i) => i + 1).filter(
      (id) => id % 20 === 7 && id % 1000 !== 3,
    ).length;
    // What is on disk, not only what the summary says.
    const out = await countLines(path.join(dir, 'http-failures/out'));
    const errorDirs = path.join(dir, 'http-failures/runs');
    const [runDir] = await readdir(errorDirs);
    const errors = await countLines(path.join(errorDirs, runDir!, 'errors'));
    const adds =
      out + errors === n && errors === permanent && s.records.written === out && s.records.failed === errors;
    rows.push([
      'Sluice http step, 5% of calls 503 once, 0.1% 422 always',
      n.toLocaleString('en-US'),
      fmt(s.records_per_second),
      `${out.toLocaleString('en-US')} in the output + ${errors.toLocaleString('en-US')} in the errors sink = ${(out + errors).toLocaleString('en-US')} (${transient.toLocaleString('en-US')} retried once, ${permanent.toLocaleString('en-US')} permanent): ${adds ? 'adds up exactly' : 'DOES NOT ADD UP'}`,
    ]);
    if (!adds) throw new Error(`http failures: ${out} + ${errors} of ${n}, expected ${permanent} errors`);
  } finally {
    fast.stop();
  }
  return rows;
}

async function countLines(folder: string): Promise<number> {
  let n = 0;
  for (const f of await readdir(folder)) {
    if (!f.endsWith('.jsonl') || f.startsWith('.')) continue;
    const text = await readFile(path.join(folder, f), 'utf8');
    for (let i = text.indexOf('\n'); i >= 0; i = text.indexOf('\n', i + 1)) n++;
  }
  return n;
}

export function printHttpTable(rows: string[][]): void {
  const table = [['case', 'calls', 'rate', 'against'], ...rows];
  const widths = table[0]!.map((_, i) => Math.max(...table.map((r) => (r[i] ?? '').length)));
  for (const r of table) process.stdout.write(`| ${r.map((c, i) => c.padEnd(widths[i]!)).join(' | ')} |\n`);
}
