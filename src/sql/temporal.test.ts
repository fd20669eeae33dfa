/**
 * Dates, timestamps, times and intervals: the compiled path against DuckDB itself, and the
 * constructs it leaves to DuckDB (planned as `duckdb-batch`, where DuckDB gives its answer).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { SluiceError } from '../sdk/errors.ts';
import type { RecordValue, SluiceRecord } from '../sdk/types.ts';
import { BatchQuery } from './batch.ts';
import { compileSelect, planQuery } from './index.ts';
import { compare, oracle } from './oracle.ts';

const ROWS: RecordValue[] = [
  {
    ts: new Date('2024-05-17T13:14:15.500Z'),
    old: new Date('1969-12-31T23:59:59.999Z'),
    s: '2024-01-01 12:00:00.123456',
    s2: '2024-01-01 12:00:00.123457',
    d: '1992/09/20',
    bc: '1001-01-01 (BC) 01:03:20',
    n: 3,
    x: 1.0000005,
  },
  {
    ts: new Date('1999-12-31T23:59:59.000Z'),
    old: new Date('0044-03-15T10:00:00.000Z'),
    s: ' infinity ',
    s2: '-infinity',
    d: '0000-01-01 (BC)',
    bc: '2024-01-01T08:00:00+02:00',
    n: -40,
    x: -2.5,
  },
  { ts: null, old: null, s: null, s2: null, d: null, bc: null, n: null, x: null },
];

/** Each is compared with DuckDB over every row: same value, or both failing. */
const AGREE = [
  // microseconds: kept, compared, printed
  'CAST(s AS TIMESTAMP)',
  'CAST(CAST(s AS TIMESTAMP) AS VARCHAR)',
  'CAST(s AS TIMESTAMP) = CAST(s2 AS TIMESTAMP)',
  'CAST(s AS TIMESTAMP) < CAST(s2 AS TIMESTAMP)',
  "strftime(CAST(s AS TIMESTAMP), '%f %g %n')",
  "date_part('microsecond', CAST(s AS TIMESTAMP))",
  'extract(epoch FROM CAST(s AS TIMESTAMP))',
  "CAST(s AS TIMESTAMP) > TIMESTAMP '2024-01-01 12:00:00.123455'",
  'old',
  'CAST(old AS VARCHAR)',
  "TIMESTAMP '1969-12-31 23:59:59.999999'",
  // infinity, other separators, BC
  'CAST(s AS DATE)',
  'CAST(CAST(s AS DATE) AS VARCHAR)',
  'CAST(CAST(s2 AS TIMESTAMP) AS VARCHAR)',
  "CAST('infinity' AS DATE) > DATE '2024-01-01'",
  "CAST(CAST('-infinity' AS TIMESTAMP) AS VARCHAR)",
  "CAST('epoch' AS DATE)",
  'CAST(d AS DATE)',
  'TRY_CAST(d AS DATE)',
  "CAST('1992 09 20' AS DATE)",
  "CAST('1992-09-20 XYZ' AS DATE)",
  "TRY_CAST('19920920' AS DATE)",
  'CAST(bc AS TIMESTAMP)',
  'CAST(CAST(bc AS TIMESTAMP) AS VARCHAR)',
  "CAST(DATE '0044-03-15 (BC)' AS VARCHAR)",
  "TRY_CAST('0000-01-01 (BC)' AS DATE)",
  "TRY_CAST('2024-01-01 12:00:00 +05:30' AS TIMESTAMP)",
  "TRY_CAST('2024-01-01 12:00:00 UTC' AS TIMESTAMP)",
  "TRY_CAST('2024-01-01 24:00:00' AS TIMESTAMP)",
  "strftime(DATE '-99999-01-01', '%y')",
  // a year before 1: DuckDB writes %Y unpadded after the sign, and %G as the year's unsigned 32-bit value's last four digits
  "strftime(DATE '-0001-06-15', '%Y %G %V %x %c')",
  "strftime(DATE '0000-01-01', '%G %Y')",
  "strftime(DATE '-0100-06-15', '%G %Y')",
  "strftime(DATE '-7297-06-15', '%G')",
  "strftime(DATE '12345-06-15', '%G %Y')",
  "strftime(TIMESTAMP '-0010-01-01 01:02:03', '%G %Y %c')",
  "strftime(DATE '-99999-01-01', '%Y %c')",
  "strftime(old, '%Y-%m-%d %H:%M:%S %y %j %G %V')",
  // parts and truncation
  "date_part(['year', 'month', 'epoch'], ts)",
  "date_part(['epoch', 'julian', 'era', 'second'], ts)",
  "date_part(['epoch', 'julian', 'era'], CAST(ts AS DATE))",
  "date_trunc('dow', ts)",
  "date_trunc('isodow', ts)",
  "date_trunc('doy', ts)",
  "date_trunc('julian', ts)",
  "date_trunc('century', old)",
  "date_trunc('millennium', old)",
  "date_trunc('decade', CAST(bc AS TIMESTAMP))",
  "date_trunc('century', CAST(bc AS TIMESTAMP))",
  "date_part(['century', 'millennium', 'decade', 'year', 'isoyear', 'week'], CAST(bc AS TIMESTAMP))",
  "strftime(CAST(bc AS TIMESTAMP), '%Y %y %V %j %c')",
  "date_trunc('millisecond', CAST(s AS TIMESTAMP))",
  "date_part('julian', ts)",
  "date_part('century', old)",
  'year(ts)',
  'month(ts)',
  'day(old)',
  'hour(ts)',
  'minute(ts)',
  'second(ts)',
  'millisecond(ts)',
  'microsecond(CAST(s AS TIMESTAMP))',
  'week(ts)',
  'quarter(ts)',
  'dayofweek(ts)',
  'isodow(ts)',
  'dayofyear(ts)',
  'yearweek(old)',
  'isoyear(old)',
  'decade(old)',
  'era(old)',
  'epoch(ts)',
  'epoch_ms(ts)',
  'epoch_us(ts)',
  'epoch_ms(n)',
  'dayname(ts)',
  'monthname(old)',
  'last_day(ts)',
  'make_date(2024, 2, 29)',
  'make_date(2023, 2, 29)',
  // intervals
  "ts - TIMESTAMP '2023-01-01 00:00:00.5'",
  "TIMESTAMP '2023-01-01' - ts",
  "CAST(ts - TIMESTAMP '2023-01-01' AS VARCHAR)",
  'ts + to_days(n)',
  'ts - to_months(n)',
  "DATE '2024-01-31' + INTERVAL '1 month'",
  "TIMESTAMP '2024-03-31 10:00' - INTERVAL '1 month'",
  "ts + INTERVAL '1 year 2 months 3 days 04:05:06.5'",
  "INTERVAL '1 year 2 months 3 days 04:05:06.5'",
  "-INTERVAL '1 day 2 hours'",
  "INTERVAL '30 days' = INTERVAL '1 month'",
  "INTERVAL '1 day' < INTERVAL '24 hours'",
  "INTERVAL '25 hours' > INTERVAL '1 day'",
  "INTERVAL '1 day' + INTERVAL '3 hours'",
  "INTERVAL '1 day' * 0.5::DOUBLE",
  "1.5 * INTERVAL '1 month 1 day 1 hour'",
  "INTERVAL '1 month' * x",
  'to_days(n) * 2',
  "n * INTERVAL '1 year 3 days 00:00:01'",
  'make_date(19000)',
  "ts - ts = INTERVAL '0 seconds'",
  'to_years(n)',
  'to_weeks(n)',
  'to_hours(n)',
  'to_minutes(n)',
  'to_seconds(x)',
  'to_milliseconds(x)',
  'to_microseconds(n)',
  'to_decades(n)',
  'to_days(3000000000)',
  'to_hours(9223372036854)',
  // date_diff
  "date_diff('month', DATE '2024-01-31', ts)",
  "datediff('hour', TIMESTAMP '1969-12-31 23:30:00', TIMESTAMP '1970-01-01 00:10:00')",
  "date_diff('week', ts, DATE '2020-01-01')",
  "date_diff('quarter', old, ts)",
  "date_diff('decade', DATE '0011-01-01 (BC)', ts)",
  "date_diff('millisecond', old, ts)",
  "date_diff('isoyear', old, ts)",
  "date_diff('doy', old, ts)",
  "date_diff('day', CAST('infinity' AS DATE), ts)",
  "date_diff('second', CAST(s AS TIMESTAMP), CAST(s2 AS TIMESTAMP))",
  // strptime
  "strptime('2024-05-17 13:14:15.123456', '%Y-%m-%d %H:%M:%S.%f')",
  "strptime('  17/05/24 1:02 PM ', '%d/%m/%y %I:%M %p')",
  "try_strptime('17 May 2024', '%d %B %Y')",
  "try_strptime('Fri, 17 may 2024', '%a, %d %b %Y')",
  "try_strptime('2024-02-30', '%Y-%m-%d')",
  "try_strptime('2024-2-3', '%Y-%m-%d')",
  "try_strptime('20240203', '%Y%m%d')",
  "try_strptime('infinity', '%Y-%m-%d')",
  "CAST(strptime('-infinity', '%Y-%m-%d') AS VARCHAR)",
  "CAST(strptime('epoch', '%Y-%m-%d') AS VARCHAR)",
  "try_strptime(s, '%Y-%m-%d')",
  "try_strptime('2024  05', '%Y %m')",
  "try_strptime('2024-05-17', '%Y-%m-%d %H')",
  "try_strptime('12:00:00.5 AM', '%H:%M:%S.%g %p')",
  "try_strptime(s, '%Y-%m-%d %H:%M:%S.%f')",
  "strptime(s, '%Y-%m-%d')",
  "strptime(d, '%Y/%m/%d')",
  // far from 1970: DuckDB's whole calendar
  "datediff('week', DATE '-5877641-06-25', DATE '5881580-07-10')",
  "datediff('day', DATE '-5877641-06-25', DATE '5881580-07-10')",
  "datediff('microsecond', DATE '-290000-01-01', DATE '290000-01-01')",
  "CAST(DATE '5881580-07-10' AS VARCHAR)",
  "CAST(TIMESTAMP '-99999-01-10 23:59:59.999' AS VARCHAR)",
  "CAST(TIMESTAMP '294247-01-10 04:00:54' AS VARCHAR)",
  "year(DATE '5881580-07-10')",
  // make_time, make_timestamp
  'make_time(12, 34, 56.5)',
  'make_time(24, 0, 0)',
  'make_time(23, 59, 59.9999996)',
  'make_time(12, 60, 0)',
  'make_time(n, 0, x)',
  'make_timestamp(2024, 2, 29, 12, 34, 56.123456)',
  'make_timestamp(2023, 2, 29, 12, 34, 56)',
  'make_timestamp(1704067200123456)',
  'make_timestamp(n, 1, 1, 0, 0, 0)',
  'make_timestamp(2024, 1, 1, 25, 0, 0)',
  // times
  "date_part('hour', TIME '12:34:56.5')",
  "date_part('epoch', TIME '12:34:56.5')",
  "second(TIME '12:34:56.5')",
  "microsecond(TIME '12:34:56.5')",
  "TIME '12:34:56.5'",
  "TIME '12:00' + INTERVAL '13 hours'",
  "DATE '2024-01-01' + TIME '10:00'",
  "TIME '10:00' < TIME '9:00'",
  "CAST(TIME '01:02:03' AS VARCHAR)",
];

