/** Running the real CLI from tests, exactly as a user does. */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import path from 'node:path';
import { waitUntil } from '../sdk/testing.ts';

export const ROOT = path.resolve(import.meta.dirname, '../..');
export const BIN = path.join(ROOT, 'bin/sluice.js');

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `sluice ...args` in `cwd` and collects its exit code and output; `env` is added to ours. */
export function sluice(
  args: string[],
  cwd: string,
  onSpawn?: (child: ChildProcess) => void,
  env?: NodeJS.ProcessEnv,
): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], {
      cwd,
      stdio: ['ignore', 'pipe', 'pipe'],
      ...(env ? { env: { ...process.env, ...env } } : {}),
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => {
      stdout += d;
    });
    child.stderr.on('data', (d) => {
      stderr += d;
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    onSpawn?.(child);
  });
}

/**
 * Runs `argv` on a pseudo-terminal (util-linux `script`), as from a shell in a terminal: its
 * stdin, stdout and stderr are the terminal, whose screen is the child's stdout; ^C written to its
 * stdin is a Ctrl-C (SIGINT to the foreground process group).
 */
export function inTerminal(argv: string[], cwd: string): ChildProcess {
  const command = argv.map((a) => `'${a.replaceAll("'", `'\\''`)}'`).join(' ');
  return spawn('script', ['-qefc', command, '/dev/null'], { cwd, stdio: ['pipe', 'pipe', 'inherit'] });
}

/**
 * Runs `sluice run NAME.yaml` in `cwd` (with `args`) and SIGKILLs it once `load` returns a
 * checkpoint past 2,000 records of the generate source; fails if none comes.
 */
export async function runAndKillAfterCheckpoint(
  cwd: string,
  name: string,
  load: () => Promise<{ positions: Record<string, number> } | undefined>,
  args: string[] = [],
): Promise<void> {
  let child: ChildProcess | undefined;
  let ended: CliResult | undefined;
  const result = sluice(['run', `${name}.yaml`, '--progress', 'none', ...args], cwd, (c) => {
    child = c;
  });
  void result.then((r) => {
    ended = r;
  });
  await waitUntil(
    `a checkpoint of ${name} past 2,000 records`,
    async () => ((await load())?.positions.generate ?? 0) > 2000,
    { gone: () => ended && `the run ended first (exit ${ended.code}): ${ended.stderr}` },
  );
  child!.kill('SIGKILL');
  const killed = await result;
  assert.equal(killed.code, null, `the run was killed before it ended: ${killed.stderr}`);
}

/** Asserts that the rows hold each id 1..count exactly `copies` times. */
export function assertIdsOnce(rows: Record<string, unknown>[], count: number, copies = 1): void {
  const counts = new Map<number, number>();
  for (const r of rows) counts.set(Number(r.id), (counts.get(Number(r.id)) ?? 0) + 1);
  assert.equal(counts.size, count, 'every record is there');
  for (const [id, n] of counts) if (n !== copies) assert.fail(`record ${id} is there ${n} times`);
}

/** A pipeline slow enough to kill mid-run (5,000 records/s), checkpointing every 200 ms to out/NAME/. */
export const resumableSpec = (name: string, count: number) => `apiVersion: sluice/v1
kind: Pipeline
metadata: { name: ${name} }
source:
  generate: { count: ${count}, rate: 5000/s, seed: 9, fields: { id: seq, v: "int(1, 100)" } }
sink:
  file: { path: out/${name}/, format: jsonl }
settings: { batch_size: 250, checkpoint_interval: 200ms }
`;
