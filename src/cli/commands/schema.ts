import { writeFile } from 'node:fs/promises';
import { defaultRegistry } from '../../registry.ts';
import { pipelineJsonSchema } from '../../spec/json-schema.ts';
import { EXIT } from '../exit-codes.ts';
import { defineCommand, parseCommand } from '../options.ts';

export const schemaCommand = defineCommand({
  name: 'schema',
  usage: 'sluice schema [--output FILE]',
  summary: 'Print the JSON Schema of a pipeline spec (for editors and CI linting).',
  positionals: [],
  options: {
    output: {
      type: 'string',
      short: 'o',
      value: 'FILE',
      description: 'Write the schema to FILE instead of stdout.',
    },
  },
});

export async function schema(argv: string[]): Promise<number> {
  const { options } = parseCommand(schemaCommand, argv);
  const text = `${JSON.stringify(pipelineJsonSchema(defaultRegistry()), null, 2)}\n`;
  if (options.output) await writeFile(options.output, text);
  else process.stdout.write(text);
  return EXIT.ok;
}