describe('dates, timestamps, times and intervals agree with DuckDB', () => {
  for (const e of AGREE) {
    test(e, async () => {
      const sql = `SELECT ${e} AS v FROM input`;
      assert.equal((await planQuery(sql)).path, 'compiled', 'planned on the compiled path');
      for (const row of ROWS) {
        const diff = await compare(sql, row);
        assert.equal(diff, undefined, `${diff} for ${JSON.stringify(row)}`);
      }
    });
  }
});

function records(values: RecordValue[]): SluiceRecord[] {
  return values.map((value) => ({ value, meta: {} }) as SluiceRecord);
}

/** Outside the compiled subset: planned on DuckDB, which then gives its own answer. */
const FALLBACK = [
  "date_part(p, TIMESTAMP '2024-05-17 13:14:15')",
  "date_trunc(p, TIMESTAMP '2024-05-17 13:14:15')",
  "date_diff(p, TIMESTAMP '2024-05-17 13:14:15', ts)",
  "strptime('2024', '%G')",
  "try_strptime(s, ['%Y', '%d'])",
  "TRY_CAST('99999-01-10 04:00:54.123456' AS TIMESTAMP)",
  'typeof(CURRENT_TIME)',
  'typeof(localtime)',
  'CAST(ts AS TIME)',
  'CAST(s AS INTERVAL)',
  "INTERVAL '2 days ago'",
];

