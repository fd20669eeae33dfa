/**
 * List functions of the compiled subset: lambdas (list_transform, list_filter, list_reduce), list
 * aggregates, sorting, search, concatenation, slicing, ranges, and the string functions that make
 * lists (string_split, regexp_extract_all). Each compiles to a loop over the elements with the
 * element type static inside it. A list read from a record has no element type until run time:
 * its code is generated once per element type DuckDB could give it (BIGINT, DOUBLE, VARCHAR,
 * BOOLEAN, TIMESTAMP, or per-element for nested and mixed lists) and `listCls` picks one per record.
 */
import type { Gen, Val } from '../codegen.ts';
import type { Node } from '../ir.ts';
import { groupCount, makeRegExp } from '../runtime.ts';
import { isInt, isNumeric, isTemporal, maxNumeric, type SqlType, sameType, T, typeName } from '../types.ts';

type Call = Extract<Node, { k: 'call' }>;
type Impl = (g: Gen, args: Val[], node: Call) => Val;

function listOf(child: SqlType): SqlType {
  return { id: 'LIST', child };
}

/** The element types a record's list may have, by `listCls` value (0: all NULL, typed INTEGER by DuckDB). */
const VARIANTS: [number[], SqlType][] = [
  [[0, 1], T.BIGINT],
  [[2], T.DOUBLE],
  [[3], T.VARCHAR],
  [[4], T.BOOLEAN],
  [[5], T.TIMESTAMP],
];

/** A list argument: a LIST, NULL, or a value only typed per record (checked to be a list then). */
function listArg(g: Gen, name: string, args: Val[], i: number, node: Call): Val {
  const a = args[i]!;
  // a NULL of another type (NULL::INTEGER) is not a list: DuckDB's binder refuses it
  if (g.isNull(a) && a.type.id !== 'NULL' && a.type.id !== 'LIST' && a.type.id !== 'ANY')
    throw g.mismatch(name, args, node);
  if (g.isNull(a) || a.type.id === 'LIST') return a;
  if (a.type.id === 'ANY') {
    const t = g.tmp();
    g.emit(`const ${t} = asList(${a.code}, ${JSON.stringify(name)}, ${g.x(node)});`);
    return { code: t, type: T.LIST_ANY, nullable: true };
  }
  throw g.mismatch(name, args, node);
}

function childOf(list: Val): SqlType {
  return list.type.id === 'LIST' ? list.type.child : T.ANY;
}

/**
 * Generates `make` once per element type the list may have at run time (once when it is known), and
 * returns the result; a variant that does not type-check fails only the records that reach it, as
 * DuckDB fails a query whose list has that element type.
 */
function perElementType(g: Gen, list: Val, node: Call, make: (list: Val) => Val): Val {
  const child = childOf(list);
  if (child.id !== 'ANY') return make(list);
  const arms: {
    cases: number[] | null;
    lines: string[];
    val: Val | null;
    error?: string;
    beyond?: boolean;
  }[] = [];
  for (const [cases, type] of [...VARIANTS, [null, T.ANY] as [null, SqlType]]) {
    const mark = g.lines.length;
    try {
      const { lines, val } = g.capture(() => make({ ...list, type: listOf(type) }), true);
      arms.push({ cases, lines, val });
    } catch (err) {
      if (!(err instanceof Error) || err.name !== 'CompileError') throw err;
      g.lines.length = mark; // what the failed variant emitted before failing
      // a variant compiled code does not model (not one DuckDB refuses) is DuckDB's to answer
      const beyond = (err as Error & { kind?: string }).kind === 'beyond';
      arms.push({ cases, lines: [], val: null, error: err.message, beyond });
    }
  }
  const vals = arms.flatMap((a) => (a.val ? [a.val] : []));
  if (!vals.length) throw g.fail(arms[0]!.error!, node);
  const first = vals[0]!.type;
  const same = vals.every((v) => sameType(v.type, first));
  const type = same
    ? first
    : first.id === 'LIST' && vals.every((v) => v.type.id === 'LIST')
      ? T.LIST_ANY
      : T.ANY;
  const k = g.tmp();
  const r = g.tmp();
  g.emit(`const ${k} = ${list.nullable ? `${list.code} === null ? 0 : ` : ''}listCls(${list.code});`);
  g.emit(`let ${r} = null;`);
  g.emit(`switch (${k}) {`);
  for (const arm of arms) {
    g.emit(arm.cases ? `${arm.cases.map((c) => `case ${c}:`).join(' ')} {` : 'default: {');
    if (arm.val) {
      // elements typed one by one must have the types DuckDB's one element type gives them
      if (!arm.cases) g.emit(`checkElementTypes(${list.code}, ${g.x(node)});`);
      for (const l of arm.lines) g.emit(l);
      const v = same ? arm.val : g.lazily(() => g.toOut(arm.val!));
      g.emit(`${r} = ${v.code};`);
      // the element type is lost in LIST_ANY: a DOUBLE list keeps it for the next list function
      const c = v.type.id === 'LIST' ? v.type.child : undefined;
      if (!same && c?.id === 'DOUBLE') g.emit(`if (${r} !== null) markDoubleList(${r});`);
    } else if (arm.beyond) g.emit(`onDuckDB(${JSON.stringify(arm.error)}, ${g.x(node)});`);
    else {
      // an empty (or all-NULL) list has no element to tell its type: it may come from a list
      // function whose element type a record value no longer shows ([] from list_apply of structs)
      if (arm.cases?.includes(0))
        g.emit(`if (${k} === 0) onDuckDB(${JSON.stringify(`an empty list: ${arm.error}`)}, ${g.x(node)});`);
      g.emit(`evalError(${JSON.stringify(arm.error)}, ${g.x(node)}, ${list.code});`);
    }
    g.emit('break; }');
  }
  g.emit('}');
  return { code: r, type, nullable: true };
}

