import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pathToFileURL } from 'node:url';
import { parse } from 'yaml';
import { z } from 'zod';
import { SluiceError } from '../../sdk/errors.ts';
import { testContext } from '../../sdk/testing.ts';
import type { SluiceRecord } from '../../sdk/types.ts';
import { loadScript, type ScriptConfig, scriptStep } from './index.ts';

/** The repo root: examples/plugins/mask-email.ts resolves against it. */
const root = path.resolve(import.meta.dirname, '../../..');
const sdk = pathToFileURL(path.join(root, 'src/sdk/index.ts')).href;

let dir: string;
before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'sluice-script-'));
  const files: Record<string, string> = {
    'named-only.mjs': 'export const step = 1;\nexport function helper() {}\n',
    'empty.mjs': '',
    'source.mjs': "export default { kind: 'source', name: 'x' };\n",
    'function.mjs': 'export default function () {}\n',
    'plain.mjs': 'export default { name: 1, create() {} };\n',
    'no-create.mjs': "export default { kind: 'step', name: 'x', config: {} };\n",
    'throws.mjs': "throw new Error('boom at import');\n",
    // Outside the repo, with no node_modules: `sluice/sdk` is the running Sluice's own SDK.
    'bare-sdk.ts': `import { defineStep, SluiceError, z } from 'sluice/sdk';
export const errorClass = SluiceError;
export default defineStep({ name: 'bare', summary: 's', config: z.object({}), examples: [], create: () => ({ process: (b) => ({ records: b }) }) });
`,
    'with-check.ts': `import { defineStep, mapRecords, z } from '${sdk}';
export default defineStep({
  name: 'with-check',
  summary: 'test',
  config: z.object({ rules: z.array(z.string()).default([]) }).strict(),
  examples: [],
  async check(config) {
    return config.rules.flatMap((r, i) => (r === 'bad' ? [{ path: ['rules', i], message: 'bad rule' }] : []));
  },
  create: () => mapRecords((r) => r),
});
`,
  };
  for (const [name, text] of Object.entries(files)) await writeFile(path.join(dir, name), text);
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

function cfg(input: unknown): ScriptConfig {
  return scriptStep.config.parse(input);
}

const check = (input: unknown, baseDir = root) => scriptStep.check!(cfg(input), { baseDir });

const rec = (value: Record<string, unknown>): SluiceRecord => ({
  value,
  meta: { position: { partition: 'p', offset: 1 } },
});

describe('script: config', () => {
  it('parses every example with the yaml package and the schema', () => {
    for (const example of scriptStep.examples) {
      const result = scriptStep.config.safeParse(parse(example.yaml));
      assert.equal(result.success, true, `${example.title}: ${JSON.stringify(result.error?.issues)}`);
    }
  });

  it('describes every field, defaults config to {}, and refuses other extensions', () => {
    const schema = z.toJSONSchema(scriptStep.config, { io: 'input' }) as {
      properties: Record<string, { description?: string }>;
    };
    for (const [k, p] of Object.entries(schema.properties)) assert.ok(p.description, k);
    assert.deepEqual(cfg({ module: 'a.ts' }), { module: 'a.ts', config: {} });
    assert.equal(scriptStep.shorthand, 'module');
    const bad = scriptStep.config.safeParse({ module: 'a.py' });
    assert.match(bad.error!.issues[0]!.message, /\.ts, \.mts, \.js or \.mjs/);
    assert.equal(scriptStep.config.safeParse({ module: 'a.ts', conf: {} }).success, false);
  });

  it('the example plugin parses its own example', async () => {
    const plugin = await loadScript('examples/plugins/mask-email.ts', root);
    for (const example of plugin.examples)
      assert.equal(plugin.config.safeParse(parse(example.yaml)).success, true);
  });
});

describe('script: sluice/sdk in a plugin', () => {
  it('resolves to the SDK of the Sluice that loads it, from a folder with no node_modules', async () => {
    const plugin = await loadScript('bare-sdk.ts', dir);
    assert.equal(plugin.name, 'bare');
    const ns = await import(pathToFileURL(path.join(dir, 'bare-sdk.ts')).href);
    assert.equal(ns.errorClass, SluiceError, 'one SluiceError class, not a second copy');
  });
});

