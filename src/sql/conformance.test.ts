/**
 * DuckDB's own sqllogictest files for scalar functions, run on Sluice's `sql` step and on DuckDB:
 * every in-scope query must give DuckDB's answer (compiled, or refused at validation and run on
 * DuckDB), or be listed in src/sql/conformance/exceptions.json with a reason. See
 * src/sql/conformance/README.md; `npm run conformance` runs it alone with a longer report.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { formatReport, writeOutputs } from './conformance/report.ts';
import { runConformance } from './conformance/runner.ts';

test('DuckDB conformance: no disagreement outside the exceptions file, and no stale exception', {
  timeout: 15 * 60_000,
}, async () => {
  const report = await runConformance();
  await writeOutputs(report);
  process.stdout.write(formatReport(report, 10));
  const open = report.disagreements.filter((d) => !d.excepted);
  assert.ok(
    report.total.inScope > 1000,
    `only ${report.total.inScope} queries in scope: the suite is not running`,
  );
  assert.equal(
    open.length,
    0,
    `${open.length} disagreements with DuckDB not in src/sql/conformance/exceptions.json (first: ${open
      .slice(0, 5)
      .map((d) => `${d.file}:${d.line} ${d.sluiceSql} -> Sluice ${d.sluice}, DuckDB ${d.duckdb}`)
      .join('; ')}); the full list is in .sluice/conformance-report.json`,
  );
  assert.deepEqual(
    report.stale.map((e) => `${e.file}: ${e.sql}`),
    [],
    'exceptions that now agree with DuckDB: delete them from src/sql/conformance/exceptions.json',
  );
});
