/**
 * The dependency rule (docs/concepts.md, Architecture): connectors and steps import the SDK and
 * shared modules, never the engine, the runner, the server or the CLI, so that a built-in
 * component is written as a plugin is. Test files and test helpers may reach further.
 */
import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';

const SRC = import.meta.dirname;
const FORBIDDEN = ['engine', 'runner', 'server', 'cli'];
const TEST_ONLY = /(\.test\.ts|test-util\.ts|test-server\.ts|\.suite\.ts)$/;
/** `import … from '…'`, `export … from '…'`, `import('…')`: the relative specifiers of a module. */
const SPECIFIER = /(?:\bfrom\s*|\bimport\s*\(\s*|^\s*import\s+)['"](\.{1,2}\/[^'"]+)['"]/gm;

async function modules(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries
    .filter((e) => e.isFile() && e.name.endsWith('.ts') && !TEST_ONLY.test(e.name))
    .map((e) => path.join(e.parentPath, e.name));
}

/** Each import of `file` into a folder of src/ that it must not reach, as "file → target". */
export function forbiddenImports(file: string, text: string): string[] {
  const found: string[] = [];
  for (const m of text.matchAll(SPECIFIER)) {
    const target = path.relative(SRC, path.resolve(path.dirname(file), m[1]!));
    const top = target.split(path.sep)[0]!;
    if (FORBIDDEN.includes(top)) found.push(`${path.relative(SRC, file)} → ${target}`);
  }
  return found;
}

test('connectors and steps import neither the engine, the runner, the server nor the CLI', async () => {
  const files = [
    ...(await modules(path.join(SRC, 'connectors'))),
    ...(await modules(path.join(SRC, 'steps'))),
  ];
  assert.ok(files.length > 20, `found the components' modules (${files.length})`);
  const found: string[] = [];
  for (const file of files) found.push(...forbiddenImports(file, await readFile(file, 'utf8')));
  assert.deepEqual(found, [], 'move what they need into src/sdk or a shared module');
});

test('the check sees static, re-exported and dynamic imports, and lets shared modules through', () => {
  const file = path.join(SRC, 'connectors', 'demo', 'sink.ts');
  const text = [
    "import { x } from '../../engine/run.ts';",
    "export { y } from '../../server/app.ts';",
    "const z = await import('../../cli/main.ts');",
    "import '../../runner/index.ts';",
    "import { ok } from '../../sdk/index.ts';",
    "import { shared } from '../../sql/plan.ts';",
    "import { own } from './writer.ts';",
  ].join('\n');
  assert.deepEqual(forbiddenImports(file, text), [
    `connectors/demo/sink.ts → ${path.join('engine', 'run.ts')}`,
    `connectors/demo/sink.ts → ${path.join('server', 'app.ts')}`,
    `connectors/demo/sink.ts → ${path.join('cli', 'main.ts')}`,
    `connectors/demo/sink.ts → ${path.join('runner', 'index.ts')}`,
  ]);
});
