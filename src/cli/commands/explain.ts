import { planPushdown } from '../../engine/pushdown.ts';
import { defaultRegistry } from '../../registry.ts';
import type { Pipeline } from '../../spec/validate.ts';
import { loadPipeline } from '../../spec/validate.ts';
import { EXIT } from '../exit-codes.ts';
import { renderTable } from '../format.ts';
import { defineCommand, PARAM_OPTION, parseCommand, parseParams } from '../options.ts';

export const explainCommand = defineCommand({
  name: 'explain',
  usage: 'sluice explain FILE [--param KEY=VALUE]... [--json]',
  summary: 'Show how each step would run (compiled JavaScript, DuckDB batches, DuckDB set-level) and why.',
  positionals: ['FILE'],
  options: {
    param: PARAM_OPTION,
    json: { type: 'boolean', description: 'Print the plan as JSON.' },
  },
});

export interface OperatorPlan {
  role: 'source' | 'step' | 'route' | 'sink' | 'errors';
  name: string;
  component: string;
  /** How it runs: `compiled`, `duckdb-batch`, `duckdb-set`, `plugin`, `connector`, ... */
  path: string;
  reason: string;
}

export interface Explanation {
  file: string;
  pipeline: string;
  bounded: boolean;
  /** `duckdb-pushdown` when the whole run is one DuckDB COPY, else `streaming`. */
  engine: 'streaming' | 'duckdb-pushdown';
  /** What pushdown does here, or why the run is not pushed down to DuckDB. */
  engine_reasons: string[];
  /** The COPY statement when pushed down. */
  pushdown_sql: string | null;
  operators: OperatorPlan[];
}

/** Explains a validated pipeline: per operator, which execution path runs and why. */
export async function explainPipeline(pipeline: Pipeline): Promise<Explanation> {
  const operators: OperatorPlan[] = [
    {
      role: 'source',
      name: 'source',
      component: pipeline.source.component,
      path: 'connector',
      reason: pipeline.bounded
        ? 'bounded: the run ends when the input does'
        : 'unbounded: runs until stopped',
    },
  ];
  for (const step of pipeline.steps) {
    const explained = step.def.explain
      ? await step.def.explain(step.config as never, { baseDir: pipeline.baseDir })
      : { path: 'javascript', reason: `${step.component} runs its own code on each batch` };
    operators.push({ role: 'step', name: step.name, component: step.component, ...explained });
  }
  const routes = pipeline.sinks.filter((s) => s.route !== undefined);
  if (routes.length) {
    operators.push({
      role: 'route',
      name: 'route',
      component: 'route',
      path: 'compiled',
      reason: `conditions of ${routes.map((s) => s.name).join(', ')} are compiled to JavaScript`,
    });
  }
  for (const sink of pipeline.sinks) {
    operators.push({
      role: 'sink',
      name: sink.name,
      component: sink.component,
      path: 'connector',
      reason: '',
    });
  }
  operators.push({
    role: 'errors',
    name: 'errors',
    component: pipeline.errors?.component ?? 'file',
    path: 'connector',
    reason: pipeline.errors ? '' : 'errors/ part files in the run directory',
  });
  const pushdown = await planPushdown(pipeline);
  return {
    file: pipeline.file,
    pipeline: pipeline.metadata.name,
    bounded: pipeline.bounded,
    engine: pushdown.eligible ? 'duckdb-pushdown' : 'streaming',
    engine_reasons: pushdown.eligible ? pushdown.notes : pushdown.reasons,
    pushdown_sql: pushdown.eligible ? pushdown.sql : null,
    operators,
  };
}

export function describeExplanation(e: Explanation): string {
  const lines = [
    `${e.file}: pipeline ${e.pipeline} (${e.bounded ? 'bounded' : 'unbounded'} input)`,
    '',
    renderTable(
      ['role', 'operator', 'component', 'path', 'why'],
      e.operators.map((o) => [o.role, o.name, o.component, o.path, o.reason]),
    ),
    '',
  ];
  if (e.engine === 'duckdb-pushdown') {
    lines.push(
      'engine: duckdb-pushdown, the whole run is one DuckDB statement:',
      '',
      `  ${e.pushdown_sql}`,
      '',
    );
    for (const n of e.engine_reasons) lines.push(`  - ${n}`);
  } else {
    lines.push(
      'engine: streaming (records flow through the operators above); not pushed down to DuckDB because:',
    );
    for (const r of e.engine_reasons) lines.push(`  - ${r}`);
  }
  return lines.join('\n');
}

export async function explain(argv: string[]): Promise<number> {
  const { options, positionals } = parseCommand(explainCommand, argv);
  const pipeline = await loadPipeline({
    file: positionals[0]!,
    params: parseParams(options.param),
    registry: defaultRegistry(),
  });
  const explanation = await explainPipeline(pipeline);
  process.stdout.write(
    options.json ? `${JSON.stringify(explanation, null, 2)}\n` : `${describeExplanation(explanation)}\n`,
  );
  return EXIT.ok;
}
