import { access, mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { SluiceError } from '../../sdk/errors.ts';
import { didYouMean } from '../../spec/suggest.ts';
import { EXIT } from '../exit-codes.ts';
import { defineCommand, parseCommand } from '../options.ts';

export const initCommand = defineCommand({
  name: 'init',
  usage: 'sluice init [TEMPLATE] [--dir DIR] [--force]',
  summary:
    'Write a working starter spec from a template (quickstart: file → sql → file; http: enrich by an API).',
  positionals: ['TEMPLATE?'],
  options: {
    dir: {
      type: 'string',
      value: 'DIR',
      default: '.',
      description: 'Folder to write into (created if missing).',
    },
    force: { type: 'boolean', description: 'Overwrite files that exist.' },
  },
});

const PAYMENTS_CSV = `id,country,amount,email
1,de,12.50,ana@example.com
2,fr,0,bo@example.com
3,us,99.90,cy@example.com
4,nl,7.25,di@example.com
`;

/** Per template: file name → content. Each spec validates and runs as written. */
export const TEMPLATES: Record<string, { summary: string; files: Record<string, string> }> = {
  quickstart: {
    summary: 'a CSV file cleaned with SQL, written as JSON Lines',
    files: {
      'pipeline.yaml': `# Written by \`sluice init quickstart\`. Run it: sluice run pipeline.yaml
apiVersion: sluice/v1
kind: Pipeline
metadata:
  name: payments
source:
  file:
    path: data/payments.csv # relative to this file
    csv:
      columns: { id: integer, country: string, amount: double, email: string }
steps:
  - sql: SELECT id, upper(country) AS country, round(amount * 100) AS cents, email FROM input WHERE amount > 0
sinks:
  - file: { path: out/payments/, format: jsonl }
`,
      'data/payments.csv': PAYMENTS_CSV,
    },
  },
  http: {
    summary: 'records enriched by one HTTP call each (set ENRICH_URL to your API)',
    files: {
      'pipeline.yaml': `# Written by \`sluice init http\`. Each record is sent to an API and its answer kept in \`enrichment\`.
# Run it: ENRICH_URL=https://api.example.com/v1/customers sluice run pipeline.yaml
apiVersion: sluice/v1
kind: Pipeline
metadata:
  name: enrich
source:
  file:
    path: data/payments.csv
    csv:
      columns: { id: integer, country: string, amount: double, email: string }
steps:
  - http:
      request:
        url: "\${env:ENRICH_URL:-http://127.0.0.1:8080/lookup}/{{ id }}"
      concurrency: 16
      response: { into: enrichment }
sinks:
  - file: { path: out/enriched/, format: jsonl }
`,
      'data/payments.csv': PAYMENTS_CSV,
    },
  },
};

export async function init(argv: string[]): Promise<number> {
  const { options, positionals } = parseCommand(initCommand, argv);
  const name = positionals[0] ?? 'quickstart';
  const template = TEMPLATES[name];
  const names = Object.keys(TEMPLATES);
  if (!template) {
    throw new SluiceError(
      'SLUICE_USAGE',
      `no template "${name}"; ${didYouMean(name, names)}templates: ${names.join(', ')}`,
    );
  }
  const dir = path.resolve(options.dir ?? '.');
  if (!options.force) {
    for (const file of Object.keys(template.files)) {
      const exists = await access(path.join(dir, file)).then(
        () => true,
        () => false,
      );
      if (exists)
        throw new SluiceError('SLUICE_USAGE', `${path.join(dir, file)} exists; --force overwrites it`);
    }
  }
  for (const [file, text] of Object.entries(template.files)) {
    await mkdir(path.dirname(path.join(dir, file)), { recursive: true });
    await writeFile(path.join(dir, file), text);
    process.stdout.write(`wrote ${path.relative(process.cwd(), path.join(dir, file)) || file}\n`);
  }
  const spec = path.relative(process.cwd(), path.join(dir, 'pipeline.yaml'));
  process.stdout.write(`\n${template.summary}. Next:\n  sluice validate ${spec}\n  sluice run ${spec}\n`);
  return EXIT.ok;
}
