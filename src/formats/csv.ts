/**
 * CSV: config schemas shared by every CSV component, a streaming decoder with declared column
 * types, and an encoder that builds one string per batch.
 */
import { StringDecoder } from 'node:string_decoder';
import { z } from 'zod';
import { SluiceError } from '../sdk/errors.ts';
import type { RecordSchema, RecordValue, SourceBatch } from '../sdk/types.ts';
import { BatchBuilder, type DecodeOptions, decodeRejection, excerpt, untilAborted } from './batch.ts';
import { daysFromCivil, monthDays } from './calendar.ts';
import { type CsvProblem, CsvTokenizer } from './csv-tokenizer.ts';
import { JsonEncoder } from './jsonl.ts';

// ---------------------------------------------------------------- config

export const CSV_COLUMN_TYPES = [
  'string',
  'integer',
  'bigint',
  'double',
  'decimal',
  'boolean',
  'date',
  'timestamp',
  'json',
] as const;
export type CsvColumnType = (typeof CSV_COLUMN_TYPES)[number];

/**
 * The SQL type of each declared column's values: what a Parquet sink gives the column. `json`
 * columns hold any JSON value, so they are typed by their values.
 */
const CSV_SQL_TYPES: Record<CsvColumnType, string | undefined> = {
  string: 'VARCHAR',
  integer: 'BIGINT',
  bigint: 'BIGINT',
  double: 'DOUBLE',
  decimal: 'DOUBLE',
  boolean: 'BOOLEAN',
  date: 'DATE',
  timestamp: 'TIMESTAMP',
  json: undefined,
};

/** The schema of records decoded with `columns` declared, or undefined when none is. */
export function csvSchema(columns: Record<string, CsvColumnType> | undefined): RecordSchema | undefined {
  if (!columns) return undefined;
  const schema: Record<string, string> = {};
  for (const [name, type] of Object.entries(columns)) {
    const sql = CSV_SQL_TYPES[type];
    if (sql) schema[name] = sql;
  }
  return Object.keys(schema).length ? schema : undefined;
}

export const csvReadOptionsSchema = z
  .object({
    header: z
      .boolean()
      .default(true)
      .describe(
        'The first line holds the column names. When false, columns are named by `columns` or column0, column1, ...',
      ),
    delimiter: z
      .string()
      .length(1)
      .optional()
      .describe('Field delimiter, one character. Default "," (a tab for `.tsv` files).'),
    quote: z
      .string()
      .length(1)
      .default('"')
      .describe('Quote character around fields that hold delimiters, quotes or line breaks.'),
    escape: z
      .string()
      .length(1)
      .default('"')
      .describe(
        'Character that escapes a quote inside a quoted field; the default (the quote itself) reads `""` as `"`.',
      ),
    columns: z
      .record(z.string().min(1), z.enum(CSV_COLUMN_TYPES))
      .optional()
      .describe(
        'Declared column types, as a map of column name to type (string, integer, bigint, double, decimal, boolean, date, ' +
          'timestamp, json). With `header: true` it types the named columns and the others stay strings; with ' +
          '`header: false` it also names the columns, in order. A value that does not convert is rejected with its line. ' +
          'integer: a whole number within ±2^53; bigint: any 64-bit integer (a string beyond ±2^53); decimal: read as a ' +
          'double; date: YYYY-MM-DD; timestamp: ISO 8601, UTC unless it has an offset.',
      ),
    null_values: z
      .array(z.string())
      .default([''])
      .describe('Field values read as null (compared before any type conversion).'),
  })
  .strict()
  .describe('CSV reading options.');

export type CsvReadOptions = z.output<typeof csvReadOptionsSchema>;

export const csvWriteOptionsSchema = z
  .object({
    header: z.boolean().default(true).describe('Write the column names as the first line of every file.'),
    delimiter: z
      .string()
      .length(1)
      .optional()
      .describe('Field delimiter, one character. Default "," (a tab for a `.tsv` file).'),
  })
  .strict()
  .describe('CSV writing options.');

