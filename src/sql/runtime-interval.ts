/**
 * Run-time helpers for INTERVAL and TIME. An INTERVAL is DuckDB's triple of months, days and
 * microseconds (each kept apart: a month is not a fixed number of days); a TIME is microseconds
 * since midnight. Both reach records as DuckDB's text of them, as on the DuckDB path.
 */

import { civilFromDays, daysFromCivil, monthDays } from '../formats/calendar.ts';
import { evalError } from './runtime.ts';
import { dayNumber, US_PER_DAY } from './runtime-temporal.ts';

export interface Interval {
  readonly m: number;
  readonly d: number;
  readonly us: number;
}

const US_PER_HOUR = 3600000000;
const US_PER_MINUTE = 60000000;
const US_PER_SEC = 1000000;
const DAYS_PER_MONTH = 30;

export function interval(m: number, d: number, us: number): Interval {
  return { m, d, us };
}

function part(v: number, name: string): string {
  return v === 0 ? '' : `${v} ${name}${v === 1 || v === -1 ? '' : 's'}`;
}

function clock(micros: number): string {
  const neg = micros < 0;
  let rest = Math.abs(micros);
  const h = Math.trunc(rest / US_PER_HOUR);
  rest -= h * US_PER_HOUR;
  const mi = Math.trunc(rest / US_PER_MINUTE);
  rest -= mi * US_PER_MINUTE;
  const s = Math.trunc(rest / US_PER_SEC);
  rest -= s * US_PER_SEC;
  const two = (n: number) => (n < 10 ? `0${n}` : String(n));
  let t = `${neg ? '-' : ''}${two(h)}:${two(mi)}:${two(s)}`;
  if (rest) t += `.${String(rest).padStart(6, '0').replace(/0+$/, '')}`;
  return t;
}

/** DuckDB's text of an interval: `1 year 2 months 3 days 04:05:06.5`, `00:00:00` when empty. */
export function intervalStr(v: Interval): string {
  const years = Math.trunc(v.m / 12);
  const out = [part(years, 'year'), part(v.m - years * 12, 'month'), part(v.d, 'day')].filter(Boolean);
  if (v.us) out.push(clock(v.us));
  return out.length ? out.join(' ') : '00:00:00';
}

/** TIME as DuckDB prints it: `12:34:56`, `12:34:56.5`. */
export function timeStr(us: number): string {
  return clock(us);
}

/** Interval::Normalize: micros carried into days, days into 30-day months, each truncated toward zero. */
function normalized(v: Interval): [number, number, number] {
  const extraDays = Math.trunc(v.us / US_PER_DAY);
  const us = v.us - extraDays * US_PER_DAY;
  let d = v.d + extraDays;
  const extraMonths = Math.trunc(d / DAYS_PER_MONTH);
  d -= extraMonths * DAYS_PER_MONTH;
  return [v.m + extraMonths, d, us];
}

/** Comparison of intervals as DuckDB orders them (normalised): negative, 0 or positive. */
export function intervalCmp(a: Interval, b: Interval): number {
  const na = normalized(a);
  const nb = normalized(b);
  for (let i = 0; i < 3; i++) if (na[i] !== nb[i]) return na[i]! < nb[i]! ? -1 : 1;
  return 0;
}

export function intervalAdd(a: Interval, b: Interval): Interval {
  return { m: a.m + b.m, d: a.d + b.d, us: a.us + b.us };
}

export function intervalNeg(a: Interval): Interval {
  return { m: -a.m, d: -a.d, us: -a.us };
}

function int32(v: number, x: string): number {
  if (!(Math.abs(v) <= 2147483647)) evalError('Overflow in multiplication of INTERVAL.', x);
  return v;
}

/** INTERVAL × BIGINT: each part multiplied (DuckDB's MultiplyOperator). */
export function intervalMulInt(a: Interval, n: number, x: string): Interval {
  const us = a.us * n;
  if (!Number.isSafeInteger(us)) evalError('Overflow in multiplication of INTERVAL.', x);
  return { m: int32(a.m * n, x), d: int32(a.d * n, x), us: us === 0 ? 0 : us };
}