/** The element at `e` (record representation) as a value of the list's element type. */
function element(g: Gen, code: string, child: SqlType): Val {
  if (child.id === 'ANY') return { code, type: T.ANY, nullable: true };
  if (child.id === 'NULL') return g.nullOf(T.NULL);
  return g.fromOut(code, child);
}

/**
 * Emits `for` over a non-NULL list (the caller guards NULL): `body` generates code for one element
 * (its value and 1-based index) and may `break`.
 */
function forEach(g: Gen, list: Val, from: number, body: (e: Val, raw: string, index: string) => void): void {
  const i = g.tmp();
  const raw = g.tmp();
  const { lines } = g.capture(() => {
    const e = element(g, raw, childOf(list));
    body(e, raw, `(${i} + 1)`);
  }, true);
  g.emit(`for (let ${i} = ${from}; ${i} < ${list.code}.length; ${i}++) {`);
  g.emit(`const ${raw} = ${list.code}[${i}] ?? null;`);
  for (const l of lines) g.emit(l);
  g.emit('}');
}

/** Opens `if (list !== null) {` when the list may be NULL; returns the closer. */
function whenList(g: Gen, list: Val): () => void {
  if (!list.nullable) return () => {};
  g.emit(`if (${list.code} !== null) {`);
  return () => g.emit('}');
}

// ---------------------------------------------------------------- lambdas

function lambdaBody(g: Gen, node: Call, binds: Val[]): Val {
  const lam = node.lambda!;
  return g.withLambda(
    lam.params.map((id, i) => [id, binds[i]!] as [number, Val]),
    () => g.gen(lam.body),
  );
}

function index(code: string): Val {
  return { code, type: T.BIGINT, nullable: false };
}

const listTransform: Impl = (g, args, node) => {
  const list = listArg(g, 'list_transform', args, 0, node);
  if (g.isNull(list)) return g.nullOf(T.LIST_ANY, list.isConst === true);
  return perElementType(g, list, node, (l) => {
    const r = g.tmp();
    g.emit(`let ${r} = null;`);
    const close = whenList(g, l);
    g.emit(`${r} = new Array(${l.code}.length);`);
    let type: SqlType = T.NULL;
    forEach(g, l, 0, (e, _raw, i) => {
      const v = lambdaBody(g, node, [e, index(i)]);
      type = v.type;
      g.emit(`${r}[${i} - 1] = ${g.toOut(v).code};`);
    });
    close();
    return { code: r, type: listOf(type), nullable: l.nullable };
  });
};

const listFilter: Impl = (g, args, node) => {
  const list = listArg(g, 'list_filter', args, 0, node);
  if (g.isNull(list)) return g.nullOf(T.LIST_ANY, list.isConst === true);
  return perElementType(g, list, node, (l) => {
    const r = g.tmp();
    g.emit(`let ${r} = null;`);
    const close = whenList(g, l);
    g.emit(`${r} = [];`);
    forEach(g, l, 0, (e, raw, i) => {
      const keep = g.bool(lambdaBody(g, node, [e, index(i)]), node.lambda!.body);
      if (!g.isNull(keep)) g.emit(`if (${keep.code} === true) ${r}.push(${raw});`);
    });
    close();
    return { code: r, type: l.type, nullable: l.nullable };
  });
};

/**
 * list_reduce(l, (acc, x[, i]) -> ...[, initial]): each step's result is cast to the accumulator's
 * type (the element type, or its common type with the initial value), as DuckDB does.
 */
const listReduce: Impl = (g, args, node) => {
  const list = listArg(g, 'list_reduce', args, 0, node);
  const init = args[1];
  if (g.isNull(list)) return g.nullOf(T.ANY, list.isConst === true);
  return perElementType(g, list, node, (l) => {
    const child = childOf(l);
    let accType = child;
    if (init && !g.isNull(init)) {
      const common = commonType(child, init.type);
      if (!common)
        throw g.fail(
          'The initial value type must be the same as the list child type or a common super type',
          node,
        );
      accType = common;
    }
    const acc = g.tmp();
    g.emit(`let ${acc} = null;`);
    const close = whenList(g, l);
    let from = 0;
    if (init) {
      const v = accCast(g, init, accType, node);
      g.emit(`${acc} = ${v.code};`);
    } else {
      g.emit(`if (${l.code}.length === 0) emptyReduce(${g.x(node)});`);
      const first = g.lazily(() => accCast(g, element(g, `(${l.code}[0] ?? null)`, child), accType, node));
      g.emit(`${acc} = ${first.code};`);
      from = 1;
    }
    forEach(g, l, from, (e0, _raw, i) => {
      const a: Val = { code: acc, type: accType, nullable: true };
      // with an initial value the elements are cast to the common type too
      const e =
        init && !sameType(e0.type, accType) && e0.type.id !== 'ANY' ? accCast(g, e0, accType, node) : e0;
      const step = accCast(g, lambdaBody(g, node, [a, e, index(i)]), accType, node);
      g.emit(`${acc} = ${step.code};`);
    });
    close();
    return { code: acc, type: accType, nullable: true };
  });
};

