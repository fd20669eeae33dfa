// Runs one pipeline in this process and prints its summary with timing and peak memory as JSON.
// The benchmark harness spawns it so that each run's peak RSS is its own.
import { PipelineRun } from '../src/engine/run.ts';
import { defaultRegistry } from '../src/registry.ts';
import { loadPipeline } from '../src/spec/validate.ts';

const [file, runDir] = process.argv.slice(2);
if (!file || !runDir) throw new Error('usage: child.ts SPEC RUN_DIR');
const silent = { debug() {}, info() {}, warn() {}, error() {} };
const pipeline = await loadPipeline({ file, registry: defaultRegistry() });
const started = performance.now();
const summary = await new PipelineRun({ pipeline, runId: 'bench', runDir, logger: silent }).run();
const elapsedMs = performance.now() - started;
process.stdout.write(
  `${JSON.stringify({
    status: summary.status,
    failure: summary.failure,
    read: summary.records.read,
    written: summary.records.written,
    failed: summary.records.failed,
    elapsedMs,
    maxRssMiB: process.resourceUsage().maxRSS / 1024,
  })}\n`,
);
