/** The functions per-record SQL supports: canonical name, aliases and arity. Code generation is in codegen.ts. */

export interface FunctionInfo {
  /** Canonical name used by the code generator. */
  name: string;
  min: number;
  max: number;
}

const TABLE: [string[], number, number][] = [
  // strings
  [['upper', 'ucase'], 1, 1],
  [['lower', 'lcase'], 1, 1],
  [['length', 'len', 'char_length', 'character_length'], 1, 1],
  [['trim'], 1, 2],
  [['ltrim'], 1, 2],
  [['rtrim'], 1, 2],
  [['concat'], 1, Number.POSITIVE_INFINITY],
  [['concat_ws'], 2, Number.POSITIVE_INFINITY],
  [['substr', 'substring'], 2, 3],
  [['replace'], 3, 3],
  [['starts_with', 'prefix'], 2, 2],
  [['ends_with', 'suffix'], 2, 2],
  [['contains'], 2, 2],
  [['left'], 2, 2],
  [['right'], 2, 2],
  [['lpad'], 3, 3],
  [['rpad'], 3, 3],
  [['split_part'], 3, 3],
  [['regexp_matches'], 2, 3],
  [['regexp_full_match'], 2, 3],
  [['regexp_replace'], 3, 4],
  [['strpos', 'instr', 'position'], 2, 2],
  // math
  [['abs'], 1, 1],
  [['round'], 1, 2],
  [['floor'], 1, 1],
  [['ceil', 'ceiling'], 1, 1],
  [['greatest'], 1, Number.POSITIVE_INFINITY],
  [['least'], 1, Number.POSITIVE_INFINITY],
  [['sqrt'], 1, 1],
  [['power', 'pow'], 2, 2],
  [['ln'], 1, 1],
  [['log10'], 1, 1],
  [['log'], 1, 2],
  [['exp'], 1, 1],
  [['sign'], 1, 1],
  // conditional
  [['nullif'], 2, 2],
  [['ifnull'], 2, 2],
  // dates
  [['now', 'get_current_timestamp', 'current_timestamp', 'transaction_timestamp'], 0, 0],
  [['today', 'current_date'], 0, 0],
  [['date_trunc', 'datetrunc'], 2, 2],
  [['date_part', 'datepart'], 2, 2],
  [['strftime'], 2, 2],
  // nested
  [['struct_pack'], 1, Number.POSITIVE_INFINITY],
  [['list_value', 'list_pack'], 0, Number.POSITIVE_INFINITY],
  [['array_extract', 'list_extract', 'list_element'], 2, 2],
  [['struct_extract'], 2, 2],
  [['typeof'], 1, 1],
  // BLOB and MAP (codegen in calls/types.ts)
  [['octet_length'], 1, 1],
  [['map'], 0, 2],
  [['map_from_entries'], 1, 1],
  [['map_keys'], 1, 1],
  [['map_values'], 1, 1],
  [['map_entries'], 1, 1],
  [['map_extract'], 2, 2],
  [['element_at'], 2, 2],
  [['map_extract_value'], 2, 2],
  [['cardinality'], 1, 1],
];

export const FUNCTIONS = new Map<string, FunctionInfo>();
for (const [names, min, max] of TABLE) {
  for (const n of names) FUNCTIONS.set(n, { name: names[0]!, min, max });
}

/** Every name a user may call, for did-you-mean suggestions. */
export const FUNCTION_NAMES = [...FUNCTIONS.keys()];

export const SUPPORTED_CASTS =
  'VARCHAR, TINYINT, SMALLINT, INTEGER, BIGINT, HUGEINT, UTINYINT, USMALLINT, UINTEGER, UBIGINT, UHUGEINT, FLOAT, DOUBLE, DECIMAL(p,s), BOOLEAN, BLOB, DATE, TIMESTAMP';

export function describeSubset(): string {
  const fns = TABLE.filter(
    ([n]) => !['struct_pack', 'list_value', 'array_extract', 'struct_extract', 'ifnull'].includes(n[0]!),
  )
    .map(([n]) => n[0])
    .join(', ');
  return (
    'SELECT <expressions | * [EXCLUDE (...)] [REPLACE (... AS ...)]> FROM input [WHERE <condition>] with ' +
    "column references (a, a.b, a['k'], l[1]), constants, + - * / // % **, ||, = <> < <= > >=, AND/OR/NOT, " +
    'IS [NOT] NULL, IS [NOT] DISTINCT FROM, [NOT] IN (...), [NOT] BETWEEN, [NOT] LIKE/ILIKE [ESCAPE], ' +
    `CASE, COALESCE, CAST/TRY_CAST/:: to ${SUPPORTED_CASTS}, struct {'k': v} and list [a, b] literals, ` +
    `extract(part FROM ts), current_timestamp, and the functions ${fns} (see docs/sql.md)`
  );
}
