import type { Registry } from '../registry.ts';
import type { Logger } from '../sdk/types.ts';
import type { Workspace } from '../spec/workspace.ts';
import type { JobService } from './jobs.ts';
import type { ServerMetrics } from './metrics.ts';
import type { Scheduler } from './scheduler.ts';
import type { Db } from './store/db.ts';
import type { JobStore } from './store/jobs.ts';
import type { Supervisor } from './supervisor.ts';
import type { WebhookService } from './webhooks.ts';

/** Everything a route or a background loop of the control plane may use. */
export interface ServerContext {
  db: Db;
  store: JobStore;
  logger: Logger;
  registry: Registry;
  /** Where jobs keep their runs, checkpoints and logs: `<state dir>/jobs/<job id>/`. */
  stateDir: string;
  jobs: JobService;
  supervisor: Supervisor;
  webhooks: WebhookService;
  scheduler: Scheduler;
  metrics: ServerMetrics;
  /**
   * What a job may reach (docs/server.md, Workspaces and confinement). `secrets` is unset here:
   * each token's grants narrow it (`workspaceFor`).
   */
  workspace: Workspace;
  /** `POST /v1/jobs/:id/query` interrupts a query after this long. */
  queryTimeoutMs: number;
}