describe('temporal constructs outside the compiled subset run on DuckDB', () => {
  for (const e of FALLBACK) {
    test(e, async () => {
      const sql = `SELECT ${e} AS v FROM input`;
      const plan = await planQuery(sql);
      assert.equal(plan.path, 'duckdb-batch', plan.reason);
      const row = { p: 'month', ts: new Date('2024-05-17T13:14:15.500Z'), s: '3 days' };
      const batch = await BatchQuery.open(sql);
      try {
        const out = await batch.process(records([row]));
        const theirs = await oracle(sql, row);
        assert.ok(theirs.ok);
        assert.deepEqual(
          out.records.map((r) => r.value),
          theirs.rows,
        );
      } finally {
        await batch.close();
      }
    });
  }
});

describe('SQL DuckDB refuses is refused at validation', () => {
  for (const e of [
    "try_strptime(NULL, '')",
    "strptime(s, '')",
    "date_diff('era', ts, ts)",
    "date_part(['year', 'second'], CAST(ts AS DATE))",
  ]) {
    test(e, async () => {
      const sql = `SELECT ${e} AS v FROM input`;
      const theirs = await oracle(sql, ROWS[0]!, 'table');
      assert.ok(!theirs.ok, 'DuckDB refuses it');
      await assert.rejects(
        planQuery(sql),
        (err: unknown) => err instanceof SluiceError && err.code === 'SLUICE_EXPR_INVALID',
      );
    });
  }

  test('a strptime format that is not a constant', async () => {
    const sql = 'SELECT try_strptime(s, f) AS v FROM input';
    const theirs = await oracle(sql, { s: '2024', f: '%Y' }, 'table');
    assert.ok(!theirs.ok && /strptime format must be a constant/.test(theirs.error), 'DuckDB refuses it');
    await assert.rejects(planQuery(sql), /strptime format must be a constant/);
  });

  test('a strftime format that is not a constant', async () => {
    const sql = 'SELECT strftime(ts, f) AS v FROM input';
    const theirs = await oracle(sql, { ts: new Date(0), f: '%Y' });
    assert.ok(!theirs.ok && /strftime format must be a constant/.test(theirs.error), 'DuckDB refuses it');
    await assert.rejects(
      planQuery(sql),
      (err: unknown) =>
        err instanceof SluiceError &&
        err.code === 'SLUICE_EXPR_INVALID' &&
        /strftime format must be a constant/.test(err.message),
    );
  });
});

