/** SQL refusals as config issues: what a component's `check` reports for its SQL fields. */
import { SluiceError } from '../sdk/errors.ts';
import type { ConfigIssue } from '../sdk/types.ts';

/**
 * Compiles a SQL snippet for `check`: a SLUICE_EXPR_INVALID becomes a config issue at `field`, its message
 * giving the line, column and character offset in the SQL, and `offset` set for the spec's YAML position.
 */
export async function sqlIssues(
  field: string | string[],
  compile: () => Promise<unknown>,
): Promise<ConfigIssue[]> {
  try {
    await compile();
    return [];
  } catch (err) {
    if (err instanceof SluiceError && err.code === 'SLUICE_EXPR_INVALID') {
      const offset = err.details?.offset;
      return [
        {
          path: Array.isArray(field) ? field : [field],
          message: err.message,
          ...(typeof offset === 'number' ? { offset } : {}),
        },
      ];
    }
    throw err;
  }
}
