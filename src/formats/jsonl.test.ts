import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { RecordValue, Rejection, SourceBatch } from '../sdk/types.ts';
import { createLineEncoder, encodeBatch } from './encode.ts';
import { mayHoldInexactNumber } from './json-numbers.ts';
import { decodeJsonl, decodeLines, isoString, JsonEncoder } from './jsonl.ts';

async function* chunked(text: string, size: number): AsyncGenerator<Buffer> {
  const bytes = Buffer.from(text);
  for (let i = 0; i < bytes.length; i += size) yield bytes.subarray(i, i + size);
}

async function collect(batches: AsyncIterable<SourceBatch>) {
  const rows: { line: number; value: RecordValue }[] = [];
  const rejected: Rejection[] = [];
  const sizes: number[] = [];
  for await (const b of batches) {
    sizes.push(b.records.length + (b.rejected?.length ?? 0));
    for (const r of b.records) rows.push({ line: r.meta.position!.offset, value: r.value });
    rejected.push(...(b.rejected ?? []));
  }
  return { rows, rejected, sizes };
}

const INPUT = '{"a":1}\n\n{"b":"é€"}\r\n{oops\n[1,2]\n   \n{"c":null}';

describe('decodeJsonl', () => {
  it('yields objects with line positions, rejects invalid lines with file:line and reason, and carries on', async () => {
    const { rows, rejected } = await collect(
      decodeJsonl(chunked(INPUT, 1 << 16), { partition: 'in.jsonl', batchSize: 10 }),
    );
    assert.deepEqual(rows, [
      { line: 1, value: { a: 1 } },
      { line: 3, value: { b: 'é€' } },
      { line: 7, value: { c: null } },
    ]);
    assert.deepEqual(
      rejected.map((r) => [r.position, r.raw, r.error.code]),
      [
        [{ partition: 'in.jsonl', offset: 4 }, '{oops', 'SLUICE_DECODE'],
        [{ partition: 'in.jsonl', offset: 5 }, '[1,2]', 'SLUICE_DECODE'],
      ],
    );
    assert.match(rejected[0]!.error.message, /^in\.jsonl:4: invalid JSON: .*property name/);
    assert.match(rejected[1]!.error.message, /^in\.jsonl:5: expected a JSON object per line, found an array/);
  });

  it('keeps integers beyond 2^53 exact; other numbers are doubles, 1e400 Infinity as in DuckDB', async () => {
    const input = [
      '{"n":9007199254740993,"m":-12345678901234567890,"s":"12345678901234567890","f":1.0,"e":1e300}',
      '{"nested":{"list":[123456789012345678901234567890123456789012,1]},"safe":9007199254740991}',
      '{"big":1e400,"small":-1E+400,"n":12345678901234567}',
    ].join('\n');
    const { rows, rejected } = await collect(
      decodeJsonl(chunked(input, 7), { partition: 'p', batchSize: 10 }),
    );
    assert.deepEqual(rejected, []);
    assert.deepEqual(
      rows.map((r) => r.value),
      [
        { n: 9007199254740993n, m: -12345678901234567890n, s: '12345678901234567890', f: 1, e: 1e300 },
        { nested: { list: [123456789012345678901234567890123456789012n, 1] }, safe: 9007199254740991 },
        { big: Infinity, small: -Infinity, n: 12345678901234567n },
      ],
    );
    // Written back, every digit is as it was.
    const encoder = new JsonEncoder();
    assert.equal(
      encoder.encode(rows[0]!.value),
      '{"n":9007199254740993,"m":-12345678901234567890,"s":"12345678901234567890","f":1,"e":1e+300}',
    );
    assert.equal(
      encoder.encode(rows[1]!.value),
      '{"nested":{"list":[123456789012345678901234567890123456789012,1]},"safe":9007199254740991}',
    );
  });

  it('splits multi-byte characters and lines across any chunk boundary', async () => {
    const whole = await collect(decodeJsonl(chunked(INPUT, 1 << 16), { partition: 'p', batchSize: 10 }));
    for (const size of [1, 2, 3, 5]) {
      const got = await collect(decodeJsonl(chunked(INPUT, size), { partition: 'p', batchSize: 10 }));
      assert.deepEqual(got.rows, whole.rows, `chunk size ${size}`);
      assert.equal(got.rejected.length, 2);
    }
  });

  it('batches records and rejections together within the batch size', async () => {
    const text = Array.from({ length: 23 }, (_, i) => (i % 5 === 0 ? 'bad' : `{"i":${i}}`)).join('\n');
    const { rows, rejected, sizes } = await collect(
      decodeJsonl(chunked(text, 10), { partition: 'p', batchSize: 4 }),
    );
    assert.equal(rows.length + rejected.length, 23);
    assert.equal(rejected.length, 5);
    assert.ok(sizes.every((n) => n <= 4 && n > 0));
  });

  it('stops without yielding more once the signal aborts', async () => {
    const controller = new AbortController();
    let served = 0;
    async function* endless(): AsyncGenerator<Buffer> {
      for (;;) {
        served++;
        yield Buffer.from('{"x":1}\n'.repeat(10));
      }
    }
    let batches = 0;
    for await (const _ of decodeJsonl(endless(), {
      partition: 'p',
      batchSize: 10,
      signal: controller.signal,
    })) {
      if (++batches === 3) controller.abort();
    }
    assert.equal(batches, 3);
    assert.ok(served <= 4);
  });
});

