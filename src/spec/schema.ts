import { z } from 'zod';
import { durationSchema } from './duration.ts';

/**
 * The pipeline envelope. Component slots (source, steps, sinks, errors) are validated in a second
 * phase against each component's own schema, so here they are open maps; the published JSON
 * Schema (json-schema.ts) puts the component schemas in their place.
 */

export const metadataSchema = z
  .object({
    name: z
      .string()
      .regex(
        /^[a-z0-9][a-z0-9._-]*$/,
        'use lowercase letters, digits, ".", "_" and "-", starting with a letter or digit',
      )
      .max(100)
      .describe('Pipeline name; it names run directories and output files.'),
    description: z.string().optional().describe('What this pipeline is for.'),
    labels: z.record(z.string(), z.string()).optional().describe('Free-form key/value labels.'),
  })
  .strict()
  .describe('Identifies the pipeline.');

export const errorPolicySchema = z
  .object({
    max_errors: z
      .number()
      .int()
      .min(0)
      .optional()
      .describe('Fail the job when more than this many records have failed. Unset: no limit.'),
    max_error_rate: z
      .number()
      .min(0)
      .max(1)
      .optional()
      .describe('Fail the job when failed / read exceeds this fraction (0..1). Unset: no limit.'),
    min_records: z
      .number()
      .int()
      .min(1)
      .default(1000)
      .describe('The error rate is judged only once this many records have been read, and at the end.'),
  })
  .strict()
  .describe('When record failures fail the whole job.');

export const sinkRetrySchema = z
  .object({
    attempts: z.number().int().min(1).max(100).default(5).describe('Tries per batch, the first included.'),
    initial_backoff: durationSchema
      .default('100ms')
      .describe('Wait before the first retry; doubles each time.'),
    max_backoff: durationSchema.default('10s').describe('Longest wait between tries.'),
  })
  .strict()
  .describe(
    'Retries of a sink write that failed with a retriable error, with exponential backoff and full jitter.',
  );

export const restartSchema = z
  .object({
    attempts: z
      .number()
      .int()
      .min(0)
      .max(100)
      .default(3)
      .describe(
        'Restarts before the run fails: after its process dies (killed, out of memory, crashed) under `sluice ' +
          'server`, or after it failed with a retriable error (a dropped connection, a broker away) under both.',
      ),
    backoff: durationSchema.default('1s').describe('Wait before the first restart; doubles each time.'),
    max_backoff: durationSchema.default('1m').describe('Longest wait between restarts.'),
  })
  .strict()
  .describe(
    'How a run is restarted from its last checkpoint: by `sluice server` when its process died, and by `sluice run` ' +
      'and `sluice server` when it failed with a retriable error. A run that fails on its own (error limit, invalid ' +
      'input) is not restarted.',
  );

export const settingsSchema = z
  .object({
    batch_size: z
      .number()
      .int()
      .min(1)
      .max(1_000_000)
      .default(1000)
      .describe('Records per batch between operators.'),
    queue_depth: z
      .number()
      .int()
      .min(1)
      .max(1024)
      .default(4)
      .describe('Batches buffered between two operators; a full queue makes the upstream operator wait.'),
    checkpoint_interval: durationSchema
      .default('60s')
      .describe(
        'How often sinks commit (file sinks roll their part files into place) and positions are saved.',
      ),
    error_policy: errorPolicySchema.default({ min_records: 1000 }),
    sink_retry: sinkRetrySchema.default({ attempts: 5, initial_backoff: '100ms', max_backoff: '10s' }),
    restart: restartSchema.default({ attempts: 3, backoff: '1s', max_backoff: '1m' }),
    pushdown: z
      .enum(['auto', 'off'])
      .default('auto')
      .describe(
        'auto: a run that reads files, applies only sql and filter steps and writes one file sink is handed to ' +
          'DuckDB as one multi-threaded COPY when that gives exactly the same output (docs/pushdown.md); off: always ' +
          'the streaming engine. `sluice run --no-pushdown` also turns it off.',
      ),
  })
  .strict()
  .describe('Engine settings.');

export type Settings = z.output<typeof settingsSchema>;

/** Keys a slot may carry beside its one component key. */
export const SLOT_EXTRA_KEYS = {
  source: [],
  step: ['name'],
  sink: ['name', 'route'],
  errors: [],
} as const;

// Checked in the second phase against the components' own schemas (validate.ts).
const openSlot = z.unknown();

const severitySchema = z
  .enum(['error', 'warn'])
  .default('error')
  .describe('error: a failed check fails the job; warn: it is recorded in the summary and alerted.');

export const checkSchema = z
  .union([
    z
      .object({
        row_count: z
          .object({
            min: z.number().int().min(0).optional().describe('Fewest records the sinks must have written.'),
            max: z.number().int().min(0).optional().describe('Most records the sinks may have written.'),
            severity: severitySchema,
          })
          .strict()
          .describe('Records written by the sinks, over all restarts of the job.'),
      })
      .strict(),
    z
      .object({
        error_rate: z
          .object({
            max: z.number().min(0).max(1).describe('Highest share of read records that may fail (0..1).'),
            severity: severitySchema,
          })
          .strict()
          .describe('Failed records (in the errors sink) over records read.'),
      })
      .strict(),
  ])
  .describe('A data-quality check evaluated by `sluice server` when a job ends.');

export type Check = z.output<typeof checkSchema>;

export const envelopeSchema = z
  .object({
    apiVersion: z.literal('sluice/v1').describe('Spec format version: sluice/v1.'),
    kind: z.literal('Pipeline').describe('Document kind: Pipeline.'),
    metadata: metadataSchema,
    source: openSlot.describe('Where records come from: exactly one source component.'),
    steps: z.array(openSlot).default([]).describe('Steps applied in order to every batch.'),
    sink: openSlot.optional().describe('Where records go: one sink component (or use `sinks`).'),
    sinks: z
      .array(openSlot)
      .min(1)
      .optional()
      .describe(
        'Several sinks; each receives the records its `route` condition accepts (all when it has none).',
      ),
    errors: openSlot
      .optional()
      .describe(
        'Where failed records go. Default: JSON Lines part files in the errors/ folder of the run directory.',
      ),
    settings: settingsSchema.default(settingsSchema.parse({})),
    checks: z
      .array(checkSchema)
      .default([])
      .describe('Data-quality checks run when the job ends (by `sluice server`): row_count, error_rate.'),
  })
  .strict();

export type Envelope = z.output<typeof envelopeSchema>;