/**
 * A value cast to list_reduce's accumulator type: a value only typed per record through a run-time
 * cast; nested values as they are when their element types cannot need converting.
 */
function accCast(g: Gen, v: Val, to: SqlType, node: Call): Val {
  if (to.id === 'ANY' || g.isNull(v) || sameType(v.type, to)) return v.type.id === 'NULL' ? g.nullOf(to) : v;
  if (v.type.id === 'ANY') {
    const site: Call = { k: 'call', fn: 'cast', args: [node.args[0]!], to, text: node.text, loc: node.loc };
    return g.fromOut(g.dynamic(site, [v]).code, to);
  }
  if ((v.type.id === 'LIST' && to.id === 'LIST') || (v.type.id === 'STRUCT' && to.id === 'STRUCT')) {
    const a = v.type.id === 'LIST' ? v.type.child : T.ANY;
    const b = to.id === 'LIST' ? to.child : T.ANY;
    if ((isInt(a) || a.id === 'NULL') && isInt(b)) return { ...v, type: to };
    throw g.fail(
      `list_reduce with a ${typeName(v.type)} step and a ${typeName(to)} accumulator`,
      node,
      'beyond',
    );
  }
  return g.cast(v, to, false, node);
}

/** DuckDB's common super type of a list's element type and list_reduce's initial value, when there is one. */
function commonType(a: SqlType, b: SqlType): SqlType | undefined {
  if (sameType(a, b) || b.id === 'NULL') return a;
  // nested values only typed per record: the initial value must be nested too
  if (a.id === 'ANY') return b.id === 'LIST' || b.id === 'STRUCT' || b.id === 'ANY' ? T.ANY : undefined;
  if (a.id === 'NULL') return b;
  if (isNumeric(a) && isNumeric(b)) return maxNumeric(a, b);
  if (a.id === 'BOOLEAN' && isNumeric(b)) return b;
  if (b.id === 'BOOLEAN' && isNumeric(a)) return a;
  return undefined;
}

// ---------------------------------------------------------------- aggregates

/** The aggregates list_aggregate compiles; others run on DuckDB (the binder refuses them). */
export const LIST_AGGREGATES = new Set(['sum', 'min', 'max', 'avg', 'count', 'string_agg']);

