import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parse } from 'yaml';
import { z } from 'zod';
import { SluiceError } from '../../sdk/errors.ts';
import { testContext } from '../../sdk/testing.ts';
import type { RecordValue, SluiceRecord, StepInstance } from '../../sdk/types.ts';
import { type ValidateConfig, validateStep } from './index.ts';

const orderSchema = {
  type: 'object',
  required: ['id', 'amount', 'country'],
  properties: {
    id: { type: 'integer' },
    amount: { type: 'number', minimum: 0 },
    country: { enum: ['DE', 'FR'] },
    email: { type: 'string', format: 'email' },
  },
};

let dir: string;
before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'sluice-validate-'));
  await writeFile(path.join(dir, 'order.json'), JSON.stringify(orderSchema));
  await writeFile(
    path.join(dir, 'order.yaml'),
    'type: object\nrequired: [id]\nproperties:\n  id: { type: integer, minimum: 1 }\n',
  );
  await writeFile(path.join(dir, 'broken.json'), '{ "type": "object", ');
  await writeFile(
    path.join(dir, 'typo.yml'),
    'type: object\nproperties:\n  id: { type: integer, minimun: 1 }\n',
  );
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

function cfg(input: unknown): ValidateConfig {
  return validateStep.config.parse(input);
}

async function check(input: unknown) {
  return validateStep.check!(cfg(input), { baseDir: dir });
}

async function step(input: unknown): Promise<StepInstance> {
  return validateStep.create(cfg(input), testContext({ baseDir: dir }));
}

const rec = (value: RecordValue, offset = 0): SluiceRecord => ({
  value,
  meta: { position: { partition: 'p', offset } },
});

describe('validate: config', () => {
  it('parses every example with the yaml package and the schema', () => {
    for (const example of validateStep.examples) {
      const result = validateStep.config.safeParse(parse(example.yaml));
      assert.equal(result.success, true, `${example.title}: ${JSON.stringify(result.error?.issues)}`);
    }
  });

  it('inline examples hold schemas that compile', async () => {
    for (const example of validateStep.examples) {
      const parsed = cfg(parse(example.yaml));
      if (parsed.schema)
        assert.deepEqual(await validateStep.check!(parsed, { baseDir: dir }), [], example.title);
    }
  });

  it('describes every field and converts to JSON Schema', () => {
    const schema = z.toJSONSchema(validateStep.config, { io: 'input' }) as {
      properties: Record<string, { description?: string }>;
    };
    assert.deepEqual(Object.keys(schema.properties).sort(), ['schema', 'schema_file']);
    for (const [k, p] of Object.entries(schema.properties)) assert.ok(p.description, k);
  });

  it('wants exactly one of schema and schema_file', () => {
    const none = validateStep.config.safeParse({});
    const both = validateStep.config.safeParse({ schema: {}, schema_file: 'x.json' });
    assert.match(none.error!.issues[0]!.message, /exactly one of `schema` .* or `schema_file`/);
    assert.deepEqual(both.error!.issues[0]!.path, ['schema_file']);
    assert.equal(validateStep.config.safeParse({ schema: {}, extra: 1 }).success, false);
  });
});

