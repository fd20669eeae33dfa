import { SluiceError } from '../sdk/errors.ts';
import { SpecInvalidError } from '../spec/validate.ts';
import { backfill, backfillCommand } from './commands/backfill.ts';
import { cancel, cancelCommand } from './commands/cancel.ts';
import { components, componentsCommand } from './commands/components.ts';
import { explain, explainCommand } from './commands/explain.ts';
import { job, jobCommand } from './commands/job.ts';
import { jobs, jobsCommand } from './commands/jobs.ts';
import { logs, logsCommand } from './commands/logs.ts';
import { query, queryCommand } from './commands/query.ts';
import { run, runCommand } from './commands/run.ts';
import { schema, schemaCommand } from './commands/schema.ts';
import { server, serverCommand, serverTokenCreate, serverTokenCreateCommand } from './commands/server.ts';
import { submit, submitCommand } from './commands/submit.ts';
import { validate, validateCommand } from './commands/validate.ts';
import { EXIT } from './exit-codes.ts';
import { type CommandSpec, helpText } from './options.ts';

export const COMMANDS: { spec: CommandSpec; handler: (argv: string[]) => Promise<number> }[] = [
  { spec: runCommand, handler: run },
  { spec: validateCommand, handler: validate },
  { spec: explainCommand, handler: explain },
  { spec: schemaCommand, handler: schema },
  { spec: componentsCommand, handler: components },
  { spec: queryCommand, handler: query },
  { spec: serverCommand, handler: server },
  { spec: serverTokenCreateCommand, handler: serverTokenCreate },
  { spec: submitCommand, handler: submit },
  { spec: jobsCommand, handler: jobs },
  { spec: jobCommand, handler: job },
  { spec: cancelCommand, handler: cancel },
  { spec: logsCommand, handler: logs },
  { spec: backfillCommand, handler: backfill },
];

function overview(): string {
  const width = Math.max(...COMMANDS.map((c) => c.spec.name.length));
  return [
    'sluice: batch and streaming record pipelines from a YAML spec',
    '',
    'usage: sluice COMMAND [options]   (sluice COMMAND --help for its options)',
    '',
    'commands:',
    ...COMMANDS.map((c) => `  ${c.spec.name.padEnd(width)}  ${c.spec.summary}`),
  ].join('\n');
}

export async function main(argv: string[]): Promise<number> {
  const first = argv[0];
  if (!first || first === '--help' || first === '-h' || first === 'help') {
    process.stdout.write(`${overview()}\n`);
    return first ? EXIT.ok : EXIT.usage;
  }
  // A command's name may have several words (`server token create`): the longest that matches wins.
  const command = COMMANDS.map((c) => ({ ...c, words: c.spec.name.split(' ') }))
    .filter((c) => c.words.every((w, i) => argv[i] === w))
    .sort((a, b) => b.words.length - a.words.length)[0];
  const name = command?.spec.name ?? first;
  const rest = argv.slice(command?.words.length ?? 1);
  if (!command) {
    process.stderr.write(`sluice: unknown command "${name}"\n\n${overview()}\n`);
    return EXIT.usage;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(`${helpText(command.spec)}\n`);
    return EXIT.ok;
  }
  try {
    return await command.handler(rest);
  } catch (err) {
    if (err instanceof SpecInvalidError) {
      process.stderr.write(`${err.message}\n`);
      return EXIT.specInvalid;
    }
    if (err instanceof SluiceError && err.code === 'SLUICE_USAGE') {
      process.stderr.write(`sluice ${name}: ${err.message}\n`);
      return EXIT.usage;
    }
    const code = err instanceof SluiceError ? `${err.code}: ` : '';
    process.stderr.write(`sluice ${name}: ${code}${err instanceof Error ? err.message : String(err)}\n`);
    return EXIT.failed;
  }
}
