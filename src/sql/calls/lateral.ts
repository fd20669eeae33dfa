/**
 * A select-list alias read by a later select item or by WHERE (a lateral alias). DuckDB reads the
 * name as the table's column when there is one, else as the alias's expression: compiled code
 * reads the record's field when it holds a value, evaluates the alias for a record that lacks the
 * field, and hands a record whose field is NULL to DuckDB (that NULL column has another type than
 * the alias the code is typed for, which typeof() or a function's choice can show).
 */
import type { Gen, Val } from '../codegen.ts';
import type { Node } from '../ir.ts';

type Call = Extract<Node, { k: 'call' }>;

function lateralAlias(g: Gen, args: Val[], node: Call): Val {
  const column = args[0]!;
  if (!g.isNull(column)) return column;
  const name = String(node.opt!.name);
  const { lines, val } = g.capture(() => g.gen(node.opt!.alias as Node), true);
  const r = g.tmp();
  g.emit(`let ${r} = null;`);
  // a field holding NULL is the column, typed otherwise than the alias this code is typed for
  const reason = `the record's ${name} is NULL, a column DuckDB reads instead of the select-list alias`;
  g.emit(`if (hasColumn(row, ${JSON.stringify(name)})) onDuckDB(${JSON.stringify(reason)}, ${g.x(node)});`);
  g.emit('else {');
  for (const l of lines) g.emit(l);
  g.emit(`${r} = ${val.code};`);
  g.emit('}');
  // a constant alias keeps what lets a constant adapt to the other operand (DuckDB substitutes the expression)
  return { code: r, type: val.type, nullable: true, ...(val.lit ? { lit: true } : {}) };
}

export const LATERAL_CALLS: Record<string, (g: Gen, args: Val[], node: Call) => Val> = {
  lateral_alias: lateralAlias,
};
