import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { defaultRegistry } from '../registry.ts';
import { loadPipeline, SpecInvalidError, validatePipeline } from './validate.ts';

const registry = defaultRegistry();

async function issuesOf(text: string, params: Record<string, string> = {}, env: Record<string, string> = {}) {
  const { issues } = await validatePipeline({ file: 'spec.yaml', text, registry, params, env });
  return issues;
}

const VALID = `apiVersion: sluice/v1
kind: Pipeline
metadata:
  name: demo
source:
  generate:
    count: 10
    fields:
      id: seq
steps:
  - filter: id > 3
  - name: shape
    sql: SELECT id, id * 2 AS double_id FROM input
sink:
  stdout:
    format: jsonl
`;

describe('validatePipeline', () => {
  it('accepts a valid spec and resolves its components', async () => {
    const pipeline = await loadPipeline({ file: 'spec.yaml', text: VALID, registry });
    assert.equal(pipeline.metadata.name, 'demo');
    assert.equal(pipeline.source.component, 'generate');
    assert.deepEqual(
      pipeline.steps.map((s) => [s.name, s.component]),
      [
        ['filter', 'filter'],
        ['shape', 'sql'],
      ],
    );
    assert.equal(pipeline.sinks[0]?.component, 'stdout');
    assert.equal(pipeline.settings.batch_size, 1000, 'settings take their defaults');
    assert.equal(pipeline.bounded, true);
  });

  it('reports three different mistakes at once, each with line:column', async () => {
    const text = `apiVersion: sluice/v1
kind: Pipeline
metadata:
  name: demo
source:
  generat:
    count: 10
steps:
  - filter: id > 3
sink:
  stdout:
    formt: jsonl
settings:
  batch_size: "many"
`;
    const issues = await issuesOf(text);
    assert.equal(issues.length, 3, JSON.stringify(issues, null, 2));
    const [source, sink, settings] = issues;
    assert.deepEqual([source?.line, source?.col], [6, 3]);
    assert.match(source!.message, /unknown source "generat"; did you mean "generate"\?/);
    assert.match(source!.message, /valid sources: .*file.*generate.*stdin/);
    assert.deepEqual([sink?.line, sink?.col], [12, 5]);
    assert.match(sink!.message, /unknown key "formt"; did you mean "format"\?/);
    assert.deepEqual([settings?.line, settings?.col], [14, 15]);
    assert.match(settings!.message, /expected number, got the string "many"/);
  });

  it('names the missing required key and where it belongs', async () => {
    const issues = await issuesOf(`apiVersion: sluice/v1
kind: Pipeline
metadata: { name: demo }
source:
  file:
    format: csv
sink:
  stdout: {}
`);
    const missing = issues.find((i) => i.message.includes('missing required key "path"'));
    assert.ok(missing, JSON.stringify(issues));
    assert.deepEqual(missing.path, ['source', 'file', 'path']);
    assert.equal(missing.line, 6);
  });

  it('refuses a wrong apiVersion and an unknown top-level key with a suggestion', async () => {
    const issues = await issuesOf(VALID.replace('sluice/v1', 'sluice/v2').replace('steps:', 'stepz:'));
    assert.ok(issues.some((i) => i.line === 1 && /expected "sluice\/v1"/.test(i.message)));
    assert.ok(issues.some((i) => /unknown key "stepz"; did you mean "steps"\?/.test(i.message)));
  });

  it('reports a YAML syntax error with its position', async () => {
    const issues = await issuesOf('apiVersion: sluice/v1\nkind: [Pipeline\n');
    assert.equal(issues[0]?.code, 'SLUICE_SPEC_YAML');
    assert.ok(issues[0]!.line >= 2);
  });

  it('refuses both sink and sinks, and neither', async () => {
    const both = await issuesOf(`${VALID}sinks:\n  - stdout: {}\n`);
    assert.ok(both.some((i) => /either `sink`.*or `sinks`/.test(i.message)));
    const neither = await issuesOf(VALID.replace(/sink:\n {2}stdout:\n {4}format: jsonl\n/, ''));
    assert.ok(neither.some((i) => /missing `sink`/.test(i.message)));
  });

  it('points a bad SQL expression at its line and column inside the YAML', async () => {
    const text = VALID.replace('filter: id > 3', 'filter: id >> > 3');
    const issues = await issuesOf(text);
    assert.equal(issues.length, 1, JSON.stringify(issues));
    assert.equal(issues[0]?.line, 11);
    assert.ok(issues[0]!.col >= 13, `column inside the expression, got ${issues[0]!.col}`);
  });

  it('reports an unknown route expression on a sink', async () => {
    const text = VALID.replace(
      'sink:\n  stdout:\n    format: jsonl',
      'sinks:\n  - route: nosuchfn(id)\n    stdout:\n      format: jsonl',
    );
    const issues = await issuesOf(text);
    assert.ok(
      issues.some((i) => i.path.join('.') === 'sinks.0.route'),
      JSON.stringify(issues),
    );
  });

  it('rejects duplicate step names', async () => {
    const text = VALID.replace('  - filter: id > 3', '  - name: shape\n    filter: id > 3');
    const issues = await issuesOf(text);
    assert.ok(issues.some((i) => /name "shape" is used twice/.test(i.message)));
  });

  it('names repeated components uniquely', async () => {
    const text = VALID.replace('  - name: shape\n', '  - filter: id < 9\n  - ');
    const pipeline = await loadPipeline({ file: 'spec.yaml', text, registry });
    assert.deepEqual(
      pipeline.steps.map((s) => s.name),
      ['filter', 'filter_2', 'sql'],
    );
  });
});

