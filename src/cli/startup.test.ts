/**
 * Start-up: the commands a person types most (`--help`, `--version`, `validate`, `components`,
 * `schema`) load only what they use. Checked by behaviour (which modules the process loaded, as
 * a module hook records them), not by timing; `npm run bench -- --only startup` times them.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { EXIT } from './exit-codes.ts';
import { BIN, ROOT } from './test-util.ts';

/** Records the URL of every module the process loads (ESM and CommonJS) into $SLUICE_MODULES_OUT. */
const RECORDER = `
import { registerHooks } from 'node:module';
import { writeFileSync } from 'node:fs';
const seen = new Set();
registerHooks({ load(url, context, next) { seen.add(url); return next(url, context); } });
process.on('exit', () => writeFileSync(process.env.SLUICE_MODULES_OUT, [...seen].join('\\n')));
`;

/** Client libraries a command that neither runs a pipeline nor serves must not load. */
const HEAVY = [
  '@duckdb/node-api',
  '@platformatic/kafka',
  '@aws-sdk/',
  'pg',
  'pg-copy-streams',
  'fastify',
  'prom-client',
  'pino',
];

let work: string;
before(async () => {
  work = await mkdtemp(path.join(tmpdir(), 'sluice-startup-'));
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

let runs = 0;
/** Runs `sluice ...args` with the recorder; returns its exit code, output and the packages it loaded. */
async function loadedBy(
  args: string[],
): Promise<{ code: number | null; out: string; packages: Set<string> }> {
  const out = path.join(work, `modules-${runs++}.txt`);
  const recorder = `data:text/javascript,${encodeURIComponent(RECORDER)}`;
  const child = spawn(process.execPath, ['--import', recorder, BIN, ...args], {
    cwd: ROOT,
    env: { ...process.env, SLUICE_MODULES_OUT: out },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let text = '';
  child.stdout.on('data', (d) => {
    text += d;
  });
  child.stderr.on('data', (d) => {
    text += d;
  });
  const code = await new Promise<number | null>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', resolve);
  });
  const urls = (await readFile(out, 'utf8')).split('\n');
  const packages = new Set<string>();
  for (const url of urls) {
    const m = /\/node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(url);
    if (m) packages.add(m[1]!);
  }
  return { code, out: text, packages };
}

function assertNoneOf(packages: Set<string>, heavy: string[], what: string): void {
  const loaded = [...packages].filter((p) =>
    heavy.some((h) => (h.endsWith('/') ? p.startsWith(h) : p === h)),
  );
  assert.deepEqual(loaded, [], `${what} loaded ${loaded.join(', ')}`);
}

describe('start-up loads only what a command uses', () => {
  it('`sluice --help` and `sluice --version` load no client library (not even zod or yaml)', async () => {
    for (const args of [['--help'], ['--version'], ['-V']]) {
      const { code, packages } = await loadedBy(args);
      assert.equal(code, EXIT.ok);
      assertNoneOf(packages, [...HEAVY, 'zod', 'yaml', 'undici', 'ajv'], `sluice ${args[0]}`);
    }
  });

  it('`sluice validate` of the quick start loads no Kafka, S3, pg, fastify or pino', async () => {
    const { code, out, packages } = await loadedBy(['validate', 'examples/quickstart.yaml']);
    assert.equal(code, EXIT.ok, out);
    // Its sql step is parsed by DuckDB's own parser: DuckDB is the one client it needs.
    assertNoneOf(
      packages,
      HEAVY.filter((p) => p !== '@duckdb/node-api'),
      'sluice validate examples/quickstart.yaml',
    );
  });

  it('`sluice validate` of a spec without SQL, `components` and `schema` load no DuckDB either', async () => {
    const spec = path.join(work, 'no-sql.yaml');
    await writeFile(
      spec,
      'apiVersion: sluice/v1\nkind: Pipeline\nmetadata: { name: no-sql }\n' +
        'source:\n  generate: { count: 3, fields: { id: seq } }\nsinks:\n  - stdout: {}\n',
    );
    for (const args of [['validate', spec], ['components'], ['components', 'kafka'], ['schema']]) {
      const { code, out, packages } = await loadedBy(args);
      assert.equal(code, EXIT.ok, out);
      assertNoneOf(packages, HEAVY, `sluice ${args.join(' ')}`);
    }
  });
});
