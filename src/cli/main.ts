import { SluiceError } from '../sdk/errors.ts';
import { didYouMean } from '../spec/suggest.ts';
import { EXIT } from './exit-codes.ts';
import { type CommandSpec, helpText } from './options.ts';
import { packageVersion } from './version.ts';

export interface LoadedCommand {
  spec: CommandSpec;
  handler: (argv: string[]) => Promise<number>;
}

/**
 * The commands, each loaded only when it runs: `sluice --help` or `sluice validate` must not load
 * DuckDB, Kafka, S3, pg or fastify. The summary is here so that the overview loads no command;
 * a test checks it is the command's own.
 */
export interface CommandEntry {
  name: string;
  summary: string;
  load: () => Promise<LoadedCommand>;
}

export const COMMANDS: CommandEntry[] = [
  {
    name: 'init',
    summary:
      'Write a working starter spec from a template (quickstart: file → sql → file; http: enrich by an API).',
    load: async () => {
      const m = await import('./commands/init.ts');
      return { spec: m.initCommand, handler: m.init };
    },
  },
  {
    name: 'run',
    summary: 'Run a pipeline to completion on the embedded engine, with live progress and a summary.',
    load: async () => {
      const m = await import('./commands/run.ts');
      return { spec: m.runCommand, handler: m.run };
    },
  },
  {
    name: 'validate',
    summary: 'Check a spec and report every problem at once, each with its YAML line:column.',
    load: async () => {
      const m = await import('./commands/validate.ts');
      return { spec: m.validateCommand, handler: m.validate };
    },
  },
  {
    name: 'test',
    summary:
      "Run a pipeline's steps on the fixture records in FILE's .test.yaml and compare with the expected output.",
    load: async () => {
      const m = await import('./commands/test.ts');
      return { spec: m.testCommand, handler: m.test };
    },
  },
  {
    name: 'explain',
    summary: 'Show how each step would run (compiled JavaScript, DuckDB batches, DuckDB set-level) and why.',
    load: async () => {
      const m = await import('./commands/explain.ts');
      return { spec: m.explainCommand, handler: m.explain };
    },
  },
  {
    name: 'schema',
    summary: 'Print the JSON Schema of a pipeline spec (for editors and CI linting).',
    load: async () => {
      const m = await import('./commands/schema.ts');
      return { spec: m.schemaCommand, handler: m.schema };
    },
  },
  {
    name: 'components',
    summary: 'List the components, or show one: its fields, defaults and examples, from its schema.',
    load: async () => {
      const m = await import('./commands/components.ts');
      return { spec: m.componentsCommand, handler: m.components };
    },
  },
  {
    name: 'query',
    summary:
      'Run DuckDB SQL over past runs: tables runs, operators, files, errors and outputs (see docs/query.md).',
    load: async () => {
      const m = await import('./commands/query.ts');
      return { spec: m.queryCommand, handler: m.query };
    },
  },
  {
    name: 'server',
    summary: 'Run the control plane: the v1 API, job processes, schedules, webhooks and metrics.',
    load: async () => {
      const m = await import('./commands/server.ts');
      return { spec: m.serverCommand, handler: m.server };
    },
  },
  {
    name: 'server token create',
    summary:
      "Write a new API token straight into the server's job store and print it once: the way back in when no admin token is left.",
    load: async () => {
      const m = await import('./commands/server.ts');
      return { spec: m.serverTokenCreateCommand, handler: m.serverTokenCreate };
    },
  },
  {
    name: 'submit',
    summary:
      'Send a pipeline spec to a Sluice server as a new version and start a job of it; --wait follows it to the end.',
    load: async () => {
      const m = await import('./commands/submit.ts');
      return { spec: m.submitCommand, handler: m.submit };
    },
  },
  {
    name: 'jobs',
    summary: 'List the jobs of a Sluice server, newest first.',
    load: async () => {
      const m = await import('./commands/jobs.ts');
      return { spec: m.jobsCommand, handler: m.jobs };
    },
  },
  {
    name: 'job',
    summary:
      'Show one job of a Sluice server: state, reason, params, times, per-operator counts, checks and its history.',
    load: async () => {
      const m = await import('./commands/job.ts');
      return { spec: m.jobCommand, handler: m.job };
    },
  },
  {
    name: 'cancel',
    summary:
      'Cancel a job on a Sluice server: a pending job is cancelled at once, a running one drains and commits first.',
    load: async () => {
      const m = await import('./commands/cancel.ts');
      return { spec: m.cancelCommand, handler: m.cancel };
    },
  },
  {
    name: 'logs',
    summary: "Print a job's log from a Sluice server, readable (local times, levels) or as JSON lines.",
    load: async () => {
      const m = await import('./commands/logs.ts');
      return { spec: m.logsCommand, handler: m.logs };
    },
  },
  {
    name: 'backfill',
    summary:
      'Start one job of a stored pipeline per date from --from to --to (inclusive, oldest first) on a Sluice server.',
    load: async () => {
      const m = await import('./commands/backfill.ts');
      return { spec: m.backfillCommand, handler: m.backfill };
    },
  },
  {
    name: 'completion',
    summary: 'Print a shell completion script for bash or zsh.',
    load: async () => {
      const m = await import('./commands/completion.ts');
      return { spec: m.completionCommand, handler: m.completion };
    },
  },
];

