/**
 * Run-time helpers for dates and times. DATE, TIMESTAMP and TIMESTAMPTZ are epoch microseconds
 * (a DATE at UTC midnight) in a JS number, as DuckDB keeps them: exact within ±2^53 µs (years
 * 1685 to 2255) and, for whole milliseconds (every JavaScript Date), to about year 4250; DuckDB's
 * `infinity` and `-infinity` are ±Infinity. Civil dates are computed arithmetically (proleptic
 * Gregorian, astronomical years: 0 is 1 BC), so DuckDB's whole range works, not only JS Date's.
 */
import { civilFromDays, daysFromCivil, monthDays } from '../formats/calendar.ts';
import { onDuckDB } from './fallback.ts';
import { evalError } from './runtime.ts';

export const US_PER_DAY = 86400000000;
const US_PER_HOUR = 3600000000;
const US_PER_MINUTE = 60000000;
const US_PER_SEC = 1000000;
/** TIMESTAMP's range in DuckDB: int64 microseconds, the extremes being the infinities. */
const TS_MAX = 2 ** 63;
/** Largest µs magnitude a JS number holds exactly. */
const EXACT_US = 2 ** 53;

function table<T>(o: Record<string, T>): Record<string, T> {
  return Object.assign(Object.create(null) as Record<string, T>, o);
}

function pad2(n: number): string {
  return n < 10 ? `0${n}` : String(n);
}

// ---------------------------------------------------------------- civil calendar

/** DuckDB's Date::IsValid: a real day within DATE's range (5877642 BC to 5881580 AD). */
function validDate(y: number, m: number, d: number): boolean {
  if (m < 1 || m > 12 || d < 1 || d > monthDays(y, m)) return false;
  if (y < -5877641 || (y === -5877641 && (m < 6 || (m === 6 && d < 25)))) return false;
  if (y > 5881580 || (y === 5881580 && (m > 7 || (m === 7 && d > 10)))) return false;
  return true;
}

/**
 * The day number (days since 1970-01-01, floor) of a finite µs value. Beyond ±2^53 µs a value is
 * only within its rounding error of a whole day (DATE is days × 86400e6), which counts as that day.
 */
export function dayNumber(us: number): number {
  const q = us / US_PER_DAY;
  const d = Math.floor(q);
  if (Math.abs(us) <= EXACT_US) return d;
  const r = Math.round(q);
  return Math.abs(q - r) * US_PER_DAY <= Math.abs(us) * 2 ** -52 ? r : d;
}

/** A µs value truncated to its day (UTC midnight). */
export function floorDay(us: number): number {
  if (!Number.isFinite(us)) return us;
  return dayNumber(us) * US_PER_DAY;
}

/** Broken-down fields of a finite µs value. */
interface Fields {
  y: number;
  mo: number;
  d: number;
  h: number;
  mi: number;
  s: number;
  /** microseconds within the second */
  us: number;
  days: number;
}

function fields(us: number): Fields {
  let days = dayNumber(us);
  let tod = Math.max(0, us - days * US_PER_DAY);
  if (Math.abs(us) > EXACT_US) {
    // only whole milliseconds are kept there (strToTs refuses more): drop the rounding error
    tod = Math.round(tod / 1000) * 1000;
    if (tod >= US_PER_DAY) {
      days++;
      tod -= US_PER_DAY;
    }
  }
  const [y, mo, d] = civilFromDays(days);
  const secs = Math.floor(tod / US_PER_SEC);
  return {
    y,
    mo,
    d,
    h: Math.floor(secs / 3600),
    mi: Math.floor(secs / 60) % 60,
    s: secs % 60,
    us: tod - secs * US_PER_SEC,
    days,
  };
}

// ---------------------------------------------------------------- text

function dateText(y: number, m: number, d: number): { text: string; bc: boolean } {
  const bc = y <= 0;
  const yy = String(bc ? 1 - y : y).padStart(4, '0');
  return { text: `${yy}-${pad2(m)}-${pad2(d)}`, bc };
}

function timeText(h: number, mi: number, s: number, us: number): string {
  const t = `${pad2(h)}:${pad2(mi)}:${pad2(s)}`;
  return us ? `${t}.${String(us).padStart(6, '0').replace(/0+$/, '')}` : t;
}

/** DATE as DuckDB prints it: `2024-05-17`, `0044-03-15 (BC)`, `infinity`. */
export function dateStr(us: number): string {
  if (!Number.isFinite(us)) return us > 0 ? 'infinity' : '-infinity';
  const [y, m, d] = civilFromDays(dayNumber(us));
  const { text, bc } = dateText(y, m, d);
  return bc ? `${text} (BC)` : text;
}

/** TIMESTAMP as DuckDB prints it: `2024-05-17 13:14:15.5`, `1001-01-01 (BC) 01:03:20`. */
export function tsStr(us: number): string {
  if (!Number.isFinite(us)) return us > 0 ? 'infinity' : '-infinity';
  const f = fields(us);
  const { text, bc } = dateText(f.y, f.mo, f.d);
  return `${text}${bc ? ' (BC)' : ''} ${timeText(f.h, f.mi, f.s, f.us)}`;
}

export function tstzStr(us: number): string {
  return Number.isFinite(us) ? `${tsStr(us)}+00` : tsStr(us);
}

