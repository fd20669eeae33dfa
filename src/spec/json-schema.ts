import { z } from 'zod';
import type { Registry } from '../registry.ts';
import type { ComponentDefinition, ComponentKind } from '../sdk/types.ts';
import { envelopeSchema, SLOT_EXTRA_KEYS } from './schema.ts';

/** The input JSON Schema of one component's config (defaults make fields optional). */
export function componentJsonSchema(def: ComponentDefinition): Record<string, unknown> {
  const schema = z.toJSONSchema(def.config, { io: 'input', unrepresentable: 'any' }) as Record<
    string,
    unknown
  >;
  delete schema.$schema;
  if (!def.shorthand) return schema;
  return { anyOf: [{ type: 'string', description: `Shorthand for { ${def.shorthand}: ... }` }, schema] };
}

function slotSchema(registry: Registry, kind: ComponentKind, extras: readonly string[]): z.ZodType {
  const options = registry.names(kind).map((name) => {
    const def = registry.get(kind, name)!;
    const config = def.shorthand ? z.union([z.string(), def.config]) : def.config;
    const shape: Record<string, z.ZodType> = { [name]: config };
    if (extras.includes('name'))
      shape.name = z.string().optional().describe('Name in metrics and error records.');
    if (extras.includes('route')) {
      shape.route = z
        .string()
        .optional()
        .describe('SQL condition: this sink receives the records it accepts.');
    }
    return z.object(shape).strict().describe(def.summary);
  });
  return options.length === 1
    ? options[0]!
    : z.union(options as unknown as [z.ZodType, z.ZodType, ...z.ZodType[]]);
}

/** The published JSON Schema of a whole pipeline spec, built from the envelope and every component. */
export function pipelineJsonSchema(registry: Registry): Record<string, unknown> {
  const full = envelopeSchema.extend({
    source: slotSchema(registry, 'source', SLOT_EXTRA_KEYS.source),
    steps: z.array(slotSchema(registry, 'step', SLOT_EXTRA_KEYS.step)).optional(),
    sink: slotSchema(registry, 'sink', SLOT_EXTRA_KEYS.sink).optional(),
    sinks: z
      .array(slotSchema(registry, 'sink', SLOT_EXTRA_KEYS.sink))
      .min(1)
      .optional(),
    errors: slotSchema(registry, 'sink', SLOT_EXTRA_KEYS.errors).optional(),
  });
  const schema = z.toJSONSchema(full, { io: 'input', unrepresentable: 'any', target: 'draft-2020-12' });
  return {
    ...schema,
    $id: 'https://sluice.dev/schemas/pipeline.v1.json',
    title: 'Sluice pipeline (sluice/v1)',
  };
}
