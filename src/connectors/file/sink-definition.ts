import { z } from 'zod';
import { csvWriteOptionsSchema } from '../../formats/csv.ts';
import { defineSink } from '../../sdk/define.ts';
import { sizeSchema } from '../../spec/size.ts';
import { checkS3Fields, isS3Url, s3OptionsSchema } from '../s3/options.ts';
import { FORMATS, formatFromPath } from './paths.ts';

/** A path ending in a known data-file extension names one file; anything else is a directory. */
export function isSingleFilePath(p: string): boolean {
  return !/[\\/]$/.test(p) && formatFromPath(p) !== undefined;
}

export const fileSinkConfig = z
  .object({
    path: z
      .string()
      .min(1)
      .describe(
        'A directory, where part files `part-<run id>-<seq>.<ext>` are written, or a single file whose extension names ' +
          'the format (`out/result.jsonl`, `.csv`, `.tsv`, `.ndjson`, `.json`, `.parquet`, optionally `.gz`/`.zst`). ' +
          'Files are written under hidden temporary names and renamed into place when committed. A relative path ' +
          'resolves against the spec file. On S3: `s3://bucket/prefix/` for part files, or `s3://bucket/key.jsonl` ' +
          'for one object; parts are staged in a local temporary folder and uploaded as multipart uploads that are ' +
          'completed only when the checkpoint naming them is saved.',
      ),
    format: z
      .enum(FORMATS)
      .optional()
      .describe(
        'csv, jsonl or parquet. Required for a directory; for a single file, taken from its extension.',
      ),
    compression: z
      .enum(['none', 'gzip', 'zstd'])
      .optional()
      .describe(
        'Compression of csv and jsonl files (adds .gz or .zst to part names). Default: none, or what a single ' +
          'file name ends with (.gz, .zst). For Parquet use parquet.compression.',
      ),
    csv: csvWriteOptionsSchema.prefault({}),
    parquet: z
      .object({
        compression: z
          .enum(['snappy', 'zstd', 'gzip', 'uncompressed'])
          .default('zstd')
          .describe('Parquet column compression.'),
        row_group_size: z
          .number()
          .int()
          .min(1)
          .optional()
          .describe('Rows per Parquet row group (DuckDB default: 122880).'),
      })
      .strict()
      .prefault({})
      .describe('Parquet writing options.'),
    roll: z
      .object({
        max_records: z
          .number()
          .int()
          .min(1)
          .optional()
          .describe('Start a new part file after this many records.'),
        max_bytes: sizeSchema
          .optional()
          .describe(
            'Start a new part file once this many bytes were written to it (before compression; for Parquet, of ' +
              'staged JSON): a number or "128MB", "1GiB".',
          ),
      })
      .strict()
      .optional()
      .describe('When to start a new part file (directory paths only). Files also roll at every commit.'),
    partition_by: z
      .array(z.string().min(1))
      .min(1)
      .optional()
      .describe(
        'Fields to partition by, Hive style: `field=value/` folders (values %-encoded, null as ' +
          '__HIVE_DEFAULT_PARTITION__). The fields are left out of the written records, as DuckDB and Hive do. ' +
          'Directory paths only.',
      ),
    s3: s3OptionsSchema.optional(),
  })
  .strict()
  .superRefine((config, ctx) => {
    checkS3Fields(config, ctx);
    if (isSingleFilePath(config.path)) {
      const inferred = formatFromPath(config.path)!;
      if (config.roll)
        ctx.addIssue({
          code: 'custom',
          path: ['roll'],
          message: `roll needs a directory path; "${config.path}" names a single file (end the path with / to write part files)`,
        });
      if (config.partition_by)
        ctx.addIssue({
          code: 'custom',
          path: ['partition_by'],
          message: `partition_by needs a directory path; "${config.path}" names a single file (end the path with / to write part files)`,
        });
      if (config.format && config.format !== inferred.format)
        ctx.addIssue({
          code: 'custom',
          path: ['format'],
          message: `format ${config.format} does not match the file extension of "${config.path}" (${inferred.format})`,
        });
    } else if (!config.format) {
      ctx.addIssue({
        code: 'custom',
        path: ['format'],
        message: `format is required when path is a directory ("${config.path}"): one of ${FORMATS.join(', ')}; or give a file name such as out/result.jsonl`,
      });
    }
    const format = config.format ?? formatFromPath(config.path)?.format;
    if (format === 'parquet' && config.compression && config.compression !== 'none')
      ctx.addIssue({
        code: 'custom',
        path: ['compression'],
        message: 'compression applies to csv and jsonl; for Parquet use parquet.compression',
      });
  });

export type FileSinkConfig = z.output<typeof fileSinkConfig>;

export const fileSink = defineSink({
  name: 'file',
  summary:
    'Writes CSV, JSON Lines or Parquet files: part files in a directory (rolled, Hive-partitioned) or one file.',
  description:
    'Every file is written under a hidden temporary name in its final folder and renamed into place on commit, so ' +
    'readers never see a partial file and a failed or interrupted run leaves nothing half-written. Parquet is written ' +
    'by embedded DuckDB with bounded memory: records are staged as JSON Lines and converted with exact column types: a column keeps the type its batches declare (a CSV `date`, `CAST(x AS INTEGER)` in a sql step; see docs/concepts.md) when its values fit it, else the type of its values.',
  config: fileSinkConfig,
  shorthand: 'path',
  paths: (cfg) => (isS3Url(cfg.path) ? [] : [{ path: ['path'], value: cfg.path }]),
  examples: [
    {
      title: 'Parquet part files partitioned by country, rolled every million records',
      yaml: [
        'path: out/payments/',
        'format: parquet',
        'partition_by: [country]',
        'roll:',
        '  max_records: 1000000',
        'parquet:',
        '  compression: zstd',
      ].join('\n'),
    },
    {
      title: 'One gzipped JSON Lines file',
      yaml: 'path: out/result.jsonl.gz',
    },
    {
      title: 'Semicolon-delimited CSV part files of at most 128 MB',
      yaml: ['path: exports/', 'format: csv', 'csv:', '  delimiter: ";"', 'roll:', '  max_bytes: 128MB'].join(
        '\n',
      ),
    },
  ],
  // DuckDB (Parquet) and the AWS SDK (s3://) load only when a pipeline writes files.
  create: async (config, ctx) => (await import('./sink.ts')).createFileSink(config, ctx),
});
