import { SluiceError } from '../../sdk/errors.ts';
import { startServer } from '../../server/server.ts';
import { EXIT } from '../exit-codes.ts';
import { createLogger, isLogLevel } from '../logger.ts';
import { defineCommand, parseCommand } from '../options.ts';

export const serverCommand = defineCommand({
  name: 'server',
  usage:
    'sluice server [--host HOST] [--port PORT] [--database URL] [--state-dir DIR] [--data-root DIR] [--max-jobs N]',
  summary: 'Run the control plane: the v1 API, job processes, schedules, webhooks and metrics.',
  positionals: [],
  options: {
    host: { type: 'string', value: 'HOST', default: '127.0.0.1', description: 'Address to listen on.' },
    port: {
      type: 'string',
      value: 'PORT',
      default: '7878',
      description: 'Port to listen on; 0 picks a free one.',
    },
    database: {
      type: 'string',
      value: 'URL',
      description:
        'Job store: postgres://USER@HOST:PORT/DB for PostgreSQL; default: the embedded SQLite file sluice.db in --state-dir.',
    },
    'state-dir': {
      type: 'string',
      value: 'DIR',
      default: '.sluice/server',
      description: "Where jobs keep their runs, checkpoints and logs (and the embedded store's file).",
    },
    'data-root': {
      type: 'string',
      value: 'DIR',
      description:
        "The jobs' workspace: relative paths in specs resolve here and no path may leave it (docs/server.md); default: data/ in --state-dir.",
    },
    'allow-root': {
      type: 'string',
      value: 'DIR',
      multiple: true,
      description: 'Another folder jobs may read and write (absolute paths inside it are accepted).',
    },
    'allow-env': {
      type: 'string',
      value: 'NAME',
      multiple: true,
      description:
        'An environment variable (or glob, e.g. PUBLIC_*) that `${env:…}` in specs may read; none by default.',
    },
    'allow-scripts': {
      type: 'boolean',
      description: 'Let specs run `script` steps (code from a module in the workspace); refused by default.',
    },
    'checkpoint-store': {
      type: 'string',
      value: 'LOCATION',
      description:
        "Where jobs keep their checkpoints: s3://bucket/prefix or a postgres:// URL (key job-<id>); default: each job's folder in --state-dir.",
    },
    'max-jobs': {
      type: 'string',
      value: 'N',
      default: '8',
      description: 'Job processes running at once; more submitted jobs wait, pending.',
    },
    'cancel-grace': {
      type: 'string',
      value: 'SECONDS',
      default: '30',
      description: 'How long a cancelled job may drain and commit before its process is killed.',
    },
    'log-level': {
      type: 'string',
      value: 'LEVEL',
      default: 'info',
      description: 'debug, info, warn or error.',
    },
  },
});

export async function server(argv: string[]): Promise<number> {
  const { options } = parseCommand(serverCommand, argv);
  const level = options['log-level'] ?? 'info';
  if (!isLogLevel(level))
    throw new SluiceError('SLUICE_USAGE', `--log-level takes debug, info, warn or error, got "${level}"`);
  const number = (name: 'port' | 'max-jobs' | 'cancel-grace', min: number): number => {
    const n = Number(options[name] ?? serverCommand.options[name].default);
    if (!Number.isInteger(n) || n < min)
      throw new SluiceError(
        'SLUICE_USAGE',
        `--${name} takes a whole number >= ${min}, got "${options[name]}"`,
      );
    return n;
  };
  const logger = createLogger({ level, format: 'json', bindings: { component: 'server' } });
  const running = await startServer({
    host: options.host ?? '127.0.0.1',
    port: number('port', 0),
    ...(options.database ? { database: options.database } : {}),
    stateDir: options['state-dir'] ?? '.sluice/server',
    maxJobs: number('max-jobs', 1),
    cancelGraceMs: number('cancel-grace', 0) * 1000,
    ...(options['checkpoint-store'] ? { checkpointStore: options['checkpoint-store'] } : {}),
    ...(options['data-root'] ? { dataRoot: options['data-root'] } : {}),
    allowRoots: options['allow-root'] ?? [],
    allowEnv: options['allow-env'] ?? [],
    allowScripts: options['allow-scripts'] ?? false,
    logger,
  });
  process.stderr.write(`sluice server: listening on ${running.url} (store: ${running.store})\n`);
  if (running.adminToken) {
    process.stderr.write(`sluice server: admin token (shown once): ${running.adminToken}\n`);
  }
  await new Promise<void>((resolve) => {
    const onSignal = (signal: NodeJS.Signals) => {
      process.stderr.write(
        `sluice server: ${signal}: stopping; running jobs checkpoint and resume on the next start\n`,
      );
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      resolve();
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
  await running.close();
  return EXIT.ok;
}