/** Rounds half to even, as C's nearbyint. */
function nearbyint(v: number): number {
  const r = Math.round(v);
  return Math.abs(v % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * INTERVAL × DOUBLE, as DuckDB (after PostgreSQL's interval_mul): whole months and days, their
 * fractions cascaded down into days and microseconds.
 */
export function intervalMulDbl(a: Interval, f: number, x: string): Interval {
  const md = a.m * f;
  if (Number.isNaN(md) || Math.abs(md) > 2147483647) evalError('Overflow in multiplication of INTERVAL.', x);
  const m = Math.trunc(md);
  const dd = a.d * f;
  if (Number.isNaN(dd) || Math.abs(dd) > 2147483647) evalError('Overflow in multiplication of INTERVAL.', x);
  let d = Math.trunc(dd);
  const monthRemainder = nearbyint((md - m) * DAYS_PER_MONTH * 1e6) / 1e6;
  const dayRemainder = Math.trunc(monthRemainder);
  let secRemainder = nearbyint((dd - d + monthRemainder - dayRemainder) * 86400 * 1e6) / 1e6;
  if (Math.abs(secRemainder) >= 86400) {
    d += Math.trunc(secRemainder / 86400);
    secRemainder -= Math.trunc(secRemainder / 86400) * 86400;
  }
  d += dayRemainder;
  const us = nearbyint(a.us * f + secRemainder * 1e6);
  if (!Number.isSafeInteger(us)) evalError('Overflow in multiplication of INTERVAL.', x);
  return { m: m === 0 ? 0 : m, d: d === 0 ? 0 : d, us: us === 0 ? 0 : us };
}

/** TIMESTAMP − TIMESTAMP: the difference in days and microseconds (Interval::FromMicro). */
export function tsDiff(a: number, b: number): Interval {
  const us = a - b;
  const d = Math.trunc(us / US_PER_DAY);
  return { m: 0, d, us: us - d * US_PER_DAY };
}

/** TIMESTAMP + INTERVAL (Interval::Add): months keep the day of month, clamped to the month's end. */
export function tsAddInterval(ts: number, v: Interval): number {
  if (!Number.isFinite(ts)) return ts;
  let r = ts;
  if (v.m !== 0) {
    const days = dayNumber(ts);
    const tod = ts - days * US_PER_DAY;
    let [y, mo, d] = civilFromDays(days);
    const yd = Math.trunc(v.m / 12);
    y += yd;
    mo += v.m - yd * 12;
    if (mo > 12) {
      y++;
      mo -= 12;
    } else if (mo <= 0) {
      y--;
      mo += 12;
    }
    d = Math.min(d, monthDays(y, mo));
    r = daysFromCivil(y, mo, d) * US_PER_DAY + tod;
  }
  return r + v.d * US_PER_DAY + v.us;
}

/** TIME + INTERVAL wraps around midnight. */
export function timeAddInterval(t: number, v: Interval): number {
  const r = (t + v.us) % US_PER_DAY;
  return r < 0 ? r + US_PER_DAY : r;
}

const UNITS: Record<string, [number, number, number]> = Object.assign(Object.create(null), {
  year: [12, 0, 0],
  month: [1, 0, 0],
  week: [0, 7, 0],
  day: [0, 1, 0],
  hour: [0, 0, US_PER_HOUR],
  minute: [0, 0, US_PER_MINUTE],
  second: [0, 0, US_PER_SEC],
  millisecond: [0, 0, 1000],
  microsecond: [0, 0, 1],
  decade: [120, 0, 0],
  century: [1200, 0, 0],
  millennium: [12000, 0, 0],
});

/**
 * A constant interval text in the common forms (`3 days`, `1 year 2 months`, `-2 hours`,
 * `1 day 02:03:04.5`), or undefined for anything else (DuckDB then evaluates the query).
 */
export function parseIntervalText(text: string): Interval | undefined {
  const tokens = text.trim().toLowerCase().split(/\s+/);
  let m = 0;
  let d = 0;
  let us = 0;
  let i = 0;
  if (tokens.length === 1 && tokens[0] === '') return undefined;
  while (i < tokens.length) {
    const tok = tokens[i]!;
    const clockMatch = /^([+-]?)(\d{1,9}):(\d{2})(?::(\d{2})(?:\.(\d{1,6}))?)?$/.exec(tok);
    if (clockMatch) {
      const [, sign, h, mi, s, f] = clockMatch;
      if (Number(mi) > 59 || Number(s ?? 0) > 59) return undefined;
      const v =
        Number(h) * US_PER_HOUR +
        Number(mi) * US_PER_MINUTE +
        Number(s ?? 0) * US_PER_SEC +
        Number((f ?? '').padEnd(6, '0'));
      us += sign === '-' ? -v : v;
      i++;
      continue;
    }
    if (!/^[+-]?\d{1,9}$/.test(tok)) return undefined;
    const n = Number(tok);
    const unit = tokens[i + 1]?.replace(/s$/, '');
    const u = unit === undefined ? undefined : UNITS[unit];
    if (!u) return undefined;
    m += n * u[0];
    d += n * u[1];
    us += n * u[2];
    i += 2;
  }
  if (!Number.isSafeInteger(us) || Math.abs(m) > 2147483647 || Math.abs(d) > 2147483647) return undefined;
  return { m, d, us };
}

/** A constant TIME text `H:MM[:SS[.ffffff]]`, or undefined for anything else. */
export function parseTimeText(text: string): number | undefined {
  const r = /^\s*(\d{1,2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?\s*$/.exec(text);
  if (!r) return undefined;
  const [, h, mi, s, f] = r;
  if (Number(h) > 24 || Number(mi) > 59 || Number(s ?? 0) > 59) return undefined;
  const v =
    Number(h) * US_PER_HOUR +
    Number(mi) * US_PER_MINUTE +
    Number(s ?? 0) * US_PER_SEC +
    Number((f ?? '').slice(0, 6).padEnd(6, '0'));
  return v > US_PER_DAY ? undefined : v;
}