function aggregate(g: Gen, name: string, list: Val, node: Call, sep: Val | undefined): Val {
  const child = childOf(list);
  const r = g.tmp();
  const mismatch = () =>
    g.fail(`No function matches the given name and argument types '${name}(${typeName(child)})'`, node);
  if (name === 'count') {
    g.emit(`let ${r} = null;`);
    const close = whenList(g, list);
    g.emit(`${r} = 0;`);
    forEach(g, list, 0, (_e, raw) => g.emit(`if (${raw} !== null) ${r}++;`));
    close();
    return { code: r, type: T.BIGINT, nullable: list.nullable };
  }
  // a list of NULLs only (`[]`, `[NULL]` literals): every aggregate but count is NULL
  if (child.id === 'NULL')
    return g.nullOf(name === 'avg' ? T.DOUBLE : name === 'string_agg' ? T.VARCHAR : T.INTEGER);
  const nested = child.id === 'ANY' || child.id === 'LIST' || child.id === 'STRUCT';
  if (nested && (name === 'min' || name === 'max')) {
    // nested values: DuckDB's order of lists and structs
    g.emit(`let ${r} = null;`);
    const close = whenList(g, list);
    const op = name === 'max' ? '>' : '<';
    forEach(g, list, 0, (_e, raw) =>
      g.emit(`if (${raw} !== null && (${r} === null || cmpNested(${raw}, ${r}) ${op} 0)) ${r} = ${raw};`),
    );
    close();
    return { code: r, type: child, nullable: true };
  }
  if (child.id === 'ANY' && name !== 'string_agg')
    throw g.fail(`list_aggregate(${name}) over a list of nested values`, node, 'beyond');
  if (name === 'sum' || name === 'avg') {
    if (!isNumeric(child) && !(child.id === 'BOOLEAN' && name === 'sum')) {
      if (isTemporal(child)) throw g.fail(`list_${name} over ${typeName(child)} values`, node, 'beyond');
      throw mismatch();
    }
    if (child.id === 'DECIMAL') throw g.fail(`list_${name} over DECIMAL values`, node, 'beyond');
    const int = name === 'sum' && (isInt(child) || child.id === 'BOOLEAN');
    const n = g.tmp();
    g.emit(`let ${r} = null;`);
    g.emit(`let ${n} = 0;`);
    const close = whenList(g, list);
    forEach(g, list, 0, (e) => {
      const v = child.id === 'BOOLEAN' ? `(${e.code} ? 1 : 0)` : e.code;
      g.emit(`if (${e.code} !== null) { ${r} = ${r} === null ? ${v} : ${r} + ${v}; ${n}++; }`);
    });
    close();
    if (int)
      g.emit(
        `if (${r} !== null && !Number.isSafeInteger(${r})) evalError("the sum is beyond ±2^53, the exact range of JavaScript numbers", ${g.x(node)}, ${r});`,
      );
    if (name === 'avg') {
      g.emit(`if (${r} !== null) ${r} = ${r} / ${n};`);
      return { code: r, type: T.DOUBLE, nullable: true };
    }
    return { code: r, type: int ? T.BIGINT : T.DOUBLE, nullable: true };
  }
  if (name === 'min' || name === 'max') {
    const better = (v: string) => {
      const op = name === 'max' ? '>' : '<';
      if (child.id === 'VARCHAR') return `strCmp(${v}, ${r}) ${op} 0`;
      if (child.id === 'DOUBLE') return `dblCmp(${v}, ${r}) ${op} 0`;
      return `${v} ${op} ${r}`;
    };
    g.emit(`let ${r} = null;`);
    const close = whenList(g, list);
    forEach(g, list, 0, (e) =>
      g.emit(`if (${e.code} !== null && (${r} === null || ${better(e.code)})) ${r} = ${e.code};`),
    );
    close();
    return { code: r, type: child, nullable: true };
  }
  // string_agg: the elements as text, joined by the separator (',' by default)
  const s = sep ? g.convert(sep, T.VARCHAR, node, () => mismatch().message) : g.constVal(T.VARCHAR, ',');
  if (g.isNull(s)) return g.nullOf(T.VARCHAR);
  g.emit(`let ${r} = null;`);
  const close = whenList(g, list);
  // elements typed per record print as the one type DuckDB gives them all ([[1], [2.5]] is DOUBLE[][])
  const elementType = g.tmp();
  if (child.id === 'ANY') g.emit(`const ${elementType} = listElementType(${list.code}, ${g.x(node)});`);
  forEach(g, list, 0, (e, raw) => {
    const text =
      e.type.id === 'ANY'
        ? { code: `elementText(${raw}, ${elementType})` }
        : g.cast(e, T.VARCHAR, false, node);
    g.emit(`if (${raw} !== null) ${r} = ${r} === null ? ${text.code} : ${r} + ${s.code} + ${text.code};`);
  });
  close();
  return { code: r, type: T.VARCHAR, nullable: true };
}

function listAggregate(fixed?: string): Impl {
  return (g, args, node) => {
    const name = fixed ?? (node.opt?.aggregate as string);
    const list = listArg(g, `list_${name}`, args, 0, node);
    if (g.isNull(list)) return g.nullOf(name === 'count' ? T.BIGINT : T.ANY, list.isConst === true);
    const sep = fixed ? undefined : args[2];
    return perElementType(g, list, node, (l) => aggregate(g, name, l, node, sep));
  };
}

// ---------------------------------------------------------------- search, sort, shape

function sortKind(child: SqlType): string | undefined {
  if (isInt(child) || child.id === 'DATE' || child.id === 'TIMESTAMP' || child.id === 'TIMESTAMPTZ')
    return isInt(child) ? 'num' : 'time';
  if (child.id === 'DOUBLE') return 'dbl';
  if (child.id === 'VARCHAR') return 'str';
  if (child.id === 'BOOLEAN') return 'bool';
  return undefined;
}

function listSort(reverse: boolean): Impl {
  return (g, args, node) => {
    const name = reverse ? 'list_reverse_sort' : 'list_sort';
    const list = listArg(g, name, args, 0, node);
    const desc = !!node.opt?.desc;
    const nullsFirst = !!node.opt?.nullsFirst;
    if (g.isNull(list)) return g.nullOf(T.LIST_ANY, list.isConst === true);
    return perElementType(g, list, node, (l) => {
      const child = childOf(l);
      if (child.id === 'NULL') return l;
      const kind = sortKind(child) ?? 'any';
      // DECIMAL elements are numbers in record representation: they sort as numbers
      return g.op(
        [l],
        l.type,
        `sortList(${l.code}, ${JSON.stringify(child.id === 'DECIMAL' ? 'num' : kind)}, ${desc}, ${nullsFirst})`,
      );
    });
  };
}

