import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { Ajv2020, type ErrorObject, type ValidateFunction } from 'ajv/dist/2020.js';
import formats from 'ajv-formats';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { defineStep } from '../../sdk/define.ts';
import { SluiceError } from '../../sdk/errors.ts';
import type { ConfigIssue, Rejection, SluiceRecord, StepResult } from '../../sdk/types.ts';

const addFormats = formats.default;

const DRAFT_2020_12 = /^https?:\/\/json-schema\.org\/draft\/2020-12\/schema#?$/;

const config = z
  .object({
    schema: z
      .record(z.string(), z.unknown())
      .optional()
      .describe('The JSON Schema (draft 2020-12) every record must match, written inline.'),
    schema_file: z
      .string()
      .min(1)
      .optional()
      .describe('A file holding the JSON Schema, JSON or YAML (.yaml, .yml), relative to the spec file.'),
  })
  .strict()
  .superRefine((cfg, ctx) => {
    if ((cfg.schema === undefined) === (cfg.schema_file === undefined))
      ctx.addIssue({
        code: 'custom',
        path: cfg.schema === undefined ? [] : ['schema_file'],
        message: 'give exactly one of `schema` (inline) or `schema_file` (a path)',
      });
  });

export type ValidateConfig = z.output<typeof config>;

/** Thrown while loading or compiling a schema; `path` is where in the config the problem is. */
class SchemaProblem extends Error {
  readonly path: string[];
  constructor(configPath: string[], message: string) {
    super(message);
    this.path = configPath;
  }
}

async function loadSchema(cfg: ValidateConfig, baseDir: string): Promise<{ schema: unknown; at: string[] }> {
  if (cfg.schema !== undefined) return { schema: cfg.schema, at: ['schema'] };
  const at = ['schema_file'];
  const file = path.resolve(baseDir, cfg.schema_file ?? '');
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new SchemaProblem(
      at,
      code === 'ENOENT'
        ? `schema file not found: ${file}`
        : `cannot read schema file ${file}: ${String(err)}`,
    );
  }
  let schema: unknown;
  try {
    schema = path.extname(file).toLowerCase() === '.json' ? JSON.parse(text) : parseYaml(text);
  } catch (err) {
    throw new SchemaProblem(at, `schema file ${file} does not parse: ${(err as Error).message}`);
  }
  return { schema, at };
}

function compile(schema: unknown, at: string[]): ValidateFunction {
  if (typeof schema !== 'boolean' && (schema === null || typeof schema !== 'object' || Array.isArray(schema)))
    throw new SchemaProblem(at, 'a JSON Schema is an object (or true/false)');
  const declared = typeof schema === 'object' ? (schema as Record<string, unknown>).$schema : undefined;
  if (declared !== undefined && !(typeof declared === 'string' && DRAFT_2020_12.test(declared)))
    throw new SchemaProblem(
      at,
      `$schema is ${JSON.stringify(declared)}: only JSON Schema draft 2020-12 is supported (https://json-schema.org/draft/2020-12/schema)`,
    );
  // Strict about the schema itself (unknown keywords, unknown formats are mistakes), silent otherwise.
  const ajv = new Ajv2020({
    allErrors: true,
    strict: true,
    strictTypes: false,
    strictTuples: false,
    strictRequired: false,
    logger: false,
  });
  addFormats(ajv);
  if (!ajv.validateSchema(schema as object)) {
    // The first complaint per place is the telling one (an enum of type names, not the anyOf behind it).
    const first = new Map<string, ErrorObject>();
    for (const e of ajv.errors ?? []) if (!first.has(e.instancePath)) first.set(e.instancePath, e);
    throw new SchemaProblem(
      at,
      `invalid JSON Schema: ${[...first.values()].map(formatViolation).join('; ')}`,
    );
  }
  try {
    return ajv.compile(schema as object);
  } catch (err) {
    throw new SchemaProblem(at, `invalid JSON Schema: ${(err as Error).message}`);
  }
}

