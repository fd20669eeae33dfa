/**
 * The checkpoint contract: what a run saves, and the store that keeps it. A connector (or a plugin)
 * that keeps checkpoints in its own system implements `CheckpointStore`; the engine's own store
 * keeps them in a file (engine/checkpoint-store.ts).
 */
import { z } from 'zod';
import { SluiceError } from './errors.ts';

/**
 * Output prepared for a checkpoint by sinks with two-phase commit, not yet known to be published:
 * a resumed run publishes it (`commitPrepared`) before it reads anything.
 */
export interface PendingCommits {
  /** Per sink name, the token its `prepareCommit` returned. */
  sinks: Record<string, unknown>;
  /** The errors sink's token, when it has two-phase commit. */
  errors?: unknown;
}

/** What a run saves at each checkpoint: enough for a restarted job to carry on where it stopped. */
export interface Checkpoint {
  pipeline: string;
  run_id: string;
  /** Per source partition, the last offset whose records the sinks committed. */
  positions: Record<string, number>;
  /** Output covered by `positions` that may not be published yet (absent in older checkpoints). */
  pending?: PendingCommits;
  saved_at: string;
  /** True once the run ended successfully: there is nothing left to resume. */
  final: boolean;
  records: { read: number; written: number; failed: number };
}

const checkpointSchema = z.object({
  pipeline: z.string(),
  run_id: z.string(),
  positions: z.record(z.string(), z.number()),
  pending: z.object({ sinks: z.record(z.string(), z.unknown()), errors: z.unknown().optional() }).optional(),
  saved_at: z.string(),
  final: z.boolean(),
  records: z.object({ read: z.number(), written: z.number(), failed: z.number() }),
});

/**
 * Where a pipeline keeps its last checkpoint. A save must be atomic: after a crash at any moment,
 * `load` returns either the previous checkpoint or the new one, never a torn one.
 */
export interface CheckpointStore {
  /** Where the checkpoint lives, for messages (a file path, an s3:// URL, a table and key). */
  readonly location: string;
  /** The saved checkpoint, or undefined when there is none. Throws SLUICE_CHECKPOINT when it is unreadable. */
  load(): Promise<Checkpoint | undefined>;
  save(cp: Checkpoint): Promise<void>;
  /** Removes the checkpoint (and anything a crash during a save left behind). */
  clear(): Promise<void>;
  /** Releases connections; the store is not used afterwards. */
  close?(): Promise<void>;
}

/**
 * Parses a stored checkpoint's text. Throws SLUICE_CHECKPOINT naming `location` when it is not
 * valid JSON or not a checkpoint, and telling how to start over.
 */
export function parseCheckpoint(text: string, location: string): Checkpoint {
  const corrupt = (why: string, cause: unknown) =>
    new SluiceError(
      'SLUICE_CHECKPOINT',
      `the checkpoint ${location} is corrupt: ${why}; delete it (or run with --from-scratch) to run the pipeline from the start`,
      { cause, details: { location } },
    );
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw corrupt(`it is not valid JSON (${errorText(err)})`, err);
  }
  const parsed = checkpointSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue?.path.length ? `${issue.path.join('.')}: ` : '';
    throw corrupt(`${where}${issue?.message ?? 'unexpected content'}`, parsed.error);
  }
  return parsed.data;
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
