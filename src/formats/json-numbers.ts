/**
 * JSON numbers read without a silent change: JSON.parse makes every number a double, which rounds
 * integers beyond ±2^53 (9007199254740993 → 9007199254740992) and turns 1e400 into Infinity.
 * These helpers keep such integers exact as bigint, using JSON.parse's own source text access
 * (the reviver's `context.source`), and only for text that may hold such a number, so that
 * ordinary input keeps the plain JSON.parse path.
 */

/** The reviver's third argument (JSON.parse source text access; not in the ES2024 typings). */
interface ReviverContext {
  source?: string;
}

/**
 * True when `text` may hold a number JSON.parse would change: a run of 16 digits (every integer
 * of 15 digits or fewer is exact) or an exponent of three digits. Strings that match only cost
 * the slower exact parse.
 */
const MAY_CHANGE = /\d{16}|[eE][+-]?\d{3}/;

const INTEGER = /^-?\d+$/;

/** A JSON number a double cannot hold at all (1e400, -1e400). */
export class NumberOutOfRangeError extends Error {
  readonly field: string;
  readonly source: string;

  constructor(field: string, source: string) {
    super(`field ${JSON.stringify(field)}: ${source} is beyond the range of a double (±1.8e308)`);
    this.field = field;
    this.source = source;
  }
}

/** The reviver: an integer beyond ±2^53 → its exact bigint. */
function exactIntegers(_key: string, value: unknown, context?: ReviverContext): unknown {
  if (typeof value === 'number' && !Number.isSafeInteger(value)) {
    const source = context?.source;
    if (source !== undefined && INTEGER.test(source)) return BigInt(source);
  }
  return value;
}

function exactIntegersFiniteNumbers(key: string, value: unknown, context?: ReviverContext): unknown {
  if (value === Infinity || value === -Infinity)
    throw new NumberOutOfRangeError(key, context?.source ?? String(value));
  return exactIntegers(key, value, context);
}

/**
 * JSON.parse, except that integers beyond ±2^53 are bigints (exact) and a number beyond the range
 * of a double throws a NumberOutOfRangeError (with `finite: true`) instead of becoming Infinity.
 * Costs a regular expression test on top of JSON.parse when `text` holds no such number.
 */
export function parseJsonExact(text: string, opts: { finite?: boolean } = {}): unknown {
  if (!MAY_CHANGE.test(text)) return JSON.parse(text);
  return JSON.parse(
    text,
    (opts.finite ? exactIntegersFiniteNumbers : exactIntegers) as (key: string, value: unknown) => unknown,
  );
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