describe('decodeLines', () => {
  it('turns each line into { line }, keeping empty lines and dropping line endings', async () => {
    const { rows } = await collect(
      decodeLines(chunked('a\r\n\nb c\nlast', 2), { partition: 'stdin', batchSize: 2 }),
    );
    assert.deepEqual(rows, [
      { line: 1, value: { line: 'a' } },
      { line: 2, value: { line: '' } },
      { line: 3, value: { line: 'b c' } },
      { line: 4, value: { line: 'last' } },
    ]);
  });
});

describe('JsonEncoder', () => {
  it('writes Dates as ISO strings (top-level and nested) and bigints as exact numbers', () => {
    const enc = new JsonEncoder();
    const d = new Date('2024-05-06T07:08:09.010Z');
    for (let i = 0; i < 3; i++)
      assert.equal(
        enc.encode({ t: d, n: { t: d }, big: 12345678901234567890n, small: 1 }),
        '{"t":"2024-05-06T07:08:09.010Z","n":{"t":"2024-05-06T07:08:09.010Z"},"big":12345678901234567890,"small":1}',
      );
    assert.equal(enc.encode({ t: new Date(Number.NaN) }), '{"t":null}');
  });

  it('matches toISOString over the whole fast range and beyond it', () => {
    const samples = [
      0, 1, 951_782_400_000, 951_868_800_000, 4_107_542_400_000, 253_402_300_799_999, -1, 253_402_300_800_000,
    ];
    for (let i = 0; i < 2000; i++) samples.push(Math.floor(Math.random() * 253_402_300_799_999));
    for (const ms of samples) assert.equal(isoString(new Date(ms)), new Date(ms).toISOString());
  });

  it('rejects a circular record and keeps the rest of the batch', () => {
    const circular: RecordValue = { id: 2 };
    circular.self = circular;
    const records = [{ id: 1 }, circular, { id: 3 }].map((value) => ({ value, meta: {} }));
    const { text, rejected } = encodeBatch(createLineEncoder('jsonl'), records);
    assert.equal(text, '{"id":1}\n{"id":3}\n');
    assert.equal(rejected.length, 1);
    assert.equal(rejected[0]!.record?.value, circular);
    assert.equal(rejected[0]!.error.code, 'SLUICE_SINK_REJECTED');
  });
});

describe('mayHoldInexactNumber', () => {
  it('finds every run of 16 digits wherever it starts, inside bounds', () => {
    for (let pad = 0; pad < 40; pad++)
      for (const len of [15, 16, 17, 40]) {
        const text = `${'x'.repeat(pad)}${'7'.repeat(len)}${'y'.repeat(pad % 5)}`;
        assert.equal(mayHoldInexactNumber(text), len >= 16, `pad ${pad}, ${len} digits`);
      }
    assert.equal(mayHoldInexactNumber(`${'1'.repeat(15)},${'2'.repeat(15)}`), false);
    assert.equal(mayHoldInexactNumber(`{"n":1733600000000,"m":12.125,"k":123456}`), false);
    // Only the line's own digits count, not those of its neighbours in the chunk.
    const chunk = `${'1'.repeat(10)}\n{"n":123456}\n${'2'.repeat(10)}`;
    assert.equal(mayHoldInexactNumber(chunk, 11, 23), false);
    assert.equal(mayHoldInexactNumber(chunk), false);
    assert.equal(mayHoldInexactNumber(`${'1'.repeat(10)}${'2'.repeat(10)}`, 2, 18), true);
    assert.equal(mayHoldInexactNumber(`${'1'.repeat(10)}${'2'.repeat(10)}`, 2, 17), false);
  });
});
