/**
 * Date and time functions of per-record SQL. Values are epoch microseconds (runtime-temporal.ts);
 * argument types are checked here, at code-generation time.
 */
import type { CallImpl, Gen, Val } from '../codegen.ts';
import type { Node } from '../ir.ts';
import * as R from '../runtime.ts';
import { isInt, isTemporal, type SqlType, T } from '../types.ts';

type Call = Extract<Node, { k: 'call' }>;

/** A timestamp-like argument: DATE, TIMESTAMP, TIMESTAMPTZ, or a string constant cast to TIMESTAMP. */
export function temporalArg(
  g: Gen,
  name: string,
  args: Val[],
  i: number,
  node: Node,
  part?: string | null,
): Val {
  const a = args[i]!;
  if (g.isNull(a) || isTemporal(a.type)) return a;
  // a TIME has the time of day's parts (microseconds since midnight, as a timestamp on 1970-01-01)
  if (a.type.id === 'TIME' && part && TIME_PARTS.has(part)) return a;
  if (a.lit && a.type.id === 'VARCHAR') return g.cast(a, T.TIMESTAMP, false, node);
  if (a.type.id === 'TIME' || a.type.id === 'INTERVAL') throw g.beyond(`${name}() of a ${a.type.id}`, node);
  throw g.mismatch(name, args, node);
}

/** Parts DuckDB's struct form of date_part does not take for a DATE (the scalar form gives 0). */
const DATE_UNRECOGNIZED = new Set([
  'hour',
  'minute',
  'second',
  'millisecond',
  'microsecond',
  'timezone',
  'timezone_hour',
  'timezone_minute',
]);

const TIME_PARTS = new Set(['hour', 'minute', 'second', 'millisecond', 'microsecond', 'epoch']);

/** The canonical part named by a constant (bind.ts sends a part that varies to DuckDB). */
function constPart(g: Gen, v: Val, name: string, args: Val[], node: Call): string | null {
  const p = g.convert(v, T.VARCHAR, node, () => g.mismatch(name, args, node).message);
  const spec = g.constString(p);
  if (spec === undefined) throw g.error('the date part must be a constant string in per-record SQL', node);
  if (spec === null) return null;
  const part = R.datePart(spec);
  if (!part) throw g.error(`extract specifier "${spec}" not recognized`, node);
  return part;
}

function datePart(g: Gen, args: Val[], node: Call): Val {
  const list = node.args[0]!;
  if (list.k === 'call' && list.fn === 'list_value') {
    const ts = temporalArg(g, 'date_part', args, 1, node);
    // date_part(['year', 'month'], ts): a struct of the parts, named as given
    const names: string[] = [];
    const fields: [string, ReturnType<typeof partType>][] = [];
    const parts: string[] = [];
    // DuckDB's binder refuses these
    if (!list.args.length) throw g.error('date_part requires non-empty lists of part names', node);
    for (const a of list.args) {
      if (a.k !== 'const' || typeof a.value !== 'string')
        throw g.error('date_part takes a list of constant part names', node);
      if (names.some((n) => n.toLowerCase() === String(a.value).toLowerCase()))
        throw g.error(`Duplicate struct entry name "${a.value}" in date_part`, node);
      const part = R.datePart(a.value);
      if (!part) throw g.error(`extract specifier "${a.value}" not recognized`, node);
      if (ts.type.id === 'DATE' && DATE_UNRECOGNIZED.has(part))
        throw g.error(`"DATE" units "${a.value}" not recognized`, node);
      names.push(a.value);
      parts.push(part);
      fields.push([a.value, partType(part)]);
    }
    const body = parts.map(
      (p, i) => `${JSON.stringify(names[i])}: extractPart(${JSON.stringify(p)}, ${ts.code})`,
    );
    return g.op([ts], { id: 'STRUCT', fields }, `({${body.join(', ')}})`);
  }
  const part = constPart(g, args[0]!, 'date_part', args, node);
  const ts = temporalArg(g, 'date_part', args, 1, node, part);
  if (part === null) return g.nullOf(T.BIGINT);
  return g.op([ts], partType(part), `extractPart(${JSON.stringify(part)}, ${ts.code})`, { nullable: true });
}

