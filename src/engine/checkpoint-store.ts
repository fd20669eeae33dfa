import { randomBytes } from 'node:crypto';
import fsp from 'node:fs/promises';
import path from 'node:path';
import {
  type Checkpoint,
  type CheckpointStore,
  type PendingCommits,
  parseCheckpoint,
} from '../sdk/checkpoint.ts';
import { SluiceError } from '../sdk/errors.ts';

export {
  type Checkpoint,
  type CheckpointStore,
  type PendingCommits,
  parseCheckpoint,
} from '../sdk/checkpoint.ts';

const FILE = 'checkpoint.json';

/**
 * Keeps one checkpoint as `checkpoint.json` in a directory. A save replaces the file atomically
 * (temporary file, fsync, rename, fsync of the directory), so a crash at any moment leaves either
 * the previous checkpoint or the new one, never a torn file.
 */
export class FileCheckpointStore implements CheckpointStore {
  readonly dir: string;
  readonly file: string;

  constructor(dir: string) {
    this.dir = path.resolve(dir);
    this.file = path.join(this.dir, FILE);
  }

  get location(): string {
    return this.file;
  }

  /** The saved checkpoint, or undefined when there is none. Throws SLUICE_CHECKPOINT when it is unreadable. */
  async load(): Promise<Checkpoint | undefined> {
    let text: string;
    try {
      text = await fsp.readFile(this.file, 'utf8');
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') return undefined;
      throw new SluiceError(
        'SLUICE_CHECKPOINT',
        `cannot read the checkpoint ${this.file}: ${errorText(err)}`,
        {
          cause: err,
          details: { file: this.file },
        },
      );
    }
    return parseCheckpoint(text, this.file);
  }

  async save(cp: Checkpoint): Promise<void> {
    const tmp = `${this.file}.tmp-${randomBytes(6).toString('hex')}`;
    try {
      const created = await fsp.mkdir(this.dir, { recursive: true });
      // Folders made just now must themselves be durable, or the renamed file may vanish in a crash.
      if (created) {
        for (let d = this.dir; d !== path.dirname(d); d = path.dirname(d)) {
          await syncDir(path.dirname(d));
          if (d === created) break;
        }
      }
      const handle = await fsp.open(tmp, 'wx');
      try {
        await handle.writeFile(`${JSON.stringify(cp, null, 2)}\n`);
        await handle.sync();
      } finally {
        await handle.close();
      }
      await fsp.rename(tmp, this.file);
      await syncDir(this.dir);
    } catch (err) {
      await fsp.unlink(tmp).catch(() => {});
      throw new SluiceError(
        'SLUICE_CHECKPOINT',
        `cannot save the checkpoint ${this.file}: ${errorText(err)}`,
        {
          cause: err,
          details: { file: this.file },
        },
      );
    }
  }

  /** Removes the checkpoint and any temporary file a crash during a save left behind. */
  async clear(): Promise<void> {
    try {
      const names = await fsp.readdir(this.dir).catch((err: unknown) => {
        if (errnoCode(err) === 'ENOENT') return [];
        throw err;
      });
      const ours = names.filter((n) => n === FILE || n.startsWith(`${FILE}.tmp-`));
      if (!ours.length) return;
      await Promise.all(ours.map((n) => fsp.rm(path.join(this.dir, n), { force: true })));
      await syncDir(this.dir);
    } catch (err) {
      throw new SluiceError(
        'SLUICE_CHECKPOINT',
        `cannot remove the checkpoint ${this.file}: ${errorText(err)}`,
        {
          cause: err,
          details: { file: this.file },
        },
      );
    }
  }
}

/** Makes a directory's entries (a rename, a new file) durable. */
async function syncDir(dir: string): Promise<void> {
  const handle = await fsp.open(dir, 'r');
  try {
    await handle.sync();
  } catch (err) {
    // Some platforms and file systems cannot fsync a directory; the rename is still atomic there.
    if (!['EINVAL', 'EISDIR', 'EPERM', 'ENOTSUP'].includes(errnoCode(err) ?? '')) throw err;
  } finally {
    await handle.close();
  }
}

function errnoCode(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | null)?.code;
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * The `onCheckpoint` of a run that keeps its checkpoints in `store` (`sluice run`, a server job):
 * positions and pending output saved together, with the run's counts at that moment.
 */
export function saveCheckpointsTo(
  store: CheckpointStore,
  pipeline: string,
  runId: string,
  counts: () => Checkpoint['records'],
): (positions: Record<string, number>, final: boolean, pending?: PendingCommits) => Promise<void> {
  return (positions, final, pending) =>
    store.save({
      pipeline,
      run_id: runId,
      positions,
      ...(pending ? { pending } : {}),
      saved_at: new Date().toISOString(),
      final,
      records: counts(),
    });
}
