import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after } from 'node:test';
import zlib from 'node:zlib';
import { sinkConformance, sourceConformance } from '../../sdk/testing.ts';
import type { RecordValue } from '../../sdk/types.ts';
import { fileSink, fileSource } from './index.ts';
import { duckQuery } from './test-util.ts';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-file-conformance-'));
after(() => fs.rmSync(dir, { recursive: true, force: true }));

// ---------------------------------------------------------------- sources

const csvLines = (from: number, n: number) =>
  Array.from({ length: n }, (_, i) => `${from + i},"name ${from + i}\nsecond line",${(from + i) * 1.5}`).join(
    '\n',
  );
fs.mkdirSync(path.join(dir, 'in/csv'), { recursive: true });
fs.writeFileSync(path.join(dir, 'in/csv/a.csv'), `id,name,amount\n${csvLines(0, 40)}\n`);
fs.writeFileSync(path.join(dir, 'in/csv/b.csv.gz'), zlib.gzipSync(`id,name,amount\n${csvLines(40, 30)}\n`));
fs.writeFileSync(
  path.join(dir, 'in/events.jsonl.zst'),
  zlib.zstdCompressSync(Buffer.from(Array.from({ length: 95 }, (_, i) => JSON.stringify({ i })).join('\n'))),
);

sourceConformance('file (csv, glob over plain and gzip files)', {
  create: (ctx) =>
    fileSource.create(fileSource.config.parse({ path: 'in/csv/*', csv: { columns: { id: 'integer' } } }), {
      ...ctx,
      baseDir: dir,
    }),
  expectedRecords: 70,
});

sourceConformance('file (jsonl, zstd)', {
  create: (ctx) =>
    fileSource.create(fileSource.config.parse({ path: 'in/events.jsonl.zst' }), { ...ctx, baseDir: dir }),
  expectedRecords: 95,
});

const parquetFile = path.join(dir, 'in/rows.parquet');
sourceConformance('file (parquet)', {
  create: async (ctx) => {
    if (!fs.existsSync(parquetFile))
      await duckQuery(
        `COPY (SELECT range AS id, 'x' || range AS name FROM range(3000)) TO '${parquetFile}' (FORMAT parquet)`,
      );
    return fileSource.create(fileSource.config.parse({ path: parquetFile }), ctx);
  },
  expectedRecords: 3000,
});

// ---------------------------------------------------------------- sinks

const readers = {
  jsonl: (p: string) => `read_json('${p}/**/*.jsonl*', format = 'newline_delimited')`,
  csv: (p: string) => `read_csv('${p}/**/*.csv*', header = true)`,
  parquet: (p: string) => `read_parquet('${p}/**/*.parquet')`,
};

for (const format of ['jsonl', 'csv', 'parquet'] as const) {
  const out = path.join(dir, `out-${format}`);
  sinkConformance(`file (${format}, part files)`, {
    create: (ctx) =>
      fileSink.create(
        fileSink.config.parse({
          path: `out-${format}/`,
          format,
          ...(format === 'jsonl' ? { compression: 'gzip', roll: { max_records: 60 } } : {}),
        }),
        { ...ctx, baseDir: dir },
      ),
    readBack: async (): Promise<RecordValue[]> => {
      if (!fs.existsSync(out) || fs.readdirSync(out).every((f) => f.startsWith('.'))) return [];
      return duckQuery(`SELECT * FROM ${readers[format](out)}`);
    },
    reset: () => fs.rmSync(out, { recursive: true, force: true }),
    ...(format === 'csv'
      ? {
          unencodable: {
            id: 0,
            name: 'has an extra field',
            amount: 1,
            active: true,
            extra: 'not a CSV column',
          },
        }
      : {}),
  });
}

sinkConformance('file (parquet, single file)', {
  create: (ctx) =>
    fileSink.create(fileSink.config.parse({ path: 'single/out.parquet' }), { ...ctx, baseDir: dir }),
  readBack: async () => {
    const file = path.join(dir, 'single/out.parquet');
    return fs.existsSync(file) ? duckQuery(`SELECT * FROM read_parquet('${file}')`) : [];
  },
  reset: () => fs.rmSync(path.join(dir, 'single'), { recursive: true, force: true }),
});