function partType(part: string) {
  return R.partIsDouble(part) ? T.DOUBLE : T.BIGINT;
}

function dateTrunc(g: Gen, args: Val[], node: Call): Val {
  const ts = temporalArg(g, 'date_trunc', args, 1, node);
  const type = ts.type.id === 'TIMESTAMPTZ' ? T.TIMESTAMPTZ : T.TIMESTAMP;
  const part = constPart(g, args[0]!, 'date_trunc', args, node);
  if (part === null) return g.nullOf(type);
  if (!R.truncPartValid(part)) {
    const spec = String(g.constString(args[0]!));
    throw g.error(`Unsupported "${spec}" for date_trunc`, node);
  }
  return g.op([ts], type, `dateTrunc(${JSON.stringify(part)}, ${ts.code})`);
}

function strftime(g: Gen, args: Val[], node: Call): Val {
  // strftime(ts, format) and strftime(format, ts) are both accepted, as in DuckDB
  const swapped = args[0]!.type.id === 'VARCHAR' && (isTemporal(args[1]!.type) || g.isNull(args[1]!));
  const order = swapped ? [args[1]!, args[0]!] : [args[0]!, args[1]!];
  const ts = temporalArg(g, 'strftime', order, 0, node);
  const f = g.convert(order[1]!, T.VARCHAR, node, () => g.mismatch('strftime', args, node).message);
  const format = g.constString(f);
  if (format === undefined) throw g.error('strftime format must be a constant', node);
  if (format === null) return g.nullOf(T.VARCHAR);
  let parts: ReturnType<typeof R.parseStrftime>;
  try {
    parts = R.parseStrftime(format);
  } catch (err) {
    // DuckDB's binder refuses it, also over a table of NULLs (only an untyped NULL folds first)
    throw g.error((err as Error).message, node);
  }
  return g.op([ts], T.VARCHAR, `strftime(${g.k(parts)}, ${ts.code})`);
}

/** year(ts), month(ts), ...: date_part with the part in the name. */
function partFn(name: string, part: string): CallImpl {
  return (g, args, node) => {
    const ts = temporalArg(g, name, args, 0, node, part);
    return g.op([ts], partType(part), `extractPart(${JSON.stringify(part)}, ${ts.code})`, { nullable: true });
  };
}

const PART_FUNCTIONS: Record<string, string> = {
  year: 'year',
  month: 'month',
  day: 'day',
  hour: 'hour',
  minute: 'minute',
  second: 'second',
  millisecond: 'millisecond',
  microsecond: 'microsecond',
  week: 'week',
  quarter: 'quarter',
  dayofweek: 'dow',
  isodow: 'isodow',
  dayofyear: 'doy',
  dayofmonth: 'day',
  yearweek: 'yearweek',
  isoyear: 'isoyear',
  decade: 'decade',
  century: 'century',
  millennium: 'millennium',
  era: 'era',
  epoch: 'epoch',
  julian: 'julian',
};

/** to_days(n), to_hours(n), ...: an interval of n units; `scale` is [months, days, µs] per unit. */
function builder(name: string, scale: [number, number, number], arg: SqlType, limit: number): CallImpl {
  return (g, args, node) => {
    const [n] = g.params(name, args, [arg], node) as [Val];
    const xs = JSON.stringify(node.text);
    const v = arg.id === 'DOUBLE' ? `roundAway(${n.code} * ${scale[2]})` : n.code;
    const unit = name.slice(3);
    return g.op(
      [n],
      T.INTERVAL,
      `interval(${v} * ${scale[0]}, ${v} * ${scale[1]}, ${arg.id === 'DOUBLE' ? v : `${v} * ${scale[2]}`})`,
      {
        check: () =>
          `if (Math.abs(${n.code} * ${Math.max(...scale)}) > ${limit}) evalError(\`Interval value \${${n.code}} ${unit} out of range\`, ${xs}, ${n.code});`,
      },
    );
  };
}

