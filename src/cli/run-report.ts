/** How `sluice run` shows a run to a person: the plan, the engine chosen, progress and the summary. */
import type { PushdownPlan } from '../engine/pushdown.ts';
import type { RunProgress, RunSummary } from '../engine/run.ts';
import type { OperatorSummary } from '../engine/stats.ts';
import { describeHttpMetrics } from '../http/metrics.ts';
import type { Pipeline } from '../spec/validate.ts';
import { formatCount, formatDuration, formatRate, renderTable } from './format.ts';

/** The progress line of a pushed-down run: DuckDB's estimate of the share done. */
export function pushdownLine(p: RunProgress): string {
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