function overview(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length));
  return [
    'sluice: batch and streaming record pipelines from a YAML spec',
    '',
    'usage: sluice COMMAND [options]   (sluice COMMAND --help for its options)',
    '',
    'commands:',
    ...COMMANDS.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    '',
    'options:',
    "  -h, --help      Show this help (or a command's, after its name).",
    '  -V, --version   Print the version of sluice.',
  ].join('\n');
}

/** The command `argv` names: a name may have several words (`server token create`), the longest that matches wins. */
export function findCommand(argv: readonly string[]): { entry: CommandEntry; rest: string[] } | undefined {
  const entry = COMMANDS.map((c) => ({ c, words: c.name.split(' ') }))
    .filter(({ words }) => words.every((w, i) => argv[i] === w))
    .sort((a, b) => b.words.length - a.words.length)[0];
  return entry && { entry: entry.c, rest: argv.slice(entry.words.length) };
}

export async function main(argv: string[]): Promise<number> {
  const first = argv[0];
  if (!first || first === '--help' || first === '-h' || first === 'help') {
    process.stdout.write(`${overview()}\n`);
    return first ? EXIT.ok : EXIT.usage;
  }
  if (first === '--version' || first === '-V' || first === 'version') {
    process.stdout.write(`${packageVersion()}\n`);
    return EXIT.ok;
  }
  const found = findCommand(argv);
  if (!found) {
    const names = COMMANDS.map((c) => c.name.split(' ')[0]!);
    const hint = first.startsWith('-') ? '' : didYouMean(first, [...new Set(names)]);
    const what = first.startsWith('-') ? `unknown option "${first}"` : `unknown command "${first}"`;
    process.stderr.write(`sluice: ${what}${hint ? `; ${hint.trimEnd()}` : ''}\n\n${overview()}\n`);
    return EXIT.usage;
  }
  const { entry, rest } = found;
  const command = await entry.load();
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(`${helpText(command.spec)}\n`);
    return EXIT.ok;
  }
  try {
    return await command.handler(rest);
  } catch (err) {
    // Imported here, on the way out, so that `sluice jobs` does not load the spec validator.
    const { SpecInvalidError } = await import('../spec/validate.ts');
    if (err instanceof SpecInvalidError) {
      process.stderr.write(`${err.message}\n`);
      return EXIT.specInvalid;
    }
    if (err instanceof SluiceError && err.code === 'SLUICE_USAGE') {
      process.stderr.write(`sluice ${entry.name}: ${err.message}\n`);
      return EXIT.usage;
    }
    const code = err instanceof SluiceError ? `${err.code}: ` : '';
    process.stderr.write(
      `sluice ${entry.name}: ${code}${err instanceof Error ? err.message : String(err)}\n`,
    );
    return EXIT.failed;
  }
}