/** list_contains / list_position: equality with `=`'s rules between the element and the value. */
function listSearch(position: boolean): Impl {
  return (g, args, node) => {
    const name = position ? 'list_position' : 'list_contains';
    const list = listArg(g, name, args, 0, node);
    const item = args[1]!;
    const type = position ? T.INTEGER : T.BOOLEAN;
    if (g.isNull(list)) return g.nullOf(type, list.isConst === true);
    if (g.isNull(item) && !position) return g.nullOf(type, item.isConst === true);
    return perElementType(g, list, node, (l) => {
      const r = g.tmp();
      g.emit(`let ${r} = null;`);
      const guard = !position && item.nullable ? ` && ${item.code} !== null` : '';
      g.emit(l.nullable || guard ? `if (${l.nullable ? `${l.code} !== null` : 'true'}${guard}) {` : '{');
      g.emit(`${r} = ${position ? 'null' : 'false'};`);
      forEach(g, l, 0, (e, raw, i) => {
        const found = position ? i : 'true';
        if (g.isNull(item)) {
          g.emit(`if (${raw} === null) { ${r} = ${found}; break; }`);
          return;
        }
        if (g.isNull(e)) return;
        const eq = equality(g, e, item, node);
        const nullMatch = position && item.nullable ? `${item.code} === null ? ${raw} === null : ` : '';
        g.emit(`if (${nullMatch}${raw} !== null && ${eq}) { ${r} = ${found}; break; }`);
      });
      g.emit('}');
      return { code: r, type, nullable: true };
    });
  };
}

const listUnique: Impl = (g, args, node) => {
  const list = listArg(g, 'list_unique', args, 0, node);
  if (g.isNull(list)) return g.nullOf(T.BIGINT, list.isConst === true);
  return perElementType(g, list, node, (l) => {
    const child = childOf(l);
    const nested = child.id === 'ANY' || child.id === 'LIST' || child.id === 'STRUCT';
    const r = g.tmp();
    const seen = g.tmp();
    g.emit(`let ${r} = null;`);
    const close = whenList(g, l);
    g.emit(`const ${seen} = new Set();`);
    // a Set keys numbers as SameValueZero (NaN = NaN, 0 = -0), as DuckDB's hash groups them
    forEach(g, l, 0, (e, raw) =>
      g.emit(`if (${raw} !== null) ${seen}.add(${nested ? `nestedKey(${raw})` : e.code});`),
    );
    g.emit(`${r} = ${seen}.size;`);
    close();
    return { code: r, type: T.BIGINT, nullable: l.nullable };
  });
};

/** perElementType over several lists at once (list_concat): one variant per combination of element types. */
function perElementTypes(
  g: Gen,
  lists: Val[],
  node: Call,
  make: (lists: Val[]) => Val,
  done: Val[] = [],
): Val {
  if (done.length === lists.length) return make(done);
  const l = lists[done.length]!;
  if (g.isNull(l) || childOf(l).id !== 'ANY') return perElementTypes(g, lists, node, make, [...done, l]);
  return perElementType(g, l, node, (typed) => perElementTypes(g, lists, node, make, [...done, typed]));
}

const listConcat: Impl = (g, args, node) => {
  const lists = args.map((_, i) => listArg(g, 'list_concat', args, i, node));
  const live0 = lists.filter((l) => !g.isNull(l));
  if (!live0.length)
    return g.nullOf(
      T.LIST_ANY,
      lists.every((l) => l.isConst === true),
    );
  return perElementTypes(g, live0, node, (live) => concatTyped(g, live, lists.length, node));
};

function concatTyped(g: Gen, live: Val[], arity: number, node: Call): Val {
  const children = live.map(childOf);
  const fail = () =>
    g.fail(
      `Cannot concatenate lists of types ${children.map((c) => `${typeName(c)}[]`).join(' and ')} - an explicit cast is required`,
      node,
    );
  const scalar = children.filter((c) => c.id !== 'ANY' && c.id !== 'NULL');
  if (scalar.length && scalar.length < children.filter((c) => c.id !== 'NULL').length) throw fail();
  let child: SqlType;
  try {
    child = g.unify(
      live.map((l) => ({ ...l, type: childOf(l), lit: false })),
      'list_concat',
      node,
    );
  } catch {
    throw fail();
  }
  if (children.some((c) => c.id === 'BOOLEAN') && !isInt(child) && child.id !== 'BOOLEAN') throw fail();
  const r = g.tmp();
  // NULL lists count as empty; the result is NULL only when every list is. Booleans joining numbers become 0/1.
  const parts = live.map((l) => {
    const conv = childOf(l).id === 'BOOLEAN' && isNumeric(child);
    const code = conv ? `${l.code}.map((e) => (e === null ? null : e ? 1 : 0))` : l.code;
    return l.nullable ? `...(${l.code} === null ? [] : ${code})` : `...${code}`;
  });
  const allNull = live.every((l) => l.nullable) && live.length === arity;
  const nullCheck = allNull ? `${live.map((l) => `${l.code} === null`).join(' && ')} ? null : ` : '';
  g.emit(`const ${r} = ${nullCheck}[${parts.join(', ')}];`);
  return { code: r, type: listOf(child), nullable: allNull };
}

