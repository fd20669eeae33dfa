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
  [['year'], 1, 1],
  [['month'], 1, 1],
  [['day', 'dayofmonth'], 1, 1],
  [['hour'], 1, 1],
  [['minute'], 1, 1],
  [['second'], 1, 1],
  [['millisecond'], 1, 1],
  [['microsecond'], 1, 1],
  [['week', 'weekofyear'], 1, 1],
  [['quarter'], 1, 1],
  [['dayofweek'], 1, 1],
  [['isodow'], 1, 1],
  [['dayofyear'], 1, 1],
  [['yearweek'], 1, 1],
  [['isoyear'], 1, 1],
  [['decade'], 1, 1],
  [['century'], 1, 1],
  [['millennium'], 1, 1],
  [['era'], 1, 1],
  [['epoch'], 1, 1],
  [['julian'], 1, 1],
  [['epoch_ms'], 1, 1],
  [['epoch_us'], 1, 1],
  [['dayname'], 1, 1],
  [['monthname'], 1, 1],
  [['last_day'], 1, 1],
  [['make_date'], 1, 3],
  [['make_time'], 3, 3],
  [['make_timestamp'], 1, 6],
  [['date_diff', 'datediff'], 3, 3],
  [['strptime'], 2, 2],
  [['try_strptime'], 2, 2],
  [['to_millennia'], 1, 1],
  [['to_centuries'], 1, 1],
  [['to_decades'], 1, 1],
  [['to_years'], 1, 1],
  [['to_months'], 1, 1],
  [['to_weeks'], 1, 1],
  [['to_days'], 1, 1],
  [['to_hours'], 1, 1],
  [['to_minutes'], 1, 1],
  [['to_seconds'], 1, 1],
  [['to_milliseconds'], 1, 1],
  [['to_microseconds'], 1, 1],
  // nested
  [['struct_pack'], 1, Number.POSITIVE_INFINITY],
  [['list_value', 'list_pack'], 0, Number.POSITIVE_INFINITY],
  [['array_extract', 'list_extract', 'list_element'], 2, 2],
  [['struct_extract'], 2, 2],
  [['typeof'], 1, 1],
  // lists (calls/lists.ts)
  [['list_transform', 'list_apply', 'array_transform', 'array_apply', 'apply'], 2, 2],
  [['list_filter', 'array_filter', 'filter'], 2, 2],
  [['list_reduce', 'array_reduce', 'reduce'], 2, 3],
  [
    ['list_aggregate', 'list_aggr', 'aggregate', 'array_aggr', 'array_aggregate'],
    2,
    Number.POSITIVE_INFINITY,
  ],
  [['list_sum'], 1, 1],
  [['list_min'], 1, 1],
  [['list_max'], 1, 1],
  [['list_avg'], 1, 1],
  [['list_count'], 1, 1],
  [['list_sort', 'array_sort'], 1, 3],
  [['list_reverse_sort', 'array_reverse_sort'], 1, 2],
  [['list_contains', 'list_has', 'array_contains', 'array_has'], 2, 2],
  [['list_position', 'list_indexof', 'array_position', 'array_indexof'], 2, 2],
  [['list_unique', 'array_unique'], 1, 1],
  [['list_concat', 'list_cat', 'array_concat', 'array_cat'], 1, Number.POSITIVE_INFINITY],
  [['flatten'], 1, 1],
  [['array_length'], 1, 2],
  [['list_slice', 'array_slice'], 3, 4],
  [['range'], 1, 3],
  [['generate_series'], 1, 3],
  [['string_split', 'str_split', 'string_to_array', 'split'], 2, 2],
  [['string_split_regex', 'str_split_regex', 'regexp_split_to_array'], 2, 3],
  [['regexp_extract'], 2, 4],
  [['regexp_extract_all'], 2, 4],
  [['trunc'], 1, 2],
  [['list_reverse', 'array_reverse'], 1, 1],
  [['list_append', 'array_append', 'array_push_back'], 2, 2],
  [['list_prepend', 'array_prepend'], 2, 2],
  [['array_push_front'], 2, 2],
  [['list_string_agg'], 1, 1],
  [['list_has_any', 'array_has_any'], 2, 2],
  [['list_has_all', 'array_has_all'], 2, 2],
  [['array_to_string'], 2, 2],
  [['list_resize', 'array_resize'], 2, 3],
  [['repeat'], 2, 2],
];

export const FUNCTIONS = new Map<string, FunctionInfo>();
for (const [names, min, max] of TABLE) {
  for (const n of names) FUNCTIONS.set(n, { name: names[0]!, min, max });
}

/** Every name a user may call, for did-you-mean suggestions. */
export const FUNCTION_NAMES = [...FUNCTIONS.keys()];

export const SUPPORTED_CASTS =
  'VARCHAR, INTEGER, BIGINT, DOUBLE, DECIMAL(p,s), BOOLEAN, DATE, TIMESTAMP, TIME and INTERVAL (of constant text)';

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