const MONTHS_LIMIT = 2147483647;
const MICROS_LIMIT = 2 ** 63;

/** epoch_ms(ts) is milliseconds since the epoch; epoch_ms(n) the timestamp n ms after it. */
function epochMs(g: Gen, args: Val[], node: Call): Val {
  const a = args[0]!;
  if (isInt(a.type)) return g.op([a], T.TIMESTAMP, `${a.code} * 1000`);
  const ts = temporalArg(g, 'epoch_ms', args, 0, node);
  return g.op([ts], T.BIGINT, `Math.floor(${ts.code} / 1000)`);
}

function makeDate(g: Gen, args: Val[], node: Call): Val {
  if (args.length === 1) {
    // make_date(days since 1970-01-01)
    const [n] = args as [Val];
    if (!isInt(n.type) && !g.isNull(n)) throw g.beyond('make_date() of a struct', node);
    return g.op([n], T.DATE, `${n.code} * ${R.US_PER_DAY}`);
  }
  if (args.length !== 3) throw g.mismatch('make_date', args, node);
  const [y, m, d] = g.params('make_date', args, [T.BIGINT, T.BIGINT, T.BIGINT], node) as [Val, Val, Val];
  return g.op([y, m, d], T.DATE, `makeDate(${y.code}, ${m.code}, ${d.code}, ${JSON.stringify(node.text)})`);
}

function dateDiff(g: Gen, args: Val[], node: Call): Val {
  const part = constPart(g, args[0]!, 'date_diff', args, node);
  const a = temporalArg(g, 'date_diff', args, 1, node);
  const b = temporalArg(g, 'date_diff', args, 2, node);
  if (part === null) return g.nullOf(T.BIGINT);
  if (!R.diffPartValid(part)) throw g.error('Specifier type not implemented for DATEDIFF', node);
  return g.op(
    [a, b],
    T.BIGINT,
    `exactInt(dateDiff(${JSON.stringify(part)}, ${a.code}, ${b.code}), ${JSON.stringify(node.text)})`,
    {
      nullable: true,
    },
  );
}

/** strptime(text, format) with a constant format; `tryParse`: NULL instead of an error. */
function strptime(tryParse: boolean): CallImpl {
  const name = tryParse ? 'try_strptime' : 'strptime';
  return (g, args, node) => {
    if (args[1]!.type.id === 'LIST') throw g.beyond(`${name}() with a list of formats`, node);
    const [s, f] = g.params(name, args, [T.VARCHAR, T.VARCHAR], node) as [Val, Val];
    const format = g.constString(f);
    if (format === undefined) throw g.beyond(`${name}() with a format that is not a constant string`, node);
    if (format === null) return g.nullOf(T.TIMESTAMP);
    let parsed: R.StrpFormat | undefined;
    try {
      parsed = R.parseStrptime(format);
    } catch (err) {
      throw g.error((err as Error).message, node);
    }
    if (!parsed) throw g.beyond(`${name}() with the format ${JSON.stringify(format)}`, node);
    const k = g.k(parsed);
    if (tryParse)
      return g.op([s], T.TIMESTAMP, `(strptime(${s.code}, ${k}, true) ?? null)`, { nullable: true });
    return g.op(
      [s],
      T.TIMESTAMP,
      `strptimeOrFail(${s.code}, ${k}, ${JSON.stringify(format)}, ${JSON.stringify(node.text)})`,
    );
  };
}

function makeTime(g: Gen, args: Val[], node: Call): Val {
  const [h, m, sec] = g.params('make_time', args, [T.BIGINT, T.BIGINT, T.DOUBLE], node) as [Val, Val, Val];
  return g.op(
    [h, m, sec],
    T.TIME,
    `makeTime(${h.code}, ${m.code}, ${sec.code}, ${JSON.stringify(node.text)})`,
  );
}

