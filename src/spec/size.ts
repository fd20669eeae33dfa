import { z } from 'zod';

export const SIZE_RE = /^\s*(\d+(?:\.\d+)?)\s*(b|kb|mb|gb|kib|mib|gib)?\s*$/i;
const SIZE_UNITS: Record<string, number> = {
  b: 1,
  kb: 1e3,
  mb: 1e6,
  gb: 1e9,
  kib: 1024,
  mib: 1024 ** 2,
  gib: 1024 ** 3,
};

/** Bytes from `1048576`, `"64MB"` or `"1GiB"`. */
export function parseSize(size: number | string): number {
  if (typeof size === 'number') return size;
  const m = SIZE_RE.exec(size);
  if (!m) throw new RangeError(`not a size: ${size}`);
  return Math.floor(Number(m[1]) * (SIZE_UNITS[(m[2] ?? 'b').toLowerCase()] ?? 1));
}

/** A size in bytes: a number, or text such as `"128MB"` or `"1GiB"` (KB/MB/GB are powers of 1000, KiB/MiB/GiB of 1024). */
export const sizeSchema = z.union([
  z.number().int().min(1),
  z.string().regex(SIZE_RE, 'a size such as 134217728, "128MB" or "1GiB"'),
]);
