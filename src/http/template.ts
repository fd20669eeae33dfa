/**
 * Request templates: `{{ field.path }}` placeholders filled from a record's value. Templates are
 * compiled once (config validation reports every problem with its place) and rendered per record
 * by concatenating parts, with the escaping the place needs: URL path and query values are
 * percent-encoded, header values are checked for line breaks and non-ASCII text, JSON bodies keep
 * the field's type.
 */
import type { z } from 'zod';
import { SluiceError } from '../sdk/errors.ts';
import type { RecordValue } from '../sdk/types.ts';

const PLACEHOLDER = /\{\{\s*([^{}\s]+)\s*\}\}/g;
const WHOLE = /^\{\{\s*([^{}\s]+)\s*\}\}$/;
const SEGMENT = /^[^.{}\s]+$/;

/** A problem in a template, found when the config is validated. */
export class TemplateSyntaxError extends Error {}

/** A placeholder's field path, split once: `customer.address.0.city`. */
export interface FieldRef {
  /** As written, for messages: `customer.id`. */
  name: string;
  segments: string[];
}

export function parseFieldRef(name: string): FieldRef {
  const segments = name.split('.');
  if (!segments.every((s) => SEGMENT.test(s)))
    throw new TemplateSyntaxError(
      `"${name}" is not a field path: write field names separated by dots, such as customer.id or items.0.sku`,
    );
  return { name, segments };
}

type Part = string | FieldRef;

/** Splits a template into literal text and field references; refuses a stray `{{` or `}}`. */
export function parseTemplate(text: string): Part[] {
  const parts: Part[] = [];
  let last = 0;
  for (const match of text.matchAll(PLACEHOLDER)) {
    const literal = text.slice(last, match.index);
    checkLiteral(literal);
    if (literal) parts.push(literal);
    parts.push(parseFieldRef(match[1]!));
    last = match.index + match[0].length;
  }
  const tail = text.slice(last);
  checkLiteral(tail);
  if (tail) parts.push(tail);
  return parts;
}

function checkLiteral(literal: string): void {
  if (literal.includes('{{') || literal.includes('}}'))
    throw new TemplateSyntaxError(
      'a placeholder is written {{ field }} or {{ field.path }}, with one field path and nothing else inside the braces',
    );
}

export function hasPlaceholder(text: string): boolean {
  return parseTemplate(text).some((p) => typeof p !== 'string');
}

/** Where a template sits in the request, for messages: `url`, `query.q`, `headers.X-Id`, `body`. */
export type Place = string;

/**
 * What rendering a template for one record failed on: a missing or null field, or a value the
 * place cannot hold. `SLUICE_HTTP_TEMPLATE`; the record goes to the errors sink, no request is sent.
 */
export function templateError(place: Place, field: string | undefined, problem: string): SluiceError {
  const what = field === undefined ? problem : `field "${field}" ${problem}`;
  return new SluiceError('SLUICE_HTTP_TEMPLATE', `request ${place}: ${what}`, {
    details: { place, ...(field === undefined ? {} : { field }) },
  });
}

export const MISSING = Symbol('missing');

/** The value at a field path, or MISSING. Own properties only: `{{ constructor }}` is not a field. */
export function lookup(value: unknown, ref: FieldRef): unknown {
  let current = value;
  for (const segment of ref.segments) {
    if (current === null || typeof current !== 'object' || !Object.hasOwn(current, segment)) return MISSING;
    current = (current as Record<string, unknown>)[segment];
  }
  return current === undefined ? MISSING : current;
}

/** A value as text in a URL, header or form: ISO dates, JSON for objects and arrays. */
function asText(value: unknown): string {
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint')
    return String(value);
  if (value instanceof Date) return value.toISOString();
  return stringifyJson(value);
}

/** A field's value, or a template error naming it when it is missing or (unless allowed) null. */
function fieldValue(record: RecordValue, ref: FieldRef, place: Place, allowNull: boolean): unknown {
  const value = lookup(record, ref);
  if (value === MISSING) throw templateError(place, ref.name, 'is missing from the record');
  if (value === null && !allowNull) throw templateError(place, ref.name, 'is null');
  return value;
}

export type Renderer = (record: RecordValue) => string;

/** A text template (header value, form field): the field's value as text, unescaped. */
export function compileText(
  text: string,
  place: Place,
  check?: (value: string) => string | undefined,
): Renderer {
  const parts = parseTemplate(text);
  return (record) => {
    let out = '';
    for (const part of parts) {
      if (typeof part === 'string') {
        out += part;
        continue;
      }
      const value = asText(fieldValue(record, part, place, false));
      const problem = check?.(value);
      if (problem) throw templateError(place, part.name, problem);
      out += value;
    }
    return out;
  };
}

