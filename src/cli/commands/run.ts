/** `sluice run`: an adapter over the runner (src/runner) that shows progress and the summary. */
import path from 'node:path';
import { defaultRegistry, openCheckpointStore } from '../../registry.ts';
import { PipelineRunner, timestampedRunId } from '../../runner/index.ts';
import { createLogger } from '../../shared/log.ts';
import { loadPipeline } from '../../spec/validate.ts';
import { EXIT } from '../exit-codes.ts';
import { formatDuration } from '../format.ts';
import { ProgressDisplay, ProgressReporter, progressMode } from '../progress.ts';
import { describePlan, describePushdown, describeSummary, pushdownLine } from '../run-report.ts';
import { onStopSignal, type StopSignal } from '../signals.ts';
import { parseRunArguments } from './run-options.ts';

export { runCommand } from './run-options.ts';

export async function run(argv: string[]): Promise<number> {
  const args = parseRunArguments(argv);
  const pipeline = await loadPipeline({
    file: args.file,
    params: args.params,
    registry: defaultRegistry(),
  });
  const usesStdout = pipeline.sinks.some((s) => s.component === 'stdout');
  const report = usesStdout ? process.stderr : process.stdout;
  const checkpoints = await openCheckpointStore(args.checkpointStore, pipeline.metadata.name);
  let display: ProgressDisplay | undefined;
  const say = (text: string) => {
    display?.clear();
    process.stderr.write(`${text}\n`);
  };
  const runner = new PipelineRunner(
    {
      pipeline,
      checkpoints,
      runsDir: args.runsDir,
      runId: () => timestampedRunId(pipeline.metadata.name),
      logger: (id) =>
        createLogger({
          level: args.level,
          format: args.format,
          bindings: { run_id: id },
          beforeWrite: () => display?.clear(),
        }),
      pushdown: args.pushdown,
      fromScratch: args.fromScratch,
    },
    {
      onAttempt: ({ resume: cp }) => {
        if (cp)
          say(
            `resuming from the checkpoint of run ${cp.run_id} (saved ${cp.saved_at}); --from-scratch reads the input from the start`,
          );
      },
      onRestart: (failed, r) =>
        say(
          `run ${failed.run_id} failed: ${failed.failure!.code}: ${failed.failure!.message}\n` +
            `restart ${r.number} of ${r.of} (settings.restart) in ${formatDuration(r.waitMs)}, from the last checkpoint`,
        ),
    },
  );
  try {
    if (args.dryRun) {
      report.write(`${describePlan(pipeline)}\n${describePushdown((await runner.plan()).pushdown)}\n`);
      return EXIT.ok;
    }
    const progress = new ProgressReporter();
    const line = () =>
      runner.engine === 'duckdb-pushdown'
        ? pushdownLine(runner.progress())
        : progress.line(runner.progress());
    display = new ProgressDisplay(
      progressMode(args.progress, usesStdout && process.stdout.isTTY === true),
      line,
      args.intervalMs,
    );
    let signals = 0;
    const offSignals = onStopSignal(['SIGINT', 'SIGTERM'], (signal: StopSignal) => {
      if (++signals === 1) {
        say(`${signal}: draining and committing what was read; send it again to stop at once`);
        runner.stop();
      } else {
        say(`${signal}: stopping at once; uncommitted output is discarded`);
        runner.abort();
      }
    });
    const summary = await runner.run().finally(() => {
      display?.end();
      offSignals();
    });
    const summaryFile = path.join(path.resolve(args.runsDir, summary.run_id), 'run.json');
    report.write(
      args.json ? `${JSON.stringify(summary, null, 2)}\n` : `${describeSummary(summary, summaryFile)}\n`,
    );
    if (summary.status === 'succeeded') return EXIT.ok;
    if (summary.status === 'interrupted')
      return summary.failure?.code === 'SLUICE_OUTPUT_CLOSED' ? EXIT.outputClosed : EXIT.interrupted;
    return EXIT.failed;
  } finally {
    await checkpoints.close?.();
  }
}
