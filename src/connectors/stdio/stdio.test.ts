import assert from 'node:assert/strict';
import { PassThrough, Readable, Writable } from 'node:stream';
import { describe, it } from 'node:test';
import { testContext, waitUntil } from '../../sdk/testing.ts';
import type { SluiceRecord } from '../../sdk/types.ts';
import { createStdinSource, createStdoutSink, stdinSourceConfig, stdoutSinkConfig } from './index.ts';

async function readAll(format: string, input: Readable, extra: Record<string, unknown> = {}) {
  const source = createStdinSource(
    stdinSourceConfig.parse({ format, ...extra }),
    testContext({ batchSize: 2 }),
    input,
  );
  const records: SluiceRecord[] = [];
  const rejected = [];
  for await (const b of source.read()) {
    records.push(...b.records);
    rejected.push(...(b.rejected ?? []));
  }
  await source.close();
  return { records, rejected, progress: source.progress?.() };
}

const toRecords = (values: Record<string, unknown>[]): SluiceRecord[] =>
  values.map((value) => ({ value, meta: {} }));

describe('stdin source', () => {
  it('reads JSON Lines positioned by line in partition stdin, rejecting bad lines', async () => {
    const text = '{"a":1}\nnope\n{"a":2}\n';
    const { records, rejected, progress } = await readAll('jsonl', Readable.from([Buffer.from(text)]));
    assert.deepEqual(
      records.map((r) => [r.meta.position, r.value]),
      [
        [{ partition: 'stdin', offset: 1 }, { a: 1 }],
        [{ partition: 'stdin', offset: 3 }, { a: 2 }],
      ],
    );
    assert.equal(rejected.length, 1);
    assert.match(rejected[0]!.error.message, /^stdin:2: invalid JSON/);
    assert.deepEqual(progress, { bytesRead: Buffer.byteLength(text) });
  });

  it('reads CSV with the csv options and plain lines', async () => {
    const csv = await readAll('csv', Readable.from([Buffer.from('n;s\n1;"a;b"\n')]), {
      csv: { delimiter: ';', columns: { n: 'integer' } },
    });
    assert.deepEqual(
      csv.records.map((r) => r.value),
      [{ n: 1, s: 'a;b' }],
    );
    const lines = await readAll('lines', Readable.from([Buffer.from('x\n\ny')]));
    assert.deepEqual(
      lines.records.map((r) => [r.meta.position?.offset, r.value]),
      [
        [1, { line: 'x' }],
        [2, { line: '' }],
        [3, { line: 'y' }],
      ],
    );
  });

  it('ends a read blocked on input as soon as the signal aborts', async () => {
    const input = new PassThrough();
    const controller = new AbortController();
    const source = createStdinSource(
      stdinSourceConfig.parse({}),
      testContext({ batchSize: 1, signal: controller.signal }),
      input,
    );
    input.write('{"a":1}\n');
    const seen: number[] = [];
    const reading = (async () => {
      for await (const b of source.read()) seen.push(b.records.length);
    })();
    await waitUntil('the first batch read', () => seen.length === 1);
    controller.abort();
    await reading;
    await source.close();
    assert.deepEqual(seen, [1]);
    assert.ok(input.destroyed, 'close() releases the input');
  });
});

describe('stdout sink', () => {
  function collector(highWaterMark = 16 * 1024) {
    const chunks: string[] = [];
    let writes = 0;
    const out = new Writable({
      highWaterMark,
      write(chunk, _enc, cb) {
        chunks.push(String(chunk));
        writes++;
        setImmediate(cb);
      },
    });
    return { out, text: () => chunks.join(''), writes: () => writes };
  }

  it('writes JSON Lines batch by batch, waits for drain, and never ends the stream', async () => {
    const { out, text, writes } = collector(8);
    const sink = createStdoutSink(stdoutSinkConfig.parse({}), out);
    await sink.write(toRecords([{ a: 1, at: new Date('2024-01-01T00:00:00Z') }, { a: 2 }]));
    assert.equal(out.writableNeedDrain, false, 'write() waited for drain');
    await sink.write(toRecords([{ a: 3 }]));
    await sink.commit();
    await sink.close();
    await sink.close();
    assert.equal(text(), '{"a":1,"at":"2024-01-01T00:00:00.000Z"}\n{"a":2}\n{"a":3}\n');
    assert.equal(writes(), 2, 'one write per batch');
    assert.equal(out.writableEnded, false);
  });

  it('writes CSV with one header and rejects records it cannot encode', async () => {
    const { out, text } = collector();
    const sink = createStdoutSink(stdoutSinkConfig.parse({ format: 'csv', csv: { delimiter: '\t' } }), out);
    const result = await sink.write(toRecords([{ a: 1, b: 'x y' }, { a: 2, c: 'extra' }, { a: 3 }]));
    await sink.write(toRecords([{ a: 4, b: 'z' }]));
    await sink.close();
    assert.equal(text(), 'a\tb\n1\tx y\n3\t\n4\tz\n');
    assert.equal(result?.rejected?.length, 1);
    assert.equal(result?.rejected?.[0]?.error.code, 'SLUICE_SINK_REJECTED');
  });

  /** A stream whose every write fails with `code`. */
  const failingOutput = (code: string) =>
    new Writable({
      highWaterMark: 1,
      write(_chunk, _enc, cb) {
        cb(Object.assign(new Error(`write ${code}`), { code }));
      },
    });

  it('says the reader is gone (SLUICE_OUTPUT_CLOSED) on EPIPE, instead of crashing', async () => {
    const out = failingOutput('EPIPE');
    const sink = createStdoutSink(stdoutSinkConfig.parse({}), out);
    await assert.rejects(sink.write(toRecords([{ a: 1 }])), { code: 'SLUICE_OUTPUT_CLOSED' });
    await sink.abort();
    await sink.abort();
    out.emit('error', new Error('a failed stream may report more'));
  });

  it('turns any other output error into SLUICE_SINK_IO', async () => {
    const sink = createStdoutSink(stdoutSinkConfig.parse({}), failingOutput('ENOSPC'));
    await assert.rejects(sink.write(toRecords([{ a: 1 }])), {
      code: 'SLUICE_SINK_IO',
      message: 'cannot write to stdout: write ENOSPC',
    });
    await sink.abort();
  });
});