/** One violation as `/field/path message`, with required and unknown properties named in the path. */
export function formatViolation(e: ErrorObject): string {
  const at = (extra?: unknown) =>
    extra === undefined
      ? e.instancePath || '/'
      : `${e.instancePath}/${String(extra).replace(/~/g, '~0').replace(/\//g, '~1')}`;
  const params = e.params as Record<string, unknown>;
  switch (e.keyword) {
    case 'required':
      return `${at(params.missingProperty)} is required`;
    case 'additionalProperties':
      return `${at(params.additionalProperty)} is not allowed`;
    case 'unevaluatedProperties':
      return `${at(params.unevaluatedProperty)} is not allowed`;
    case 'enum':
      return `${at()} must be one of ${(params.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(', ')}`;
    case 'const':
      return `${at()} must be ${JSON.stringify(params.allowedValue)}`;
    default:
      return `${at()} ${e.message ?? `fails ${e.keyword}`}`;
  }
}

export const validateStep = defineStep({
  name: 'validate',
  summary: 'Checks every record against a JSON Schema; records that do not match go to the errors sink.',
  description: `Validates each record's value with a JSON Schema (draft 2020-12, via Ajv, with the standard \`format\`s such as \`email\`, \`date-time\`, \`uuid\`). Valid records pass through unchanged; the schema never fills defaults or coerces types. An invalid record is rejected with \`SLUICE_SCHEMA_VIOLATION\` and a message listing every violation with its field path (\`/amount must be >= 0; /country must be one of "DE", "FR"\`); the error's details hold Ajv's error objects.

The schema is given inline (\`schema\`) or in a JSON or YAML file (\`schema_file\`). It is compiled when the spec is validated, so a broken schema (an unknown keyword or format, a wrong type name) is refused before any record moves. A \`$schema\` other than draft 2020-12 is refused.`,
  config,
  examples: [
    {
      title: 'An inline schema',
      yaml: `schema:
  type: object
  required: [id, amount, country]
  properties:
    id: { type: integer }
    amount: { type: number, minimum: 0 }
    country: { enum: [DE, FR, US] }
    email: { type: string, format: email }
`,
    },
    { title: 'A schema kept in a file', yaml: 'schema_file: schemas/order.schema.json\n' },
    {
      title: 'A closed record shape',
      yaml: `schema:
  type: object
  additionalProperties: false
  required: [sku, qty]
  properties:
    sku: { type: string, pattern: "^[A-Z]{3}-[0-9]{4}$" }
    qty: { type: integer, minimum: 1 }
`,
    },
  ],
  paths: (cfg) => (cfg.schema_file === undefined ? [] : [{ path: ['schema_file'], value: cfg.schema_file }]),
  async check(cfg, { baseDir }): Promise<ConfigIssue[]> {
    try {
      const { schema, at } = await loadSchema(cfg, baseDir);
      compile(schema, at);
      return [];
    } catch (err) {
      if (err instanceof SchemaProblem) return [{ path: err.path, message: err.message }];
      throw err;
    }
  },
  async create(cfg, ctx) {
    let validate: ValidateFunction;
    try {
      const { schema, at } = await loadSchema(cfg, ctx.baseDir);
      validate = compile(schema, at);
    } catch (err) {
      if (err instanceof SchemaProblem)
        throw new SluiceError('SLUICE_SPEC_INVALID', err.message, { cause: err });
      throw err;
    }
    return {
      keepsRecords: true,
      process(batch: SluiceRecord[]): StepResult {
        let records: SluiceRecord[] | undefined;
        let rejected: Rejection[] | undefined;
        for (let i = 0; i < batch.length; i++) {
          const record = batch[i]!;
          if (validate(record.value)) {
            records?.push(record);
            continue;
          }
          if (!records) records = batch.slice(0, i);
          const errors = validate.errors ?? [];
          const message = [...new Set(errors.map(formatViolation))].join('; ');
          rejected ??= [];
          rejected.push({
            record,
            error: new SluiceError('SLUICE_SCHEMA_VIOLATION', message, { details: { errors: [...errors] } }),
          });
        }
        return rejected ? { records: records ?? [], rejected } : { records: batch };
      },
    };
  },
});
