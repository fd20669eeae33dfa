/**
 * `batch:` for bulk endpoints: one request carries up to `max_records` records as a JSON array of
 * items (each the request body rendered for one record), and the response's array of results is
 * split back, result i to record i.
 */

import type { CallOutcome, HttpCaller, PreparedRequest } from '../../http/client.ts';
import { lookup, MISSING, parseFieldRef, type Renderer, withField } from '../../http/template.ts';
import { SluiceError, toSluiceError } from '../../sdk/errors.ts';
import type { RecordValue, Rejection, SluiceRecord, StepResult } from '../../sdk/types.ts';
import type { HttpConfig } from './config.ts';

type Response = Extract<CallOutcome, { kind: 'response' }>;

export interface BulkOptions {
  caller: HttpCaller;
  batch: NonNullable<HttpConfig['batch']>;
  /** The request without its body: method, path and headers are the same for every record. */
  request: PreparedRequest;
  /** One record's item, as JSON text. */
  item: Renderer;
  /** The record with its result mapped in (null: dropped by response.sql). */
  map: (value: RecordValue, outcome: Response) => RecordValue | null;
  ordered: boolean;
  signal: AbortSignal;
}

const ITEMS = '\u0000sluice-items\u0000';

/** Makes the step's `process` for bulk calls. */
export function bulkProcess(o: BulkOptions): (batch: SluiceRecord[]) => Promise<StepResult> {
  const results = o.batch.results === undefined ? undefined : parseFieldRef(o.batch.results);
  // `{ "<wrap>": [items] }` (a dotted wrap nests), or the array itself.
  const envelope =
    o.batch.wrap === undefined
      ? undefined
      : JSON.stringify(withField({}, parseFieldRef(o.batch.wrap), ITEMS));
  const where = o.batch.results ?? 'the body';

  /** One request for `members`: each member's output record, nothing, or rejection, by position. */
  const call = async (members: SluiceRecord[]): Promise<(SluiceRecord | Rejection | undefined)[]> => {
    const out: (SluiceRecord | Rejection | undefined)[] = new Array(members.length);
    const items: string[] = [];
    const sent: number[] = [];
    for (const [i, record] of members.entries()) {
      try {
        items.push(o.item(record.value));
        sent.push(i);
      } catch (err) {
        // A record whose item cannot be rendered is left out of the request, alone.
        out[i] = { record, error: toSluiceError(err, 'SLUICE_HTTP_TEMPLATE'), attempts: 0 };
      }
    }
    if (!sent.length) return out;
    const array = `[${items.join(',')}]`;
    const body = envelope === undefined ? array : envelope.replace(JSON.stringify(ITEMS), array);
    const outcome = await o.caller.call({ ...o.request, body });
    if (outcome.kind === 'dropped' || outcome.kind === 'aborted') return out;
    if (outcome.kind === 'failed') {
      for (const i of sent)
        out[i] = { record: members[i]!, error: outcome.error, attempts: outcome.attempts };
      return out;
    }
    const list = results === undefined ? outcome.body : lookup(outcome.body, results);
    if (!Array.isArray(list) || list.length !== sent.length) {
      const found = Array.isArray(list)
        ? `${list.length} results`
        : list === MISSING
          ? 'nothing'
          : 'no array';
      const error = new SluiceError(
        'SLUICE_HTTP_RESPONSE',
        `the response to a batch of ${sent.length} records holds ${found} at ${where}: expected one result per record, in order`,
        { details: { status: outcome.status, records: sent.length } },
      );
      for (const i of sent) out[i] = { record: members[i]!, error, attempts: outcome.attempts };
      return out;
    }
    for (const [j, i] of sent.entries()) {
      const record = members[i]!;
      try {
        const value = o.map(record.value, { ...outcome, body: list[j] });
        out[i] = value === null ? undefined : { value, meta: record.meta };
      } catch (err) {
        out[i] = { record, error: toSluiceError(err, 'SLUICE_STEP_FAILED'), attempts: outcome.attempts };
      }
    }
    return out;
  };

  return async (batch) => {
    const chunks: SluiceRecord[][] = [];
    for (let i = 0; i < batch.length; i += o.batch.max_records)
      chunks.push(batch.slice(i, i + o.batch.max_records));
    const records: SluiceRecord[] = [];
    const rejected: Rejection[] = [];
    const take = (outs: (SluiceRecord | Rejection | undefined)[]) => {
      for (const x of outs) {
        if (x === undefined) continue;
        if ('error' in x) rejected.push(x);
        else records.push(x);
      }
    };
    if (o.ordered) for (const outs of await Promise.all(chunks.map(call))) take(outs);
    else await Promise.all(chunks.map(async (chunk) => take(await call(chunk))));
    if (o.signal.aborted) throw toSluiceError(o.signal.reason, 'SLUICE_INTERRUPTED');
    return rejected.length ? { records, rejected } : { records };
  };
}
