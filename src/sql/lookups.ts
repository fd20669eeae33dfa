/**
 * Lookup tables: reference data a per-record query may join (`LEFT JOIN countries c ON ...`),
 * read from a file once into the step's DuckDB connection.
 */
import { access } from 'node:fs/promises';
import path from 'node:path';
import type { DuckDBConnection } from '@duckdb/node-api';
import { z } from 'zod';
import { SluiceError } from '../sdk/errors.ts';

export const lookupSchema = z
  .object({
    path: z.string().min(1).describe('The file, relative to the spec file.'),
    format: z
      .enum(['csv', 'jsonl', 'parquet'])
      .optional()
      .describe('The file format; by default from the extension (.csv, .jsonl/.ndjson/.json, .parquet).'),
    csv: z
      .object({
        delimiter: z.string().min(1).max(4).optional().describe('The field separator; detected by default.'),
        header: z
          .boolean()
          .optional()
          .describe('Whether the first line names the columns; detected by default.'),
      })
      .strict()
      .optional()
      .describe('CSV options; column types are detected by DuckDB.'),
  })
  .strict();

export type LookupConfig = z.output<typeof lookupSchema>;
export type Lookups = Record<string, LookupConfig>;

/** Lookup table names: SQL identifiers, not `input` (the record). */
export const lookupsSchema = z
  .record(
    z
      .string()
      .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'a table name is letters, digits and "_"')
      .refine((n) => n.toLowerCase() !== 'input', '`input` is the record; give the lookup another name'),
    lookupSchema,
  )
  .describe(
    'Reference tables the query may join with `input`, by name: each read from a file once, when the step starts.',
  );

function sqlString(s: string): string {
  return `'${s.replace(/'/g, "''")}'`;
}

export function lookupFormat(cfg: LookupConfig): 'csv' | 'jsonl' | 'parquet' {
  if (cfg.format) return cfg.format;
  const p = cfg.path.toLowerCase().replace(/\.(gz|zst)$/, '');
  if (p.endsWith('.parquet')) return 'parquet';
  if (p.endsWith('.jsonl') || p.endsWith('.ndjson') || p.endsWith('.json')) return 'jsonl';
  return 'csv';
}

/** The table function reading a lookup file. */
export function lookupReader(cfg: LookupConfig, baseDir: string): string {
  const file = sqlString(path.resolve(baseDir, cfg.path));
  switch (lookupFormat(cfg)) {
    case 'parquet':
      return `read_parquet(${file})`;
    case 'jsonl':
      return `read_json(${file}, format = 'newline_delimited')`;
    case 'csv': {
      const opts = [];
      if (cfg.csv?.delimiter !== undefined) opts.push(`delim = ${sqlString(cfg.csv.delimiter)}`);
      if (cfg.csv?.header !== undefined) opts.push(`header = ${cfg.csv.header}`);
      return `read_csv(${[file, ...opts].join(', ')})`;
    }
  }
}

export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/**
 * Makes each lookup a temp table (`materialize`) or a temp view (validation: reads only what
 * DuckDB needs to know the columns). Throws SLUICE_SPEC_INVALID naming the lookup on a missing or
 * unreadable file, with `details.lookup`.
 */
export async function loadLookups(
  conn: DuckDBConnection,
  lookups: Lookups | undefined,
  baseDir: string,
  materialize: boolean,
): Promise<Map<string, string[]>> {
  const columns = new Map<string, string[]>();
  for (const [name, cfg] of Object.entries(lookups ?? {})) {
    const file = path.resolve(baseDir, cfg.path);
    try {
      await access(file);
    } catch {
      throw new SluiceError('SLUICE_SPEC_INVALID', `lookup ${name}: no such file ${file}`, {
        details: { lookup: name, field: 'path' },
      });
    }
    try {
      const kind = materialize ? 'TABLE' : 'VIEW';
      await conn.run(
        `CREATE OR REPLACE TEMP ${kind} ${quoteIdent(name)} AS SELECT * FROM ${lookupReader(cfg, baseDir)}`,
      );
      const r = await conn.runAndReadAll(`DESCRIBE ${quoteIdent(name)}`);
      columns.set(
        name,
        r.getRowsJS().map((row) => String(row[0])),
      );
    } catch (err) {
      throw new SluiceError(
        'SLUICE_SPEC_INVALID',
        `lookup ${name}: cannot read ${file} as ${lookupFormat(cfg)}: ${firstLine((err as Error).message)}`,
        { details: { lookup: name, field: 'path' }, cause: err },
      );
    }
  }
  return columns;
}

function firstLine(s: string): string {
  return s.split('\n')[0] ?? s;
}

/** Loads each lookup's schema (as a view) to check it: the problems, by lookup name. */
export async function checkLookups(
  conn: DuckDBConnection,
  lookups: Lookups,
  baseDir: string,
): Promise<{ name: string; message: string }[]> {
  const problems: { name: string; message: string }[] = [];
  for (const [name, cfg] of Object.entries(lookups)) {
    try {
      await loadLookups(conn, { [name]: cfg }, baseDir, false);
    } catch (err) {
      problems.push({ name, message: (err as Error).message });
    }
  }
  return problems;
}