// ---------------------------------------------------------------- record values

const JS_DATE_MAX_MS = 8.64e15;

/**
 * A DATE/TIMESTAMP as a record value (a Date), as DuckDB's JavaScript conversion gives it: whole
 * milliseconds, truncated toward zero. Infinity and values beyond JavaScript's Date range fail the
 * record, as they do on the DuckDB path.
 */
export function usToDate(us: number, type: string, x: string): Date {
  const ms = Math.abs(us) > EXACT_US ? Math.round(us / 1000) : Math.trunc(us / 1000);
  if (!(Math.abs(ms) <= JS_DATE_MAX_MS)) {
    const unit = type === 'DATE' ? `${Math.round(us / US_PER_DAY)} days` : `${us} micros`;
    return evalError(
      `${type} value out of range for JS Date: ${Number.isFinite(us) ? unit : us > 0 ? 'infinity' : '-infinity'}`,
      x,
    );
  }
  return new Date(ms === 0 ? 0 : ms);
}

// ---------------------------------------------------------------- casts from VARCHAR

function isSpace(c: string | undefined): boolean {
  return c === ' ' || c === '\t' || c === '\n' || c === '\r' || c === '\v' || c === '\f';
}

function isDigit(c: string | undefined): boolean {
  return c !== undefined && c >= '0' && c <= '9';
}

/** Outcome of parsing a date prefix: the day number (±Infinity for the specials), where it ended. */
type DateScan = { days: number; pos: number } | 'format' | 'range';

function special(s: string, pos: number, word: string, abbr: number): number {
  let p = pos;
  let i = 0;
  for (; p < s.length && i < word.length; p++, i++) if (s[p]!.toLowerCase() !== word[i]) return -1;
  if (i < word.length && p - pos !== abbr) return -1;
  return p;
}

/*
 * The text forms DuckDB's casts to DATE and TIMESTAMP accept, as patterns (a description of the
 * forms, not a port of DuckDB's parser; text-casts.test.ts checks each against DuckDB). White space
 * is ASCII's six characters.
 *
 * DATE: [spaces] [-] year sep month sep day [" (BC)"], where
 *   year   any digits (ten or more significant ones: out of range)
 *   sep    one of ` `, `-`, `/`, `\`, the same twice
 *   month, day   one or two digits
 *   (BC)   after one white-space character, any case; not with a `-` year or year 0
 * and then anything but a digit; or a special, alone but for spaces: `[-]infinity`, `[-]inf`
 * (nothing after it at all), `[-]epoch`, any case.
 */
const WS = '[ \\t\\n\\v\\f\\r]';
const DATE_SPECIAL = new RegExp(`^${WS}*(-?)(?:(infinity)${WS}*|(inf)|epoch${WS}*)$`, 'i');
const DATE_YEAR = new RegExp(`^${WS}*-?0*(\\d*)`);
const BC = `${WS}\\([bB][cC]\\)`;
const DATE_FORM = new RegExp(`^${WS}*(-?)(\\d+)([- /\\\\])(\\d\\d?)\\3(\\d\\d?)(?:(${BC})|(?!${BC}))(?!\\d)`);

/** The value of the two digits at `i`, or -1. */
function twoDigits(s: string, i: number): number {
  const a = s.charCodeAt(i) - 48;
  const b = s.charCodeAt(i + 1) - 48;
  return a >= 0 && a <= 9 && b >= 0 && b <= 9 ? a * 10 + b : -1;
}

/**
 * The day number of `YYYY-MM-DD` at the start of `s` when what follows cannot change its meaning
 * (the end, `T`, or a space and a digit), else undefined: the common form without a regular
 * expression, which costs several times more per record.
 */
function isoDate(s: string): number | undefined {
  if (s.length > 10) {
    const next = s.charCodeAt(10);
    if (next !== 84 /* T */ && !(next === 32 && s.charCodeAt(11) >= 48 && s.charCodeAt(11) <= 57))
      return undefined;
  } else if (s.length < 10) return undefined;
  if (s.charCodeAt(4) !== 45 || s.charCodeAt(7) !== 45) return undefined;
  const hi = twoDigits(s, 0);
  const lo = twoDigits(s, 2);
  const month = twoDigits(s, 5);
  const day = twoDigits(s, 8);
  if (hi < 0 || lo < 0 || !validDate(hi * 100 + lo, month, day)) return undefined;
  return daysFromCivil(hi * 100 + lo, month, day);
}

function scanDate(s: string): DateScan {
  const iso = isoDate(s);
  if (iso !== undefined) return { days: iso, pos: 10 };
  const m = DATE_FORM.exec(s);
  if (!m) {
    const special = DATE_SPECIAL.exec(s);
    if (!special) return DATE_YEAR.exec(s)![1]!.length >= 10 ? 'range' : 'format';
    const days = special[2] || special[3] ? Number.POSITIVE_INFINITY : 0;
    return { days: special[1] && days ? -days : days, pos: s.length };
  }
  // indexed, not destructured: this runs per record
  const digits = m[2]!;
  if (digits.length >= 10 && DATE_YEAR.exec(s)![1]!.length >= 10) return 'range';
  let year = Number(digits);
  if (m[6]) {
    if (m[1] || year === 0) return 'format';
    year = 1 - year;
  } else if (m[1]) year = -year;
  const month = Number(m[4]);
  const day = Number(m[5]);
  if (!validDate(year, month, day)) return 'range';
  return { days: daysFromCivil(year, month, day), pos: m[0].length };
}

