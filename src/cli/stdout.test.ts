/** `sluice run` with the stdout sink, as a shell runs it: piped into a reader that leaves early. */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { RunSummary } from '../engine/run.ts';
import { EXIT } from './exit-codes.ts';
import { BIN, inTerminal } from './test-util.ts';

let work: string;
before(async () => {
  work = await mkdtemp(path.join(tmpdir(), 'sluice-stdout-'));
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

const stdoutSpec = (name: string, generate: string) => `apiVersion: sluice/v1
kind: Pipeline
metadata: { name: ${name} }
source:
  generate: { ${generate}, seed: 3, fields: { id: seq, name: name } }
sink:
  stdout: jsonl
`;

interface PipedRun {
  code: number | null;
  stderr: string;
  /** What `head -2` printed. */
  head: string;
  summary: RunSummary;
}

/**
 * `sluice run NAME.yaml | head -2`, with a real `head`: its stdout is sluice's stdout. Fails if
 * sluice is still running `seconds` after head has left.
 */
async function pipedIntoHead(name: string, seconds = 60): Promise<PipedRun> {
  const runDir = path.join(work, `${name}-runs`);
  const head = spawn('head', ['-2'], { stdio: ['pipe', 'pipe', 'inherit'] });
  let headOut = '';
  head.stdout.on('data', (d) => {
    headOut += d;
  });
  const headDone = new Promise((resolve) => head.on('close', resolve));
  const run = spawn(
    process.execPath,
    [BIN, 'run', `${name}.yaml`, '--progress', 'none', '--run-dir', runDir],
    { cwd: work, stdio: ['ignore', head.stdin, 'pipe'] },
  );
  // Only sluice writes to head now.
  head.stdin.destroy();
  let stderr = '';
  run.stderr!.on('data', (d) => {
    stderr += d;
  });
  const exited = new Promise<number | null>((resolve) => run.on('close', (code) => resolve(code)));
  await headDone;
  let timer: NodeJS.Timeout | undefined;
  const code = await Promise.race([
    exited,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        run.kill('SIGKILL');
        reject(new Error(`sluice was still running ${seconds} s after head left:\n${stderr.slice(-2000)}`));
      }, seconds * 1000);
    }),
  ]).finally(() => clearTimeout(timer));
  const [dir] = await readdir(runDir);
  const summary = JSON.parse(await readFile(path.join(runDir, dir!, 'run.json'), 'utf8')) as RunSummary;
  return { code, stderr, head: headOut, summary };
}

function assertStoppedQuietly(r: PipedRun): void {
  assert.deepEqual(
    r.head
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l).id),
    [1, 2],
  );
  assert.equal(r.code, EXIT.outputClosed, r.stderr);
  assert.doesNotMatch(r.stderr, /EPIPE|SLUICE_SINK_IO|Error/, 'no error is reported');
  assert.match(r.stderr, /stdout was closed by its reader/);
  assert.equal(r.summary.status, 'interrupted');
  assert.equal(r.summary.failure?.code, 'SLUICE_OUTPUT_CLOSED');
  assert.equal(r.summary.errors.count, 0, 'no record became an error');
  assert.equal(r.summary.records.failed, 0);
  const sink = r.summary.operators.find((o) => o.name === 'stdout')!;
  assert.equal(sink.failed, 0);
  assert.equal(sink.in, sink.out, 'every record handed to stdout was written');
  assert.ok(r.summary.records.written >= 2);
}

describe('sluice run | head -2', () => {
  it('stops a bounded run when head leaves: exit 141, no error records, a sane summary', async () => {
    await writeFile(path.join(work, 'bounded.yaml'), stdoutSpec('bounded', 'count: 200000'));
    const r = await pipedIntoHead('bounded');
    assertStoppedQuietly(r);
    assert.ok(r.summary.records.read < 200_000, 'it stopped reading');
  });

  it('stops an unbounded run when head leaves', async () => {
    await writeFile(path.join(work, 'unbounded.yaml'), stdoutSpec('unbounded', 'rate: 20000/s'));
    assertStoppedQuietly(await pipedIntoHead('unbounded'));
  });
});

describe('sluice run on a terminal, with the stdout sink writing to it', () => {
  const COUNT = 6000;

  /** The screen's lines; fails the test if one holds a record and anything else. */
  async function screenOf(name: string, progress: string[]): Promise<string[]> {
    await writeFile(
      path.join(work, `${name}.yaml`),
      `${stdoutSpec(name, `count: ${COUNT}, rate: 2000/s`)}settings: { batch_size: 50 }\n`,
    );
    const terminal = inTerminal(
      [process.execPath, BIN, 'run', `${name}.yaml`, '--run-dir', `${name}-runs`, ...progress],
      work,
    );
    let screen = '';
    terminal.stdout!.on('data', (d) => {
      screen += d;
    });
    const code = await new Promise((resolve) => terminal.on('exit', resolve));
    assert.equal(code, EXIT.ok, screen.slice(-2000));
    const lines = screen.split(/\r?\n/);
    const records = lines.filter((l) => l.includes('{"id":'));
    for (const line of records) {
      assert.match(line, /^\{"id":\d+,"name":"[^"]*"\}$/, `a record glued to more: ${JSON.stringify(line)}`);
    }
    assert.equal(records.length, COUNT, 'every record is on a line of its own');
    return lines;
  }

  it('shows no progress by default, so no progress line is glued to a record', async () => {
    const lines = await screenOf('auto', []);
    assert.ok(!lines.some((l) => /elapsed/.test(l) && !/^interrupted|^succeeded/.test(l)));
    assert.ok(
      lines.some((l) => /^succeeded in .*6,000 read/.test(l)),
      'the summary is shown',
    );
  });

  it('prints whole progress lines when asked for live progress', async () => {
    const lines = await screenOf('live', ['--progress', 'live', '--progress-interval', '0.5']);
    assert.ok(
      lines.some((l) => /^progress: .*[\d,]+ read · /.test(l)),
      'progress lines of their own',
    );
    assert.ok(!lines.some((l) => l.includes('\x1b[2K')), 'no line is redrawn over records');
  });
});
