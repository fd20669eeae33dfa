import { describeFields } from '../../docs/describe.ts';
import { defaultRegistry } from '../../registry.ts';
import { SluiceError } from '../../sdk/errors.ts';
import type { ComponentDefinition } from '../../sdk/types.ts';
import { didYouMean } from '../../spec/suggest.ts';
import { EXIT } from '../exit-codes.ts';
import { renderTable } from '../format.ts';
import { defineCommand, parseCommand } from '../options.ts';

export const componentsCommand = defineCommand({
  name: 'components',
  usage: 'sluice components [NAME] [--json]',
  summary: 'List the components, or show one: its fields, defaults and examples, from its schema.',
  positionals: ['NAME?'],
  options: {
    json: { type: 'boolean', description: 'Print as JSON.' },
  },
});

export async function components(argv: string[]): Promise<number> {
  const { options, positionals } = parseCommand(componentsCommand, argv);
  const registry = defaultRegistry();
  const name = positionals[0];
  if (!name) {
    const all = registry.all();
    if (options.json) {
      process.stdout.write(
        `${JSON.stringify(
          all.map((c) => ({ kind: c.kind, name: c.name, summary: c.summary })),
          null,
          2,
        )}\n`,
      );
    } else {
      process.stdout.write(
        `${renderTable(
          ['kind', 'name', 'summary'],
          all.map((c) => [c.kind, c.name, c.summary]),
        )}\n`,
      );
    }
    return EXIT.ok;
  }
  const matches = registry.all().filter((c) => c.name === name);
  if (!matches.length) {
    const names = [...new Set(registry.all().map((c) => c.name))];
    throw new SluiceError(
      'SLUICE_USAGE',
      `no component "${name}"; ${didYouMean(name, names)}components: ${names.join(', ')}`,
    );
  }
  if (options.json) {
    const out = matches.map((c) => ({
      kind: c.kind,
      name: c.name,
      summary: c.summary,
      fields: describeFields(c.config),
      examples: c.examples,
    }));
    process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
  } else {
    process.stdout.write(`${matches.map(describeComponent).join('\n\n')}\n`);
  }
  return EXIT.ok;
}

function describeComponent(c: ComponentDefinition): string {
  const rows = describeFields(c.config).map((f) => [
    f.name,
    f.type.replaceAll('\\|', '|'),
    f.required ? 'required' : f.default === undefined ? '' : JSON.stringify(f.default),
    f.description,
  ]);
  const lines = [`${c.name} (${c.kind}): ${c.summary}`];
  if (c.description) lines.push('', c.description);
  if (c.shorthand) lines.push('', `Shorthand: \`${c.name}: <${c.shorthand}>\``);
  lines.push('', renderTable(['field', 'type', 'default', 'description'], rows));
  for (const ex of c.examples) {
    const body = ex.yaml
      .trimEnd()
      .split('\n')
      .map((l) => `    ${l}`)
      .join('\n');
    lines.push('', `# ${ex.title}`, `${c.name}:`, body);
  }
  return lines.join('\n');
}
