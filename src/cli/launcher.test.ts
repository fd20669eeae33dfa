/**
 * bin/sluice.js on a Node older than 22.18 re-runs itself on the Node 24 of node_modules: signals
 * must reach that child once, and the launcher must wait for it and exit as it did.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { RunSummary } from '../engine/run.ts';
import { waitUntil } from '../sdk/testing.ts';
import { EXIT } from './exit-codes.ts';
import { BIN, inTerminal } from './test-util.ts';

/** A Node the launcher re-runs itself from (older than 22.18), if this machine has one. */
function olderNode(): string | undefined {
  for (const candidate of ['/usr/bin/node', '/usr/local/bin/node']) {
    if (!existsSync(candidate)) continue;
    const [major = 0, minor = 0] = execFileSync(candidate, ['--version'], { encoding: 'utf8' })
      .trim()
      .slice(1)
      .split('.')
      .map(Number);
    if (major < 22 || (major === 22 && minor < 18)) return candidate;
  }
  return undefined;
}

const OLD_NODE = olderNode();
const skip = OLD_NODE ? false : 'no Node older than 22.18 on this machine: the launcher runs nothing';

let work: string;
before(async () => {
  work = await mkdtemp(path.join(tmpdir(), 'sluice-launcher-'));
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

/** An endless pipeline into part files; `sluice run` prints a progress line every 0.2 s. */
async function endlessRun(name: string): Promise<{ args: string[]; runDir: string }> {
  await writeFile(
    path.join(work, `${name}.yaml`),
    `apiVersion: sluice/v1
kind: Pipeline
metadata: { name: ${name} }
source:
  generate: { rate: 20000/s, fields: { id: seq } }
sink:
  file: { path: out/${name}/, format: jsonl }
`,
  );
  const runDir = path.join(work, `${name}-runs`);
  return {
    args: [
      BIN,
      'run',
      `${name}.yaml`,
      '--run-dir',
      runDir,
      '--progress',
      'plain',
      '--progress-interval',
      '0.2',
    ],
    runDir,
  };
}

async function summaryIn(runDir: string): Promise<RunSummary> {
  const dirs = await readdir(runDir).catch(() => []);
  assert.equal(dirs.length, 1, `one run directory in ${runDir}`);
  const file = path.join(runDir, dirs[0]!, 'run.json');
  assert.ok(existsSync(file), 'run.json was written before the launcher exited');
  return JSON.parse(await readFile(file, 'utf8')) as RunSummary;
}

/** Collects what `child` prints, and resolves once a progress line says records were read. */
async function flowing(child: ChildProcess) {
  let output = '';
  for (const stream of [child.stdout, child.stderr])
    stream?.on('data', (d) => {
      output += d;
    });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal })),
  );
  await waitUntil('a progress line with records read', () => /progress: [1-9]/.test(output), {
    gone: () => (child.exitCode !== null ? `it exited with ${child.exitCode}:\n${output}` : undefined),
  });
  return { output: () => output, exited };
}

describe('the launcher on an older Node', { skip }, () => {
  it('forwards a SIGINT sent to it alone, waits for the run to drain and exits with its code', async () => {
    const { args, runDir } = await endlessRun('forwarded');
    const launcher = spawn(OLD_NODE!, args, { cwd: work, stdio: ['ignore', 'pipe', 'pipe'] });
    const { output, exited } = await flowing(launcher);
    launcher.kill('SIGINT');
    const { code, signal } = await exited;
    assert.deepEqual({ code, signal }, { code: EXIT.interrupted, signal: null }, output());
    assert.match(output(), /SIGINT: draining and committing/);
    const summary = await summaryIn(runDir);
    assert.equal(summary.status, 'interrupted');
    assert.equal(summary.records.written, summary.records.read, 'what was read was drained and written');
  });

  it('stops a run once on Ctrl-C in a terminal, where both processes get SIGINT', async () => {
    const { args, runDir } = await endlessRun('terminal');
    // ^C written to the terminal is a SIGINT to the whole foreground process group.
    const terminal = inTerminal([OLD_NODE!, ...args], work);
    const { output: screen, exited } = await flowing(terminal);
    terminal.stdin!.write('\x03');
    const { code } = await exited;
    assert.equal(code, EXIT.interrupted, screen());
    assert.match(screen(), /SIGINT: draining and committing/);
    assert.doesNotMatch(screen(), /stopping at once/, 'one Ctrl-C is one stop, not two');
    const summary = await summaryIn(runDir);
    assert.equal(summary.status, 'interrupted');
    assert.equal(summary.failure, null, 'a graceful stop, not a hard one');
    assert.equal(summary.records.written, summary.records.read);
  });
});
