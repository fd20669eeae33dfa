/** The options of `sluice run`, and their checks (the CLI page is generated from the table). */
import { SluiceError } from '../../sdk/errors.ts';
import { isLogLevel, type LogLevel } from '../../shared/log.ts';
import { defineCommand, PARAM_OPTION, parseCommand, parseParams } from '../options.ts';

export const runCommand = defineCommand({
  name: 'run',
  usage: 'sluice run FILE [--param KEY=VALUE]... [--dry-run] [--no-pushdown] [--from-scratch]',
  summary: 'Run a pipeline to completion on the embedded engine, with live progress and a summary.',
  positionals: ['FILE'],
  options: {
    param: PARAM_OPTION,
    'dry-run': {
      type: 'boolean',
      description:
        'Validate the spec and print the plan (operators, settings, outputs) without reading a record.',
    },
    'no-pushdown': {
      type: 'boolean',
      description:
        'Always run on the streaming engine, even when the pipeline could be handed to DuckDB as one COPY ' +
        '(same as settings.pushdown: off; see docs/pushdown.md).',
    },
    'from-scratch': {
      type: 'boolean',
      description:
        'Ignore the checkpoint an interrupted or killed run of this pipeline left, and read the input from the start.',
    },
    'checkpoint-store': {
      type: 'string',
      value: 'LOCATION',
      default: '.sluice/checkpoints',
      description:
        'Where each pipeline (by metadata.name) keeps its last checkpoint: a folder, s3://bucket/prefix or a ' +
        'postgres:// URL (table sluice_state_checkpoints). A run that finds an unfinished one resumes from it.',
    },
    'run-dir': {
      type: 'string',
      value: 'DIR',
      default: '.sluice/runs',
      description:
        'Folder under which each run gets its own directory (run.json, the default errors/ folder).',
    },
    progress: {
      type: 'string',
      value: 'MODE',
      default: 'auto',
      description:
        'auto (a live line on a terminal, plain lines otherwise; none when the stdout sink writes to the terminal), ' +
        'live (whole lines instead when the stdout sink writes to a terminal, so that no record is glued to it), plain or none.',
    },
    'progress-interval': {
      type: 'string',
      value: 'SECONDS',
      default: '10',
      description: 'Seconds between plain progress lines.',
    },
    'log-level': {
      type: 'string',
      value: 'LEVEL',
      default: 'warn',
      description: 'debug, info, warn or error.',
    },
    'log-format': {
      type: 'string',
      value: 'FORMAT',
      default: 'text',
      description: 'text or json (pino lines on stderr).',
    },
    json: { type: 'boolean', description: 'Print the run summary as JSON instead of a table.' },
  },
});

export interface RunArguments {
  file: string;
  params: Record<string, string>;
  level: LogLevel;
  format: 'text' | 'json';
  progress: 'auto' | 'live' | 'plain' | 'none';
  intervalMs: number;
  runsDir: string;
  checkpointStore: string;
  dryRun: boolean;
  pushdown: 'auto' | 'off';
  fromScratch: boolean;
  json: boolean;
}

export function parseRunArguments(argv: string[]): RunArguments {
  const { options, positionals } = parseCommand(runCommand, argv);
  const level = options['log-level'] ?? 'warn';
  if (!isLogLevel(level))
    throw new SluiceError('SLUICE_USAGE', `--log-level takes debug, info, warn or error, got "${level}"`);
  const format = options['log-format'] ?? 'text';
  if (format !== 'text' && format !== 'json')
    throw new SluiceError('SLUICE_USAGE', `--log-format takes text or json, got "${format}"`);
  const progress = options.progress ?? 'auto';
  if (progress !== 'auto' && progress !== 'live' && progress !== 'plain' && progress !== 'none')
    throw new SluiceError('SLUICE_USAGE', `--progress takes auto, live, plain or none, got "${progress}"`);
  const interval = Number(options['progress-interval'] ?? '10');
  if (!(interval > 0))
    throw new SluiceError('SLUICE_USAGE', '--progress-interval takes a positive number of seconds');
  return {
    file: positionals[0]!,
    params: parseParams(options.param),
    level,
    format,
    progress,
    intervalMs: interval * 1000,
    runsDir: options['run-dir'] ?? '.sluice/runs',
    checkpointStore: options['checkpoint-store'] ?? '.sluice/checkpoints',
    dryRun: options['dry-run'] === true,
    pushdown: options['no-pushdown'] ? 'off' : 'auto',
    fromScratch: options['from-scratch'] === true,
    json: options.json === true,
  };
}
