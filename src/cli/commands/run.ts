import { randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { type Checkpoint, saveCheckpointsTo } from '../../engine/checkpoint-store.ts';
import { type PushdownPlan, PushdownRun, planPushdown } from '../../engine/pushdown.ts';
import { PipelineRun, type RunProgress, type RunSummary } from '../../engine/run.ts';
import type { OperatorSummary } from '../../engine/stats.ts';
import { describeHttpMetrics } from '../../http/metrics.ts';
import { defaultRegistry, openCheckpointStore } from '../../registry.ts';
import { SluiceError } from '../../sdk/errors.ts';
import { parseDuration } from '../../spec/duration.ts';
import { loadPipeline, type Pipeline } from '../../spec/validate.ts';
import { EXIT } from '../exit-codes.ts';
import { formatCount, formatDuration, formatRate, renderTable } from '../format.ts';
import { createLogger, isLogLevel } from '../logger.ts';
import { defineCommand, PARAM_OPTION, parseCommand, parseParams } from '../options.ts';
import { ProgressReporter } from '../progress.ts';
import { onStopSignal, type StopSignal } from '../signals.ts';

export const runCommand = defineCommand({
  name: 'run',
  usage: 'sluice run FILE [--param KEY=VALUE]... [--dry-run] [--no-pushdown] [--from-scratch]',
  summary: 'Run a pipeline to completion on the embedded engine, with live progress and a summary.',
  positionals: ['FILE'],
  options: {
    param: PARAM_OPTION,
    'dry-run': {
      type: 'boolean',
      description:
        'Validate the spec and print the plan (operators, settings, outputs) without reading a record.',
    },
    'no-pushdown': {
      type: 'boolean',
      description:
        'Always run on the streaming engine, even when the pipeline could be handed to DuckDB as one COPY ' +
        '(same as settings.pushdown: off; see docs/pushdown.md).',
    },
    'from-scratch': {
      type: 'boolean',
      description:
        'Ignore the checkpoint an interrupted or killed run of this pipeline left, and read the input from the start.',
    },
    'checkpoint-store': {
      type: 'string',
      value: 'LOCATION',
      default: '.sluice/checkpoints',
      description:
        'Where each pipeline (by metadata.name) keeps its last checkpoint: a folder, s3://bucket/prefix or a ' +
        'postgres:// URL (table sluice_state_checkpoints). A run that finds an unfinished one resumes from it.',
    },
    'run-dir': {
      type: 'string',
      value: 'DIR',
      default: '.sluice/runs',
      description:
        'Folder under which each run gets its own directory (run.json, the default errors/ folder).',
    },
    progress: {
      type: 'string',
      value: 'MODE',
      default: 'auto',
      description:
        'auto (a live line on a terminal, plain lines otherwise; none when the stdout sink writes to the terminal), ' +
        'live (whole lines instead when the stdout sink writes to a terminal, so that no record is glued to it), plain or none.',
    },
    'progress-interval': {
      type: 'string',
      value: 'SECONDS',
      default: '10',
      description: 'Seconds between plain progress lines.',
    },
    'log-level': {
      type: 'string',
      value: 'LEVEL',
      default: 'warn',
      description: 'debug, info, warn or error.',
    },
    'log-format': {
      type: 'string',
      value: 'FORMAT',
      default: 'text',
      description: 'text or json (pino lines on stderr).',
    },
    json: { type: 'boolean', description: 'Print the run summary as JSON instead of a table.' },
  },
});

export async function run(argv: string[]): Promise<number> {
  const { options, positionals } = parseCommand(runCommand, argv);
  const file = positionals[0]!;
  const level = options['log-level'] ?? 'warn';
  if (!isLogLevel(level))
    throw new SluiceError('SLUICE_USAGE', `--log-level takes debug, info, warn or error, got "${level}"`);
  const format = options['log-format'] ?? 'text';
  if (format !== 'text' && format !== 'json') {
    throw new SluiceError('SLUICE_USAGE', `--log-format takes text or json, got "${format}"`);
  }
  const progressMode = options.progress ?? 'auto';
  if (!['auto', 'live', 'plain', 'none'].includes(progressMode)) {
    throw new SluiceError(
      'SLUICE_USAGE',
      `--progress takes auto, live, plain or none, got "${progressMode}"`,
    );
  }
  const interval = Number(options['progress-interval'] ?? '10');
  if (!(interval > 0))
    throw new SluiceError('SLUICE_USAGE', '--progress-interval takes a positive number of seconds');

  const registry = defaultRegistry();
  const pipeline = await loadPipeline({ file, params: parseParams(options.param), registry });
  const usesStdout = pipeline.sinks.some((s) => s.component === 'stdout');
  const report = usesStdout ? process.stderr : process.stdout;

  // An unfinished checkpoint (the last run was interrupted or killed) is resumed; a final one
  // (the last run succeeded) means this is a new run over the whole input.
  const checkpoints = await openCheckpointStore(
    options['checkpoint-store'] ?? '.sluice/checkpoints',
    pipeline.metadata.name,
  );
  try {
    const previous = options['from-scratch'] ? undefined : await checkpoints.load();
    let resume = previous && !previous.final ? previous : undefined;

    // A pushed-down run has no checkpoints to resume from: a resumed run is a streaming one.
    const pushdownPlan = await planPushdown(pipeline, {
      pushdown: options['no-pushdown'] || resume ? 'off' : 'auto',
    });
    if (options['dry-run']) {
      report.write(`${describePlan(pipeline)}\n${describePushdown(pushdownPlan)}\n`);
      return EXIT.ok;
    }
    if (!resume) await checkpoints.clear();

    const newRun = () => {
      const id = `${pipeline.metadata.name}-${timestamp()}-${randomBytes(2).toString('hex')}`;
      return { id, dir: path.resolve(options['run-dir'] ?? '.sluice/runs', id) };
    };
    let { id: runId, dir: runDir } = newRun();
    await mkdir(runDir, { recursive: true });

    // A redrawn line and records on one terminal glue together (`… elapsed 2.8s{"id":54,…}`): when
    // the stdout sink writes to a terminal, auto shows no progress (the records are the progress,
    // as curl hides its meter then) and live prints whole lines, which never split a record.
    const recordsOnTerminal = usesStdout && process.stdout.isTTY === true;
    const live =
      !recordsOnTerminal &&
      (progressMode === 'live' || (progressMode === 'auto' && process.stderr.isTTY === true));
    const plain =
      progressMode === 'plain' ||
      (progressMode === 'live' && recordsOnTerminal) ||
      (progressMode === 'auto' && !process.stderr.isTTY);
    let liveShown = false;
    const clearLive = () => {
      if (liveShown) process.stderr.write('\r\x1b[2K');
      liveShown = false;
    };
    const loggerFor = (id: string) =>
      createLogger({ level, format, bindings: { run_id: id }, beforeWrite: clearLive });
    let logger = loggerFor(runId);
    const pushdownRun = pushdownPlan.eligible
      ? new PushdownRun({ pipeline, plan: pushdownPlan, runId, runDir, logger })
      : undefined;
    let pipelineRun: PipelineRun | undefined;
    if (pushdownRun) logger.info('pushdown: the run is one DuckDB COPY (docs/pushdown.md)');
    const announceResume = (cp: Checkpoint) =>
      process.stderr.write(
        `resuming from the checkpoint of run ${cp.run_id} (saved ${cp.saved_at}); --from-scratch reads the input from the start\n`,
      );
    if (resume) announceResume(resume);

    const progress = new ProgressReporter();
    const line = (): string =>
      pipelineRun ? progress.line(pipelineRun.progress()) : pushdownLine(pushdownRun!.progress());
    const timer = live
      ? setInterval(() => {
          process.stderr.write(`\r\x1b[2K${line()}`);
          liveShown = true;
        }, 250)
      : plain
        ? setInterval(() => process.stderr.write(`progress: ${line()}\n`), interval * 1000)
        : undefined;

    let signals = 0;
    const stopped = new AbortController();
    const onSignal = (signal: StopSignal) => {
      signals++;
      clearLive();
      stopped.abort();
      if (signals === 1) {
        process.stderr.write(
          `${signal}: draining and committing what was read; send it again to stop at once\n`,
        );
        if (pipelineRun) pipelineRun.stop();
        else pushdownRun?.stop();
      } else {
        process.stderr.write(`${signal}: stopping at once; uncommitted output is discarded\n`);
        if (pipelineRun) pipelineRun.abort();
        else pushdownRun?.abort();
      }
    };
    const offSignals = onStopSignal(['SIGINT', 'SIGTERM'], onSignal);

    let summary: RunSummary | undefined;
    try {
      if (pushdownRun) {
        const outcome = await pushdownRun.run();
        if (outcome.kind === 'done') summary = outcome.summary;
      }
      // A run that failed with a retriable error (a dropped connection, a broker away longer than
      // the sink's retries) restarts from its last checkpoint, as `sluice server` restarts a job.
      const policy = pipeline.settings.restart;
      for (let restarts = 0; !summary; ) {
        const counts = () => {
          const p = pipelineRun!.progress();
          return { read: p.read, written: p.written, failed: p.failed };
        };
        pipelineRun = new PipelineRun({
          pipeline,
          runId,
          runDir,
          logger,
          ...(resume ? { resume } : {}),
          onCheckpoint: saveCheckpointsTo(checkpoints, pipeline.metadata.name, runId, counts),
        });
        if (signals > 0) pipelineRun.stop();
        const attempt = await pipelineRun.run();
        const failure = attempt.failure;
        if (
          attempt.status !== 'failed' ||
          !failure?.retriable ||
          restarts >= policy.attempts ||
          signals > 0
        ) {
          summary = attempt;
          break;
        }
        restarts++;
        const base = parseDuration(policy.backoff) ?? 1000;
        const cap = parseDuration(policy.max_backoff) ?? 60_000;
        const wait = Math.min(cap, base * 2 ** (restarts - 1));
        await writeFile(path.join(runDir, 'run.json'), `${JSON.stringify(attempt, null, 2)}\n`);
        clearLive();
        process.stderr.write(
          `run ${runId} failed: ${failure.code}: ${failure.message}\n` +
            `restart ${restarts} of ${policy.attempts} (settings.restart) in ${formatDuration(wait)}, from the last checkpoint\n`,
        );
        await sleep(wait, undefined, { signal: stopped.signal }).catch(() => {});
        if (signals > 0) {
          summary = attempt;
          break;
        }
        const saved = await checkpoints.load();
        resume = saved && !saved.final ? saved : undefined;
        if (resume) announceResume(resume);
        ({ id: runId, dir: runDir } = newRun());
        await mkdir(runDir, { recursive: true });
        logger = loggerFor(runId);
      }
    } finally {
      if (timer) clearInterval(timer);
      clearLive();
      offSignals();
    }
    const summaryFile = path.join(runDir, 'run.json');
    await writeFile(summaryFile, `${JSON.stringify(summary, null, 2)}\n`);

    if (options.json) report.write(`${JSON.stringify(summary, null, 2)}\n`);
    else report.write(`${describeSummary(summary, summaryFile)}\n`);
    if (summary.status === 'succeeded') return EXIT.ok;
    if (summary.status === 'interrupted')
      return summary.failure?.code === 'SLUICE_OUTPUT_CLOSED' ? EXIT.outputClosed : EXIT.interrupted;
    return EXIT.failed;
  } finally {
    await checkpoints.close?.();
  }
}

function pushdownLine(p: RunProgress): string {
  const { bytesRead, bytesTotal } = p.source;
  const fraction = bytesTotal && bytesRead !== undefined ? bytesRead / bytesTotal : undefined;
  const share = fraction === undefined ? '' : ` · ${(fraction * 100).toFixed(1)}% (DuckDB's estimate)`;
  const eta =
    fraction !== undefined && fraction > 0.001 && fraction < 1
      ? ` · ETA ${formatDuration((p.elapsedMs / fraction) * (1 - fraction))}`
      : '';
  return `DuckDB COPY (pushdown)${share} · elapsed ${formatDuration(p.elapsedMs)}${eta}`;
}

/** Whether `sluice run` hands the pipeline to DuckDB as one COPY, and why not. */
export function describePushdown(plan: PushdownPlan): string {
  if (plan.eligible) return ['pushdown: yes, one DuckDB COPY', ...plan.notes.map((n) => `  ${n}`)].join('\n');
  return ['pushdown: no, the streaming engine runs it:', ...plan.reasons.map((r) => `  - ${r}`)].join('\n');
}

function timestamp(): string {
  return new Date().toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15);
}

