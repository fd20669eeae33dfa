import path from 'node:path';

/**
 * The default errors sink (a spec without `errors:`) writes JSON Lines part files to this folder of
 * the run directory, `part-<run id>-<seq>.jsonl`. Part files, not one file: each checkpoint
 * publishes the error records it covers, so they survive a kill like any other committed output.
 */
export const DEFAULT_ERRORS_DIR = 'errors';

/** The default errors sink's file sink config for a run directory. */
export function defaultErrorsConfig(runDir: string): { path: string; format: 'jsonl' } {
  return { path: `${path.join(runDir, DEFAULT_ERRORS_DIR)}${path.sep}`, format: 'jsonl' };
}

/** Whether `name` is a committed part file of the default errors sink (hidden temporary files are not). */
export function isErrorsPartFile(name: string): boolean {
  return name.startsWith('part-') && name.endsWith('.jsonl');
}