function makeTimestamp(g: Gen, args: Val[], node: Call): Val {
  const xs = JSON.stringify(node.text);
  if (args.length === 1) {
    const [us] = g.params('make_timestamp', args, [T.BIGINT], node) as [Val];
    return g.op([us], T.TIMESTAMP, us.code);
  }
  if (args.length !== 6) throw g.mismatch('make_timestamp', args, node);
  const types = [T.BIGINT, T.BIGINT, T.BIGINT, T.BIGINT, T.BIGINT, T.DOUBLE];
  const v = g.params('make_timestamp', args, types, node);
  return g.op(v, T.TIMESTAMP, `makeTimestamp(${v.map((a) => a.code).join(', ')}, ${xs})`);
}

export const TEMPORAL_CALLS: Record<string, CallImpl> = {
  make_time: makeTime,
  make_timestamp: makeTimestamp,
  strptime: strptime(false),
  try_strptime: strptime(true),
  date_diff: dateDiff,
  ...Object.fromEntries(Object.entries(PART_FUNCTIONS).map(([n, p]) => [n, partFn(n, p)])),
  epoch_ms: epochMs,
  epoch_us: (g, args, node) => {
    const ts = temporalArg(g, 'epoch_us', args, 0, node);
    return g.op([ts], T.BIGINT, `exactInt(${ts.code}, ${JSON.stringify(node.text)})`, { nullable: true });
  },
  dayname: (g, args, node) => {
    const ts = temporalArg(g, 'dayname', args, 0, node);
    return g.op([ts], T.VARCHAR, `dayName(${ts.code})`, { nullable: true });
  },
  monthname: (g, args, node) => {
    const ts = temporalArg(g, 'monthname', args, 0, node);
    return g.op([ts], T.VARCHAR, `monthName(${ts.code})`, { nullable: true });
  },
  last_day: (g, args, node) => {
    const ts = temporalArg(g, 'last_day', args, 0, node);
    return g.op([ts], T.DATE, `lastDay(${ts.code})`, { nullable: true });
  },
  make_date: makeDate,
  to_millennia: builder('to_millennia', [12000, 0, 0], T.BIGINT, MONTHS_LIMIT),
  to_centuries: builder('to_centuries', [1200, 0, 0], T.BIGINT, MONTHS_LIMIT),
  to_decades: builder('to_decades', [120, 0, 0], T.BIGINT, MONTHS_LIMIT),
  to_years: builder('to_years', [12, 0, 0], T.BIGINT, MONTHS_LIMIT),
  to_months: builder('to_months', [1, 0, 0], T.BIGINT, MONTHS_LIMIT),
  to_weeks: builder('to_weeks', [0, 7, 0], T.BIGINT, MONTHS_LIMIT),
  to_days: builder('to_days', [0, 1, 0], T.BIGINT, MONTHS_LIMIT),
  to_hours: builder('to_hours', [0, 0, 3600000000], T.BIGINT, MICROS_LIMIT),
  to_minutes: builder('to_minutes', [0, 0, 60000000], T.BIGINT, MICROS_LIMIT),
  to_seconds: builder('to_seconds', [0, 0, 1000000], T.DOUBLE, MICROS_LIMIT),
  to_milliseconds: builder('to_milliseconds', [0, 0, 1000], T.DOUBLE, MICROS_LIMIT),
  to_microseconds: builder('to_microseconds', [0, 0, 1], T.BIGINT, MICROS_LIMIT),
  now: (g) => g.op([], T.TIMESTAMPTZ, 'Date.now() * 1000'),
  today: (g) => g.op([], T.DATE, 'floorDay(Date.now() * 1000)'),
  date_trunc: dateTrunc,
  date_part: datePart,
  strftime,
};
