/**
 * Key-range splits for parallel reads of one table. A split is a closed range of key numbers (an
 * integer key as it is, a time key as epoch microseconds) with either end open. Each split is its own
 * position partition, named after its range (`postgres:public.orders#id[250001,500000]`), and its
 * offset is the key number of the last row read in it. A resume therefore knows exactly which keys
 * each split committed from the positions alone, even when the table's min/max or the parallelism
 * changed since: the splits named in the checkpoint carry on after their offsets, and the key space
 * none of them covers is read as new splits.
 */
import { SluiceError } from '../../sdk/errors.ts';

/** Inclusive bounds; null is open (minus or plus infinity). */
export interface KeyRange {
  lo: bigint | null;
  hi: bigint | null;
}

export interface SplitWork extends KeyRange {
  partition: string;
  /** Resumed: only keys greater than this are left to read. */
  after?: bigint;
}

const bound = (b: bigint | null) => (b === null ? '*' : b.toString());

/** `<base>#<column>[lo,hi]`, `*` for an open end. */
export function splitPartition(base: string, column: string, range: KeyRange): string {
  return `${base}#${column}[${bound(range.lo)},${bound(range.hi)}]`;
}

/** The column and range of a split partition of `base`, or undefined when `name` is not one. */
export function parseSplitPartition(
  base: string,
  name: string,
): { column: string; range: KeyRange } | undefined {
  if (!name.startsWith(`${base}#`)) return undefined;
  const m = /^(.+)\[(\*|-?\d+),(\*|-?\d+)\]$/s.exec(name.slice(base.length + 1));
  if (!m) return undefined;
  const parse = (s: string) => (s === '*' ? null : BigInt(s));
  return { column: m[1]!, range: { lo: parse(m[2]!), hi: parse(m[3]!) } };
}

/**
 * `n` contiguous ranges covering [min, max] as evenly as the key numbers allow (fewer when there
 * are fewer keys than `n`), the first open below and the last open above, so together they cover
 * every key.
 */
export function evenSplits(min: bigint, max: bigint, n: number): KeyRange[] {
  const span = max - min + 1n;
  const count = BigInt(Math.max(1, n)) > span ? span : BigInt(Math.max(1, n));
  const ranges: KeyRange[] = [];
  for (let i = 0n; i < count; i++) {
    const lo = min + (span * i) / count;
    const hi = min + (span * (i + 1n)) / count - 1n;
    ranges.push({ lo: i === 0n ? null : lo, hi: i === count - 1n ? null : hi });
  }
  return ranges;
}

/**
 * The splits a read works through. Fresh (no split positions in `resume`): `parallelism` even
 * ranges over [min, max] (none for an empty table). Resumed: every split in `resume` carries on
 * after its offset (when its range has keys left), and each gap no resumed split covers (a split
 * that committed nothing, keys beyond the old ends) is read as one new split.
 */
export function planSplits(opts: {
  base: string;
  column: string;
  parallelism: number;
  min: bigint | null;
  max: bigint | null;
  resume?: Readonly<Record<string, number>>;
}): SplitWork[] {
  const { base, column } = opts;
  const known: (KeyRange & { partition: string; after: bigint })[] = [];
  for (const [name, offset] of Object.entries(opts.resume ?? {})) {
    if (name === base)
      throw new SluiceError(
        'SLUICE_SOURCE_IO',
        `the checkpoint holds a position of partition ${name}, written by a single reader (parallelism 1, no split_by): ` +
          'resume with that configuration, or run from scratch to read with splits',
        { retriable: false, details: { partition: name } },
      );
    const split = parseSplitPartition(base, name);
    if (!split) continue;
    if (split.column !== column)
      throw new SluiceError(
        'SLUICE_SOURCE_IO',
        `the checkpoint holds a position of split ${name}, split by column ${split.column}, not ${column}: ` +
          `resume with split_by: ${split.column}, or run from scratch`,
        { retriable: false, details: { partition: name, split_by: column } },
      );
    known.push({ ...split.range, partition: name, after: BigInt(offset) });
  }
  if (!known.length) {
    if (opts.min === null || opts.max === null) return [];
    return evenSplits(opts.min, opts.max, opts.parallelism).map((r) => ({
      ...r,
      partition: splitPartition(base, column, r),
    }));
  }
  const lo = (r: KeyRange) => r.lo ?? null;
  known.sort((a, b) => (lo(a) === null ? -1 : lo(b) === null ? 1 : a.lo! < b.lo! ? -1 : 1));
  const work: SplitWork[] = [];
  const gap = (from: bigint | null, to: bigint | null) => {
    if (from !== null && to !== null && from > to) return;
    const r = { lo: from, hi: to };
    work.push({ ...r, partition: splitPartition(base, column, r) });
  };
  let next: bigint | null = null; // the first key not covered yet; null: minus infinity
  let open = true; // nothing covered yet: the gap starts at minus infinity
  for (const k of known) {
    if (!open && (k.lo === null || (next !== null && k.lo < next)))
      throw new SluiceError(
        'SLUICE_SOURCE_IO',
        `the checkpoint's split positions overlap at ${k.partition}: run from scratch`,
        { retriable: false, details: { partition: k.partition } },
      );
    if (k.lo !== null) gap(open ? null : next, k.lo - 1n);
    if (k.hi === null || k.after < k.hi)
      work.push({ lo: k.lo, hi: k.hi, partition: k.partition, after: k.after });
    if (k.hi === null) return work;
    next = k.hi + 1n;
    open = false;
  }
  gap(next, null);
  return work;
}