/** VARCHAR → DATE (µs at midnight), as DuckDB's cast: anything may follow the date but a digit. */
export function strToDate(s: string): number | undefined {
  const r = scanDate(s);
  if (typeof r === 'string') return undefined;
  return Number.isFinite(r.days) ? r.days * US_PER_DAY : r.days;
}

/** 'inexact': microseconds beyond ±2^53 µs, which a JS number cannot hold. */
type TsScan = number | 'format' | 'range' | 'zone' | 'inexact';

/*
 * TIMESTAMP: a DATE (above), then nothing, or [`T` or a space] [spaces] a time and a suffix:
 *   time    hours (up to nine digits) `:` [minutes [`:` [seconds [`.` fraction]]]], minutes and
 *           seconds one or two digits below 60; after the minutes only `:` or the end; a fraction
 *           counts to microseconds; the whole at most a day
 *   suffix  nothing; `Z`; a UTC offset `±HH[[:]MM[:SS]]` (ignored: TIMESTAMP has no zone); or a
 *           space and a zone name, which must be UTC (no zones without ICU); then only spaces
 * Which check fails decides the message: the form of the time, then the ranges, then the suffix.
 */
const TIME_FORM = new RegExp(`^[ T]?${WS}*(\\d+):(?:$|(\\d\\d?)(?:$|:(?:$|(\\d\\d?)(?:\\.(\\d*))?)))`);
const UTC_OFFSET = /^[+-]\d\d(?::(?:\d\d(?::(?:\d\d)?)?)?|\d\d)?/;
const TRAILING_WS = new RegExp(`^${WS}*$`);
const ZONE = new RegExp(`^ ([A-Za-z0-9_/+\\-:]*)${WS}*$`);

function scanTs(s: string): TsScan {
  const d = scanDate(s);
  if (typeof d === 'string') return d;
  if (d.pos === s.length) return Number.isFinite(d.days) ? d.days * US_PER_DAY : d.days;
  const iso = d.pos === 10 ? isoTime(s) : -1;
  if (iso >= 0) {
    const us = d.days * US_PER_DAY + iso;
    return Math.abs(us) > EXACT_US && iso % 1000 !== 0 ? 'inexact' : us;
  }
  const rest = s.slice(d.pos);
  const t = TIME_FORM.exec(rest);
  if (!t) return 'format';
  const hours = t[1]!;
  const minutes = t[2] === undefined ? 0 : Number(t[2]);
  const seconds = t[3] === undefined ? 0 : Number(t[3]);
  if (hours.length > 9 || minutes >= 60 || seconds >= 60) return 'format';
  const fraction = t[4];
  const micros = fraction ? Number(fraction.length >= 6 ? fraction.slice(0, 6) : fraction.padEnd(6, '0')) : 0;
  const ofDay = ((Number(hours) * 60 + minutes) * 60 + seconds) * US_PER_SEC + micros;
  if (ofDay > US_PER_DAY) return 'range';
  if (!Number.isFinite(d.days)) return 'format';
  const us = d.days * US_PER_DAY + ofDay;
  if (!(Math.abs(us) < TS_MAX)) return 'range';
  if (Math.abs(us) > EXACT_US && micros % 1000 !== 0) return 'inexact';
  return t[0].length === rest.length ? us : (suffixProblem(rest.slice(t[0].length)) ?? us);
}

/**
 * Microseconds of the day of `HH:MM:SS[.fraction]` from offset 11 to the end of `s` (after an ISO
 * date and `T` or a space), or -1 for any other text: the common form without regular expressions.
 */
function isoTime(s: string): number {
  const len = s.length;
  const sep = s.charCodeAt(10);
  if (len < 19 || (sep !== 84 && sep !== 32) || s.charCodeAt(13) !== 58 || s.charCodeAt(16) !== 58) return -1;
  const h = twoDigits(s, 11);
  const mi = twoDigits(s, 14);
  const sec = twoDigits(s, 17);
  if (h < 0 || h > 23 || mi < 0 || mi > 59 || sec < 0 || sec > 59) return -1;
  let micros = 0;
  if (len > 19) {
    if (s.charCodeAt(19) !== 46 || len > 26) return -1;
    for (let i = 20, unit = 100000; i < len; i++, unit /= 10) {
      const c = s.charCodeAt(i) - 48;
      if (c < 0 || c > 9) return -1;
      micros += c * unit;
    }
  }
  return ((h * 60 + mi) * 60 + sec) * US_PER_SEC + micros;
}

/** What is wrong with the text after a timestamp's time, if anything. */
function suffixProblem(suffix: string): 'format' | 'zone' | undefined {
  if (suffix === '') return undefined;
  const zoneless =
    suffix[0] === 'Z' ? suffix.slice(1) : suffix.slice(UTC_OFFSET.exec(suffix)?.[0].length ?? 0);
  if (zoneless !== suffix) return TRAILING_WS.test(zoneless) ? undefined : 'format';
  if (suffix[0] !== ' ') return 'zone';
  const zone = ZONE.exec(suffix);
  if (!zone) return 'format';
  return zone[1] && zone[1].toLowerCase() !== 'utc' ? 'zone' : undefined;
}

