/**
 * The local committer: a finished part is renamed from its hidden temporary name to its final
 * name in the same folder. A checkpoint's token lists the renames; a resumed run repeats them
 * (one already done is left as it is) and deletes the killed attempt's other temporary files.
 */
import fsp from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { SluiceError } from '../../../sdk/errors.ts';
import type { Logger } from '../../../sdk/types.ts';
import {
  errnoCode,
  errorText,
  escapeRegExp,
  exists,
  renameIntoPlace,
  syncPath,
  unlinkQuietly,
} from '../fs-util.ts';
import type { FinishedPart, PartWriter } from '../part-writer.ts';
import type { Committer, OutputList } from './committer.ts';

/**
 * What `prepareCommit` returns and a checkpoint keeps: the part files to rename into place, and
 * which run and folder wrote them (to clean up that run's other temporary files on recovery).
 */
const commitTokenSchema = z.object({
  sink: z.literal('file'),
  run_id: z.string().min(1),
  root: z.string().min(1),
  files: z.array(z.object({ temp: z.string().min(1), final: z.string().min(1) })),
});
export type CommitToken = z.output<typeof commitTokenSchema>;

export class LocalCommitter implements Committer {
  readonly #writer: PartWriter;
  readonly #root: string;
  readonly #runId: string;
  readonly #outputs: OutputList;
  readonly #logger: Logger;
  /** Finished parts handed out in a commit token, not yet renamed: abort() leaves them alone. */
  #prepared: FinishedPart[] = [];

  constructor(writer: PartWriter, root: string, runId: string, outputs: OutputList, logger: Logger) {
    this.#writer = writer;
    this.#root = root;
    this.#runId = runId;
    this.#outputs = outputs;
    this.#logger = logger;
  }

  async nameTaken(): Promise<boolean> {
    return false;
  }

  async prepare(): Promise<CommitToken> {
    const files = this.#writer.finished;
    this.#writer.finished = [];
    for (const f of files) {
      this.#writer.handOver(f.tempPath);
      this.#prepared.push(f);
    }
    // The checkpoint will name these files: their folder entries must be on disk before it is saved.
    const dirs = this.#writer.takeDirtyDirs();
    try {
      await Promise.all(dirs.map((d) => syncPath(d, 'r', true)));
    } catch (err) {
      throw new SluiceError('SLUICE_SINK_IO', `cannot sync ${this.#root}: ${errorText(err)}`, { cause: err });
    }
    return {
      sink: 'file',
      run_id: this.#runId,
      root: this.#root,
      files: files.map((f) => ({ temp: f.tempPath, final: f.finalPath })),
    };
  }

  async commitPrepared(value: unknown, recovery: boolean): Promise<void> {
    if ((value as { store?: unknown } | null)?.store === 's3')
      throw new SluiceError(
        'SLUICE_CHECKPOINT',
        `the checkpoint holds output prepared for ${String((value as { root?: unknown }).root)}, but this sink writes to ${this.#root}; run the pipeline from the start`,
        { details: { token: value } },
      );
    const token = await publishLocalToken(value, this.#outputs);
    const published = new Set(token.files.map((f) => f.temp));
    this.#prepared = this.#prepared.filter((f) => !published.has(f.tempPath));
    if (recovery) await removeLeftovers(token, this.#logger);
  }

  async publish(): Promise<void> {
    for (const list of [this.#prepared, this.#writer.finished]) {
      while (list.length) {
        const { tempPath, finalPath } = list[0]!;
        await renameIntoPlace(tempPath, finalPath);
        this.#writer.handOver(tempPath);
        list.shift();
        this.#outputs.add(finalPath);
      }
    }
  }

  async abort(): Promise<void> {}

  async release(): Promise<void> {}
}

/**
 * Renames a token's files into place; a file already renamed is left as it is. Returns the
 * checked token.
 */
export async function publishLocalToken(value: unknown, outputs: OutputList): Promise<CommitToken> {
  const token = parseToken(value);
  for (const { temp, final } of token.files) {
    try {
      await renameIntoPlace(temp, final);
    } catch (err) {
      if (errnoCode((err as Error).cause) !== 'ENOENT' || !(await exists(final))) throw err;
    }
    outputs.add(final);
  }
  return token;
}

/**
 * After a token from a checkpoint was published: an earlier attempt was killed, and that attempt's
 * temporary files the token does not name hold records after the checkpoint, which the resumed
 * run writes again; they are deleted.
 */
export async function removeLeftovers(token: CommitToken, logger: Logger): Promise<void> {
  const removed = await removeTemporaryFiles(token.root, token.run_id);
  logger.info('published the output an earlier attempt prepared for its last checkpoint', {
    path: token.root,
    files: token.files.length,
    removed_temporary_files: removed,
  });
}

/**
 * A commit token from a checkpoint, checked: only a hidden `.NAME.inprogress` file is ever renamed,
 * to NAME in the same folder, under the sink's folder.
 */
function parseToken(value: unknown): CommitToken {
  const parsed = commitTokenSchema.safeParse(value);
  const bad = (why: string) =>
    new SluiceError('SLUICE_CHECKPOINT', `not a file sink commit token: ${why}`, {
      details: { token: value },
    });
  if (!parsed.success) throw bad(parsed.error.issues[0]?.message ?? 'unexpected content');
  const root = path.resolve(parsed.data.root);
  for (const { temp, final } of parsed.data.files) {
    const inside = path.relative(root, final);
    if (
      path.dirname(temp) !== path.dirname(final) ||
      path.basename(temp) !== `.${path.basename(final)}.inprogress` ||
      inside.startsWith('..') ||
      path.isAbsolute(inside)
    )
      throw bad(`${temp} → ${final} is not a part file of ${root}`);
  }
  return parsed.data;
}

/**
 * Deletes the temporary files (`.part-RUN-SEQ.*.inprogress`, staging files included) that the run
 * `runId` left under `root`, at any depth. Only that run's names: other runs may be writing there.
 * Returns how many were deleted.
 */
async function removeTemporaryFiles(root: string, runId: string): Promise<number> {
  const ours = new RegExp(`^\\.part-${escapeRegExp(runId)}-\\d+\\..*\\.inprogress$`);
  const names = await fsp.readdir(root, { recursive: true }).catch((err: unknown) => {
    if (errnoCode(err) === 'ENOENT') return [] as string[];
    throw err;
  });
  const stale = names.filter((n) => ours.test(path.basename(n)));
  await Promise.all(stale.map((n) => unlinkQuietly(path.join(root, n))));
  return stale.length;
}