describe('validate: check()', () => {
  it('accepts a good inline schema, JSON file and YAML file', async () => {
    assert.deepEqual(await check({ schema: orderSchema }), []);
    assert.deepEqual(await check({ schema_file: 'order.json' }), []);
    assert.deepEqual(await check({ schema_file: 'order.yaml' }), []);
  });

  it('refuses an invalid JSON Schema before any record moves', async () => {
    const [issue, ...rest] = await check({
      schema: { type: 'object', properties: { id: { type: 'integr' } } },
    });
    assert.equal(rest.length, 0);
    assert.deepEqual(issue!.path, ['schema']);
    assert.equal(
      issue!.message,
      'invalid JSON Schema: /properties/id/type must be one of "array", "boolean", "integer", "null", "number", "object", "string"',
    );
    const [minimum] = await check({ schema: { type: 'number', minimum: 'zero', required: 'id' } });
    assert.equal(minimum!.message, 'invalid JSON Schema: /minimum must be number; /required must be array');
  });

  it('refuses unknown keywords and unknown formats (typos)', async () => {
    const [typo] = await check({ schema_file: 'typo.yml' });
    assert.deepEqual(typo!.path, ['schema_file']);
    assert.match(typo!.message, /unknown keyword: "minimun"/);
    const [format] = await check({ schema: { type: 'string', format: 'emial' } });
    assert.match(format!.message, /unknown format "emial"/);
  });

  it('names the resolved path of a missing file, and a file that does not parse', async () => {
    const [missing] = await check({ schema_file: 'nope.json' });
    assert.deepEqual(missing, {
      path: ['schema_file'],
      message: `schema file not found: ${path.join(dir, 'nope.json')}`,
    });
    const [broken] = await check({ schema_file: 'broken.json' });
    assert.match(broken!.message, /broken\.json does not parse/);
  });

  it('refuses a $schema other than draft 2020-12, and a schema that is not an object', async () => {
    const [old] = await check({
      schema: { $schema: 'http://json-schema.org/draft-07/schema#', type: 'object' },
    });
    assert.match(old!.message, /only JSON Schema draft 2020-12 is supported/);
    assert.deepEqual(
      await check({ schema: { $schema: 'https://json-schema.org/draft/2020-12/schema' } }),
      [],
    );
    await writeFile(path.join(dir, 'list.yaml'), '- 1\n- 2\n');
    const [list] = await check({ schema_file: 'list.yaml' });
    assert.match(list!.message, /a JSON Schema is an object/);
  });

  it('create() throws a SluiceError for a schema that check() would refuse', async () => {
    await assert.rejects(step({ schema_file: 'nope.json' }), (err: unknown) => {
      assert.ok(err instanceof SluiceError);
      assert.equal(err.code, 'SLUICE_SPEC_INVALID');
      return true;
    });
  });
});

describe('validate: records', () => {
  it('passes valid records through unchanged and rejects invalid ones with every violation', async () => {
    const s = await step({ schema: orderSchema });
    const good1 = rec({ id: 1, amount: 5, country: 'DE', email: 'a@example.com' }, 1);
    const bad = rec({ id: 2, amount: -1, country: 'XX', email: 'nope', extra: true }, 2);
    const good2 = rec({ id: 3, amount: 0, country: 'FR' }, 3);
    const result = await s.process([good1, bad, good2]);
    assert.deepEqual(result.records, [good1, good2]);
    assert.equal(result.records[0], good1); // the same object, untouched
    assert.equal(result.rejected?.length, 1);
    const rejection = result.rejected![0]!;
    assert.equal(rejection.record, bad);
    assert.ok(rejection.error instanceof SluiceError);
    assert.equal(rejection.error.code, 'SLUICE_SCHEMA_VIOLATION');
    assert.equal(
      rejection.error.message,
      '/amount must be >= 0; /country must be one of "DE", "FR"; /email must match format "email"',
    );
    const errors = rejection.error.details?.errors as { keyword: string }[];
    assert.deepEqual(errors.map((e) => e.keyword).sort(), ['enum', 'format', 'minimum']);
  });

  it('names missing and unexpected properties in the path, nested ones in full', async () => {
    const s = await step({
      schema: {
        type: 'object',
        required: ['id'],
        additionalProperties: false,
        properties: {
          id: { type: 'integer' },
          customer: { type: 'object', required: ['name'], properties: { name: { type: 'string' } } },
          tags: { type: 'array', items: { type: 'string' } },
          kind: { const: 'order' },
        },
      },
    });
    const result = await s.process([rec({ customer: {}, tags: ['a', 2], kind: 'x', 'a/b': 1 })]);
    assert.equal(
      result.rejected![0]!.error.message,
      '/id is required; /a~1b is not allowed; /customer/name is required; /tags/1 must be string; /kind must be "order"',
    );
  });

  it('keeps the batch as is when every record is valid', async () => {
    const s = await step({ schema_file: 'order.yaml' });
    const batch = [rec({ id: 1 }), rec({ id: 2 })];
    const result = await s.process(batch);
    assert.equal(result.records, batch);
    assert.equal(result.rejected, undefined);
  });

  it('does not fill defaults or coerce types', async () => {
    const s = await step({
      schema: { type: 'object', properties: { n: { type: 'integer' }, d: { type: 'string', default: 'x' } } },
    });
    const value = { n: 1 };
    const result = await s.process([rec(value), rec({ n: '2' })]);
    assert.deepEqual(result.records[0]!.value, { n: 1 });
    assert.equal(result.rejected?.[0]?.error.message, '/n must be integer');
  });
});