/**
 * VARCHAR → TIMESTAMP (µs). Microseconds beyond ±2^53 µs (years 1685 to 2255) fail the record, also
 * in TRY_CAST, as a BIGINT beyond ±2^53 does: a JS number cannot hold them.
 */
export function strToTs(s: string): number | undefined {
  const r = scanTs(s);
  if (r === 'inexact') return evalError(tsCastMessage(s), 'CAST', s);
  if (typeof r === 'string') return undefined;
  return r;
}

export function dateCastMessage(s: string): string {
  return scanDate(s) === 'range'
    ? `date field value out of range: "${s}", expected format is (YYYY-MM-DD)`
    : `invalid date field format: "${s}", expected format is (YYYY-MM-DD)`;
}

export function tsCastMessage(s: string): string {
  const r = scanTs(s);
  if (r === 'zone')
    return `timestamp field value "${s}" has a timestamp that is not UTC.\nUse the TIMESTAMPTZ type with the ICU extension loaded to handle non-UTC timestamps.`;
  if (r === 'range')
    return `timestamp field value out of range: "${s}", expected format is (YYYY-MM-DD HH:MM:SS[.US][±HH[:MM[:SS]]| ZONE])`;
  if (r === 'inexact')
    return `the timestamp "${s}" has microseconds beyond ±2^53, the exact range of JavaScript numbers`;
  return `invalid timestamp field format: "${s}", expected format is (YYYY-MM-DD HH:MM:SS[.US][±HH[:MM[:SS]]| ZONE])`;
}

// ---------------------------------------------------------------- date parts

const PART_ALIASES = table<string>({
  year: 'year',
  y: 'year',
  yr: 'year',
  yrs: 'year',
  years: 'year',
  month: 'month',
  mon: 'month',
  mons: 'month',
  months: 'month',
  day: 'day',
  d: 'day',
  days: 'day',
  dayofmonth: 'day',
  hour: 'hour',
  h: 'hour',
  hr: 'hour',
  hrs: 'hour',
  hours: 'hour',
  minute: 'minute',
  m: 'minute',
  min: 'minute',
  mins: 'minute',
  minutes: 'minute',
  second: 'second',
  s: 'second',
  sec: 'second',
  secs: 'second',
  seconds: 'second',
  millisecond: 'millisecond',
  ms: 'millisecond',
  msec: 'millisecond',
  msecs: 'millisecond',
  milliseconds: 'millisecond',
  millisecon: 'millisecond',
  microsecond: 'microsecond',
  us: 'microsecond',
  usec: 'microsecond',
  usecs: 'microsecond',
  microseconds: 'microsecond',
  microsecon: 'microsecond',
  week: 'week',
  w: 'week',
  weeks: 'week',
  weekofyear: 'week',
  quarter: 'quarter',
  quarters: 'quarter',
  decade: 'decade',
  dec: 'decade',
  decades: 'decade',
  decs: 'decade',
  century: 'century',
  c: 'century',
  cent: 'century',
  centuries: 'century',
  millennium: 'millennium',
  mil: 'millennium',
  millenia: 'millennium',
  millennia: 'millennium',
  millenium: 'millennium',
  mils: 'millennium',
  dow: 'dow',
  dayofweek: 'dow',
  weekday: 'dow',
  isodow: 'isodow',
  doy: 'doy',
  dayofyear: 'doy',
  isoyear: 'isoyear',
  yearweek: 'yearweek',
  epoch: 'epoch',
  era: 'era',
  julian: 'julian',
  timezone: 'timezone',
  timezone_hour: 'timezone_hour',
  timezone_minute: 'timezone_minute',
});

/** The canonical date part for a specifier, or undefined when DuckDB would not recognise it. */
export function datePart(spec: string): string | undefined {
  return PART_ALIASES[spec.toLowerCase()];
}

/** Parts whose value is a DOUBLE (the others are BIGINT). */
export function partIsDouble(part: string): boolean {
  return part === 'epoch' || part === 'julian';
}

/** ISO day of week, Monday 1 .. Sunday 7, of a day number. */
function isoDow(days: number): number {
  return ((((days + 3) % 7) + 7) % 7) + 1;
}

function isoWeek(days: number): { year: number; week: number } {
  const thursday = days + (4 - isoDow(days));
  const year = civilFromDays(thursday)[0];
  return { year, week: Math.floor((thursday - daysFromCivil(year, 1, 1)) / 7) + 1 };
}

/**
 * extract/date_part of a finite µs value. Integral parts are BIGINT; epoch and julian DOUBLE.
 * An infinite value has no parts (NULL), as in DuckDB.
 */
