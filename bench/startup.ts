/**
 * CLI start-up beside a bare `node -e 0` on the same Node: `sluice --help` and `sluice validate`
 * of the quick start, each the median of several runs, alternated so they share the machine's moods.
 */
import { spawnSync } from 'node:child_process';
import path from 'node:path';

export interface StartupRow {
  command: string;
  medianMs: number;
  ratio: number;
}

function timeOnce(args: string[], cwd: string): number {
  const t = performance.now();
  const r = spawnSync(process.execPath, args, { cwd, stdio: 'ignore' });
  if (r.status !== 0) throw new Error(`node ${args.join(' ')} exited ${r.status}`);
  return performance.now() - t;
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
};

export function benchStartup(opts: { root: string; runs: number }): StartupRow[] {
  const bin = path.join(opts.root, 'bin/sluice.js');
  const commands: [string, string[]][] = [
    ['node -e 0', ['-e', '0']],
    ['sluice --help', [bin, '--help']],
    ['sluice validate examples/quickstart.yaml', [bin, 'validate', 'examples/quickstart.yaml']],
  ];
  // One warm-up each: the first run fills Node's compile cache.
  for (const [, args] of commands) timeOnce(args, opts.root);
  const times = commands.map(() => [] as number[]);
  for (let r = 0; r < opts.runs; r++)
    for (const [i, [, args]] of commands.entries()) times[i]!.push(timeOnce(args, opts.root));
  const base = median(times[0]!);
  return commands.map(([command], i) => ({
    command,
    medianMs: median(times[i]!),
    ratio: median(times[i]!) / base,
  }));
}

export function printStartupTable(rows: StartupRow[]): void {
  process.stdout.write('| command | median | × node -e 0 |\n| --- | --- | --- |\n');
  for (const r of rows)
    process.stdout.write(`| \`${r.command}\` | ${Math.round(r.medianMs)} ms | ${r.ratio.toFixed(1)}x |\n`);
}
