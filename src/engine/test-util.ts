/** Helpers for tests that kill a pipeline's process for real. */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';

/** Runs a TypeScript script in a child process and asserts that it ended by SIGKILL (it kills itself). */
export async function runUntilKilled(script: string, env: Record<string, string> = {}): Promise<void> {
  const child = spawn(process.execPath, [script], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, ...env },
  });
  let stderr = '';
  child.stderr.on('data', (chunk) => {
    stderr += chunk;
  });
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) =>
    child.on('exit', (c, s) => resolve([c, s])),
  );
  assert.equal(signal, 'SIGKILL', `the job was not killed: exit ${code}, ${stderr}`);
}
