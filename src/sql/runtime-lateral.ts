/**
 * Run-time helpers for select-list aliases read by later select items or WHERE (lateral aliases):
 * DuckDB reads such a name as the table's column when there is one, so compiled code needs to know
 * whether the record has the field at all, not only its value.
 */

/** Whether the record has the column `name` (DuckDB's column names ignore case), even holding NULL. */
export function hasColumn(row: object, name: string): boolean {
  if (Object.hasOwn(row, name)) return true;
  const lower = name.toLowerCase();
  for (const k in row)
    if (k.length === name.length && k.toLowerCase() === lower && Object.hasOwn(row, k)) return true;
  return false;
}