const flatten: Impl = (g, args, node) => {
  const list = listArg(g, 'flatten', args, 0, node);
  if (g.isNull(list)) return g.nullOf(T.LIST_ANY, list.isConst === true);
  const child = childOf(list);
  if (child.id !== 'LIST' && child.id !== 'ANY' && child.id !== 'NULL')
    throw g.mismatch('flatten', args, node);
  const type = child.id === 'LIST' ? child : T.LIST_ANY;
  return g.op([list], type, `flattenList(${list.code}, ${g.x(node)})`);
};

const arrayLength: Impl = (g, args, node) => {
  if (args.length > 1) throw g.fail('array_length(list, dimension)', node, 'beyond');
  const list = listArg(g, 'array_length', args, 0, node);
  return g.op([list], T.BIGINT, `${list.code}.length`);
};

const listSlice: Impl = (g, args, node) => {
  if (args.length > 3) throw g.fail('list_slice with a step', node, 'beyond');
  const [base] = args as [Val];
  // bounds are BIGINT: a DOUBLE or DECIMAL bound is cast (rounded), as DuckDB does
  const [b, e] = [args[1]!, args[2]!].map((a) =>
    isInt(a.type) || g.isNull(a)
      ? g.convert(a, T.BIGINT, node, () => '')
      : a.type.id === 'DOUBLE' || a.type.id === 'DECIMAL'
        ? g.cast(a, T.BIGINT, false, node)
        : undefined,
  );
  if (!b || !e) throw g.fail('list_slice bounds that are not integers', node, 'beyond');
  if (g.isNull(base)) return g.nullOf(T.LIST_ANY, base.isConst === true);
  if (base.type.id === 'VARCHAR')
    return g.op([base, b, e], T.VARCHAR, `sliceStr(${base.code}, ${b.code}, ${e.code})`);
  if (base.type.id === 'ANY') throw g.fail('a slice of a value only typed per record', node, 'beyond');
  const list = listArg(g, 'list_slice', args, 0, node);
  return g.op([list, b, e], list.type, `sliceList(${list.code}, ${b.code}, ${e.code})`);
};

function rangeFn(inclusive: boolean): Impl {
  return (g, args, node) => {
    const name = inclusive ? 'generate_series' : 'range';
    if (args.some((a) => !isInt(a.type) && !g.isNull(a)))
      throw g.fail(`${name}() over values that are not integers`, node, 'beyond');
    const ps = args.map((a) => g.convert(a, T.BIGINT, node, () => ''));
    const [start, stop, step] =
      ps.length === 1
        ? [g.constVal(T.BIGINT, 0), ps[0]!, g.constVal(T.BIGINT, 1)]
        : [ps[0]!, ps[1]!, ps[2] ?? g.constVal(T.BIGINT, 1)];
    return g.op(
      [start, stop, step],
      listOf(T.BIGINT),
      `intRange(${start.code}, ${stop.code}, ${step.code}, ${inclusive}, ${g.x(node)})`,
    );
  };
}

// ---------------------------------------------------------------- strings to lists, trunc

const stringSplit: Impl = (g, args, node) => {
  const [s, sep] = g.params('string_split', args, [T.VARCHAR, T.VARCHAR], node) as [Val, Val];
  return g.op([s, sep], listOf(T.VARCHAR), `splitStr(${s.code}, ${sep.code})`);
};

function constRegex(
  g: Gen,
  args: Val[],
  node: Call,
  name: string,
  optIndex: number,
  global: boolean,
): { re: string; s: Val; p: Val } {
  const [s, p] = g.params(name, [args[0]!, args[1]!], [T.VARCHAR, T.VARCHAR], node) as [Val, Val];
  const pattern = g.constString(p);
  const o = args[optIndex];
  const options =
    o === undefined
      ? ''
      : g.constString(g.convert(o, T.VARCHAR, node, () => g.mismatch(name, args, node).message));
  if (pattern === undefined || pattern === null || options === undefined || options === null)
    throw g.fail(`${name}() with a pattern or options that are not constant strings`, node, 'beyond');
  let re: RegExp;
  try {
    re = makeRegExp(pattern, options, 'search');
  } catch (err) {
    // a pattern the translation to JavaScript does not take (POSIX classes, octal escapes): DuckDB runs it
    throw g.fail((err as Error).message, node, 'beyond');
  }
  const flags = re.flags.includes('g') || !global ? re.flags : `${re.flags}g`;
  return { re: g.k(new RegExp(re.source, flags)), s, p };
}

function groupArg(g: Gen, args: Val[], node: Call, name: string): number {
  const a = args[2];
  if (a === undefined) return 0;
  if (!isInt(a.type) || !a.isConst || typeof a.cv !== 'number' || a.cv < 0)
    throw g.fail(`${name}() with a group that is not a constant integer`, node, 'beyond');
  return a.cv;
}

function regexExtract(all: boolean): Impl {
  return (g, args, node) => {
    const name = all ? 'regexp_extract_all' : 'regexp_extract';
    const group = groupArg(g, args, node, name);
    const { re, s, p } = constRegex(g, args, node, name, 3, all);
    // a group the pattern lacks: DuckDB's answer ('' or an error) depends on the index; DuckDB runs it
    if (group > groupCount(g.consts[Number(re.slice(1))] as RegExp))
      throw g.fail(`${name}() with group ${group} of a pattern with fewer groups`, node, 'beyond');
    return all
      ? g.op([s, p], listOf(T.VARCHAR), `reExtractAll(${s.code}, ${re}, ${group})`)
      : g.op([s, p], T.VARCHAR, `reExtract(${s.code}, ${re}, ${group})`);
  };
}

