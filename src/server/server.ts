/**
 * `sluice server`: the control plane in one process. It opens the job store (SQLite under the
 * state directory by default, or PostgreSQL), recovers jobs a previous server left running, and
 * serves the v1 API while the supervisor, the scheduler and the webhook sender run beside it.
 */
import { randomBytes } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { defaultRegistry } from '../registry.ts';
import type { Logger } from '../sdk/types.ts';
import { type Workspace, workspaceRoots } from '../spec/workspace.ts';
import { confineProcessDuckDB } from '../sql/duckdb.ts';
import { buildApp } from './app.ts';
import type { ServerContext } from './context.ts';
import { JobService } from './jobs.ts';
import { ServerMetrics } from './metrics.ts';
import { Scheduler } from './scheduler.ts';
import { describeDbUrl, openDb } from './store/db.ts';
import { JobStore, type TokenRecord, type TokenScope } from './store/jobs.ts';
import { migrate } from './store/schema.ts';
import { Supervisor } from './supervisor.ts';
import { WebhookService } from './webhooks.ts';

export interface ServerOptions {
  host?: string;
  /** 0 picks a free port. */
  port?: number;
  /** `postgres://...`, or a SQLite file; default `<stateDir>/sluice.db`. */
  database?: string;
  stateDir?: string;
  maxJobs?: number;
  cancelGraceMs?: number;
  /** Where jobs keep their checkpoints: s3://bucket/prefix or postgres://…; default each job's folder. */
  checkpointStore?: string;
  bodyLimit?: number;
  logger: Logger;
  /** Poll intervals, shortened by tests. */
  pollMs?: number;
  webhookRetry?: { attempts: number; baseMs: number; maxMs: number };
  /** `POST /v1/jobs/:id/query` interrupts a query after this long; default 30 s. */
  queryTimeoutMs?: number;
  /** Where every job's relative paths resolve, and the folder its paths must stay in; default the process's working directory. */
  dataRoot?: string;
  /** Other folders a job's paths may reach (absolute paths inside them are accepted). */
  allowRoots?: string[];
  /** Names or glob patterns of the environment variables `${env:…}` may read; default none. */
  allowEnv?: string[];
  /** Let specs use the `script` step (code from a module). Off by default. */
  allowScripts?: boolean;
}

export interface RunningServer {
  url: string;
  ctx: ServerContext;
  app: FastifyInstance;
  /** The admin token made on the first start of this store; undefined afterwards. */
  adminToken: string | undefined;
  store: string;
  /** Stops accepting requests and loops; running jobs drain, checkpoint and stay running in the store. */
  close(): Promise<void>;
}

/** The store `sluice server` opens with these options: `--database`, else sluice.db in the state dir. */
function storeOf(options: { database?: string | undefined; stateDir?: string | undefined }) {
  const stateDir = path.resolve(options.stateDir ?? '.sluice/server');
  return { stateDir, database: options.database ?? path.join(stateDir, 'sluice.db') };
}

/**
 * Writes a new token straight into the job store, without the API: the recovery path when no
 * admin token is left (or known). It needs what the server needs, access to its store, so only
 * an operator with a shell on the server's side can use it. The secret is returned once.
 */
export async function createTokenInStore(options: {
  database?: string | undefined;
  stateDir?: string | undefined;
  name: string;
  scopes: TokenScope[];
}): Promise<{ token: string; record: TokenRecord; store: string }> {
  const { database } = storeOf(options);
  const db = await openDb(database);
  try {
    await migrate(db);
    return {
      ...(await new JobStore(db).createToken(options.name, options.scopes)),
      store: describeDbUrl(database),
    };
  } finally {
    await db.close();
  }
}

export async function startServer(options: ServerOptions): Promise<RunningServer> {
  const { stateDir, database } = storeOf(options);
  const { logger } = options;
  const db = await openDb(database);
  await migrate(db);
  const store = new JobStore(db);
  const registry = defaultRegistry();
  const workspace: Workspace = {
    // The folder the server started in, as on a laptop: `sluice submit` from that folder works.
    dataRoot: path.resolve(options.dataRoot ?? process.cwd()),
    extraRoots: (options.allowRoots ?? []).map((r) => path.resolve(r)),
    hidden: [path.resolve(stateDir)],
    env: options.allowEnv ?? [],
    scripts: options.allowScripts ?? false,
  };
  await mkdir(workspace.dataRoot, { recursive: true });
  // Validation binds users' SQL in this process: its DuckDB reaches the workspace only.
  await confineProcessDuckDB({ allowedDirectories: workspaceRoots(workspace) });

  const metrics = new ServerMetrics({ jobCounts: () => store.countByState() });
  const webhooks = new WebhookService({
    db,
    logger,
    ...(options.webhookRetry ? { retry: options.webhookRetry } : {}),
    ...(options.pollMs ? { pollMs: options.pollMs } : {}),
  });
  const supervisor = new Supervisor({
    store,
    logger,
    metrics,
    webhooks,
    stateDir,
    workspace,
    maxJobs: options.maxJobs ?? 8,
    cancelGraceMs: options.cancelGraceMs ?? 30_000,
    ...(options.checkpointStore ? { checkpointStore: options.checkpointStore } : {}),
    ...(options.pollMs ? { pollMs: options.pollMs } : {}),
  });
  const jobs = new JobService({
    store,
    registry,
    logger,
    workspace,
    wake: () => supervisor.wake(),
    cancel: (job, reason) => supervisor.cancel(job, reason),
  });
  const scheduler = new Scheduler({
    db,
    store,
    logger,
    submit: (req) => jobs.submit(req),
    ...(options.pollMs ? { pollMs: options.pollMs } : {}),
  });
  const ctx: ServerContext = {
    db,
    store,
    logger,
    registry,
    stateDir,
    jobs,
    supervisor,
    webhooks,
    scheduler,
    metrics,
    workspace,
    queryTimeoutMs: options.queryTimeoutMs ?? 30_000,
  };

  // The first start of a store makes the admin token; it is shown once and kept only as a hash.
  let adminToken: string | undefined;
  if ((await store.countTokens()) === 0) {
    adminToken = (await store.createToken(`admin-${randomBytes(2).toString('hex')}`, ['admin'])).token;
  }

  const app = await buildApp(ctx, options.bodyLimit !== undefined ? { bodyLimit: options.bodyLimit } : {});
  await supervisor.start();
  scheduler.start();
  webhooks.start();
  const address = await app.listen({ host: options.host ?? '127.0.0.1', port: options.port ?? 7878 });
  logger.info('sluice server listening', { url: address, store: describeDbUrl(database) });

  let closing: Promise<void> | undefined;
  return {
    url: address,
    ctx,
    app,
    adminToken,
    store: describeDbUrl(database),
    close() {
      closing ??= (async () => {
        await app.close();
        await scheduler.stop();
        await supervisor.stop();
        await webhooks.stop();
        await db.close();
      })();
      return closing;
    },
  };
}
