import { z } from 'zod';
import { csvReadOptionsSchema } from '../../formats/csv.ts';
import { defineSource } from '../../sdk/define.ts';
import { checkS3Fields, isS3Url, s3OptionsSchema } from '../s3/options.ts';
import { FORMATS } from './paths.ts';

export const fileSourceConfig = z
  .object({
    path: z
      .string()
      .min(1)
      .describe(
        'A file, a glob (`data/*.csv.gz`, `logs/**/*.jsonl`) or a directory (every file in it, recursively). ' +
          'Files are read one after the other in sorted path order; hidden and `_`-prefixed files are skipped. ' +
          'A relative path resolves against the spec file. On S3: `s3://bucket/key`, `s3://bucket/prefix/` (every ' +
          'object under it) or `s3://bucket/logs/**/*.jsonl.gz` (listed under the literal part, in key order).',
      ),
    format: z
      .enum(FORMATS)
      .optional()
      .describe(
        'csv, jsonl or parquet. Default: from each file extension, after .gz/.zst: .csv, .tsv (tab-delimited CSV), ' +
          '.jsonl/.ndjson/.json, .parquet.',
      ),
    compression: z
      .enum(['auto', 'none', 'gzip', 'zstd'])
      .default('auto')
      .describe('Compression of csv and jsonl files; auto decides by extension (.gz gzip, .zst zstd).'),
    csv: csvReadOptionsSchema.prefault({}),
    s3: s3OptionsSchema.optional(),
  })
  .strict()
  .superRefine(checkS3Fields);

export type FileSourceConfig = z.output<typeof fileSourceConfig>;

export const fileSource = defineSource({
  name: 'file',
  summary:
    'Reads CSV, JSON Lines or Parquet files (plain, gzip or zstd): one file, a glob or a directory, local or on S3.',
  description:
    'Files are read in sorted order, each record positioned by its file and line number (row index for Parquet), so a ' +
    'run resumes exactly where it stopped. A malformed line or a value that does not convert to its declared type ' +
    'goes to the errors sink with the file, line and raw text, and reading carries on.',
  config: fileSourceConfig,
  shorthand: 'path',
  paths: (cfg) => (isS3Url(cfg.path) ? [] : [{ path: ['path'], value: cfg.path }]),
  examples: [
    {
      title: 'Gzipped CSV files matched by a glob, with typed columns',
      yaml: [
        'path: data/payments-*.csv.gz',
        'csv:',
        '  columns:',
        '    id: bigint',
        '    amount: decimal',
        '    paid_at: timestamp',
        '    refunded: boolean',
      ].join('\n'),
    },
    {
      title: 'Gzipped JSON Lines objects on S3, matched by a glob (credentials from the environment)',
      yaml: 'path: s3://acme-logs/app/2024/**/*.jsonl.gz',
    },
    {
      title: 'A headerless, semicolon-delimited file',
      yaml: [
        'path: legacy/export.txt',
        'format: csv',
        'csv:',
        '  header: false',
        '  delimiter: ";"',
        '  null_values: ["", "NULL"]',
        '  columns:',
        '    code: string',
        '    quantity: integer',
        '    shipped_on: date',
      ].join('\n'),
    },
  ],
  bounded: () => true,
  // DuckDB (Parquet) and the AWS SDK (s3://) load only when a pipeline reads files.
  create: async (config, ctx) => (await import('./source.ts')).createFileSource(config, ctx),
});