export function extractPart(part: string, us: number): number | null {
  if (!Number.isFinite(us)) return null;
  const f = fields(us);
  switch (part) {
    case 'year':
      return f.y;
    case 'month':
      return f.mo;
    case 'day':
      return f.d;
    case 'hour':
      return f.h;
    case 'minute':
      return f.mi;
    case 'second':
      return f.s;
    case 'millisecond':
      return f.s * 1000 + Math.floor(f.us / 1000);
    case 'microsecond':
      return f.s * US_PER_SEC + f.us;
    case 'week':
      return isoWeek(f.days).week;
    case 'isoyear':
      return isoWeek(f.days).year;
    case 'yearweek': {
      const w = isoWeek(f.days);
      return w.year * 100 + (w.year < 0 ? -w.week : w.week);
    }
    case 'quarter':
      return Math.floor((f.mo - 1) / 3) + 1;
    case 'decade':
      // DuckDB divides the year toward zero: year -43 is decade -4
      return (f.y / 10) | 0;
    case 'century':
      return f.y > 0 ? Math.floor((f.y - 1) / 100) + 1 : -Math.floor(-f.y / 100) - 1;
    case 'millennium':
      return f.y > 0 ? Math.floor((f.y - 1) / 1000) + 1 : -Math.floor(-f.y / 1000) - 1;
    case 'dow':
      return isoDow(f.days) % 7;
    case 'isodow':
      return isoDow(f.days);
    case 'doy':
      return f.days - daysFromCivil(f.y, 1, 1) + 1;
    case 'epoch':
      return us / US_PER_SEC;
    case 'era':
      return f.y > 0 ? 1 : 0;
    case 'julian':
      // DuckDB's sum, in its order: the time of day as a fraction, plus the day number
      return (us - f.days * US_PER_DAY) / US_PER_DAY + (f.days + 2440588);
    default:
      return 0; // timezone parts: timestamps are UTC
  }
}

const TRUNC_PARTS = new Set([
  'year',
  'month',
  'day',
  'hour',
  'minute',
  'second',
  'millisecond',
  'microsecond',
  'week',
  'quarter',
  'decade',
  'century',
  'millennium',
  'isoyear',
  'dow',
  'isodow',
  'doy',
  'julian',
]);

export function truncPartValid(part: string): boolean {
  return TRUNC_PARTS.has(part);
}

function floorTo(us: number, unit: number): number {
  return Math.floor(us / unit) * unit;
}

/** date_trunc on a µs value; infinities stay. */
export function dateTrunc(part: string, us: number): number {
  if (!Number.isFinite(us)) return us;
  const f = fields(us);
  const at = (y: number, m = 1, d = 1) => daysFromCivil(y, m, d) * US_PER_DAY;
  switch (part) {
    case 'year':
      return at(f.y);
    case 'quarter':
      return at(f.y, Math.floor((f.mo - 1) / 3) * 3 + 1);
    case 'month':
      return at(f.y, f.mo);
    case 'week':
      return (f.days - (isoDow(f.days) - 1)) * US_PER_DAY;
    case 'isoyear': {
      const jan4 = daysFromCivil(isoWeek(f.days).year, 1, 4);
      return (jan4 - (isoDow(jan4) - 1)) * US_PER_DAY;
    }
    case 'hour':
      return floorTo(us, US_PER_HOUR);
    case 'minute':
      return floorTo(us, US_PER_MINUTE);
    case 'second':
      return floorTo(us, US_PER_SEC);
    case 'millisecond':
      return floorTo(us, 1000);
    case 'microsecond':
      return us;
    case 'decade':
      return at(Math.floor(f.y / 10) * 10);
    case 'century':
      return at(Math.trunc(f.y / 100) * 100);
    case 'millennium':
      return at(Math.trunc(f.y / 1000) * 1000);
    default:
      return f.days * US_PER_DAY; // day, dow, isodow, doy, julian
  }
}

// ---------------------------------------------------------------- strftime

const DAYS = ['Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday'];
const MONTHS = [
  'January',
  'February',
  'March',
  'April',
  'May',
  'June',
  'July',
  'August',
  'September',
  'October',
  'November',
  'December',
];

export function dayName(us: number): string {
  return DAYS[isoDow(dayNumber(us)) % 7]!;
}

export function monthName(us: number): string {
  return MONTHS[civilFromDays(dayNumber(us))[1] - 1]!;
}

type FmtPart = string | ((f: Fields) => string);

function weekNumber(f: Fields, mondayFirst: boolean): number {
  const doy = f.days - daysFromCivil(f.y, 1, 1);
  const dow = mondayFirst ? isoDow(f.days) - 1 : isoDow(f.days) % 7;
  return Math.floor((doy + 7 - dow) / 7);
}

/** %Y: four digits at least, a year before 1 with its sign and unpadded (DuckDB's -1, not -0001). */
function yearDigits(y: number): string {
  return y < 0 ? String(y) : String(y).padStart(4, '0');
}

/** %G: DuckDB writes the ISO year's last four digits as an unsigned 32-bit number's (-1 is 4294967295: 7295). */
function isoYearDigits(y: number): string {
  return String((y < 0 ? 2 ** 32 + y : y) % 10000).padStart(4, '0');
}