describe('whole queries agree with DuckDB', () => {
  const QUERIES = [
    // a table alias is case-insensitive, as DuckDB's names are
    `SELECT * FROM input AS "t1" WHERE date_trunc('DAY', T1.ts) < '2020-02-17T23:59:59.999Z'::TIMESTAMP`,
    'SELECT T.ts, year(t.ts) FROM input AS t',
  ];
  for (const sql of QUERIES) {
    test(sql, async () => {
      for (const row of ROWS) {
        const diff = await compare(sql, row);
        assert.equal(diff, undefined, `${diff} for ${JSON.stringify(row)}`);
      }
    });
  }
});

describe('record values are the same on the compiled and the DuckDB path', () => {
  const SQL = [
    "SELECT ts - TIMESTAMP '2023-01-01 00:00:00.5' AS iv, TIME '12:34:56.5' AS t, CAST(ts AS DATE) AS d, ts, old FROM input",
    "SELECT -to_days(n) AS iv, CAST(s AS TIMESTAMP) AS s, date_part(['year', 'epoch'], ts) AS p FROM input",
  ];
  for (const sql of SQL) {
    test(sql, async () => {
      const compiled = await compileSelect(sql);
      const batch = await BatchQuery.open(sql);
      try {
        const rows = [ROWS[0]!, ROWS[2]!];
        const out = await batch.process(records(rows));
        assert.deepEqual(
          rows.map((r) => compiled(r)),
          out.records.map((r) => r.value),
        );
      } finally {
        await batch.close();
      }
    });
  }
});
