/**
 * The generator DSL of the `generate` source. A field's expression is parsed once and compiled
 * to a closure `(n) => value`, where `n` is the record's sequence number (1, 2, 3...) and every
 * random draw comes from one seeded PRNG shared by the whole record, so the same seed gives the
 * same records.
 *
 *   expression := generator ( "|" modifier )*
 *   generator  := NAME [ "(" arg ( "," arg )* ")" ]
 *   arg        := 'quoted' | "quoted" | bare text   (bare numbers are numbers; true/false/null literals)
 *   modifier   := null(p)                            (the value is null with probability p)
 */
import { parseDuration } from '../../spec/duration.ts';

/** A compiled generator: the value for record number `n` (1-based). */
export type Gen = (n: number) => unknown;

/** Uniform random numbers in [0, 1) from a seeded PRNG. */
export interface Rng {
  next(): number;
  /** A random unsigned 32-bit integer. */
  u32(): number;
}

/** mulberry32: a small, fast 32-bit PRNG; the same seed gives the same sequence. */
export function mulberry32(seed: number): Rng {
  let a = seed >>> 0;
  const u32 = (): number => {
    a = (a + 0x6d2b79f5) | 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
  return { u32, next: () => u32() / 4294967296 };
}

export interface CompileEnv {
  rng: Rng;
  /** Milliseconds since the epoch when the run started: the origin of `timestamp`. */
  startMs: number;
}

/** One line per generator, for the docs and for error messages. */
export const GENERATORS: readonly [usage: string, description: string][] = [
  ['seq', 'the record number: 1, 2, 3...'],
  ['seq(start[, step])', 'start, start+step, start+2*step...'],
  ['int(min, max)', 'a random integer, both ends included'],
  ['float(min, max[, decimals])', 'a random number in [min, max), rounded when decimals is given'],
  ['bool[(p)]', 'true with probability p (default 0.5)'],
  ['pick(a, b, ...)', 'one of the values, uniformly'],
  ['weighted(a:3, b:1)', 'one of the values, with the given relative weights'],
  ['uuid', 'a random RFC 4122 version 4 UUID (derived from the seed)'],
  ['string(len) or string(min, max)', 'random letters and digits'],
  ['timestamp', 'an ISO 8601 time: the run start plus (n-1) milliseconds (unique and ordered)'],
  ['timestamp(now)', 'an ISO 8601 time: the wall clock when the record is generated'],
  [
    'timestamp(start[, step])',
    "an ISO 8601 time: start ('2024-01-01T00:00:00Z', or now for the run start) plus (n-1) * step (a duration, default 1s)",
  ],
  ['const(value)', 'always the same value'],
  ['name', 'a person name from a built-in list'],
  ['email', 'an email address from built-in lists'],
  ["template('text {expr}')", 'text with each {expression} replaced by its value, e.g. order-{seq}'],
];

const GENERATOR_NAMES = [
  'seq',
  'int',
  'float',
  'bool',
  'pick',
  'weighted',
  'uuid',
  'string',
  'timestamp',
  'const',
  'name',
  'email',
  'template',
] as const;

const VALID_LIST = `valid generators: ${GENERATORS.map(([usage]) => usage).join(', ')}; modifier: "| null(p)"`;

export class DslError extends Error {}

// ---------------------------------------------------------------- parsing

interface Call {
  name: string;
  /** Raw argument texts, trimmed, quotes kept; undefined when written without parentheses. */
  args: string[] | undefined;
}

interface Parsed {
  generator: Call;
  modifiers: Call[];
}

class Scanner {
  pos = 0;
  readonly text: string;
  constructor(text: string) {
    this.text = text;
  }

  skipSpace(): void {
    while (this.pos < this.text.length && /\s/.test(this.text[this.pos]!)) this.pos++;
  }

  atEnd(): boolean {
    this.skipSpace();
    return this.pos >= this.text.length;
  }

  call(what: string): Call {
    this.skipSpace();
    const match = /^[A-Za-z_][A-Za-z0-9_]*/.exec(this.text.slice(this.pos));
    if (!match) {
      const rest = this.text.slice(this.pos);
      throw new DslError(rest ? `expected a ${what} name at "${rest}"` : `expected a ${what} name`);
    }
    this.pos += match[0].length;
    this.skipSpace();
    if (this.text[this.pos] !== '(') return { name: match[0], args: undefined };
    this.pos++;
    return { name: match[0], args: this.args(match[0]) };
  }

  /** Reads comma-separated arguments up to the matching ")". */
  args(name: string): string[] {
    const args: string[] = [];
    let start = this.pos;
    let depth = 0;
    while (this.pos < this.text.length) {
      const c = this.text[this.pos]!;
      if (c === "'" || c === '"') {
        this.pos = skipQuoted(this.text, this.pos);
        continue;
      }
      if (c === '(') depth++;
      else if (c === ')') {
        if (depth === 0) {
          const last = this.text.slice(start, this.pos).trim();
          if (last !== '' || args.length > 0) args.push(last);
          this.pos++;
          return args;
        }
        depth--;
      } else if (c === ',' && depth === 0) {
        args.push(this.text.slice(start, this.pos).trim());
        start = this.pos + 1;
      }
      this.pos++;
    }
    throw new DslError(`unclosed "(" after ${name}`);
  }
}

/** Returns the index just past the quoted string starting at `i`; backslash escapes a character. */
function skipQuoted(text: string, i: number): number {
  const quote = text[i];
  for (let j = i + 1; j < text.length; j++) {
    if (text[j] === '\\') j++;
    else if (text[j] === quote) return j + 1;
  }
  throw new DslError(`unclosed quote in ${text.slice(i)}`);
}

function parse(text: string): Parsed {
  const s = new Scanner(text);
  const generator = s.call('generator');
  const modifiers: Call[] = [];
  while (!s.atEnd()) {
    if (s.text[s.pos] !== '|')
      throw new DslError(`unexpected "${s.text.slice(s.pos)}" after ${generator.name}`);
    s.pos++;
    modifiers.push(s.call('modifier'));
  }
  return { generator, modifiers };
}

const NUMBER = /^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i;

/** A literal argument: quoted text is a string; bare numbers, true, false and null are themselves. */
function literal(raw: string): unknown {
  if (raw.length >= 2 && (raw[0] === "'" || raw[0] === '"') && raw.at(-1) === raw[0]) {
    if (skipQuoted(raw, 0) !== raw.length) throw new DslError(`malformed quoted value ${raw}`);
    return raw.slice(1, -1).replace(/\\(.)/g, '$1');
  }
  if (NUMBER.test(raw)) return Number(raw);
  if (raw === 'true') return true;
  if (raw === 'false') return false;
  if (raw === 'null') return null;
  if (raw === '') throw new DslError('empty argument');
  return raw;
}

function str(raw: string): string {
  const v = literal(raw);
  return v === null ? 'null' : String(v);
}

function num(call: Call, raw: string, what: string): number {
  const v = literal(raw);
  if (typeof v !== 'number' || !Number.isFinite(v))
    throw new DslError(`${call.name}: ${what} must be a number, got ${raw}`);
  return v;
}

function int(call: Call, raw: string, what: string): number {
  const v = num(call, raw, what);
  if (!Number.isSafeInteger(v)) throw new DslError(`${call.name}: ${what} must be an integer, got ${raw}`);
  return v;
}

function probability(call: Call, raw: string): number {
  const p = num(call, raw, 'p');
  if (p < 0 || p > 1) throw new DslError(`${call.name}: p must be between 0 and 1, got ${raw}`);
  return p;
}

function arity(call: Call, usage: string, min: number, max: number): string[] {
  const args = call.args ?? [];
  if (args.length < min || args.length > max) {
    const got = call.args === undefined ? 'no arguments' : `${args.length} argument(s)`;
    throw new DslError(`${call.name} takes ${usage}, got ${got}`);
  }
  return args;
}

// ---------------------------------------------------------------- word lists

const FIRST_NAMES = (
  'Ada Alan Amara Ana Ben Carla Chen Dara David Elena Emma Farah Grace Hana Ivan Jonas Julia ' +
  'Kenji Lars Leila Lucas Maria Mei Noah Nora Omar Priya Rafael Sara Sofia Tariq Uma Victor ' +
  'Wei Yara Zoe'
).split(' ');
const LAST_NAMES = (
  'Andersen Baker Costa Dubois Evans Fischer Garcia Hansen Ito Jensen Kim Lopez Martin Nguyen ' +
  'Okafor Patel Quinn Rossi Silva Tanaka Umar Varga Weber Xu Yilmaz Zhang Novak Moreau ' +
  'Schmidt Kowalski'
).split(' ');
const DOMAINS = ['example.com', 'example.org', 'example.net', 'mail.example', 'corp.example'];
const ALNUM = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

function lower(words: string[]): string[] {
  return words.map((w) => w.toLowerCase());
}

// ---------------------------------------------------------------- compiling

function compileCall(call: Call, env: CompileEnv): Gen {
  const { rng } = env;
  switch (call.name) {
    case 'seq': {
      const args = arity(call, 'no arguments, (start) or (start, step)', 0, 2);
      if (args.length === 0) return (n) => n;
      const start = num(call, args[0]!, 'start');
      const step = args[1] === undefined ? 1 : num(call, args[1], 'step');
      return (n) => start + (n - 1) * step;
    }
    case 'int': {
      const args = arity(call, '(min, max)', 2, 2);
      const min = int(call, args[0]!, 'min');
      const max = int(call, args[1]!, 'max');
      if (min > max) throw new DslError(`int: min ${min} is greater than max ${max}`);
      const span = max - min + 1;
      return () => min + Math.floor(rng.next() * span);
    }
    case 'float': {
      const args = arity(call, '(min, max) or (min, max, decimals)', 2, 3);
      const min = num(call, args[0]!, 'min');
      const max = num(call, args[1]!, 'max');
      if (min > max) throw new DslError(`float: min ${min} is greater than max ${max}`);
      const span = max - min;
      if (args[2] === undefined) return () => min + rng.next() * span;
      const decimals = int(call, args[2], 'decimals');
      if (decimals < 0 || decimals > 15) throw new DslError(`float: decimals must be between 0 and 15`);
      const scale = 10 ** decimals;
      return () => Math.round((min + rng.next() * span) * scale) / scale;
    }
    case 'bool': {
      const args = arity(call, 'no arguments or (p)', 0, 1);
      const p = args[0] === undefined ? 0.5 : probability(call, args[0]);
      return () => rng.next() < p;
    }
    case 'pick': {
      const values = arity(call, 'one or more values, e.g. pick(a, b, c)', 1, Infinity).map(literal);
      const k = values.length;
      return () => values[Math.floor(rng.next() * k)];
    }
    case 'weighted': {
      const args = arity(call, 'value:weight pairs, e.g. weighted(a:3, b:1)', 1, Infinity);
      const values: unknown[] = [];
      const cumulative: number[] = [];
      let total = 0;
      for (const arg of args) {
        const m = /^(.*):\s*([^:'"]+)$/s.exec(arg);
        if (!m) throw new DslError(`weighted: "${arg}" is not value:weight`);
        const weight = num(call, m[2]!.trim(), `the weight of ${m[1]!.trim()}`);
        if (weight < 0) throw new DslError(`weighted: weights must not be negative, got ${weight}`);
        values.push(literal(m[1]!.trim()));
        total += weight;
        cumulative.push(total);
      }
      if (total <= 0) throw new DslError('weighted: at least one weight must be positive');
      return () => {
        const r = rng.next() * total;
        let i = 0;
        while (r >= cumulative[i]!) i++;
        return values[i];
      };
    }
    case 'uuid': {
      arity(call, 'no arguments', 0, 0);
      return () => {
        const a = rng.u32();
        const b = rng.u32();
        const c = rng.u32();
        const d = rng.u32();
        return (
          HEX[a >>> 24]! +
          HEX[(a >>> 16) & 255]! +
          HEX[(a >>> 8) & 255]! +
          HEX[a & 255]! +
          '-' +
          HEX[b >>> 24]! +
          HEX[(b >>> 16) & 255]! +
          '-' +
          HEX[((b >>> 8) & 0x0f) | 0x40]! + // version 4
          HEX[b & 255]! +
          '-' +
          HEX[((c >>> 24) & 0x3f) | 0x80]! + // variant 10xx
          HEX[(c >>> 16) & 255]! +
          '-' +
          HEX[(c >>> 8) & 255]! +
          HEX[c & 255]! +
          HEX[d >>> 24]! +
          HEX[(d >>> 16) & 255]! +
          HEX[(d >>> 8) & 255]! +
          HEX[d & 255]!
        );
      };
    }
    case 'string': {
      const args = arity(call, '(len) or (min, max)', 1, 2);
      const min = int(call, args[0]!, args.length === 1 ? 'len' : 'min');
      const max = args[1] === undefined ? min : int(call, args[1], 'max');
      if (min < 0 || min > max) throw new DslError(`string: lengths must satisfy 0 <= min <= max`);
      return () => {
        const len = min === max ? min : min + Math.floor(rng.next() * (max - min + 1));
        let s = '';
        for (let i = 0; i < len; i++) s += ALNUM[Math.floor(rng.next() * 62)];
        return s;
      };
    }
    case 'timestamp': {
      const args = arity(call, 'no arguments or (start[, step]) with start an ISO time or now', 0, 2);
      if (args.length === 0) {
        const start = env.startMs - 1;
        return (n) => new Date(start + n).toISOString();
      }
      const startText = str(args[0]!);
      // `now` alone is the clock, read per record; with a step it is the origin of synthetic time.
      if (startText === 'now' && args[1] === undefined) return () => new Date().toISOString();
      const start = startText === 'now' ? env.startMs : Date.parse(startText);
      if (Number.isNaN(start))
        throw new DslError(`timestamp: start "${startText}" is not an ISO 8601 time or now`);
      let step = 1000;
      if (args[1] !== undefined) {
        const stepText = str(args[1]);
        const parsed = NUMBER.test(stepText) ? Number(stepText) : parseDuration(stepText);
        if (parsed === undefined)
          throw new DslError(`timestamp: step "${stepText}" is not a duration such as 250ms, 1s, 5m, 1h`);
        step = parsed;
      }
      return (n) => new Date(start + (n - 1) * step).toISOString();
    }
    case 'const': {
      const [arg] = arity(call, '(value)', 1, 1);
      const value = literal(arg!);
      return () => value;
    }
    case 'name': {
      arity(call, 'no arguments', 0, 0);
      const nf = FIRST_NAMES.length;
      const nl = LAST_NAMES.length;
      return () => `${FIRST_NAMES[Math.floor(rng.next() * nf)]} ${LAST_NAMES[Math.floor(rng.next() * nl)]}`;
    }
    case 'email': {
      arity(call, 'no arguments', 0, 0);
      const first = lower(FIRST_NAMES);
      const last = lower(LAST_NAMES);
      return () =>
        `${first[Math.floor(rng.next() * first.length)]}.${last[Math.floor(rng.next() * last.length)]}@` +
        DOMAINS[Math.floor(rng.next() * DOMAINS.length)];
    }
    case 'template': {
      const [arg] = arity(call, "('text with {expressions}')", 1, 1);
      const text = literal(arg!);
      if (typeof text !== 'string') throw new DslError(`template: expected a quoted text, got ${arg}`);
      return compileTemplate(text, env);
    }
    default:
      throw new DslError(`unknown generator "${call.name}"${suggest(call.name)}; ${VALID_LIST}`);
  }
}

function compileTemplate(text: string, env: CompileEnv): Gen {
  const parts: (string | Gen)[] = [];
  let literalText = '';
  let i = 0;
  while (i < text.length) {
    const c = text[i]!;
    if ((c === '{' || c === '}') && text[i + 1] === c) {
      literalText += c;
      i += 2;
    } else if (c === '{') {
      const end = text.indexOf('}', i);
      if (end < 0) throw new DslError(`template: unclosed "{" in '${text}'`);
      if (literalText) parts.push(literalText);
      literalText = '';
      const inner = text.slice(i + 1, end);
      try {
        parts.push(compileExpression(inner, env));
      } catch (err) {
        throw new DslError(`template: in {${inner}}: ${(err as Error).message}`);
      }
      i = end + 1;
    } else if (c === '}') {
      throw new DslError(`template: unmatched "}" in '${text}' (write }} for a literal brace)`);
    } else {
      literalText += c;
      i++;
    }
  }
  if (literalText) parts.push(literalText);
  if (parts.every((p) => typeof p === 'string')) {
    const constant = parts.join('');
    return () => constant;
  }
  return (n) => {
    let s = '';
    for (const p of parts) s += typeof p === 'string' ? p : String(p(n));
    return s;
  };
}

function suggest(name: string): string {
  let best: string | undefined;
  let bestDistance = 3;
  for (const candidate of GENERATOR_NAMES) {
    const d = editDistance(name.toLowerCase(), candidate);
    if (d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  return best ? ` (did you mean ${best}?)` : '';
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++)
      row[j] = Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = row;
  }
  return prev[b.length]!;
}

/** Parses and compiles one field expression; throws DslError with a readable message. */
export function compileExpression(text: string, env: CompileEnv): Gen {
  if (text.trim() === '') throw new DslError(`empty expression; ${VALID_LIST}`);
  const { rng } = env;
  const parsed = parse(text);
  let gen = compileCall(parsed.generator, env);
  for (const modifier of parsed.modifiers) {
    if (modifier.name !== 'null')
      throw new DslError(`unknown modifier "${modifier.name}" after "|": the only modifier is null(p)`);
    const [arg] = arity(modifier, '(p), e.g. | null(0.1)', 1, 1);
    const p = probability(modifier, arg!);
    const inner = gen;
    gen = (n) => (rng.next() < p ? null : inner(n));
  }
  return gen;
}

/** A field spec as written in YAML: an expression, a constant scalar, or a map of nested fields. */
export type FieldSpec = string | number | boolean | null | { [field: string]: FieldSpec };

export interface FieldProblem {
  path: string[];
  message: string;
}

/**
 * Compiles a map of fields to a record builder. Problems are collected (not thrown) so that the
 * schema can report every bad field at once; the builder is undefined when there are any.
 */
export function compileFields(
  fields: Record<string, FieldSpec>,
  env: CompileEnv,
): { build: ((n: number) => Record<string, unknown>) | undefined; problems: FieldProblem[] } {
  const problems: FieldProblem[] = [];
  const build = compileObject(fields, env, [], problems);
  return { build: problems.length ? undefined : build, problems };
}

function compileObject(
  fields: Record<string, FieldSpec>,
  env: CompileEnv,
  path: string[],
  problems: FieldProblem[],
): (n: number) => Record<string, unknown> {
  const keys: string[] = [];
  const gens: Gen[] = [];
  for (const [key, spec] of Object.entries(fields)) {
    const at = [...path, key];
    let gen: Gen;
    if (typeof spec === 'string') {
      try {
        gen = compileExpression(spec, env);
      } catch (err) {
        if (!(err instanceof DslError)) throw err;
        problems.push({ path: at, message: `field "${at.join('.')}": ${err.message}` });
        continue;
      }
    } else if (spec !== null && typeof spec === 'object') {
      gen = compileObject(spec, env, at, problems);
    } else {
      const value = spec;
      gen = () => value;
    }
    keys.push(key);
    gens.push(gen);
  }
  const k = keys.length;
  return (n) => {
    const out: Record<string, unknown> = {};
    for (let i = 0; i < k; i++) out[keys[i]!] = gens[i]!(n);
    return out;
  };
}