const SPECIFIERS = table<(f: Fields) => string>({
  a: (f) => DAYS[isoDow(f.days) % 7]!.slice(0, 3),
  A: (f) => DAYS[isoDow(f.days) % 7]!,
  w: (f) => String(isoDow(f.days) % 7),
  u: (f) => String(isoDow(f.days)),
  d: (f) => pad2(f.d),
  '-d': (f) => String(f.d),
  b: (f) => MONTHS[f.mo - 1]!.slice(0, 3),
  h: (f) => MONTHS[f.mo - 1]!.slice(0, 3),
  B: (f) => MONTHS[f.mo - 1]!,
  m: (f) => pad2(f.mo),
  '-m': (f) => String(f.mo),
  y: (f) => pad2(Math.abs(f.y) % 100),
  '-y': (f) => String(Math.abs(f.y) % 100),
  Y: (f) => yearDigits(f.y),
  H: (f) => pad2(f.h),
  '-H': (f) => String(f.h),
  I: (f) => pad2(f.h % 12 || 12),
  '-I': (f) => String(f.h % 12 || 12),
  p: (f) => (f.h < 12 ? 'AM' : 'PM'),
  M: (f) => pad2(f.mi),
  '-M': (f) => String(f.mi),
  S: (f) => pad2(f.s),
  '-S': (f) => String(f.s),
  g: (f) => String(Math.floor(f.us / 1000)).padStart(3, '0'),
  f: (f) => String(f.us).padStart(6, '0'),
  n: (f) => `${String(f.us).padStart(6, '0')}000`,
  z: () => '+00',
  Z: () => '',
  j: (f) => String(f.days - daysFromCivil(f.y, 1, 1) + 1).padStart(3, '0'),
  '-j': (f) => String(f.days - daysFromCivil(f.y, 1, 1) + 1),
  U: (f) => pad2(weekNumber(f, false)),
  W: (f) => pad2(weekNumber(f, true)),
  V: (f) => pad2(isoWeek(f.days).week),
  G: (f) => isoYearDigits(isoWeek(f.days).year),
  c: (f) => `${yearDigits(f.y)}-${pad2(f.mo)}-${pad2(f.d)} ${pad2(f.h)}:${pad2(f.mi)}:${pad2(f.s)}`,
  x: (f) => `${yearDigits(f.y)}-${pad2(f.mo)}-${pad2(f.d)}`,
  X: (f) => `${pad2(f.h)}:${pad2(f.mi)}:${pad2(f.s)}`,
});

/**
 * Walks a strftime/strptime format as DuckDB does, left to right: `onSpec` gets each specifier
 * (with its `-` flag: `-d`) and the literal text before it, and may stop the walk by returning
 * false; a trailing `%` throws DuckDB's RangeError when the walk reaches it. Returns the literal
 * text after the last specifier.
 */
function walkFormat(format: string, onSpec: (before: string, spec: string) => boolean): string {
  let lit = '';
  for (let i = 0; i < format.length; i++) {
    const c = format[i]!;
    if (c !== '%') {
      lit += c;
      continue;
    }
    if (i + 1 >= format.length) {
      throw new RangeError(`Failed to parse format specifier ${format}: Trailing format character %`);
    }
    let spec = format[++i]!;
    if (spec === '%') {
      lit += '%';
      continue;
    }
    if (spec === '-' && i + 1 < format.length) spec += format[++i]!;
    if (!onSpec(lit, spec)) break;
    lit = '';
  }
  return lit;
}

/** Parses a strftime format once; throws RangeError with DuckDB's message on an unknown specifier. */
export function parseStrftime(format: string): FmtPart[] {
  const parts: FmtPart[] = [];
  const rest = walkFormat(format, (before, spec) => {
    const fn = SPECIFIERS[spec];
    if (!fn) {
      throw new RangeError(
        `Failed to parse format specifier ${format}: Unrecognized format for strftime/strptime: %${spec}`,
      );
    }
    if (before) parts.push(before);
    parts.push(fn);
    return true;
  });
  if (rest) parts.push(rest);
  return parts;
}

/** strftime of a µs value; an infinity prints as DuckDB prints it. */
export function strftime(parts: FmtPart[], us: number): string {
  if (!Number.isFinite(us)) return us > 0 ? 'infinity' : '-infinity';
  const f = fields(us);
  let out = '';
  for (const p of parts) out += typeof p === 'string' ? p : p(f);
  return out;
}

// ---------------------------------------------------------------- constructors

/** The last day of the month of a µs value, as a DATE; NULL for ±infinity, as in DuckDB. */
export function lastDay(us: number): number | null {
  if (!Number.isFinite(us)) return null;
  const [y, m] = civilFromDays(dayNumber(us));
  return daysFromCivil(y, m, monthDays(y, m)) * US_PER_DAY;
}

/** make_date(y, m, d): DuckDB's Date::FromDate, failing on a date that does not exist. */
export function makeDate(y: number, m: number, d: number, x: string): number {
  if (!validDate(y, m, d)) return evalError(`Date out of range: ${y}-${m}-${d}`, x);
  return daysFromCivil(y, m, d) * US_PER_DAY;
}

// ---------------------------------------------------------------- date_diff

function floorDiv(v: number, unit: number): number {
  return Math.floor(v / unit);
}

/** Canonical parts date_diff accepts (others are an error in DuckDB). */
const DIFF_PARTS = new Set([
  'year',
  'month',
  'day',
  'dow',
  'isodow',
  'doy',
  'julian',
  'decade',
  'century',
  'millennium',
  'quarter',
  'week',
  'yearweek',
  'isoyear',
  'microsecond',
  'millisecond',
  'second',
  'epoch',
  'minute',
  'hour',
]);

