import { setTimeout as sleep, setImmediate as yieldToLoop } from 'node:timers/promises';
import { z } from 'zod';
import { defineSource } from '../../sdk/define.ts';
import { SluiceError } from '../../sdk/errors.ts';
import type { SluiceRecord, SourceInstance } from '../../sdk/types.ts';
import { compileFields, type FieldSpec, GENERATORS, mulberry32 } from './dsl.ts';

const RATE = /^\s*(\d+(?:\.\d+)?)\s*\/\s*(s|min|h)\s*$/;
const UNIT_SECONDS = { s: 1, min: 60, h: 3600 } as const;

/** Parses `1000/s`, `50/min`, `2/h` into records per second; undefined when malformed or zero. */
export function parseRate(text: string): number | undefined {
  const m = RATE.exec(text);
  if (!m) return undefined;
  const perSecond = Number(m[1]) / UNIT_SECONDS[m[2] as keyof typeof UNIT_SECONDS];
  return perSecond > 0 ? perSecond : undefined;
}

const fieldSpec: z.ZodType<FieldSpec> = z.lazy(() =>
  z
    .union([z.string(), z.number(), z.boolean(), z.null(), z.record(z.string(), fieldSpec)])
    .describe(
      'A generator expression such as `int(1, 9) | null(0.1)`, a constant number, boolean or null, or a map of nested fields.',
    ),
);

/** Partition name of every generated record's position; the offset is the record number. */
export const GENERATE_PARTITION = 'generate';

const config = z
  .object({
    count: z
      .number()
      .int()
      .nonnegative()
      .optional()
      .describe('How many records to generate. Without it (and with a `rate`) the source never ends.'),
    rate: z
      .string()
      .regex(RATE, { message: 'expected a rate such as 1000/s, 50/min or 2/h' })
      .refine((s) => parseRate(s) !== undefined, { message: 'a rate must be more than zero' })
      .optional()
      .describe(
        'Records per second, minute or hour: `1000/s`, `50/min`, `2/h`. Without it, as fast as possible.',
      ),
    seed: z
      .number()
      .int()
      .default(1)
      .describe('Seed of the random generator: the same seed and fields give the same records.'),
    fields: z
      .record(z.string(), fieldSpec)
      .default({ id: 'seq' })
      .describe(
        'Field name to generator expression (or a map of nested fields). The grammar is in the component description.',
      ),
  })
  .strict()
  .superRefine((cfg, ctx) => {
    if (cfg.count === undefined && cfg.rate === undefined)
      ctx.addIssue({
        code: 'custom',
        path: ['count'],
        message: 'give `count` (a bounded run), `rate` (an endless stream), or both',
      });
    const { problems } = compileFields(cfg.fields, { rng: mulberry32(0), startMs: 0 });
    for (const problem of problems)
      ctx.addIssue({ code: 'custom', path: ['fields', ...problem.path], message: problem.message });
  });

export type GenerateConfig = z.output<typeof config>;

const grammar = GENERATORS.map(([usage, description]) => `- \`${usage}\`: ${description}`).join('\n');

