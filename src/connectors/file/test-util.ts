/** Helpers for the file connector tests (not a test file itself). */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { duckdbToJs, openDuckDB } from '../../formats/parquet.ts';
import type { RecordValue, Rejection, SluiceRecord, SourceInstance } from '../../sdk/types.ts';

export async function makeTempDir(prefix = 'sluice-file-'): Promise<string> {
  return fs.mkdtemp(path.join(os.tmpdir(), prefix));
}

/** Runs a query in a fresh in-memory DuckDB and returns rows as plain JS (safe integers as numbers). */
export async function duckQuery(sql: string): Promise<RecordValue[]> {
  const db = await openDuckDB({ threads: 1 });
  try {
    const reader = await db.connection.runAndReadAll(sql);
    return reader.convertRowObjects(duckdbToJs) as RecordValue[];
  } finally {
    db.close();
  }
}

export async function readSource(
  source: SourceInstance,
): Promise<{ records: SluiceRecord[]; rejected: Rejection[] }> {
  const records: SluiceRecord[] = [];
  const rejected: Rejection[] = [];
  try {
    for await (const batch of source.read()) {
      records.push(...batch.records);
      rejected.push(...(batch.rejected ?? []));
    }
  } finally {
    await source.close();
  }
  return { records, rejected };
}

/** Every file under `dir`, relative, sorted (hidden ones included). */
export async function listFiles(dir: string): Promise<string[]> {
  const entries = await fs.readdir(dir, { recursive: true, withFileTypes: true }).catch(() => []);
  return entries
    .filter((e) => e.isFile())
    .map((e) => path.relative(dir, path.join(e.parentPath, e.name)))
    .sort();
}
