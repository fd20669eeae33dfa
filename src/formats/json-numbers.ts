/**
 * JSON numbers read without a silent change: JSON.parse makes every number a double, which rounds
 * integers beyond ±2^53 (9007199254740993 → 9007199254740992). These helpers keep them exact as bigint, using JSON.parse's own source text access
 * (the reviver's `context.source`), and only for text that may hold such a number, so that
 * ordinary input keeps the plain JSON.parse path.
 */

/** The reviver's third argument (JSON.parse source text access; not in the ES2024 typings). */
interface ReviverContext {
  source?: string;
}

/**
 * True when `text` holds a run of 16 digits or more (every integer of 15 digits or fewer is
 * exact in a double). Looks at every 16th character only, and around it when it is a digit: any
 * run of 16 digits covers one of those. A regular expression (`/\d{16}/`) doubles the cost of a
 * JSON Lines line; this adds a few per cent.
 */
const isDigit = (c: number): boolean => c >= 48 && c <= 57;

function hasLongDigitRun(text: string, start: number, end: number): boolean {
  const n = end;
  for (let p = start + 15; p < n; p += 16) {
    if (!isDigit(text.charCodeAt(p))) continue;
    // A run of 16 through p reaches p - 8 or p + 8: most numbers are rejected here.
    if (
      !(p - 8 >= start && isDigit(text.charCodeAt(p - 8))) &&
      !(p + 8 < n && isDigit(text.charCodeAt(p + 8)))
    )
      continue;
    let first = p;
    let last = p;
    while (first > start && isDigit(text.charCodeAt(first - 1))) first--;
    while (last + 1 < n && isDigit(text.charCodeAt(last + 1))) last++;
    if (last - first + 1 >= 16) return true;
    p = last; // the next sample is 16 past this run
  }
  return false;
}

/**
 * True when `text.slice(start, end)` may hold an integer JSON.parse would round (strings that
 * match only cost time). Scanning a line inside its chunk is faster than scanning its slice.
 */
export function mayHoldInexactNumber(text: string, start = 0, end = text.length): boolean {
  return hasLongDigitRun(text, start, end);
}

const INTEGER = /^-?\d+$/;

/** The reviver: an integer beyond ±2^53 → its exact bigint. */
function exactIntegers(_key: string, value: unknown, context?: ReviverContext): unknown {
  if (typeof value === 'number' && !Number.isSafeInteger(value)) {
    const source = context?.source;
    if (source !== undefined && INTEGER.test(source)) return BigInt(source);
  }
  return value;
}

/**
 * JSON.parse, except that integers beyond ±2^53 are bigints (exact). Costs a quick scan on top of
 * JSON.parse when `text` holds no such number.
 */
export function parseJsonExact(text: string): unknown {
  return mayHoldInexactNumber(text) ? parseJsonExactSlow(text) : JSON.parse(text);
}

/** parseJsonExact without the scan, for text `mayHoldInexactNumber` picked out. */
export function parseJsonExactSlow(text: string): unknown {
  return JSON.parse(text, exactIntegers as (key: string, value: unknown) => unknown);
}

/** `JSON.rawJSON` (Node 21+; not in the ES2024 typings): a value JSON.stringify writes verbatim. */
const rawJSON = (JSON as unknown as { rawJSON: (text: string) => unknown }).rawJSON;

/** JSON.stringify's replacer writing a bigint as the exact JSON number (JSON numbers have no size limit). */
export function bigintAsNumber(_key: string, value: unknown): unknown {
  return typeof value === 'bigint' ? rawJSON(value.toString()) : value;
}

/** JSON text of a value; a bigint is written as its exact digits, a number, not a string. */
export function stringifyJsonExact(value: unknown): string {
  return JSON.stringify(value, bigintAsNumber);
}