/**
 * Header values may not hold line breaks (they would split the header) or other control
 * characters, nor text outside ASCII: it would go out as Latin-1 bytes, which servers read as
 * something else.
 */
export const headerValueCheck = (value: string): string | undefined => {
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if ((c < 0x20 && c !== 0x09) || c === 0x7f)
      return 'holds a line break or another control character, which a header value cannot carry';
    if (c > 0x7f)
      return 'holds text outside ASCII, which a header value cannot carry reliably: send it in the query or the body';
  }
  return undefined;
};

// Printable ASCII without space: what may stand literally in a request target.
const URL_LITERAL = /^[\x21-\x7e]*$/;
const DOT_SEGMENT = /^(?:\.|%2e){1,2}$/i;

export interface CompiledUrl {
  /** `https://api.example.com:8443`: fixed, so that every request goes to one connection pool. */
  origin: string;
  /** Renders the path and query (`/v1/users/42?full=1`), values percent-encoded. */
  target: Renderer;
  /** Whether the target template already has a query (`?`), so more parameters join with `&`. */
  hasQuery: boolean;
}

/**
 * Compiles a URL template. The scheme, host and port are fixed: a placeholder there would let a
 * record's data choose where the request, and its credentials, go. Placeholder values are
 * percent-encoded (encodeURIComponent) in the path and in the query, so a value with `/`, `?`,
 * `#`, `&`, spaces or non-ASCII text stays one path segment or one query value; a path value that
 * is `.` or `..` is refused (servers would resolve it to another path).
 */
