import { z } from 'zod';

/** One documented field of a config, flattened from the schema (nested maps get dotted names). */
export interface FieldRow {
  name: string;
  type: string;
  required: boolean;
  default?: unknown;
  description: string;
}

type JsonSchema = {
  type?: string | string[];
  properties?: Record<string, JsonSchema>;
  required?: string[];
  items?: JsonSchema;
  anyOf?: JsonSchema[];
  oneOf?: JsonSchema[];
  enum?: unknown[];
  const?: unknown;
  default?: unknown;
  description?: string;
  additionalProperties?: JsonSchema | boolean;
  minimum?: number;
  maximum?: number;
};

function typeOf(s: JsonSchema): string {
  if (s.enum) return s.enum.map((v) => JSON.stringify(v)).join(' \\| ');
  if (s.const !== undefined) return JSON.stringify(s.const);
  const alts = s.anyOf ?? s.oneOf;
  if (alts) return [...new Set(alts.map(typeOf))].join(' \\| ');
  if (s.type === 'array') return `list of ${s.items ? typeOf(s.items) : 'any'}`;
  if (s.type === 'object' && !s.properties && typeof s.additionalProperties === 'object') {
    return `map of ${typeOf(s.additionalProperties)}`;
  }
  if (Array.isArray(s.type)) return s.type.join(' \\| ');
  return s.type ?? 'any';
}

/** Flattens a zod config schema into rows for reference pages and `sluice components NAME`. */
export function describeFields(schema: z.ZodType): FieldRow[] {
  const json = z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' }) as JsonSchema;
  const rows: FieldRow[] = [];
  const walk = (s: JsonSchema, prefix: string) => {
    const obj = s.properties ? s : (s.anyOf ?? s.oneOf)?.find((a) => a.properties);
    if (!obj?.properties) return;
    const required = new Set(obj.required ?? []);
    for (const [key, prop] of Object.entries(obj.properties)) {
      const name = prefix ? `${prefix}.${key}` : key;
      rows.push({
        name,
        type: typeOf(prop),
        required: required.has(key),
        ...(prop.default !== undefined ? { default: prop.default } : {}),
        description: prop.description ?? '',
      });
      if (prop.properties || (prop.anyOf ?? prop.oneOf)?.some((a) => a.properties)) walk(prop, name);
    }
  };
  walk(json, '');
  return rows;
}