export function diffPartValid(part: string): boolean {
  return DIFF_PARTS.has(part);
}

/** date_diff(part, start, end): part boundaries between two finite values (DuckDB's DateDiff); NULL for an infinity. */
export function dateDiff(part: string, a: number, b: number): number | null {
  if (!Number.isFinite(a) || !Number.isFinite(b)) return null;
  const da = dayNumber(a);
  const db = dayNumber(b);
  switch (part) {
    case 'year':
      return civilFromDays(db)[0] - civilFromDays(da)[0];
    case 'month':
    case 'quarter': {
      const [ya, ma] = civilFromDays(da);
      const [yb, mb] = civilFromDays(db);
      if (part === 'month') return yb * 12 + mb - 1 - (ya * 12 + ma - 1);
      return Math.trunc((yb * 12 + mb - 1) / 3) - Math.trunc((ya * 12 + ma - 1) / 3);
    }
    case 'decade':
      return Math.trunc(civilFromDays(db)[0] / 10) - Math.trunc(civilFromDays(da)[0] / 10);
    case 'century':
      return Math.trunc(civilFromDays(db)[0] / 100) - Math.trunc(civilFromDays(da)[0] / 100);
    case 'millennium':
      return Math.trunc(civilFromDays(db)[0] / 1000) - Math.trunc(civilFromDays(da)[0] / 1000);
    case 'week':
    case 'yearweek':
      return Math.trunc((db - da) / 7);
    case 'isoyear':
      return isoWeek(db).year - isoWeek(da).year;
    case 'microsecond':
      if (Math.abs(b - a) >= TS_MAX)
        return evalError(`Overflow in subtraction of INT64 (${b} - ${a})!`, 'date_diff');
      return b - a;
    case 'millisecond':
      return floorDiv(b, 1000) - floorDiv(a, 1000);
    case 'second':
    case 'epoch':
      return floorDiv(b, US_PER_SEC) - floorDiv(a, US_PER_SEC);
    case 'minute':
      return floorDiv(b, US_PER_MINUTE) - floorDiv(a, US_PER_MINUTE);
    case 'hour':
      return floorDiv(b, US_PER_HOUR) - floorDiv(a, US_PER_HOUR);
    default:
      return db - da; // day, dow, isodow, doy, julian
  }
}

// ---------------------------------------------------------------- strptime

/** A parsed strptime format: literals, and specifiers with their numeric width (0: a name). */
export interface StrpFormat {
  literals: string[];
  specs: string[];
}

const STRP_WIDTH: Record<string, number> = table({
  d: 2,
  m: 2,
  y: 2,
  H: 2,
  I: 2,
  M: 2,
  S: 2,
  g: 3,
  Y: 4,
  f: 6,
  p: 0,
  b: 0,
  h: 0,
  B: 0,
  a: 0,
  A: 0,
});

/**
 * Parses a strptime format as DuckDB's StrpTimeFormat does, for the specifiers the compiled path
 * supports; returns undefined for any other (week numbers, ISO years, day of year, zones: those
 * queries run on DuckDB). Throws RangeError with DuckDB's message for a malformed format.
 */
export function parseStrptime(format: string): StrpFormat | undefined {
  if (format === '') throw new RangeError('Failed to parse format specifier : Empty format string');
  const literals: string[] = [];
  const specs: string[] = [];
  let known = true;
  const rest = walkFormat(format, (before, flagged) => {
    // strptime ignores the `-` flag (`%-d` reads as `%d`)
    const spec = flagged.length > 1 ? flagged.slice(1) : flagged;
    known = spec in STRP_WIDTH;
    if (known) {
      literals.push(before);
      specs.push(spec);
    }
    return known;
  });
  if (!known) return undefined;
  literals.push(rest);
  return { literals, specs };
}

function matchName(s: string, pos: number, names: readonly string[]): [number, number] {
  for (let c = 0; c < names.length; c++) {
    const n = names[c]!;
    if (pos + n.length <= s.length && s.slice(pos, pos + n.length).toLowerCase() === n.toLowerCase())
      return [c, pos + n.length];
  }
  return [-1, pos];
}

/**
 * strptime of `s` (DuckDB's StrpTimeFormat::Parse, non-strict) as TIMESTAMP µs, or undefined when
 * it does not match. `infinity`, `-infinity` and `epoch` are those values, except that DuckDB's
 * try_strptime gives the parser's defaults (1900-01-01) for them (`tryParse`).
 */