export type CsvWriteOptions = z.output<typeof csvWriteOptionsSchema>;

// ---------------------------------------------------------------- type conversion

/** Returned by a converter for a value it cannot convert. */
const BAD: unique symbol = Symbol('bad value');
type Converter = (text: string) => unknown;

const INT_RE = /^\s*[+-]?\d+\s*$/;
const FLOAT_RE = /^\s*[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?\s*$/;
const FLOAT_SPECIAL_RE = /^\s*([+-]?)(inf|infinity|nan)\s*$/i;
const DATE_RE = /^\s*(\d{4})-(\d{1,2})-(\d{1,2})\s*$/;
const TIMESTAMP_RE =
  /^\s*(\d{4})-(\d{1,2})-(\d{1,2})(?:[T ](\d{1,2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?)?\s*(Z|UTC|[+-]\d{2}(?::?\d{2})?)?\s*$/i;
const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;
const BOOLEANS = new Map<string, boolean>([
  ['true', true],
  ['t', true],
  ['yes', true],
  ['y', true],
  ['1', true],
  ['false', false],
  ['f', false],
  ['no', false],
  ['n', false],
  ['0', false],
]);

function toDouble(text: string): unknown {
  if (FLOAT_RE.test(text)) return Number(text);
  const special = FLOAT_SPECIAL_RE.exec(text);
  if (!special) return BAD;
  if (special[2]!.toLowerCase() === 'nan') return Number.NaN;
  return special[1] === '-' ? -Infinity : Infinity;
}

/** The value of the digits text[from, from + n), or -1 if any is not a digit. */
function digits(text: string, from: number, n: number): number {
  let v = 0;
  for (let i = from; i < from + n; i++) {
    const c = text.charCodeAt(i) - 48;
    if (c < 0 || c > 9) return -1;
    v = v * 10 + c;
  }
  return v;
}

/**
 * Fast path for the common shapes `YYYY-MM-DD`, `YYYY-MM-DD[T ]HH:MM:SS[.fff...][Z]`: epoch
 * milliseconds, or undefined to let the regular expression decide (other shapes, offsets, bad).
 */
function fastTimestamp(text: string, dateOnly: boolean): number | undefined {
  const n = text.length;
  if (n < 10 || text.charCodeAt(4) !== 45 || text.charCodeAt(7) !== 45) return undefined;
  const y = digits(text, 0, 4);
  const mo = digits(text, 5, 2);
  const d = digits(text, 8, 2);
  if (y < 0 || mo < 1 || mo > 12 || d < 1 || d > monthDays(y, mo)) return undefined;
  const day = daysFromCivil(y, mo, d) * 86_400_000;
  if (n === 10) return day;
  if (dateOnly || n < 19) return undefined;
  const sep = text.charCodeAt(10);
  if ((sep !== 84 && sep !== 32) || text.charCodeAt(13) !== 58 || text.charCodeAt(16) !== 58)
    return undefined;
  const h = digits(text, 11, 2);
  const mi = digits(text, 14, 2);
  const s = digits(text, 17, 2);
  if (h < 0 || h > 23 || mi < 0 || mi > 59 || s < 0 || s > 59) return undefined;
  let i = 19;
  let ms = 0;
  if (i < n && text.charCodeAt(i) === 46) {
    const start = ++i;
    while (i < n && text.charCodeAt(i) >= 48 && text.charCodeAt(i) <= 57) i++;
    const len = i - start;
    if (len === 0 || len > 9) return undefined;
    ms = digits(text, start, Math.min(3, len)) * (len === 1 ? 100 : len === 2 ? 10 : 1);
  }
  if (i < n && (text.charCodeAt(i) === 90 || text.charCodeAt(i) === 122)) i++;
  if (i !== n) return undefined;
  return day + h * 3_600_000 + mi * 60_000 + s * 1000 + ms;
}

function utcDate(y: number, mo: number, d: number, h = 0, mi = 0, s = 0, ms = 0): Date | typeof BAD {
  if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || s > 59) return BAD;
  const date = new Date(Date.UTC(y, mo - 1, d, h, mi, s, ms));
  // Date.UTC maps years 0-99 to 1900-1999.
  if (y < 100) date.setUTCFullYear(y);
  return date.getUTCDate() === d ? date : BAD; // 2024-02-30 rolls over to March: refuse it
}

const CONVERTERS: Record<CsvColumnType, Converter | undefined> = {
  string: undefined,
  integer(text) {
    if (!INT_RE.test(text)) return BAD;
    const n = Number(text);
    return Number.isSafeInteger(n) ? n : BAD;
  },
  bigint(text) {
    if (!INT_RE.test(text)) return BAD;
    const n = Number(text);
    if (Number.isSafeInteger(n)) return n;
    const big = BigInt(text.trim());
    return big < INT64_MIN || big > INT64_MAX ? BAD : big.toString();
  },
  double: toDouble,
  decimal: toDouble,
  boolean(text) {
    return BOOLEANS.get(text.trim().toLowerCase()) ?? BAD;
  },
  date(text) {
    const fast = fastTimestamp(text, true);
    if (fast !== undefined) return new Date(fast);
    const m = DATE_RE.exec(text);
    return m ? utcDate(Number(m[1]), Number(m[2]), Number(m[3])) : BAD;
  },
  timestamp(text) {
    const fast = fastTimestamp(text, false);
    if (fast !== undefined) return new Date(fast);
    const m = TIMESTAMP_RE.exec(text);
    if (!m) return BAD;
    const ms = m[7] ? Number(m[7].slice(0, 3).padEnd(3, '0')) : 0;
    const date = utcDate(
      Number(m[1]),
      Number(m[2]),
      Number(m[3]),
      Number(m[4] ?? 0),
      Number(m[5] ?? 0),
      Number(m[6] ?? 0),
      ms,
    );
    const zone = m[8]?.toUpperCase();
    if (date === BAD || !zone || zone === 'Z' || zone === 'UTC') return date;
    const sign = zone.startsWith('-') ? -1 : 1;
    const digits = zone.slice(1).replace(':', '');
    const offset = Number(digits.slice(0, 2)) * 60 + Number(digits.slice(2) || 0);
    return new Date(date.getTime() - sign * offset * 60_000);
  },
  json(text) {
    try {
      return JSON.parse(text);
    } catch {
      return BAD;
    }
  },
};

/** Converts one CSV field to a declared type; throws a SluiceError (SLUICE_DECODE) if it cannot. */
export function convertCsvValue(text: string, type: CsvColumnType): unknown {
  const convert = CONVERTERS[type];
  if (!convert) return text;
  const value = convert(text);
  if (value === BAD) throw new SluiceError('SLUICE_DECODE', `${JSON.stringify(text)} is not a valid ${type}`);
  return value;
}

// ---------------------------------------------------------------- decoding

export interface CsvDecodeOptions extends DecodeOptions {
  csv: CsvReadOptions;
  /** Used when `csv.delimiter` is not set (a tab for `.tsv`). Default ','. */
  defaultDelimiter?: string;
}

/**
 * Decodes CSV. Records are objects keyed by column name; an empty field (any of `null_values`)
 * is null. Malformed input (a bad quote, a wrong number of fields) and values that do not convert
 * to their declared type become SLUICE_DECODE rejections carrying the raw record text, its file
 * line and its data row number, and decoding carries on with the next line (see CsvTokenizer for
 * a bad record that runs over several lines). Positions: `{ partition, offset: the line the
 * record starts on }`.
 */
export async function* decodeCsv(
  chunks: AsyncIterable<Buffer | string>,
  opts: CsvDecodeOptions,
): AsyncGenerator<SourceBatch> {
  const { partition, csv } = opts;
  const tokenizer = new CsvTokenizer({
    delimiter: csv.delimiter ?? opts.defaultDelimiter ?? ',',
    quote: csv.quote,
    escape: csv.escape,
  });
  const batches = new BatchBuilder(opts.batchSize);
  const nullSet = new Set(csv.null_values);
  const onlyEmptyIsNull = csv.null_values.length === 1 && csv.null_values[0] === '';
  const declared = csv.columns ? Object.entries(csv.columns) : [];
  let names: string[] | undefined;
  let types: (CsvColumnType | undefined)[] = [];
  let converters: (Converter | undefined)[] = [];

  const setColumns = (columnNames: string[], line: number) => {
    names = columnNames;
    const byName = new Map(declared);
    if (csv.header) {
      const known = new Set(columnNames);
      const missing = declared.filter(([name]) => !known.has(name)).map(([name]) => name);
      if (missing.length)
        throw new SluiceError(
          'SLUICE_DECODE',
          `${partition}:${line}: csv.columns declares ${missing.map((m) => JSON.stringify(m)).join(', ')}, not in the header (${columnNames.join(', ')})`,
          { details: { file: partition, line, missing } },
        );
    }
    types = columnNames.map((name) => byName.get(name));
    converters = types.map((type) => (type ? CONVERTERS[type] : undefined));
  };

  /** Data rows read so far (bad ones included, the header and empty lines not). */
  let rows = 0;
  const handler = {
    row(fields: string[], line: number): CsvProblem | undefined {
      if (names === undefined) {
        if (csv.header) {
          setColumns(headerNames(fields), line);
          return undefined;
        }
        setColumns(
          declared.length ? declared.map(([name]) => name) : fields.map((_, i) => `column${i}`),
          line,
        );
      }
      const columns = names!;
      const n = fields.length;
      if (n !== columns.length)
        return {
          message: `expected ${columns.length} fields, found ${n}`,
          details: { expected_fields: columns.length, found_fields: n },
        };
      const value: RecordValue = {};
      for (let i = 0; i < n; i++) {
        const field = fields[i]!;
        if (onlyEmptyIsNull ? field === '' : nullSet.has(field)) {
          value[columns[i]!] = null;
          continue;
        }
        const convert = converters[i];
        if (convert === undefined) {
          value[columns[i]!] = field;
          continue;
        }
        const converted = convert(field);
        if (converted === BAD) {
          const column = columns[i]!;
          const type = types[i]!;
          return {
            message: `column "${column}" (field ${i + 1}): ${JSON.stringify(excerpt(field))} is not a valid ${type}`,
            details: { column, field: i + 1, value: field, expected: type },
          };
        }
        value[columns[i]!] = converted;
      }
      rows++;
      batches.add({ value, meta: { position: { partition, offset: line } } });
      return undefined;
    },
    bad(problem: CsvProblem, line: number, raw: string, resumeLine?: number): void {
      const row = names === undefined && csv.header ? 0 : ++rows;
      const where = row ? `${partition}:${line} (row ${row})` : `${partition}:${line} (header)`;
      const message = problem.details ? problem.message : `malformed CSV: ${problem.message}`;
      const resumed = resumeLine
        ? `; the record runs over several lines through a quoted field, so only line ${line} is rejected and reading resumes on line ${resumeLine}`
        : '';
      batches.reject(
        decodeRejection(`${where}: ${message}${resumed}`, partition, line, raw, {
          row,
          ...problem.details,
          ...(resumeLine ? { resumed_at_line: resumeLine } : {}),
        }),
      );
    },
  };

  const decoder = new StringDecoder('utf8');
  for await (const chunk of untilAborted(chunks, opts.signal)) {
    tokenizer.feed(typeof chunk === 'string' ? chunk : decoder.write(chunk), handler);
    if (batches.pending) yield* batches.take();
  }
  if (opts.signal?.aborted) return;
  tokenizer.feed(decoder.end(), handler);
  tokenizer.end(handler);
  yield* batches.end();
}

/** Header fields as column names: blanks become columnN, repeats get _1, _2, ... (as DuckDB does). */
export function headerNames(fields: string[]): string[] {
  const seen = new Set<string>();
  return fields.map((field, i) => {
    let name = field.trim() === '' ? `column${i}` : field;
    if (seen.has(name)) {
      let k = 1;
      while (seen.has(`${name}_${k}`)) k++;
      name = `${name}_${k}`;
    }
    seen.add(name);
    return name;
  });
}

// ---------------------------------------------------------------- encoding

/**
 * Encodes records as CSV lines. The first record fixes the columns (its keys, in order); a later
 * record with a field outside them is rejected (SLUICE_SINK_REJECTED), a missing field is empty.
 * null → empty field, "" → `""`, Date → ISO 8601, object/array → JSON text, bigint → digits.
 */
export class CsvEncoder {
  readonly #delimiter: string;
  readonly #header: boolean;
  readonly #needsQuote: RegExp;
  readonly #json = new JsonEncoder();
  #columns: string[] | undefined;
  #columnSet: Set<string> | undefined;
  #headerTaken = false;

  constructor(opts: { header: boolean; delimiter?: string | undefined }) {
    const delimiter = opts.delimiter ?? ',';
    this.#delimiter = delimiter;
    this.#header = opts.header;
    this.#needsQuote = new RegExp(`[${delimiter.replace(/[\\\]^-]/g, '\\$&')}"\\r\\n]`);
  }

  get columns(): readonly string[] | undefined {
    return this.#columns;
  }

  /** The header line (without line break), once, after the first record fixed the columns. */
  takeHeader(): string | undefined {
    if (!this.#header || this.#headerTaken || !this.#columns) return undefined;
    this.#headerTaken = true;
    return this.#columns.map((c) => this.#text(c)).join(this.#delimiter);
  }

  /** One CSV line (without line break); throws a SLUICE_SINK_REJECTED SluiceError. */
  encode(value: RecordValue): string {
    let columns = this.#columns;
    if (!columns) {
      columns = Object.keys(value);
      this.#columns = columns;
      this.#columnSet = new Set(columns);
    }
    let present = 0;
    let line = '';
    for (let i = 0; i < columns.length; i++) {
      const column = columns[i]!;
      const v = value[column];
      if (v !== undefined) present++;
      if (i > 0) line += this.#delimiter;
      if (v !== null && v !== undefined) line += this.#field(v, column);
    }
    let total = 0;
    for (const key in value) if (value[key] !== undefined) total++;
    if (total > present) {
      const extra = Object.keys(value).filter((k) => value[k] !== undefined && !this.#columnSet!.has(k));
      throw new SluiceError(
        'SLUICE_SINK_REJECTED',
        `the record has field(s) ${extra.map((e) => JSON.stringify(e)).join(', ')} not in the CSV columns (${columns.join(', ')})`,
        { details: { fields: extra } },
      );
    }
    return line;
  }

  #text(s: string): string {
    if (s === '') return '""';
    return this.#needsQuote.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
  }

  #field(v: unknown, column: string): string {
    switch (typeof v) {
      case 'string':
        return this.#text(v);
      case 'number':
        return String(v);
      case 'boolean':
        return v ? 'true' : 'false';
      case 'bigint':
        return v.toString();
      case 'object': {
        if (v instanceof Date) {
          if (Number.isNaN(v.getTime()))
            throw new SluiceError('SLUICE_SINK_REJECTED', `field "${column}" holds an invalid Date`);
          return v.toISOString();
        }
        return this.#text(this.#json.encode(v as RecordValue));
      }
      default:
        throw new SluiceError(
          'SLUICE_SINK_REJECTED',
          `field "${column}" holds a ${typeof v}, which CSV cannot hold`,
        );
    }
  }
}
