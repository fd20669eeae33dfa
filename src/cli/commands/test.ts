import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { isDeepStrictEqual, styleText } from 'node:util';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { defaultRegistry } from '../../registry.ts';
import { SluiceError } from '../../sdk/errors.ts';
import type { ComponentContext, RecordValue, SluiceRecord, StepResult } from '../../sdk/types.ts';
import { loadPipeline } from '../../spec/validate.ts';
import { EXIT } from '../exit-codes.ts';
import { defineCommand, PARAM_OPTION, parseCommand, parseParams } from '../options.ts';

export const testCommand = defineCommand({
  name: 'test',
  usage: 'sluice test FILE [--cases FILE] [--param KEY=VALUE]...',
  summary:
    "Run a pipeline's steps on the fixture records in FILE's .test.yaml and compare with the expected output.",
  positionals: ['FILE'],
  options: {
    cases: {
      type: 'string',
      value: 'FILE',
      description: 'The fixture file (default: the spec name with .test.yaml, e.g. pipeline.test.yaml).',
    },
    param: PARAM_OPTION,
  },
});

const record = z.record(z.string(), z.unknown());
/** The fixture file: cases of input records and what the steps must make of them. */
export const fixtureSchema = z
  .object({
    cases: z
      .array(
        z
          .object({
            name: z.string().min(1),
            input: z.array(record).describe('Records given to the first step, as one batch.'),
            output: z.array(record).describe('The records the last step must emit, in order.'),
            filtered: z.number().int().nonnegative().optional().describe('How many records the steps drop.'),
            errors: z
              .array(z.object({ code: z.string().min(1), record: record.optional() }).strict())
              .optional()
              .describe('The records the steps reject, with their error code, in order.'),
          })
          .strict(),
      )
      .min(1),
  })
  .strict();

/** The fixture file beside a spec: `pipeline.yaml` → `pipeline.test.yaml`. */
export function fixturePath(spec: string): string {
  return spec.replace(/\.ya?ml$/, '') + '.test.yaml';
}

/** JSON as the expected records are written: bigints as numbers (or text beyond 2^53), dates as ISO text. */
function plain(value: unknown): unknown {
  return JSON.parse(
    JSON.stringify(value, (_k, v) =>
      typeof v === 'bigint' ? (Number.isSafeInteger(Number(v)) ? Number(v) : v.toString()) : v,
    ),
  );
}

interface CaseResult {
  output: RecordValue[];
  filtered: number;
  errors: { code: string; record?: RecordValue }[];
}

export async function test(argv: string[]): Promise<number> {
  const { options, positionals } = parseCommand(testCommand, argv);
  const file = positionals[0]!;
  const fixtures = options.cases ?? fixturePath(file);
  const text = await readFile(fixtures, 'utf8').catch(() => {
    throw new SluiceError(
      'SLUICE_USAGE',
      `no fixture file ${fixtures}; write cases of input and output records there (docs/cli.md)`,
    );
  });
  const parsed = fixtureSchema.safeParse(parseYaml(text));
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('\n  ');
    throw new SluiceError('SLUICE_USAGE', `${fixtures} is not a valid fixture file:\n  ${issues}`);
  }
  const pipeline = await loadPipeline({
    file,
    params: parseParams(options.param),
    registry: defaultRegistry(),
  });
  let failed = 0;
  for (const c of parsed.data.cases) {
    const got = await runCase(pipeline.steps, c.input, path.dirname(path.resolve(file)));
    const problems = compare(c, got);
    if (!problems.length) {
      process.stdout.write(`${styleText('green', 'ok', { stream: process.stdout })}   ${c.name}\n`);
    } else {
      failed++;
      process.stdout.write(
        `${styleText('red', 'FAIL', { stream: process.stdout })} ${c.name}\n${problems.join('\n')}\n`,
      );
    }
  }
  const total = parsed.data.cases.length;
  process.stdout.write(
    `\n${total - failed} of ${total} case${total === 1 ? '' : 's'} passed (${fixtures})\n`,
  );
  return failed ? EXIT.failed : EXIT.ok;
}

function context(baseDir: string, batchSize: number): ComponentContext {
  const quiet = () => {};
  return {
    signal: new AbortController().signal,
    logger: { debug: quiet, info: quiet, warn: quiet, error: quiet },
    baseDir,
    pipelineName: 'test',
    runId: 'test',
    batchSize: Math.max(1, batchSize),
  };
}

async function runCase(
  steps: Awaited<ReturnType<typeof loadPipeline>>['steps'],
  input: RecordValue[],
  baseDir: string,
): Promise<CaseResult> {
  let batch: SluiceRecord[] = input.map((value, offset) => ({
    value,
    meta: { position: { partition: 'test', offset } },
  }));
  let filtered = 0;
  const errors: CaseResult['errors'] = [];
  for (const use of steps) {
    const instance = await use.def.create(use.config as never, context(baseDir, input.length));
    try {
      const results: StepResult[] = [await instance.process(batch)];
      const finished = await instance.finish?.();
      if (finished && Symbol.asyncIterator in finished) for await (const r of finished) results.push(r);
      else if (finished) results.push(finished as StepResult);
      const out = results.flatMap((r) => r.records);
      const rejected = results.flatMap((r) => r.rejected ?? []);
      for (const r of rejected)
        errors.push({
          code: r.error.code,
          ...(r.record ? { record: plain(r.record.value) as RecordValue } : {}),
        });
      if (!instance.finish) filtered += Math.max(0, batch.length - out.length - rejected.length);
      batch = out;
    } finally {
      await instance.close?.();
    }
  }
  return { output: batch.map((r) => plain(r.value) as RecordValue), filtered, errors };
}

function compare(c: z.output<typeof fixtureSchema>['cases'][number], got: CaseResult): string[] {
  const lines: string[] = [];
  const n = Math.max(c.output.length, got.output.length);
  for (let i = 0; i < n; i++) {
    const want = c.output[i];
    const have = got.output[i];
    if (isDeepStrictEqual(plain(want), have)) continue;
    lines.push(`  output record ${i + 1}:`);
    lines.push(`    - expected ${want === undefined ? '(none)' : JSON.stringify(want)}`);
    lines.push(`    + actual   ${have === undefined ? '(none)' : JSON.stringify(have)}`);
  }
  if (c.filtered !== undefined && c.filtered !== got.filtered)
    lines.push(`  filtered: expected ${c.filtered}, actual ${got.filtered}`);
  if (c.errors !== undefined) {
    const want = c.errors.map((e) =>
      e.record ? { code: e.code, record: plain(e.record) } : { code: e.code },
    );
    const have = got.errors.map((e, i) => (c.errors?.[i]?.record ? e : { code: e.code }));
    if (!isDeepStrictEqual(want, have)) {
      lines.push('  errors:');
      lines.push(`    - expected ${JSON.stringify(want)}`);
      lines.push(`    + actual   ${JSON.stringify(got.errors)}`);
    }
  } else if (got.errors.length) {
    lines.push(`  errors: none expected, actual ${JSON.stringify(got.errors)}`);
  }
  return lines;
}