export function strptime(s: string, f: StrpFormat, tryParse = false): number | undefined {
  const size = s.length;
  let pos = 0;
  while (pos < size && isSpace(s[pos])) pos++;
  if (size - pos > 4) {
    let end = -1;
    let v = 0;
    if (s[pos] === '-') {
      end = special(s, pos + 1, 'infinity', 3);
      v = Number.NEGATIVE_INFINITY;
    } else if (/[A-Za-z]/.test(s[pos]!)) {
      end = special(s, pos, 'infinity', 3);
      v = Number.POSITIVE_INFINITY;
      if (end < 0) {
        end = special(s, pos, 'epoch', 5);
        v = 0;
      }
    }
    if (end >= 0) {
      while (end < size && isSpace(s[end])) end++;
      if (end !== size) return undefined;
      return tryParse ? daysFromCivil(1900, 1, 1) * US_PER_DAY : v;
    }
  }
  let y = 1900;
  let mo = 1;
  let d = 1;
  let h = 0;
  let mi = 0;
  let sec = 0;
  let micros = 0;
  let ampm = '';
  for (let i = 0; ; i++) {
    const literal = f.literals[i]!;
    for (let l = 0; l < literal.length; ) {
      if (isSpace(literal[l])) {
        if (!isSpace(s[pos])) return undefined;
        for (pos++; pos < size && isSpace(s[pos]); pos++);
        for (l++; l < literal.length && isSpace(literal[l]); l++);
        continue;
      }
      if (s[pos++] !== literal[l++]) return undefined;
    }
    if (i === f.specs.length) break;
    const spec = f.specs[i]!;
    const width = STRP_WIDTH[spec]!;
    if (width > 0) {
      const start = pos;
      let n = 0;
      while (pos < size && pos < start + width && isDigit(s[pos])) n = n * 10 + (s.charCodeAt(pos++) - 48);
      if (pos === start) return undefined;
      const digits = pos - start;
      switch (spec) {
        case 'd':
          if (n < 1 || n > 31) return undefined;
          d = n;
          break;
        case 'm':
          if (n < 1 || n > 12) return undefined;
          mo = n;
          break;
        case 'y':
          if (n >= 100) return undefined;
          y = n >= 69 ? 1900 + n : 2000 + n;
          break;
        case 'Y':
          y = n;
          break;
        case 'H':
          if (n >= 24) return undefined;
          h = n;
          break;
        case 'I':
          if (n < 1 || n > 12) return undefined;
          h = n;
          break;
        case 'M':
          if (n >= 60) return undefined;
          mi = n;
          break;
        case 'S':
          if (n >= 60) return undefined;
          sec = n;
          break;
        default: {
          // g, f: a fraction of the given width, padded on the right
          const scaled = n * 10 ** (width - digits);
          micros = spec === 'g' ? scaled * 1000 : scaled;
        }
      }
      continue;
    }
    if (spec === 'p') {
      if (pos + 2 > size || s[pos + 1]!.toLowerCase() !== 'm') return undefined;
      const c = s[pos]!.toLowerCase();
      if (c !== 'a' && c !== 'p') return undefined;
      ampm = c;
      pos += 2;
      continue;
    }
    const names =
      spec === 'a'
        ? DAYS.map((n) => n.slice(0, 3))
        : spec === 'A'
          ? DAYS
          : spec === 'B'
            ? MONTHS
            : MONTHS.map((n) => n.slice(0, 3));
    const [c, end] = matchName(s, pos, names);
    if (c < 0) return undefined;
    pos = end;
    if (spec === 'b' || spec === 'h' || spec === 'B') mo = c + 1;
  }
  while (pos < size && isSpace(s[pos])) pos++;
  if (pos !== size) return undefined;
  if (ampm) {
    if (h > 12) return undefined;
    if (ampm === 'a' && h === 12) h = 0;
    else if (ampm === 'p' && h !== 12) h += 12;
  }
  if (!validDate(y, mo, d)) return undefined;
  return daysFromCivil(y, mo, d) * US_PER_DAY + ((h * 60 + mi) * 60 + sec) * US_PER_SEC + micros;
}

export function strptimeOrFail(s: string, f: StrpFormat, format: string, x: string): number {
  const r = strptime(s, f);
  if (r === undefined)
    return evalError(`Could not parse string "${s}" according to format specifier "${format}"`, x, s);
  return r;
}

/** A BIGINT result of a date function; beyond JavaScript's exact range (or infinite) DuckDB computes it. */
export function exactInt(v: number | null, x: string): number | null {
  if (v !== null && !Number.isSafeInteger(v)) return onDuckDB(`the BIGINT result ${v} is beyond ±2^53`, x);
  return v;
}

// ---------------------------------------------------------------- make_time, make_timestamp

/** make_time(h, m, s): DuckDB's MakeTimeOperator (seconds may have a fraction) as µs since midnight. */
export function makeTime(h: number, m: number, s: number, x: string): number {
  if (Math.abs(h) > 2147483647 || Math.abs(m) > 2147483647 || !(Math.abs(s) <= 2147483647))
    return evalError(
      `Type DOUBLE with value ${s} can't be cast because the value is out of range for the destination type INT32`,
      x,
    );
  const whole = Math.trunc(s);
  const micros = Math.round((s - whole) * US_PER_SEC);
  const valid =
    h >= 0 && h < 24
      ? m >= 0 && m < 60 && whole >= 0 && whole <= 60 && micros >= 0 && micros <= 1000000
      : h === 24 && m === 0 && whole === 0 && micros === 0;
  if (!valid) return evalError(`Time out of range: ${h}:${m}:${whole}.${micros}`, x);
  return ((h * 60 + m) * 60 + whole) * US_PER_SEC + micros;
}

export function makeTimestamp(
  y: number,
  mo: number,
  d: number,
  h: number,
  mi: number,
  s: number,
  x: string,
): number {
  return makeDate(y, mo, d, x) + makeTime(h, mi, s, x);
}
