/**
 * The PostgreSQL connection field and identifier rules the source's and sink's configs use. Kept
 * apart from common.ts so that validating a spec does not load the driver.
 */
import { z } from 'zod';

export const connectionFields = {
  url: z
    .string()
    .regex(/^postgres(ql)?:\/\//, 'expected a postgres:// URL')
    .describe(
      'Connection URL, `postgres://user:password@host:5432/database` (libpq style; `?sslmode=require` works). ' +
        'Use `${env:PG_URL}` to keep the password out of the spec.',
    ),
};

/** `name` or `schema.name`, each part a plain or double-quoted identifier. */
const IDENT_PART = '(?:[A-Za-z_][A-Za-z0-9_$]*|"(?:[^"]|"")+")';
export const TABLE_NAME = new RegExp(`^${IDENT_PART}(?:\\.${IDENT_PART})?$`);
export const COLUMN_NAME = /^[A-Za-z_][A-Za-z0-9_$]*$|^"(?:[^"]|"")+"$/;

/** Splits `schema.table` into unquoted parts; the schema defaults to `public`. */
export function splitTable(table: string): { schema: string; name: string } {
  const parts = table.match(new RegExp(IDENT_PART, 'g')) ?? [];
  const unquote = (p: string) => (p.startsWith('"') ? p.slice(1, -1).replaceAll('""', '"') : p.toLowerCase());
  const [a, b] = parts.map(unquote);
  return b === undefined ? { schema: 'public', name: a ?? '' } : { schema: a ?? 'public', name: b };
}

/** A double-quoted identifier. */
export function ident(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

/** `"schema"."table"`. */
export function qualified(table: string): string {
  const { schema, name } = splitTable(table);
  return `${ident(schema)}.${ident(name)}`;
}

/** A column as the config names it: quoted names keep their case, plain names fold to lower case. */
export function columnName(column: string): string {
  return column.startsWith('"') ? column.slice(1, -1).replaceAll('""', '"') : column.toLowerCase();
}
