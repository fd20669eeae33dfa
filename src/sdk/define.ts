import type { z } from 'zod';
import { SluiceError, toSluiceError } from './errors.ts';
import type {
  Rejection,
  SinkDefinition,
  SluiceRecord,
  SourceDefinition,
  StepDefinition,
  StepInstance,
  StepResult,
} from './types.ts';

type WithoutKind<T> = Omit<T, 'kind'>;

export function defineSource<C extends z.ZodType>(
  def: WithoutKind<SourceDefinition<C>>,
): SourceDefinition<C> {
  return { kind: 'source', ...def };
}

export function defineStep<C extends z.ZodType>(def: WithoutKind<StepDefinition<C>>): StepDefinition<C> {
  return { kind: 'step', ...def };
}

export function defineSink<C extends z.ZodType>(def: WithoutKind<SinkDefinition<C>>): SinkDefinition<C> {
  return { kind: 'sink', ...def };
}

/**
 * What a per-record function returns: a record (or a new value), several, or null to drop it.
 * A thrown error rejects that record only; the rest of the batch carries on.
 */
export type RecordFnResult = SluiceRecord | SluiceRecord[] | null | undefined;

/**
 * Builds a batch step from a pure per-record function, Kafka Connect style. The function must
 * not mutate its input record.
 */
export function mapRecords(fn: (record: SluiceRecord) => RecordFnResult): StepInstance {
  return {
    process(batch: SluiceRecord[]): StepResult {
      const records: SluiceRecord[] = [];
      let rejected: Rejection[] | undefined;
      for (const record of batch) {
        let out: RecordFnResult;
        try {
          out = fn(record);
        } catch (err) {
          rejected ??= [];
          rejected.push({ record, error: toSluiceError(err, 'SLUICE_STEP_FAILED') });
          continue;
        }
        if (out == null) continue;
        if (Array.isArray(out)) records.push(...out);
        else records.push(out);
      }
      return rejected ? { records, rejected } : { records };
    },
  };
}

export { SluiceError };
