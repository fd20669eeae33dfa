/**
 * `npm run conformance [-- <filter>] [--show N]`: runs the DuckDB conformance suite and prints its
 * counts and the first disagreements; writes them all to .sluice/conformance-report.json.
 * SLUICE_CONFORMANCE_WRITE_EXCEPTIONS=1 writes the current disagreements into the exceptions file.
 */
import { parseArgs } from 'node:util';
import { formatReport, writeOutputs } from './report.ts';
import { runConformance } from './runner.ts';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { show: { type: 'string', default: '20' }, quiet: { type: 'boolean', default: false } },
});
const report = await runConformance({
  filter: positionals[0],
  onFile: values.quiet ? undefined : (file, ms) => process.stderr.write(`${file} ${ms} ms\n`),
});
await writeOutputs(report, positionals[0]);
process.stdout.write(formatReport(report, Number(values.show)));
process.exitCode = report.total.disagree || report.stale.length ? 1 : 0;
