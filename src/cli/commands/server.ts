import { SluiceError } from '../../sdk/errors.ts';
import { createTokenInStore, startServer } from '../../server/server.ts';
import { TOKEN_SCOPES, type TokenScope } from '../../server/store/jobs.ts';
import { createLogger, isLogLevel } from '../../shared/log.ts';
import { EXIT } from '../exit-codes.ts';
import { defineCommand, type OptionSpec, parseCommand } from '../options.ts';
import { onStopSignal } from '../signals.ts';

const DATABASE_OPTION = {
  type: 'string',
  value: 'URL',
  description:
    'Job store: postgres://USER@HOST:PORT/DB for PostgreSQL; default: the embedded SQLite file sluice.db in --state-dir.',
} as const satisfies OptionSpec;

const STATE_DIR_OPTION = {
  type: 'string',
  value: 'DIR',
  default: '.sluice/server',
  description: "Where jobs keep their runs, checkpoints and logs (and the embedded store's file).",
} as const satisfies OptionSpec;

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
    database: DATABASE_OPTION,
    'state-dir': STATE_DIR_OPTION,
    'data-root': {
      type: 'string',
      value: 'DIR',
      description:
        "The jobs' workspace: relative paths in specs resolve here and no path may leave it, nor reach --state-dir (docs/server.md); default: the current directory.",
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
  // One write: whoever reads stderr up to the URL has the token line too (a pipe write is atomic).
  const token = running.adminToken ? `sluice server: admin token (shown once): ${running.adminToken}\n` : '';
  process.stderr.write(`sluice server: listening on ${running.url} (store: ${running.store})\n${token}`);
  await new Promise<void>((resolve) => {
    const offSignals = onStopSignal(['SIGINT', 'SIGTERM'], (signal) => {
      process.stderr.write(
        `sluice server: ${signal}: stopping; running jobs checkpoint and resume on the next start\n`,
      );
      offSignals();
      resolve();
    });
  });
  await running.close();
  return EXIT.ok;
}

export const serverTokenCreateCommand = defineCommand({
  name: 'server token create',
  usage: 'sluice server token create [--scope SCOPE]... [--name NAME] [--database URL | --state-dir DIR]',
  summary:
    "Write a new API token straight into the server's job store and print it once: the way back in when no admin token is left.",
  positionals: [],
  options: {
    scope: {
      type: 'string',
      multiple: true,
      value: 'SCOPE',
      default: 'admin',
      description: 'read, write or admin.',
    },
    name: {
      type: 'string',
      value: 'NAME',
      description: 'What the token is for, shown by GET /v1/tokens (default: recovery-<date>).',
    },
    database: DATABASE_OPTION,
    'state-dir': STATE_DIR_OPTION,
  },
});

/** Prints the token alone on stdout (so `$(sluice server token create)` captures it), the rest on stderr. */
export async function serverTokenCreate(argv: string[]): Promise<number> {
  const { options } = parseCommand(serverTokenCreateCommand, argv);
  const scopes = options.scope ?? ['admin'];
  for (const scope of scopes) {
    if (!(TOKEN_SCOPES as readonly string[]).includes(scope))
      throw new SluiceError('SLUICE_USAGE', `--scope takes ${TOKEN_SCOPES.join(', ')}, got "${scope}"`);
  }
  const { token, record, store } = await createTokenInStore({
    database: options.database,
    stateDir: options['state-dir'],
    name: options.name ?? `recovery-${new Date().toISOString().slice(0, 10)}`,
    scopes: [...new Set(scopes)] as TokenScope[],
  });
  process.stderr.write(
    `sluice server token create: token ${record.id} (${record.name}, ${record.scopes.join(', ')}) in ${store}; shown once:\n`,
  );
  process.stdout.write(`${token}\n`);
  return EXIT.ok;
}