const regexSplit: Impl = (g, args, node) => {
  const { re, s, p } = constRegex(g, args, node, 'string_split_regex', 2, true);
  return g.op([s, p], listOf(T.VARCHAR), `${s.code}.split(${re})`);
};

const trunc: Impl = (g, args, node) => {
  if (args.length > 1) throw g.fail('trunc(x, digits)', node, 'beyond');
  const [a] = args as [Val];
  if (g.isNull(a)) return g.nullOf(T.DOUBLE, a.isConst === true);
  const t = a.type;
  if (isInt(t)) return a;
  if (t.id === 'DOUBLE') return g.op([a], t, `Math.trunc(${a.code})`);
  if (t.id === 'DECIMAL')
    return g.op(
      [a],
      { id: 'DECIMAL', width: t.width, scale: 0 },
      `Math.trunc(${a.code} / ${10 ** t.scale}) + 0`,
    );
  throw g.mismatch('trunc', args, node);
};

const listReverse: Impl = (g, args, node) => {
  const list = listArg(g, 'list_reverse', args, 0, node);
  return g.op([list], list.type, `${list.code}.slice().reverse()`);
};

/** A one-element list of `x`, for list_append and list_prepend (list_concat's rules then apply). */
function single(g: Gen, x: Val): Val {
  const t = g.tmp();
  g.emit(`const ${t} = [${g.toOut(x).code}];`);
  return { code: t, type: listOf(g.isNull(x) ? T.NULL : x.type), nullable: false };
}

const listAppend: Impl = (g, args, node) => listConcat(g, [args[0]!, single(g, args[1]!)], node);
const listPrepend: Impl = (g, args, node) => listConcat(g, [single(g, args[0]!), args[1]!], node);

/** list_has_any / list_has_all: NULL elements never match; NULL when either list is NULL. */
function listHas(all: boolean): Impl {
  return (g, args, node) => {
    const name = all ? 'list_has_all' : 'list_has_any';
    const lists = [0, 1].map((i) => listArg(g, name, args, i, node));
    if (lists.some((l) => g.isNull(l)))
      return g.nullOf(
        T.BOOLEAN,
        lists.some((l) => l.isConst === true),
      );
    return perElementTypes(g, lists, node, ([a, b]) => {
      const r = g.tmp();
      const found = g.tmp();
      g.emit(`let ${r} = null;`);
      const guards = [a!, b!].filter((l) => l.nullable).map((l) => `${l.code} !== null`);
      g.emit(`if (${guards.join(' && ') || 'true'}) {`);
      g.emit(`${r} = ${all};`);
      forEach(g, b!, 0, (y, rawY) => {
        g.emit(`if (${rawY} === null) continue;`);
        g.emit(`let ${found} = false;`);
        forEach(g, a!, 0, (e, raw) => {
          g.emit(`if (${raw} !== null && ${equality(g, e, y, node)}) { ${found} = true; break; }`);
        });
        g.emit(all ? `if (!${found}) { ${r} = false; break; }` : `if (${found}) { ${r} = true; break; }`);
      });
      g.emit('}');
      return { code: r, type: T.BOOLEAN, nullable: true };
    });
  };
}

/** Code that is true when two non-NULL values are equal with `=`'s rules. */
function equality(g: Gen, a: Val, b: Val, node: Call): string {
  if (g.isNull(a) || g.isNull(b)) return 'false'; // a NULL never matches
  if (a.type.id === 'ANY' || b.type.id === 'ANY') {
    const site: Call = {
      k: 'call',
      fn: '=',
      args: [node.args[0]!, node.args[1]!],
      text: node.text,
      loc: node.loc,
    };
    return `${g.dynamic(site, [a, b]).code} === true`;
  }
  // DuckDB deduces one element type for both (list_position(T[], T)): a string column and a number do not meet
  const str = (v: Val) => v.type.id === 'VARCHAR' && !v.lit;
  if (str(a) !== str(b) && !(a.lit && a.type.id === 'VARCHAR') && !(b.lit && b.type.id === 'VARCHAR'))
    throw g.fail(`Cannot deduce template type 'T' in function: '${node.fn}(T[], T)'`, node);
  const p = g.prepCmp(a, b, node, false);
  return g.cmpCode(p.kind, '=', p.a.code, p.b.code);
}

