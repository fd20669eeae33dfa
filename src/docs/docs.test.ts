import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import { parse } from 'yaml';
import { defaultRegistry } from '../registry.ts';
import { ERROR_CODES } from '../sdk/errors.ts';
import { validatePipeline } from '../spec/validate.ts';
import { generateDocs, staleDocs } from './generate.ts';

const ROOT = path.resolve(import.meta.dirname, '../..');
const registry = defaultRegistry();

describe('generated docs', () => {
  it('are current: run `npm run docs` after changing a schema, a command or an error code', async () => {
    assert.deepEqual(await staleDocs(), []);
  });

  it('list every component and every error code', () => {
    const docs = generateDocs(registry);
    const components = docs.get('docs/reference/components.md')!;
    for (const c of registry.all()) assert.ok(components.includes(`### \`${c.name}\` ${c.kind}`), c.name);
    const errors = docs.get('docs/errors.md')!;
    for (const code of Object.keys(ERROR_CODES)) assert.ok(errors.includes(`\`${code}\``), code);
  });
});

describe('examples', () => {
  for (const component of registry.all()) {
    for (const example of component.examples) {
      it(`${component.kind} ${component.name}: "${example.title}" is valid`, async () => {
        const parsed = parse(example.yaml);
        const config =
          typeof parsed === 'string' && component.shorthand ? { [component.shorthand]: parsed } : parsed;
        const result = component.config.safeParse(config ?? {});
        assert.ok(result.success, JSON.stringify(result.error?.issues));
        if (component.check && result.success) {
          const issues = await component.check(result.data as never, { baseDir: ROOT });
          // Examples may name files that exist only in a user's project; everything else must pass.
          assert.deepEqual(
            issues.filter((i) => !/no such file|not found|does not exist|ENOENT/i.test(i.message)),
            [],
          );
        }
      });
    }
  }

  it('every spec under examples/ validates', async () => {
    const files = (await readdir(path.join(ROOT, 'examples'))).filter((f) => f.endsWith('.yaml'));
    assert.ok(files.length > 0);
    for (const file of files) {
      const { issues } = await validatePipeline({ file: path.join(ROOT, 'examples', file), registry });
      assert.deepEqual(issues, [], file);
    }
  });
});