export function compileUrl(url: string): CompiledUrl {
  const m = /^(https?:\/\/[^/?#]*)(.*)$/i.exec(url);
  if (!m) throw new TemplateSyntaxError('the url must be absolute and start with http:// or https://');
  const origin = m[1]!;
  if (origin.includes('{{'))
    throw new TemplateSyntaxError(
      'the scheme, host and port of the url must be fixed: a placeholder there would let the data choose where requests and their credentials go',
    );
  let parsed: URL;
  try {
    parsed = new URL(origin);
  } catch {
    throw new TemplateSyntaxError(`"${origin}" is not a valid origin (scheme://host[:port])`);
  }
  if (parsed.username || parsed.password)
    throw new TemplateSyntaxError(
      'put credentials in `auth`, not in the url, so that they are never recorded',
    );
  const rest = m[2] ? (m[2].startsWith('?') ? `/${m[2]}` : m[2]) : '/';
  const parts = parseTemplate(rest);
  let inQuery = false;
  const compiled: { literal?: string; ref?: FieldRef; query: boolean; wholeSegment: boolean }[] = [];
  for (const [i, part] of parts.entries()) {
    if (typeof part === 'string') {
      if (!URL_LITERAL.test(part))
        throw new TemplateSyntaxError(
          `the url holds "${part}", with a space or a character outside ASCII: percent-encode it (%20 for a space)`,
        );
      if (part.includes('#')) throw new TemplateSyntaxError('a url fragment (#...) is never sent: remove it');
      compiled.push({ literal: part, query: inQuery, wholeSegment: false });
      if (part.includes('?')) inQuery = true;
    } else {
      // A value that fills a whole path segment must not be `.` or `..`.
      const before = parts[i - 1];
      const after = parts[i + 1];
      const wholeSegment =
        (typeof before !== 'string' || before.endsWith('/')) &&
        (after === undefined || typeof after !== 'string' || /^[/?]/.test(after));
      compiled.push({ ref: part, query: inQuery, wholeSegment });
    }
  }
  const target: Renderer = (record) => {
    let out = '';
    for (const p of compiled) {
      if (p.literal !== undefined) {
        out += p.literal;
        continue;
      }
      const ref = p.ref!;
      const text = encodeURIComponent(asText(fieldValue(record, ref, 'url', false)));
      if (p.wholeSegment && !p.query && DOT_SEGMENT.test(text))
        throw templateError('url', ref.name, `is "${text}", which would change the path as a path segment`);
      out += text;
    }
    return out;
  };
  return { origin: parsed.origin, target, hasQuery: inQuery };
}

/**
 * Compiles `query: { name: template }` into the text appended to the target (`a=1&b=x%20y`). A
 * parameter whose template is exactly one placeholder is left out when the field is null, and
 * repeated (`tag=a&tag=b`) when it is an array.
 */
export function compileQuery(query: Record<string, string>): Renderer {
  const params = Object.entries(query).map(([name, template]) => {
    const key = `${encodeURIComponent(name)}=`;
    const whole = WHOLE.exec(template.trim());
    const place = `query.${name}`;
    if (whole) {
      const ref = parseFieldRef(whole[1]!);
      return (record: RecordValue, out: string[]) => {
        const value = fieldValue(record, ref, place, true);
        if (value === null) return;
        if (Array.isArray(value)) {
          for (const item of value)
            if (item !== null && item !== undefined) out.push(key + encodeURIComponent(asText(item)));
          return;
        }
        out.push(key + encodeURIComponent(asText(value)));
      };
    }
    const render = compileText(template, place);
    return (record: RecordValue, out: string[]) => {
      out.push(key + encodeURIComponent(render(record)));
    };
  });
  return (record) => {
    const out: string[] = [];
    for (const param of params) param(record, out);
    return out.join('&');
  };
}

/** `application/x-www-form-urlencoded` from `form: { name: template }` (spaces as `+`, as forms do). */
export function compileForm(form: Record<string, string>): Renderer {
  const fields = Object.entries(form).map(
    ([name, template]) => [name, compileText(template, `form.${name}`)] as const,
  );
  return (record) => {
    const params = new URLSearchParams();
    for (const [name, render] of fields) params.append(name, render(record));
    return params.toString();
  };
}

/**
 * Compiles a JSON body template: strings are templates; a string that is exactly one placeholder
 * takes the field's value with its type (a number stays a number, an object an object, null is
 * null); other strings are text. Renders the JSON text.
 */
export function compileJsonBody(template: unknown): Renderer {
  const build = compileJsonValue(template, 'body');
  return (record) => stringifyJson(build(record));
}

type ValueBuilder = (record: RecordValue) => unknown;

function compileJsonValue(template: unknown, place: Place): ValueBuilder {
  if (typeof template === 'string') {
    const whole = WHOLE.exec(template);
    if (whole) {
      const ref = parseFieldRef(whole[1]!);
      return (record) => fieldValue(record, ref, place, true);
    }
    if (!hasPlaceholder(template)) return () => template;
    return compileText(template, place);
  }
  if (Array.isArray(template)) {
    const items = template.map((item, i) => compileJsonValue(item, `${place}[${i}]`));
    return (record) => items.map((item) => item(record));
  }
  if (template !== null && typeof template === 'object') {
    const entries = Object.entries(template).map(
      ([key, value]) => [key, compileJsonValue(value, `${place}.${key}`)] as const,
    );
    return (record) => {
      const out: Record<string, unknown> = {};
      for (const [key, build] of entries) out[key] = build(record);
      return out;
    };
  }
  return () => template;
}

/** `json: field`: the field's value is the whole body. */
export function compileJsonField(field: string): Renderer {
  const ref = parseFieldRef(field);
  return (record) => stringifyJson(fieldValue(record, ref, 'json', true));
}

type RawJson = (text: string) => unknown;
const rawJSON = (JSON as unknown as { rawJSON?: RawJson }).rawJSON;

/** JSON text; a bigint is written as the exact integer (JSON numbers have no size limit). */
export function stringifyJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    typeof v === 'bigint' ? (rawJSON ? rawJSON(v.toString()) : v.toString()) : v,
  );
}

/** Sets `path` (dotted) in a copy of `value`, copying each object on the way: the input is not mutated. */
export function withField(value: RecordValue, path: FieldRef, field: unknown): RecordValue {
  const [head, ...rest] = path.segments;
  const out: RecordValue = { ...value };
  if (!rest.length) {
    out[head!] = field;
    return out;
  }
  const inner = out[head!];
  const base =
    inner !== null && typeof inner === 'object' && !Array.isArray(inner) ? (inner as RecordValue) : {};
  out[head!] = withField(base, { name: path.name, segments: rest }, field);
  return out;
}

/**
 * For a config's superRefine: `issue` adds a problem at a path, and `template` runs a template
 * check, turning a TemplateSyntaxError into an issue at that path.
 */
export function configChecks(ctx: z.RefinementCtx): {
  issue: (path: (string | number)[], message: string) => void;
  template: (path: (string | number)[], check: () => unknown) => void;
} {
  const issue = (path: (string | number)[], message: string) =>
    ctx.addIssue({ code: 'custom', path, message });
  const template = (path: (string | number)[], check: () => unknown) => {
    try {
      check();
    } catch (err) {
      if (err instanceof TemplateSyntaxError) issue(path, err.message);
      else throw err;
    }
  };
  return { issue, template };
}