/** array_to_string(l, sep): string_agg with the separator (',' when NULL); '' for an empty list. */
const arrayToString: Impl = (g, args, node) => {
  const list = listArg(g, 'array_to_string', args, 0, node);
  if (g.isNull(list)) return g.nullOf(T.VARCHAR, list.isConst === true);
  const sep = args[1] ?? g.constVal(T.VARCHAR, ',');
  // DuckDB's binder needs it constant
  if (sep.isConst !== true && !g.isNull(sep))
    throw g.error('Separator argument to StringAgg must be a constant', node);
  const s = g.isNull(sep) ? g.constVal(T.VARCHAR, ',') : sep;
  const sepVal: Val = s.nullable ? { code: `(${s.code} ?? ",")`, type: s.type, nullable: false } : s;
  return perElementType(g, list, node, (l) => {
    const v = aggregate(g, 'string_agg', l, node, sepVal);
    const r = g.tmp();
    g.emit(
      `const ${r} = ${l.nullable ? `${l.code} === null ? null : ` : ''}${l.code}.length === 0 ? "" : ${v.code};`,
    );
    return { code: r, type: T.VARCHAR, nullable: true };
  });
};

const listResize: Impl = (g, args, node) => {
  const list = listArg(g, 'list_resize', args, 0, node);
  const n = args[1]!;
  const size =
    isInt(n.type) || g.isNull(n)
      ? g.convert(n, T.BIGINT, node, () => '')
      : n.type.id === 'DOUBLE' || n.type.id === 'DECIMAL'
        ? g.cast(n, T.BIGINT, false, node)
        : undefined;
  if (!size) throw g.mismatch('list_resize', args, node);
  if (g.isNull(list)) return g.nullOf(T.LIST_ANY, list.isConst === true);
  return perElementType(g, list, node, (l) => {
    const child = childOf(l);
    const fill = args[2];
    if (child.id === 'ANY' && fill && !g.isNull(fill) && !['LIST', 'STRUCT', 'ANY'].includes(fill.type.id))
      throw g.fail(`Unimplemented type for cast (${typeName(fill.type)} -> a nested type)`, node);
    // the fill value takes the element type (a string that is no number fails, as in DuckDB)
    const f =
      fill && !g.isNull(fill) ? (child.id === 'ANY' ? fill : g.cast(fill, child, false, node)) : undefined;
    const fillCode = f ? g.toOut(f).code : 'null';
    const r = g.tmp();
    g.emit(`let ${r} = null;`);
    const close = whenList(g, l);
    g.emit(`if (${size.code} === null) ${r} = [];`);
    g.emit(
      `else if (${size.code} < 0) evalError("list_resize: the size " + ${size.code} + " is negative", ${g.x(node)}, ${size.code});`,
    );
    g.emit(
      `else { ${r} = ${l.code}.slice(0, ${size.code}); while (${r}.length < ${size.code}) ${r}.push(${fillCode}); }`,
    );
    close();
    return { code: r, type: l.type, nullable: l.nullable };
  });
};

const repeatFn: Impl = (g, args, node) => {
  const [a, n0] = args as [Val, Val];
  const n = intArg(g, 'repeat', args, n0, node);
  if (a.type.id === 'LIST') {
    return g.op(
      [a, n],
      a.type,
      `(${n.code} > 0 ? Array.from({ length: ${n.code} }, () => ${a.code}).flat(1) : [])`,
    );
  }
  const [s] = g.params('repeat', [a], [T.VARCHAR], node) as [Val];
  return g.op([s, n], T.VARCHAR, `(${n.code} > 0 ? ${s.code}.repeat(${n.code}) : "")`);
};

function intArg(g: Gen, name: string, args: Val[], a: Val, node: Call): Val {
  if (isInt(a.type) || g.isNull(a)) return g.convert(a, T.BIGINT, node, () => '');
  throw g.mismatch(name, args, node);
}

/** The calls that take a lambda: they handle a list only typed per record themselves (a run-time site cannot hold the lambda's closure). */
export const LAMBDA_CALLS = new Set(['list_transform', 'list_filter', 'list_reduce']);

export const LIST_CALLS: Record<string, Impl> = {
  list_transform: listTransform,
  list_filter: listFilter,
  list_reduce: listReduce,
  list_aggregate: listAggregate(),
  list_sum: listAggregate('sum'),
  list_min: listAggregate('min'),
  list_max: listAggregate('max'),
  list_avg: listAggregate('avg'),
  list_count: listAggregate('count'),
  list_sort: listSort(false),
  list_reverse_sort: listSort(true),
  list_contains: listSearch(false),
  list_position: listSearch(true),
  list_unique: listUnique,
  list_concat: listConcat,
  flatten,
  array_length: arrayLength,
  list_slice: listSlice,
  range: rangeFn(false),
  generate_series: rangeFn(true),
  string_split: stringSplit,
  string_split_regex: regexSplit,
  regexp_extract: regexExtract(false),
  regexp_extract_all: regexExtract(true),
  trunc,
  list_reverse: listReverse,
  list_append: listAppend,
  list_prepend: listPrepend,
  // array_push_front(list, x), the other way round from list_prepend(x, list)
  array_push_front: (g, args, node) => listConcat(g, [single(g, args[1]!), args[0]!], node),
  list_string_agg: listAggregate('string_agg'),
  list_has_any: listHas(false),
  list_has_all: listHas(true),
  array_to_string: arrayToString,
  list_resize: listResize,
  repeat: repeatFn,
};
