/**
 * The sql step alone, over records already parsed (no JSON Lines on either side), per CPU-second
 * of this process (every thread, DuckDB's too: what one core gives): a query in the compiled
 * subset, one outside it on the DuckDB micro-batch path (`BatchQuery`, in batches of 1,000 handed
 * over as the engine does), and DuckDB's own SELECT of the latter over the same rows in a table,
 * on one thread.
 */
import { readFile } from 'node:fs/promises';
import { DuckDBInstance } from '@duckdb/node-api';
import type { RecordValue, SluiceRecord } from '../src/sdk/types.ts';
import { BatchQuery, duckBatchesInFlight } from '../src/sql/batch.ts';
import { compileSelect } from '../src/sql/index.ts';

const BATCH = 1000;

export interface StepRates {
  /** Records per CPU-second. */
  compiled: number;
  duckPath: number;
  duckSelect: number;
}

async function cpuTimed(work: () => Promise<number>): Promise<{ n: number; perCpuSecond: number }> {
  const before = process.cpuUsage();
  const n = await work();
  const used = process.cpuUsage(before);
  return { n, perCpuSecond: (n / (used.user + used.system)) * 1e6 };
}

export async function measureSqlStep(
  jsonl: string,
  inSubset: string,
  outside: string,
  repeat: number,
): Promise<StepRates> {
  const lines = (await readFile(jsonl, 'utf8')).split('\n').filter((l) => l.length > 0);
  const records: SluiceRecord[] = lines.map((l) => ({ value: JSON.parse(l) as RecordValue, meta: {} }));
  const compiled = await compileSelect(inSubset);
  const query = await BatchQuery.open(outside);
  const instance = await DuckDBInstance.create(':memory:', { threads: '1' });
  const duck = await instance.connect();
  await duck.run(`CREATE TABLE input AS SELECT * FROM read_json('${jsonl}')`);
  const best: StepRates = { compiled: 0, duckPath: 0, duckSelect: 0 };
  try {
    for (let r = 0; r < repeat; r++) {
      const c = await cpuTimed(async () => {
        let out = 0;
        for (const record of records) if (compiled(record.value)) out++;
        return out;
      });
      const d = await cpuTimed(async () => {
        const inFlight = duckBatchesInFlight(BATCH).batches;
        const pending: Promise<{ records: unknown[] }>[] = [];
        let out = 0;
        for (let i = 0; i < records.length; i += BATCH) {
          pending.push(query.process(records.slice(i, i + BATCH)));
          if (pending.length >= inFlight) out += (await pending.shift()!).records.length;
        }
        for (const p of pending) out += (await p).records.length;
        return out;
      });
      const s = await cpuTimed(async () => {
        await duck.run(`CREATE OR REPLACE TEMP TABLE result AS ${outside}`);
        const n = await duck.runAndReadAll('SELECT count(*) FROM result');
        return Number(n.getRowsJS()[0]![0]);
      });
      for (const [name, result] of [
        ['compiled', c],
        ['duckPath', d],
        ['duckSelect', s],
      ] as const) {
        if (result.n !== records.length)
          throw new Error(`${name}: ${result.n} records out of ${records.length}`);
        best[name] = Math.max(best[name], result.perCpuSecond);
      }
    }
  } finally {
    await query.close();
    duck.closeSync();
    instance.closeSync();
  }
  return best;
}
