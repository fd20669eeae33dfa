/**
 * Micro-benchmark of compiled per-record SQL against a hand-written JavaScript function doing
 * the same work, over 1M pre-built records.
 *
 *   node bench/sql-eval.ts [records]
 */
import type { RecordValue } from '../src/sdk/types.ts';
import { compileSelect } from '../src/sql/index.ts';

const N = Number(process.argv[2] ?? 1_000_000);
const SQL = 'SELECT id, upper(country) AS country, amount * 100 AS cents FROM input WHERE amount > 0';
const COUNTRIES = ['de', 'fr', 'us', 'it', 'es', 'nl', 'pl', 'se'];

function records(n: number): RecordValue[] {
  const out: RecordValue[] = new Array(n);
  let seed = 42;
  const rnd = () => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed / 0x7fffffff;
  };
  for (let i = 0; i < n; i++) {
    // integral amounts (BIGINT) and fractional ones (DOUBLE), some negative, a few missing
    const r = rnd();
    const amount =
      r < 0.02 ? null : r < 0.5 ? Math.floor(rnd() * 10000) - 1000 : Math.round(rnd() * 1e6) / 100 - 500;
    out[i] = { id: i, country: COUNTRIES[i % COUNTRIES.length], amount, note: 'x' };
  }
  return out;
}

/** What the SQL means, written by hand (upper() of ASCII, BIGINT overflow ignored). */
function handWritten(row: RecordValue): RecordValue | null {
  const amount = row.amount as number | null;
  if (amount === null || amount === undefined || !(amount > 0)) return null;
  const country = row.country as string | null;
  return { id: row.id, country: country === null ? null : country.toUpperCase(), cents: amount * 100 };
}

function once(
  fn: (r: RecordValue) => RecordValue | null,
  rows: RecordValue[],
): { rate: number; kept: number } {
  let kept = 0;
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < rows.length; i++) if (fn(rows[i]!) !== null) kept++;
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  return { rate: rows.length / s, kept };
}

/** Best of `reps` passes each, interleaved so that both see the same machine noise. */
function compare(
  fns: [string, (r: RecordValue) => RecordValue | null][],
  rows: RecordValue[],
  reps = 7,
): number[] {
  const best = fns.map(() => 0);
  const kept = fns.map(() => 0);
  for (const [, fn] of fns) for (let i = 0; i < 300_000; i++) fn(rows[i % rows.length]!); // warm-up
  for (let rep = 0; rep < reps; rep++) {
    fns.forEach(([, fn], i) => {
      const r = once(fn, rows);
      best[i] = Math.max(best[i]!, r.rate);
      kept[i] = r.kept;
    });
  }
  fns.forEach(([name], i) => {
    console.log(
      `${name.padEnd(14)} ${(best[i]! / 1e6).toFixed(2).padStart(7)} M evaluations/s  (kept ${kept[i]} of ${rows.length})`,
    );
  });
  return best;
}

const rows = records(N);
const compiled = await compileSelect(SQL);
console.log(SQL);
const [hand, sql] = compare(
  [
    ['hand-written', handWritten],
    ['compiled SQL', compiled],
  ],
  rows,
);
console.log(`ratio          ${(hand! / sql!).toFixed(2)}x (hand-written / compiled)`);
process.exit(0);
