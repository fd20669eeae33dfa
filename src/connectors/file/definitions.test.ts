import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parse } from 'yaml';
import type { ComponentDefinition } from '../../sdk/types.ts';
import { stdinSource, stdoutSink } from '../stdio/index.ts';
import { fileSink, fileSource } from './index.ts';

const definitions: [ComponentDefinition, string, 'source' | 'sink'][] = [
  [fileSource, 'file', 'source'],
  [fileSink, 'file', 'sink'],
  [stdinSource, 'stdin', 'source'],
  [stdoutSink, 'stdout', 'sink'],
];

describe('file and stdio component definitions', () => {
  for (const [def, name, kind] of definitions) {
    describe(`${kind} ${name}`, () => {
      it('has its registry name, kind, a summary and 1-3 examples', () => {
        assert.equal(def.name, name);
        assert.equal(def.kind, kind);
        assert.ok(def.summary.length > 10);
        assert.ok(def.examples.length >= 1 && def.examples.length <= 3);
      });

      it('has every example validate against its schema', () => {
        for (const example of def.examples) {
          const result = def.config.safeParse(parse(example.yaml));
          assert.ok(result.success, `${example.title}: ${result.error?.message}`);
        }
      });

      it('describes every config field and rejects unknown keys', () => {
        const fields = def.config.toJSONSchema({ io: 'input', unrepresentable: 'any' }) as {
          properties: Record<
            string,
            { description?: string; properties?: Record<string, { description?: string }> }
          >;
        };
        for (const [key, prop] of Object.entries(fields.properties)) {
          assert.ok(prop.description, `${key} has no description`);
          for (const [sub, p] of Object.entries(prop.properties ?? {}))
            assert.ok(p.description, `${key}.${sub} has no description`);
        }
        assert.equal(
          def.config.safeParse({ ...parse(def.examples[0]!.yaml), no_such_key: 1 }).success,
          false,
        );
      });
    });
  }
});
