/**
 * Line encoders for the text formats (JSON Lines, CSV), shared by the file and stdout sinks.
 */
import { toSluiceError } from '../sdk/errors.ts';
import type { Rejection, SluiceRecord } from '../sdk/types.ts';
import { CsvEncoder } from './csv.ts';
import { JsonEncoder } from './jsonl.ts';

export interface LineEncoder {
  /** One line without its line break; throws a SluiceError (SLUICE_SINK_REJECTED). */
  encode(value: Record<string, unknown>): string;
  /** A header line to write before the first record line (CSV), once. */
  takeHeader(): string | undefined;
}

export function createLineEncoder(
  format: 'jsonl' | 'csv',
  csv: { header: boolean; delimiter?: string | undefined } = { header: true },
): LineEncoder {
  if (format === 'csv') return new CsvEncoder(csv);
  const json = new JsonEncoder();
  return { encode: (value) => json.encode(value), takeHeader: () => undefined };
}

/**
 * Encodes a batch to one string (every line ending with `\n`); records that cannot be encoded
 * are returned as rejected and the rest are kept.
 */
export function encodeBatch(
  encoder: LineEncoder,
  records: SluiceRecord[],
): { text: string; rejected: Rejection[] } {
  const lines: string[] = [];
  const rejected: Rejection[] = [];
  for (const record of records) {
    let line: string;
    try {
      line = encoder.encode(record.value);
    } catch (err) {
      rejected.push({ record, error: toSluiceError(err, 'SLUICE_SINK_REJECTED') });
      continue;
    }
    const header = encoder.takeHeader();
    if (header !== undefined) lines.push(header);
    lines.push(line);
  }
  return { text: lines.length ? `${lines.join('\n')}\n` : '', rejected };
}