describe('interpolation', () => {
  const spec = VALID.replace('count: 10', 'count: ${param:n}').replace('format: jsonl', 'format: ${env:FMT}');

  it('substitutes params and env, keeping YAML types for whole placeholders', async () => {
    const pipeline = await loadPipeline({
      file: 's.yaml',
      text: spec,
      registry,
      params: { n: '25' },
      env: { FMT: 'csv' },
    });
    assert.equal((pipeline.source.config as { count: number }).count, 25);
    assert.equal((pipeline.sinks[0]!.config as { format: string }).format, 'csv');
  });

  it('reports unknown variables with their position and how to set them', async () => {
    const issues = await issuesOf(spec);
    const codes = issues.map((i) => i.code);
    assert.deepEqual(codes, ['SLUICE_SPEC_VARIABLE', 'SLUICE_SPEC_VARIABLE']);
    assert.equal(issues[0]?.line, 7);
    assert.match(issues[0]!.message, /param n is not set.*--param n=VALUE/);
    assert.match(issues[1]!.message, /environment variable FMT is not set/);
  });

  it('uses defaults and keeps escaped placeholders literal', async () => {
    const text = VALID.replace('format: jsonl', 'format: ${env:NOPE:-csv}').replace(
      'metadata:\n  name: demo',
      () => 'metadata:\n  name: demo\n  description: "costs $${env:HOME}"',
    );
    const pipeline = await loadPipeline({ file: 's.yaml', text, registry, env: {} });
    assert.equal((pipeline.sinks[0]!.config as { format: string }).format, 'csv');
    assert.equal(pipeline.metadata.description, 'costs ${env:HOME}');
  });

  it('throws SpecInvalidError listing every problem', async () => {
    await assert.rejects(
      loadPipeline({ file: 'bad.yaml', text: spec, registry }),
      (err: unknown) =>
        err instanceof SpecInvalidError && err.issues.length === 2 && /bad\.yaml:7:/.test(err.message),
    );
  });
});

describe('set-level SQL and boundedness', () => {
  const spec = (source: string) => `apiVersion: sluice/v1
kind: Pipeline
metadata: { name: totals }
source:
  generate:
${source}
    fields: { id: seq }
steps:
  - filter: id > 0
  - sql: SELECT id % 3 AS k, count(*) AS n FROM input GROUP BY k ORDER BY k
sink:
  stdout: {}
`;

  it('refuses set-level SQL on an unbounded source, at the construct, saying why', async () => {
    const issues = await issuesOf(spec('    rate: 10/s'));
    assert.equal(issues.length, 1, JSON.stringify(issues));
    const [issue] = issues;
    assert.deepEqual(issue!.path, ['steps', 1, 'sql', 'query']);
    assert.deepEqual([issue!.line, issue!.col], [10, 64], 'points at GROUP BY k');
    assert.match(
      issue!.message,
      /^GROUP BY needs the whole input; the source generate is unbounded \(it does not end by itself\), so the step would never emit; windowing is not supported yet/,
    );
  });

  it('accepts it on a bounded source, and per-record DuckDB SQL on an unbounded one', async () => {
    assert.deepEqual(await issuesOf(spec('    count: 10')), []);
    const perRecord = spec('    rate: 10/s').replace(
      'SELECT id % 3 AS k, count(*) AS n FROM input GROUP BY k ORDER BY k',
      "SELECT id, levenshtein(CAST(id AS VARCHAR), '1') AS d FROM input",
    );
    assert.deepEqual(await issuesOf(perRecord), []);
  });
});
