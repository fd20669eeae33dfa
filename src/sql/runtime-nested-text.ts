/**
 * DuckDB's text of a LIST or STRUCT (CAST(... AS VARCHAR)): each element printed as its type prints
 * it (a DECIMAL with its scale, `.5` for DECIMAL(3,3); a DOUBLE as `1.0`; a DATE without a time),
 * quoted where DuckDB quotes it. A list's elements share one type: a record's list of 1 and 2.5 is
 * DOUBLE[] to DuckDB, so its 1 prints `1.0`.
 */
import { onDuckDB } from './fallback.ts';
import { anyStr, dblStr, decStr, fieldCi, quoteNested } from './runtime.ts';
import { dateStr } from './runtime-temporal.ts';
import { fltStr } from './runtime-types.ts';
import type { SqlType } from './types.ts';

const ANY: SqlType = { id: 'ANY' };

/** Whether a type has a part only known per record. */
function hasAny(t: SqlType): boolean {
  if (t.id === 'ANY') return true;
  if (t.id === 'LIST') return hasAny(t.child);
  if (t.id === 'STRUCT') return !t.fields || t.fields.some(([, f]) => hasAny(f));
  return false;
}

/** DuckDB's text of a LIST or STRUCT value of type `t` (a part typed per record is typed from its value). */
export function nestedText(v: unknown, t: SqlType): string | null {
  if (v == null) return null;
  if (t.id === 'ANY') return nestedText(v, recordType(v, ''));
  if (t.id === 'LIST') {
    if (hasAny(t.child)) return nestedText(v, recordType(v, ''));
    return `[${(v as unknown[]).map((e) => innerText(e, t.child)).join(', ')}]`;
  }
  if (t.id === 'STRUCT') {
    const fields: [string, SqlType][] =
      t.fields ?? Object.keys(v as object).map((k): [string, SqlType] => [k, ANY]);
    return `{${fields
      .map(([k, f]) => {
        const e = fieldCi(v as object, k);
        return `'${k.replace(/[\\']/g, (c) => `\\${c}`)}': ${innerText(e, hasAny(f) ? recordType(e, '') : f)}`;
      })
      .join(', ')}}`;
  }
  return anyStr(v);
}

function innerText(e: unknown, t: SqlType): string {
  if (e == null) return 'NULL';
  if (t.id === 'LIST' || t.id === 'STRUCT') return nestedText(e, t)!;
  switch (t.id) {
    case 'DECIMAL':
      return decStr(Math.round((e as number) * 10 ** t.scale), t.scale, t.width);
    case 'DOUBLE':
      return dblStr(e as number);
    case 'FLOAT':
      return fltStr(e as number);
    case 'DATE':
      return quoteNested(dateStr((e as Date).getTime() * 1000));
    case 'VARCHAR':
      return quoteNested(e as string, true);
    default:
      return quoteNested(anyStr(e)!);
  }
}

/**
 * The values of a list made of values typed only per record (list_value of record lists or structs),
 * checked to have one DuckDB type: where DuckDB would cast them to one (a BOOLEAN list with a BIGINT
 * one) or refuse them (a VARCHAR list with a BIGINT one), the record is DuckDB's.
 */
export function sameTypedItems(items: unknown[], x: string): unknown[] {
  recordType(items, x);
  return items;
}

/** The one type DuckDB gives the elements of a record's list (its values unified). */
export function listElementType(list: unknown[], x: string): SqlType {
  return (recordType(list, x) as { child: SqlType }).child;
}

/**
 * Checks a record's list whose elements compiled code types one by one (nested or mixed lists)
 * against the one type DuckDB gives them all: where DuckDB widens an element ([1] beside [2.5] is
 * DOUBLE[]) or refuses the mix ([1] beside ['a']), the record is DuckDB's.
 */
export function checkElementTypes(list: unknown[], x: string): void {
  const t = listElementType(list, x);
  for (const e of list) if (!typedAlike(e, t)) onDuckDB('a list whose elements DuckDB widens to DOUBLE', x);
}

/** Whether an element holds no integral number where the list's type has a DOUBLE. */
function typedAlike(e: unknown, t: SqlType): boolean {
  if (e == null) return true;
  if (t.id === 'DOUBLE') return !(typeof e === 'number' && Number.isSafeInteger(e)) && typeof e !== 'bigint';
  if (t.id === 'LIST') return (e as unknown[]).every((c) => typedAlike(c, t.child));
  if (t.id === 'STRUCT') return (t.fields ?? []).every(([k, f]) => typedAlike(fieldCi(e as object, k), f));
  return true;
}

/** An element's text as DuckDB casts it to VARCHAR, given the list's element type. */
export function elementText(e: unknown, t: SqlType): string | null {
  if (e == null) return null;
  if (t.id === 'LIST' || t.id === 'STRUCT') return nestedText(e, t);
  return t.id === 'DOUBLE' ? dblStr(e as number) : anyStr(e);
}

/** DuckDB's type of a record value (integral numbers BIGINT, others DOUBLE, a list's elements unified). */
function recordType(v: unknown, x: string): SqlType {
  if (v == null) return { id: 'NULL' };
  switch (typeof v) {
    case 'number':
      return Number.isSafeInteger(v) ? { id: 'BIGINT' } : { id: 'DOUBLE' };
    case 'bigint':
      return { id: 'BIGINT' };
    case 'string':
      return { id: 'VARCHAR' };
    case 'boolean':
      return { id: 'BOOLEAN' };
  }
  if (v instanceof Date) return { id: 'TIMESTAMP' };
  if (v instanceof Uint8Array) return { id: 'BLOB' };
  if (Array.isArray(v)) {
    const child = v.reduce<SqlType>((t, e) => unify(t, recordType(e, x), x), { id: 'NULL' });
    // an empty list, or one of NULLs only, is INTEGER[] to DuckDB
    return { id: 'LIST', child: child.id === 'NULL' ? { id: 'INTEGER' } : child };
  }
  return {
    id: 'STRUCT',
    fields: Object.entries(v as object).map(([k, e]): [string, SqlType] => [k, recordType(e, x)]),
  };
}

/** The type DuckDB gives a list holding values of types a and b; one it would not unify is DuckDB's to print. */
function unify(a: SqlType, b: SqlType, x: string): SqlType {
  if (a.id === 'NULL') return b;
  if (b.id === 'NULL' || a.id === b.id) {
    if (a.id === 'LIST' && b.id === 'LIST') return { id: 'LIST', child: unify(a.child, b.child, x) };
    if (a.id === 'STRUCT' && b.id === 'STRUCT') {
      const fields = [...(a.fields ?? [])];
      for (const [k, t] of b.fields ?? []) {
        const i = fields.findIndex(([n]) => n.toLowerCase() === k.toLowerCase());
        if (i < 0) fields.push([k, t]);
        else fields[i] = [fields[i]![0], unify(fields[i]![1], t, x)];
      }
      return { id: 'STRUCT', fields };
    }
    return a;
  }
  const numeric = (t: SqlType) => t.id === 'INTEGER' || t.id === 'BIGINT' || t.id === 'DOUBLE';
  if (numeric(a) && numeric(b))
    return a.id === 'DOUBLE' || b.id === 'DOUBLE' ? { id: 'DOUBLE' } : { id: 'BIGINT' };
  return onDuckDB(`a list mixing ${a.id} and ${b.id} values`, x);
}