describe('script: check()', () => {
  it('accepts the example plugin with and without config', async () => {
    assert.deepEqual(await check({ module: 'examples/plugins/mask-email.ts' }), []);
    assert.deepEqual(
      await check({ module: 'examples/plugins/mask-email.ts', config: { field: 'mail', keep: 2 } }),
      [],
    );
  });

  it("reports the module's schema issues under config", async () => {
    const found = await check({ module: 'examples/plugins/mask-email.ts', config: { keep: -1, feild: 'x' } });
    assert.deepEqual(
      found.map((i) => i.path),
      [['config', 'keep'], ['config']],
    );
    assert.match(found[0]!.message, />=\s*0/);
    assert.match(found[1]!.message, /Unrecognized key: "feild"/);
  });

  it("reports the module's own check() issues under config", async () => {
    const found = await check({ module: 'with-check.ts', config: { rules: ['ok', 'bad'] } }, dir);
    assert.deepEqual(found, [{ path: ['config', 'rules', 1], message: 'bad rule' }]);
  });

  it('reports a missing module at module, with the resolved path', async () => {
    const found = await check({ module: 'plugins/nope.ts' }, dir);
    assert.deepEqual(found, [
      { path: ['module'], message: `script module not found: ${path.join(dir, 'plugins/nope.ts')}` },
    ]);
  });

  it('says what a module exports when it is not a step', async () => {
    const cases: [string, RegExp][] = [
      ['named-only.mjs', /has no default export \(it exports `helper`, `step`\)/],
      ['empty.mjs', /exports nothing/],
      ['source.mjs', /default export that is a source definition \(defineSource\), not a step/],
      ['function.mjs', /default export that is a function, not a step definition/],
      ['plain.mjs', /default export that is an object with keys name, create, not a step definition/],
      ['no-create.mjs', /step definition with no create\(\) function/],
      ['throws.mjs', /failed to load: boom at import/],
    ];
    for (const [file, re] of cases) {
      const found = await check({ module: file }, dir);
      assert.equal(found.length, 1, file);
      assert.deepEqual(found[0]!.path, ['module']);
      assert.ok(found[0]!.message.includes(path.join(dir, file)), found[0]!.message);
      assert.match(found[0]!.message, re);
    }
  });
});

describe('script: create()', () => {
  it('delegates to the module: the example plugin masks emails', async () => {
    const step = await scriptStep.create(
      cfg({ module: 'examples/plugins/mask-email.ts', config: { keep: 2 } }),
      testContext({ baseDir: root }),
    );
    const input = [
      rec({ id: 1, email: 'jane.doe@example.com' }),
      rec({ id: 2 }),
      rec({ id: 3, email: 42 }),
      rec({ id: 4, email: 'nodomain' }),
    ];
    const result = await step.process(input);
    assert.deepEqual(
      result.records.map((r) => r.value),
      [{ id: 1, email: 'ja***@example.com' }, { id: 2 }, { id: 4, email: 'no***' }],
    );
    assert.deepEqual(input[0]!.value, { id: 1, email: 'jane.doe@example.com' }); // input untouched
    assert.equal(result.rejected?.length, 1);
    assert.equal(result.rejected![0]!.error.code, 'SLUICE_STEP_FAILED');
    assert.match(result.rejected![0]!.error.message, /field "email" is number/);
  });

  it('uses the configured field and the default keep', async () => {
    const step = await scriptStep.create(
      cfg({ module: 'examples/plugins/mask-email.ts', config: { field: 'contact' } }),
      testContext({ baseDir: root }),
    );
    const result = await step.process([rec({ contact: 'bob@example.org', email: 'x@y.z' })]);
    assert.deepEqual(result.records[0]!.value, { contact: 'b***@example.org', email: 'x@y.z' });
  });

  it('throws SLUICE_SCRIPT_INVALID for a bad export, SLUICE_SPEC_INVALID for a bad config', async () => {
    await assert.rejects(
      async () => scriptStep.create(cfg({ module: 'source.mjs' }), testContext({ baseDir: dir })),
      (err: unknown) => {
        assert.ok(err instanceof SluiceError);
        assert.equal(err.code, 'SLUICE_SCRIPT_INVALID');
        assert.match(err.message, /source\.mjs has a default export that is a source definition/);
        assert.deepEqual(err.details?.exports, ['default']);
        return true;
      },
    );
    await assert.rejects(
      async () =>
        scriptStep.create(
          cfg({ module: 'examples/plugins/mask-email.ts', config: { keep: 'x' } }),
          testContext({ baseDir: root }),
        ),
      (err: unknown) => {
        assert.ok(err instanceof SluiceError);
        assert.equal(err.code, 'SLUICE_SPEC_INVALID');
        assert.match(err.message, /config\.keep: /);
        return true;
      },
    );
  });
});
