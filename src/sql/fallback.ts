/**
 * The signal compiled SQL throws for a record it cannot give DuckDB's answer for (an integer beyond
 * ±2^53, a record value it has no SQL type for): the sql and filter steps evaluate that record on
 * DuckDB instead. Where no DuckDB path exists (a sink's key expression, a route), it is an
 * evaluation error like any other, with the reason.
 */
import { SluiceError } from '../sdk/errors.ts';

export class ComputeOnDuckDB extends SluiceError {
  constructor(reason: string, expression: string) {
    super('SLUICE_EXPR_EVAL', `${reason} (in ${expression})`, {
      details: { expression, computeOnDuckDB: true },
    });
  }
}

export function onDuckDB(reason: string, x: string): never {
  throw new ComputeOnDuckDB(reason, x);
}

export function isComputeOnDuckDB(err: unknown): err is ComputeOnDuckDB {
  return err instanceof ComputeOnDuckDB;
}
