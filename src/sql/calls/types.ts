/**
 * Calls on BLOB and MAP values (octet_length; map(), MAP {k: v}, map_from_entries, map_keys,
 * map_values, map_extract/element_at, m[k], cardinality, map_entries), spread into CALLS in
 * codegen.ts. A MAP is its entries in order, a list of {key, value} objects, inside compiled code
 * as in records (what DuckDB's JS values give).
 */
import type { Gen, Val } from '../codegen.ts';
import type { Node } from '../ir.ts';
import { type SqlType, T } from '../types.ts';

type Call = Extract<Node, { k: 'call' }>;
type CallImpl = (g: Gen, args: Val[], node: Call) => Val;

function mapType(key: SqlType, value: SqlType): SqlType {
  return { id: 'MAP', key, value };
}

/** A map whose key and value types are known at compile time (not a record's list of any values). */
function typedMap(g: Gen, m: Val, name: string, args: Val[], node: Call): Extract<SqlType, { id: 'MAP' }> {
  if (m.type.id !== 'MAP') throw g.mismatch(name, args, node);
  if (m.type.key.id === 'ANY' || m.type.value.id === 'ANY')
    throw g.fail(`${name}() on a map of values typed per record`, node, 'beyond');
  return m.type;
}

/** The lookup key brought to the map's key type, in record representation. */
function lookupKey(g: Gen, m: Extract<SqlType, { id: 'MAP' }>, k: Val, node: Call): Val {
  // keys of a NULL type (a field that is NULL in this record): the map is empty or fails on its keys
  if (m.key.id === 'NULL') return g.toOut(k);
  let c: Val;
  try {
    c = g.convert(k, m.key, node, () => 'key type');
  } catch {
    throw g.fail(`a ${m.key.id} map looked up with a ${k.type.id} key`, node, 'beyond');
  }
  return g.toOut(c);
}

function extractValue(g: Gen, args: Val[], node: Call): Val {
  const [m, k] = args as [Val, Val];
  if (g.isNull(m)) return g.nullOf(T.ANY);
  const t = typedMap(g, m, 'map_extract_value', args, node);
  if (g.isNull(k)) return g.nullOf(t.value);
  const key = lookupKey(g, t, k, node);
  const raw = g.op([m, key], t.value, `mapGet(${m.code}, ${key.code})`, { nullable: true });
  return g.fromOut(raw.code, t.value);
}

const mapExtract: CallImpl = (g, args, node) => {
  const [m, k] = args as [Val, Val];
  if (g.isNull(m)) return g.nullOf(T.LIST_ANY);
  const t = typedMap(g, m, 'map_extract', args, node);
  const type: SqlType = { id: 'LIST', child: t.value };
  if (g.isNull(k)) return g.nullOf(type);
  const key = lookupKey(g, t, k, node);
  return g.op([m, key], type, `mapFind(${m.code}, ${key.code})`);
};

function listChild(g: Gen, v: Val, name: string, args: Val[], node: Call): SqlType {
  if (v.type.id !== 'LIST') throw g.mismatch(name, args, node);
  const c = v.type.child;
  if (c.id === 'ANY') throw g.fail(`${name}() on a list of values typed per record`, node, 'beyond');
  return c;
}

export const TYPE_CALLS: Record<string, CallImpl> = Object.setPrototypeOf(
  {
    octet_length: (g, args, node) => {
      const [b] = args as [Val];
      if (g.isNull(b)) return g.nullOf(T.BIGINT);
      if (b.type.id !== 'BLOB') throw g.mismatch('octet_length', args, node);
      return g.op([b], T.BIGINT, `${b.code}.length`);
    },
    map: (g, args, node) => {
      if (args.length !== 2) throw g.fail('map() without arguments', node, 'beyond');
      const [ks, vs] = args as [Val, Val];
      if (g.isNull(ks) || g.isNull(vs)) throw g.fail('map() of NULL', node, 'beyond');
      const kt = listChild(g, ks, 'map', args, node);
      const vt = listChild(g, vs, 'map', args, node);
      return g.op([ks, vs], mapType(kt, vt), `mapMake(${ks.code}, ${vs.code}, ${g.x(node)})`);
    },
    map_from_entries: (g, args, node) => {
      const [l] = args as [Val];
      if (g.isNull(l)) throw g.fail('map_from_entries(NULL)', node, 'beyond');
      const c = listChild(g, l, 'map_from_entries', args, node);
      if (c.id !== 'STRUCT' || !c.fields || c.fields.length !== 2)
        throw g.fail(`map_from_entries() of ${c.id}`, node, 'beyond');
      const type = mapType(c.fields[0]![1], c.fields[1]![1]);
      return g.op([l], type, `mapFromEntries(${l.code}, ${g.x(node)})`);
    },
    map_keys: (g, args, node) => {
      const [m] = args as [Val];
      if (g.isNull(m)) return g.nullOf(T.LIST_ANY);
      const t = typedMap(g, m, 'map_keys', args, node);
      return g.op([m], { id: 'LIST', child: t.key }, `${m.code}.map((e) => e.key)`);
    },
    map_values: (g, args, node) => {
      const [m] = args as [Val];
      if (g.isNull(m)) return g.nullOf(T.LIST_ANY);
      const t = typedMap(g, m, 'map_values', args, node);
      return g.op([m], { id: 'LIST', child: t.value }, `${m.code}.map((e) => e.value)`);
    },
    map_entries: (g, args, node) => {
      const [m] = args as [Val];
      if (g.isNull(m)) return g.nullOf(T.LIST_ANY);
      const t = typedMap(g, m, 'map_entries', args, node);
      const entry: SqlType = {
        id: 'STRUCT',
        fields: [
          ['key', t.key],
          ['value', t.value],
        ],
      };
      return g.op([m], { id: 'LIST', child: entry }, m.code);
    },
    cardinality: (g, args, node) => {
      const [m] = args as [Val];
      if (g.isNull(m)) return g.nullOf(T.UBIGINT);
      typedMap(g, m, 'cardinality', args, node);
      return g.op([m], T.UBIGINT, `${m.code}.length`);
    },
    map_extract: mapExtract,
    element_at: mapExtract,
    map_extract_value: extractValue,
  } satisfies Record<string, CallImpl>,
  null,
);

/** `m[k]` and `m.k` on a MAP: the value, or NULL when the key is absent. */
export function mapSubscript(g: Gen, args: Val[], node: Call): Val | undefined {
  return args[0]?.type.id === 'MAP' ? extractValue(g, args, node) : undefined;
}