export const generateSource = defineSource({
  name: 'generate',
  summary: 'Synthetic records from a seeded generator, for demos, tests and benchmarks.',
  description: `Generates records whose fields are described by a small expression language. With \`count\` the run ends after that many records; with only a \`rate\` it streams until stopped. The same \`seed\` and \`fields\` always give the same records (except \`timestamp(now)\`, the wall clock when each record is generated, and the times counted from the run start: \`timestamp\` and \`timestamp(now, step)\`).

Each field is \`generator ( | modifier )*\`, where a generator is a name with optional arguments in parentheses. Arguments are separated by commas; quoted arguments ('a b' or "a b") are strings, bare numbers are numbers, \`true\`/\`false\`/\`null\` are themselves and other bare words are strings. Generators:

${grammar}

The only modifier is \`| null(p)\`: the value is null with probability p, e.g. \`int(1, 9) | null(0.1)\`. A field may also be a constant (a number, boolean or null) or a map of nested fields. In \`template\`, write \`{{\` and \`}}\` for literal braces. Write \`weighted(a:3, b:1)\` with no space after the colon, or quote the whole expression, so that YAML does not read it as a map.

Every record's position is partition \`generate\`, offset = the record number (1, 2, 3...). With a \`rate\`, records are paced by a token bucket and batches carry at most a tenth of a second's worth.`,
  config,
  examples: [
    {
      title: 'A thousand orders',
      yaml: `count: 1000
seed: 42
fields:
  id: seq
  order_id: template('ord-{seq}')
  customer: name
  email: email
  country: weighted(DE:5, FR:3, US:2)
  amount: float(1, 500, 2)
  coupon: string(8) | null(0.7)
  created_at: timestamp('2024-01-01T00:00:00Z', 1s)
`,
    },
    {
      title: 'An endless sensor stream at 100 records per second',
      yaml: `rate: 100/s
fields:
  reading_id: uuid
  sensor: pick(s1, s2, s3)
  celsius: float(-10, 40, 1)
  device:
    ok: bool(0.95)
    firmware: const('1.4.2')
`,
    },
    { title: 'Ten records with just an id', yaml: 'count: 10\n' },
  ],
  bounded: (cfg) => cfg.count !== undefined,
  create(cfg, ctx): SourceInstance {
    const rng = mulberry32(cfg.seed);
    const { build, problems } = compileFields(cfg.fields, { rng, startMs: Date.now() });
    if (!build) throw new SluiceError('SLUICE_SPEC_INVALID', problems.map((p) => p.message).join('; '));
    const total = cfg.count ?? Number.POSITIVE_INFINITY;
    const perSecond = cfg.rate === undefined ? undefined : parseRate(cfg.rate);
    const batchSize = Math.max(1, ctx.batchSize);
    // Paced batches carry at most 100 ms worth of records so a slow stream still flows smoothly.
    const maxBatch =
      perSecond === undefined ? batchSize : Math.min(batchSize, Math.max(1, Math.floor(perSecond / 10)));
    // A resumed run starts after the last committed record number.
    const resumeAt = ctx.resume?.[GENERATE_PARTITION];
    const start = resumeAt === undefined ? 0 : Math.min(total, Math.max(0, Math.floor(resumeAt)));
    let emitted = 0;
    let closed = false;
    const { signal } = ctx;

    return {
      async *read() {
        // Token bucket: it refills at `perSecond` and holds at most 100 ms of records (at least a batch).
        const perMs = perSecond === undefined ? 0 : perSecond / 1000;
        const capacity = Math.max(maxBatch, perMs * 100);
        let tokens = maxBatch;
        let refilled = performance.now();
        let lastYield = refilled;
        // Every record draws from one PRNG, so a record's value depends on the draws of all before
        // it: build the committed records again and drop them, so record n is the same as in a fresh run.
        while (emitted < start) {
          const end = Math.min(start, emitted + batchSize);
          for (let n = emitted + 1; n <= end; n++) build(n);
          emitted = end;
          if (performance.now() - lastYield > 20) {
            await yieldToLoop();
            lastYield = performance.now();
            if (closed || signal.aborted) return;
          }
        }
        while (emitted < total && !closed && !signal.aborted) {
          const size = Math.min(maxBatch, total - emitted);
          if (perSecond !== undefined) {
            for (;;) {
              const now = performance.now();
              tokens = Math.min(capacity, tokens + (now - refilled) * perMs);
              refilled = now;
              if (tokens >= size) break;
              try {
                await sleep(Math.ceil((size - tokens) / perMs), undefined, { signal });
              } catch {
                return; // aborted
              }
              if (closed) return;
            }
            tokens -= size;
          } else if (performance.now() - lastYield > 20) {
            // Flat out, still let timers and I/O run now and then.
            await yieldToLoop();
            lastYield = performance.now();
            if (closed || signal.aborted) return;
          }
          const records: SluiceRecord[] = new Array(size);
          let n = emitted;
          for (let i = 0; i < size; i++) {
            n++;
            records[i] = {
              value: build(n),
              meta: { position: { partition: GENERATE_PARTITION, offset: n } },
            };
          }
          emitted = n;
          yield { records };
        }
      },
      progress: () => (cfg.count === undefined ? {} : { recordsTotal: cfg.count - start }),
      async close() {
        closed = true;
      },
    };
  },
});
