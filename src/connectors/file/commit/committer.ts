/**
 * How the file sink makes finished part files visible. The part writer (../part-writer.ts) leaves
 * each finished file under a hidden temporary name; a committer, one per output store, publishes
 * them: at a checkpoint in two phases (prepare names them in a token the checkpoint keeps, commit
 * publishes that token, again after a crash), and at commit() or close() directly. A new store
 * (another object store) is a new committer beside local.ts and s3.ts.
 */

/** Every file a sink published, in order, each once. */
export class OutputList {
  readonly #list: string[] = [];
  readonly #seen = new Set<string>();

  add(finalPath: string): void {
    if (this.#seen.has(finalPath)) return;
    this.#seen.add(finalPath);
    this.#list.push(finalPath);
  }

  list(): string[] {
    return [...this.#list];
  }
}

export interface Committer {
  /** Whether a part file's name is taken in the store already (a resumed run keeps its run id). */
  nameTaken(finalPath: string): Promise<boolean>;
  /** Makes the finished parts durable but invisible, and names them in a token a checkpoint keeps. */
  prepare(): Promise<object>;
  /** Publishes a token's files; idempotent. `recovery`: the token comes from an earlier attempt. */
  commitPrepared(token: unknown, recovery: boolean): Promise<void>;
  /** Publishes every prepared, then every finished part. */
  publish(): Promise<void>;
  /** Drops what no token names; prepared files stay (a saved checkpoint may name them). */
  abort(): Promise<void>;
  /** Frees the store's resources. */
  release(): Promise<void>;
}
