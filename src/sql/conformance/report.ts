/** The conformance suite's outputs: the printed summary, the JSON report, the exceptions file. */
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import {
  type Counts,
  EXCEPTIONS_FILE,
  type Exception,
  loadExceptions,
  MAX_RECORDS,
  type Report,
} from './runner.ts';

export const REPORT_FILE = join(
  new URL('../../../', import.meta.url).pathname,
  '.sluice',
  'conformance-report.json',
);
const PLACEHOLDER = 'TODO: the reason (written by SLUICE_CONFORMANCE_WRITE_EXCEPTIONS=1; cause:';

function line(name: string, c: Counts): string {
  return `${name.padEnd(10)} in scope ${String(c.inScope).padStart(5)} | agree compiled ${String(c.agreeCompiled).padStart(5)} | agree fallback ${String(c.agreeFallback).padStart(4)} | both refuse ${String(c.agreeRefused).padStart(4)} | excepted ${String(c.excepted).padStart(4)} | disagree ${String(c.disagree).padStart(4)} | out of scope ${String(c.outOfScope).padStart(5)}`;
}

/** Groups of disagreements by category, largest first. */
export function categories(report: Report, includeExcepted = false): [string, number][] {
  const m = new Map<string, number>();
  for (const d of report.disagreements) {
    if (d.excepted && !includeExcepted) continue;
    m.set(d.category, (m.get(d.category) ?? 0) + 1);
  }
  return [...m].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
}

/** The summary printed on every run: counts (total, per directory), top categories, the first `show` disagreements. */
export function formatReport(report: Report, show = 20): string {
  const out: string[] = [];
  const phases = Object.entries(report.phases)
    .map(([k, v]) => `${k} ${(v / 1000).toFixed(1)} s`)
    .join(', ');
  out.push(`DuckDB conformance (${(report.ms / 1000).toFixed(1)} s: ${phases})`);
  out.push(line('total', report.total));
  for (const [dir, c] of Object.entries(report.byDirectory).sort()) out.push(line(dir, c));
  if (report.skippedFiles.length)
    out.push(`files left out: ${report.skippedFiles.length} (see the JSON report)`);
  if (report.truncatedTables)
    out.push(
      `queries over tables of more than ${MAX_RECORDS} rows (first ${MAX_RECORDS} rows used): ${report.truncatedTables}`,
    );
  if (report.untypedNullRecords)
    out.push(`records left out (a null field DuckDB's binder cannot type): ${report.untypedNullRecords}`);
  if (report.unreadableRows)
    out.push(
      `rows left out (a value Sluice's readers cannot take, such as a DATE beyond JavaScript's): ${report.unreadableRows}`,
    );
  const settings = Object.entries(report.inScopeUnderSetting).sort((a, b) => b[1] - a[1]);
  if (settings.length)
    out.push(
      `in scope under a changed setting (DuckDB answers the same with Sluice's): ${settings.map(([r, n]) => `${r} ${n}`).join('; ')}`,
    );
  const reasons = Object.entries(report.outOfScopeReasons).sort((a, b) => b[1] - a[1]);
  out.push(`out of scope: ${reasons.map(([r, n]) => `${r} ${n}`).join('; ')}`);
  const cats = categories(report);
  if (cats.length) {
    out.push('disagreements by category:');
    for (const [c, n] of cats.slice(0, 40)) out.push(`  ${String(n).padStart(4)}  ${c}`);
  }
  const open = report.disagreements.filter((d) => !d.excepted);
  for (const d of open.slice(0, show)) {
    out.push(`- ${d.file}:${d.line} [${d.path}] ${d.sluiceSql.replace(/\s+/g, ' ').slice(0, 200)}`);
    out.push(`    record ${JSON.stringify(d.record).slice(0, 200)}`);
    out.push(`    Sluice ${d.sluice.slice(0, 300)}`);
    out.push(`    DuckDB ${d.duckdb.slice(0, 300)}`);
  }
  if (open.length > show) out.push(`... and ${open.length - show} more in ${REPORT_FILE}`);
  for (const e of report.stale) out.push(`stale exception (now agrees; delete it): ${e.file}: ${e.sql}`);
  return `${out.join('\n')}\n`;
}

/**
 * Writes the JSON report; with SLUICE_CONFORMANCE_WRITE_EXCEPTIONS=1 also rewrites the exceptions
 * file: the current disagreements (with a placeholder reason naming their category, grouped by it),
 * keeping the reasons of entries already there and dropping stale ones (of the files run).
 */
export async function writeOutputs(report: Report, filter?: string): Promise<void> {
  await mkdir(dirname(REPORT_FILE), { recursive: true });
  await writeFile(REPORT_FILE, `${JSON.stringify(report, null, 2)}\n`);
  if (process.env.SLUICE_CONFORMANCE_WRITE_EXCEPTIONS !== '1') return;
  const known = new Map((await loadExceptions()).map((e) => [`${e.file}\u0000${e.sql.trim()}`, e]));
  const seen = new Set<string>();
  // entries of files this run did not cover (a path filter) are kept as they are
  const next: Exception[] = [...known.values()].filter((e) => filter && !e.file.includes(filter));
  const sorted = [...report.disagreements].sort(
    (a, b) => a.category.localeCompare(b.category) || a.file.localeCompare(b.file) || a.line - b.line,
  );
  for (const d of sorted) {
    const key = `${d.file}\u0000${d.sql.trim()}`;
    if (seen.has(key)) continue;
    seen.add(key);
    next.push({
      file: d.file,
      sql: d.sql,
      reason: known.get(key)?.reason ?? `${PLACEHOLDER} ${d.category})`,
    });
  }
  await writeFile(EXCEPTIONS_FILE, `${JSON.stringify({ exceptions: next }, null, 2)}\n`);
}