/**
 * The per-operator table of a run summary (also shown for a server job by `sluice job`); the added
 * column only when an operator emitted more records than it consumed.
 */
export function operatorTable(operators: OperatorSummary[]): string {
  const added = operators.some((o) => o.added);
  return renderTable(
    ['operator', 'kind', 'component', 'in', 'out', 'filtered', 'failed', ...(added ? ['added'] : []), 'time'],
    operators.map((o) => [
      o.name,
      o.kind,
      o.component,
      o.in,
      o.out,
      o.filtered,
      o.failed,
      ...(added ? [o.added ?? 0] : []),
      formatDuration(o.time_ms),
    ]),
  );
}

export function describeSummary(s: RunSummary, summaryFile: string): string {
  const table = operatorTable(s.operators);
  const lines = [
    '',
    table,
    ...s.operators
      .filter((o) => o.component === 'http' && o.metrics)
      .map((o) => `${o.name}: ${describeHttpMetrics(o.metrics!)}`),
    '',
    `${statusWord(s)} in ${formatDuration(s.elapsed_ms)}: ${formatCount(s.records.read)} read, ` +
      `${formatCount(s.records.written)} written, ${formatCount(s.records.filtered)} filtered, ` +
      `${formatCount(s.records.failed)} failed (${formatRate(s.records_per_second)})`,
  ];
  if (s.status === 'interrupted') {
    const fraction =
      s.input_fraction === null ? '' : ` (${(s.input_fraction * 100).toFixed(1)}% of the input)`;
    const where = Object.entries(s.positions)
      .map(([partition, offset]) => `${partition} @ ${offset}`)
      .join(', ');
    lines.push(
      `stopped after ${formatCount(s.records.read)} records${fraction}; last committed: ${where || 'nothing'}`,
    );
  }
  if (s.engine === 'duckdb-pushdown')
    lines.push('engine: duckdb-pushdown (one DuckDB COPY; docs/pushdown.md)');
  if (s.failure?.code === 'SLUICE_OUTPUT_CLOSED')
    lines.push('stdout was closed by its reader: the run stopped reading (not an error)');
  else if (s.failure) lines.push(`failure: ${s.failure.code}: ${s.failure.message}`);
  for (const [sink, files] of Object.entries(s.outputs)) {
    if (files.length)
      lines.push(`${sink}: ${files.length === 1 ? files[0] : `${files.length} files, e.g. ${files[0]}`}`);
  }
  if (s.errors.count) {
    const codes = Object.entries(s.errors.by_code)
      .map(([code, n]) => `${code} ${formatCount(n)}`)
      .join(', ');
    lines.push(`errors: ${codes} → ${s.errors.outputs.join(', ') || 'errors sink'}`);
  }
  lines.push(`summary: ${summaryFile}`);
  return lines.join('\n');
}

function statusWord(s: RunSummary): string {
  return { succeeded: 'succeeded', failed: 'FAILED', interrupted: 'interrupted' }[s.status];
}

export function describePlan(p: Pipeline): string {
  const rows: string[][] = [['source', p.source.component, p.bounded ? 'bounded' : 'unbounded']];
  for (const s of p.steps) rows.push(['step', `${s.name} (${s.component})`, '']);
  for (const s of p.sinks)
    rows.push(['sink', `${s.name} (${s.component})`, s.route ? `route: ${s.route}` : '']);
  rows.push(['errors', p.errors ? p.errors.component : 'file (errors/ in the run directory)', '']);
  const st = p.settings;
  return [
    `${p.file}: valid; plan of pipeline ${p.metadata.name} (dry run: nothing read or written)`,
    '',
    renderTable(['role', 'operator', 'notes'], rows),
    '',
    `batch_size ${st.batch_size} · queue_depth ${st.queue_depth} · checkpoint_interval ${st.checkpoint_interval}` +
      ` · max_errors ${st.error_policy.max_errors ?? 'unlimited'} · max_error_rate ${st.error_policy.max_error_rate ?? 'unlimited'}`,
  ].join('\n');
}
