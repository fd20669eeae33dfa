/**
 * The conformance kit for plugin authors (`sluice/sdk/testing`): a test context and two suites,
 * `sourceConformance` and `sinkConformance`, that register node:test `describe`/`it` blocks
 * checking the contract every source and sink must keep. The checks behind them are exported
 * too; each returns the list of problems it found (empty when the check passes).
 */
import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { z } from 'zod';
import { ERROR_CODES } from './errors.ts';
import type {
  ComponentContext,
  Logger,
  RecordValue,
  SinkInstance,
  SinkWriteResult,
  SluiceRecord,
  SourceBatch,
  SourceInstance,
  StepDefinition,
  StepResult,
} from './types.ts';

const silentLogger: Logger = {
  debug() {},
  info() {},
  warn() {},
  error() {},
};

/**
 * Resolves once `ready` returns true, polling every 25 ms. Fails with `what` once `seconds` have
 * passed (a generous bound for a loaded machine, not a guess at how long it takes) or as soon as
 * `gone` returns a reason it can never happen (the process it waits on has exited).
 */
export async function waitUntil(
  what: string,
  ready: () => boolean | Promise<boolean>,
  { seconds = 120, gone }: { seconds?: number; gone?: () => string | undefined } = {},
): Promise<void> {
  const deadline = Date.now() + seconds * 1000;
  for (;;) {
    if (await ready()) return;
    const reason = gone?.();
    if (reason) assert.fail(`${what} never happened: ${reason}`);
    if (Date.now() > deadline) assert.fail(`${what}: not after ${seconds} s`);
    await sleep(25);
  }
}

/** A context for tests: a fresh AbortSignal, a silent logger, baseDir = cwd, batch size 100. */
/** A config's validation problems as "path: message" lines (empty when it is valid). */
export function configIssues(schema: z.ZodType, value: unknown): string[] {
  const result = schema.safeParse(value);
  return result.success ? [] : result.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
}

export function testContext(overrides: Partial<ComponentContext> = {}): ComponentContext {
  return {
    signal: new AbortController().signal,
    logger: silentLogger,
    baseDir: process.cwd(),
    pipelineName: 'test',
    runId: 'test-run',
    batchSize: 100,
    ...overrides,
  };
}

// ---------------------------------------------------------------- source checks

/** Reads a source to its end and returns every batch it yielded. */
export async function readAll(source: SourceInstance): Promise<SourceBatch[]> {
  const batches: SourceBatch[] = [];
  for await (const batch of source.read()) batches.push(batch);
  return batches;
}

/** The number of records yielded (rejected input not included) equals `expected`. */
export function checkRecordCount(batches: SourceBatch[], expected: number): string[] {
  const n = batches.reduce((sum, b) => sum + b.records.length, 0);
  return n === expected ? [] : [`expected ${expected} records, the source yielded ${n}`];
}

/** Every record carries `meta.position` with a string partition and a finite numeric offset. */
export function checkPositionsPresent(records: SluiceRecord[]): string[] {
  const problems: string[] = [];
  records.forEach((record, i) => {
    const pos = record.meta?.position;
    if (!pos) problems.push(`record #${i} has no meta.position`);
    else if (typeof pos.partition !== 'string' || !Number.isFinite(pos.offset))
      problems.push(`record #${i} has a malformed position ${JSON.stringify(pos)}`);
  });
  return problems.slice(0, 20);
}

/** Within each partition, offsets strictly increase in the order the records were yielded. */
export function checkPositionsIncrease(records: SluiceRecord[]): string[] {
  const problems: string[] = [];
  const last = new Map<string, number>();
  records.forEach((record, i) => {
    const pos = record.meta?.position;
    if (!pos) return;
    const prev = last.get(pos.partition);
    if (prev !== undefined && !(pos.offset > prev))
      problems.push(
        `record #${i}: offset ${pos.offset} in partition "${pos.partition}" follows offset ${prev}`,
      );
    last.set(pos.partition, pos.offset);
  });
  return problems.slice(0, 20);
}

/** No batch holds more than `batchSize` items (records plus rejected input). Smaller is fine. */
export function checkBatchSizes(batches: SourceBatch[], batchSize: number): string[] {
  const problems: string[] = [];
  batches.forEach((batch, i) => {
    const n = batch.records.length + (batch.rejected?.length ?? 0);
    if (n > batchSize) problems.push(`batch #${i} holds ${n} items, more than the batch size ${batchSize}`);
  });
  return problems.slice(0, 20);
}

/**
 * Starts reading, aborts `controller` once the first batch has arrived, and checks that read()
 * then yields at most one more batch and ends (returns or throws) within `withinMs`.
 * The source must have been created with `controller.signal` as its context signal.
 */
export async function checkAbortEndsRead(
  source: SourceInstance,
  controller: AbortController,
  withinMs = 1000,
): Promise<string[]> {
  const iterator = source.read()[Symbol.asyncIterator]();
  const first = await iterator.next();
  controller.abort();
  if (first.done) return [];
  const deadline = performance.now() + withinMs;
  let after = 0;
  try {
    for (;;) {
      const left = deadline - performance.now();
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<'timeout'>((resolve) => {
        timer = setTimeout(() => resolve('timeout'), Math.max(0, left));
      });
      let next: IteratorResult<SourceBatch> | 'timeout';
      try {
        next = await Promise.race([iterator.next(), timeout]);
      } catch {
        return []; // ending with an error (an AbortError) is an acceptable way to stop
      } finally {
        clearTimeout(timer);
      }
      if (next === 'timeout') return [`read() did not end within ${withinMs} ms after the signal aborted`];
      if (next.done) return [];
      after++;
      if (after > 1) return [`read() kept yielding batches after the signal aborted (${after} so far)`];
    }
  } finally {
    // Do not await: a source stuck in next() would block return() too.
    iterator.return?.().catch(() => {});
  }
}

export interface SourceConformanceOptions {
  create: (ctx: ComponentContext) => Promise<SourceInstance> | SourceInstance;
  /** The number of records (not rejected input) a full read yields. */
  expectedRecords: number;
  /** Batch size of the context used for the full read; small so that batching is exercised. Default 7. */
  batchSize?: number;
  /** Per-test timeout in milliseconds. Default 30000. */
  timeout?: number;
}

/**
 * Registers a `describe` block checking that a source: yields `expectedRecords` records, gives
 * every record a position, keeps offsets strictly increasing per partition, respects the
 * context's batch size, has an idempotent close(), and stops promptly when its signal aborts.
 */
export function sourceConformance(name: string, opts: SourceConformanceOptions): void {
  const batchSize = opts.batchSize ?? 7;
  const timeout = opts.timeout ?? 30_000;
  describe(`source conformance: ${name}`, () => {
    let batches: SourceBatch[] = [];
    let records: SluiceRecord[] = [];
    before(
      async () => {
        const source = await opts.create(testContext({ batchSize }));
        try {
          batches = await readAll(source);
        } finally {
          await source.close();
        }
        records = batches.flatMap((b) => b.records);
      },
      { timeout },
    );

    it(`yields exactly ${opts.expectedRecords} records`, () => {
      assert.deepEqual(checkRecordCount(batches, opts.expectedRecords), []);
    });
    it('gives every record a position', () => {
      assert.deepEqual(checkPositionsPresent(records), []);
    });
    it('keeps offsets strictly increasing within each partition', () => {
      assert.deepEqual(checkPositionsIncrease(records), []);
    });
    it(`yields no batch larger than the context batch size (${batchSize})`, () => {
      assert.deepEqual(checkBatchSizes(batches, batchSize), []);
    });
    it('close() is idempotent, also after a partial read', { timeout }, async () => {
      const source = await opts.create(testContext({ batchSize }));
      const iterator = source.read()[Symbol.asyncIterator]();
      await iterator.next();
      await iterator.return?.();
      await source.close();
      await source.close();
      const unread = await opts.create(testContext({ batchSize }));
      await unread.close();
      await unread.close();
    });
    it('ends read() promptly once the signal aborts', { timeout }, async () => {
      const controller = new AbortController();
      const source = await opts.create(testContext({ batchSize, signal: controller.signal }));
      try {
        assert.deepEqual(await checkAbortEndsRead(source, controller), []);
      } finally {
        await source.close();
      }
    });
  });
}

// ---------------------------------------------------------------- sink checks

/**
 * A canonical text for a value, to compare records: object keys sorted, Date, bigint, NaN and
 * Infinity kept apart from look-alike strings; an undefined property counts as absent.
 */
export function canonical(value: unknown): string {
  return JSON.stringify(value, function (this: Record<string, unknown>, key: string, v: unknown) {
    const raw = this[key];
    if (raw instanceof Date) return { $date: Number.isNaN(raw.getTime()) ? 'invalid' : raw.toISOString() };
    if (typeof raw === 'bigint') return { $bigint: raw.toString() };
    if (typeof raw === 'number' && !Number.isFinite(raw)) return { $number: String(raw) };
    if (raw && typeof raw === 'object' && !Array.isArray(raw) && !(raw instanceof Uint8Array)) {
      const sorted: Record<string, unknown> = {};
      for (const k of Object.keys(raw).sort()) sorted[k] = (raw as Record<string, unknown>)[k];
      return sorted;
    }
    return v;
  });
}

/** `actual` and `expected` hold the same values the same number of times, in any order. */
export function checkSameRecords(actual: RecordValue[], expected: RecordValue[]): string[] {
  const counts = new Map<string, number>();
  for (const v of expected) {
    const k = canonical(v);
    counts.set(k, (counts.get(k) ?? 0) + 1);
  }
  const unexpected: string[] = [];
  for (const v of actual) {
    const k = canonical(v);
    const n = counts.get(k);
    if (n) counts.set(k, n - 1);
    else unexpected.push(k);
  }
  const missing: string[] = [];
  for (const [k, n] of counts) for (let i = 0; i < n; i++) missing.push(k);
  const problems: string[] = [];
  if (missing.length)
    problems.push(
      `${missing.length} written record(s) not read back, e.g. ${missing.slice(0, 3).join(', ')}`,
    );
  if (unexpected.length)
    problems.push(
      `${unexpected.length} record(s) read back that were not written (or were changed), e.g. ${unexpected.slice(0, 3).join(', ')}`,
    );
  return problems;
}

/**
 * The write result rejects `value` exactly once, with a SluiceError-shaped error (a known `code`),
 * and rejects nothing else.
 */
export function checkRejected(result: SinkWriteResult | undefined, value: RecordValue): string[] {
  const rejected = result?.rejected ?? [];
  const target = canonical(value);
  const problems: string[] = [];
  const matching = rejected.filter((r) => r.record && canonical(r.record.value) === target);
  if (matching.length !== 1)
    problems.push(`expected the unencodable record in rejected once, found it ${matching.length} time(s)`);
  if (rejected.length !== matching.length)
    problems.push(`${rejected.length - matching.length} other record(s) were rejected too`);
  for (const r of matching) {
    const code = (r.error as { code?: unknown } | undefined)?.code;
    if (typeof code !== 'string' || !(code in ERROR_CODES))
      problems.push(`the rejection's error has no known SluiceError code (got ${String(code)})`);
  }
  return problems;
}

/**
 * A sink that says `durableCommits: false` (output durable only at close) offers no two-phase
 * commit: a prepared token would promise durable output mid-run.
 */
export function checkDurableCommitsFlag(sink: SinkInstance): string[] {
  if (sink.durableCommits !== false) return [];
  return sink.prepareCommit || sink.commitPrepared
    ? ['durableCommits is false, yet the sink has two-phase commit (prepareCommit/commitPrepared)']
    : [];
}

function toRecords(values: RecordValue[]): SluiceRecord[] {
  return values.map((value, i) => ({ value, meta: { position: { partition: 'test', offset: i } } }));
}

async function writeAll(sink: SinkInstance, records: SluiceRecord[], batchSize: number): Promise<string[]> {
  const problems: string[] = [];
  for (let i = 0; i < records.length; i += batchSize) {
    const result = await sink.write(records.slice(i, i + batchSize));
    if (result?.rejected?.length)
      problems.push(
        `write() rejected ${result.rejected.length} encodable record(s): ${result.rejected[0]?.error.message}`,
      );
  }
  return problems;
}

/** Records the sink suite writes unless told otherwise: plain JSON scalars, a few batches' worth. */
export function sampleRecords(n = 250): RecordValue[] {
  const out: RecordValue[] = [];
  for (let i = 1; i <= n; i++)
    out.push({ id: i, name: `name-${i % 17}`, amount: (i * 37) % 1000, active: i % 3 === 0 });
  return out;
}

export interface SinkConformanceOptions {
  /** Called once per check; each call must give a sink whose output readBack() then reads. */
  create: (ctx: ComponentContext) => Promise<SinkInstance> | SinkInstance;
  /** Reads back what the most recently created sink made visible (committed); [] when nothing is. */
  readBack: () => Promise<RecordValue[]>;
  /** Called before each check: clears whatever readBack() reads. */
  reset?: () => Promise<void> | void;
  /** The records to write; default `sampleRecords()` (ids, short strings, integers, booleans). */
  records?: RecordValue[];
  /** abort() after writes leaves nothing visible. Default true; set false for non-transactional sinks. */
  atomic?: boolean;
  /** A value the sink cannot encode; when given, write() must return it in `rejected`. */
  unencodable?: RecordValue;
  /** Records per write() call. Default 100. */
  batchSize?: number;
  /** Per-test timeout in milliseconds. Default 30000. */
  timeout?: number;
}

/**
 * Registers a `describe` block checking that a sink: gives back everything written once it is
 * closed, has an idempotent close() and abort(), shows nothing after abort() (when atomic), and
 * returns a record it cannot encode as rejected rather than throwing or dropping it. Without
 * two-phase commit: commit() makes what was written visible, unless the sink says
 * `durableCommits: false`. With two-phase commit: shows nothing after prepareCommit, publishes on
 * commitPrepared (idempotent), and a new instance publishes a JSON-round-tripped token after the
 * first one was aborted.
 */
export function sinkConformance(name: string, opts: SinkConformanceOptions): void {
  const values = opts.records ?? sampleRecords();
  const batchSize = opts.batchSize ?? 100;
  const timeout = opts.timeout ?? 30_000;
  const fresh = async (): Promise<SinkInstance> => {
    await opts.reset?.();
    return opts.create(testContext({ batchSize }));
  };

  describe(`sink conformance: ${name}`, () => {
    it(`reads back all ${values.length} records written, once closed`, { timeout }, async () => {
      const sink = await fresh();
      assert.deepEqual(await writeAll(sink, toRecords(values), batchSize), []);
      await sink.close();
      assert.deepEqual(checkSameRecords(await opts.readBack(), values), []);
    });

    it('close() is idempotent', { timeout }, async () => {
      const sink = await fresh();
      await writeAll(sink, toRecords(values.slice(0, 3)), batchSize);
      await sink.close();
      await sink.close();
      assert.deepEqual(checkSameRecords(await opts.readBack(), values.slice(0, 3)), []);
    });

    if (opts.atomic ?? true) {
      it('abort() after writes leaves nothing visible, and is idempotent', { timeout }, async () => {
        const sink = await fresh();
        await writeAll(sink, toRecords(values), batchSize);
        await sink.abort();
        await sink.abort();
        assert.deepEqual(await opts.readBack(), []);
      });
    }

    it('commit() makes what was written visible, unless the sink says durableCommits: false', {
      timeout,
    }, async (t) => {
      const sink = await fresh();
      assert.deepEqual(checkDurableCommitsFlag(sink), []);
      // At checkpoints the engine asks a two-phase sink to prepare, and a close-only sink nothing.
      if (sink.durableCommits === false || (sink.prepareCommit && sink.commitPrepared)) {
        await sink.abort();
        t.skip(sink.durableCommits === false ? 'durableCommits is false' : 'two-phase commit');
        return;
      }
      assert.deepEqual(await writeAll(sink, toRecords(values), batchSize), []);
      await sink.commit();
      assert.deepEqual(checkSameRecords(await opts.readBack(), values), [], 'visible after commit()');
      await sink.close();
      assert.deepEqual(checkSameRecords(await opts.readBack(), values), [], 'nothing was written twice');
    });

    // Sinks with two-phase commit (prepareCommit and commitPrepared); others skip these.
    const twoPhase = async (t: { skip(message?: string): void }): Promise<SinkInstance | undefined> => {
      const sink = await fresh();
      if (sink.prepareCommit && sink.commitPrepared) return sink;
      await sink.abort();
      t.skip('no two-phase commit');
      return undefined;
    };

    it('two-phase commit: prepareCommit shows nothing; commitPrepared publishes, and again is harmless', {
      timeout,
    }, async (t) => {
      const sink = await twoPhase(t);
      if (!sink) return;
      assert.deepEqual(await writeAll(sink, toRecords(values), batchSize), []);
      const token = await sink.prepareCommit!();
      assert.deepEqual(JSON.parse(JSON.stringify(token)), token, 'the token is JSON: a checkpoint keeps it');
      assert.deepEqual(await opts.readBack(), [], 'nothing is visible before commitPrepared');
      await sink.commitPrepared!(token);
      assert.deepEqual(checkSameRecords(await opts.readBack(), values), []);
      await sink.commitPrepared!(token);
      await sink.close();
      assert.deepEqual(checkSameRecords(await opts.readBack(), values), [], 'nothing was published twice');
    });

    it('two-phase commit: abort() keeps prepared output, which a new instance publishes from the token', {
      timeout,
    }, async (t) => {
      const sink = await twoPhase(t);
      if (!sink) return;
      await writeAll(sink, toRecords(values.slice(0, 7)), batchSize);
      const token = JSON.parse(JSON.stringify(await sink.prepareCommit!()));
      // Written after the checkpoint: a resumed run writes these again, so they must never show.
      await writeAll(sink, toRecords(values.slice(7, 9)), batchSize);
      await sink.abort();
      assert.deepEqual(await opts.readBack(), []);
      const recovering = await opts.create(testContext({ batchSize, runId: 'test-run-2' }));
      await recovering.commitPrepared!(token);
      await recovering.close();
      assert.deepEqual(checkSameRecords(await opts.readBack(), values.slice(0, 7)), []);
    });

    const unencodable = opts.unencodable;
    if (unencodable !== undefined) {
      it('returns a record it cannot encode in rejected, and keeps the rest', { timeout }, async () => {
        const sink = await fresh();
        const good = values.slice(0, 3);
        const batch = toRecords([good[0]!, unencodable, ...good.slice(1)]);
        const result = await sink.write(batch);
        assert.deepEqual(checkRejected(result, unencodable), []);
        await sink.close();
        assert.deepEqual(checkSameRecords(await opts.readBack(), good), []);
      });
    }
  });
}

/** What `runStep` saw: the output values, the rejected records' values and codes, and the count filtered. */
export interface StepRun {
  records: RecordValue[];
  rejected: { value: RecordValue | undefined; code: string }[];
  /** Input records neither returned nor rejected (0 for a step with `finish`, whose output is not per record). */
  filtered: number;
}

/**
 * Runs a step as the engine does, for a unit test: `config` is checked against the step's schema
 * (and its `check`), the step is created with a test context, given `values` as one batch, then
 * finished and closed. Throws with the schema's or check's issues when the config is invalid.
 */
export async function runStep(
  step: StepDefinition,
  config: unknown,
  values: RecordValue[],
  ctx: Partial<ComponentContext> = {},
): Promise<StepRun> {
  const parsed = step.config.safeParse(config ?? {});
  if (!parsed.success)
    throw new Error(`invalid config for step ${step.name}: ${configIssues(step.config, config).join('; ')}`);
  const context = testContext(ctx);
  const issues = (await step.check?.(parsed.data, { baseDir: context.baseDir })) ?? [];
  if (issues.length)
    throw new Error(
      `invalid config for step ${step.name}: ${issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`,
    );
  const instance = await step.create(parsed.data, context);
  const input: SluiceRecord[] = values.map((value, offset) => ({
    value,
    meta: { position: { partition: 'test', offset } },
  }));
  const results: StepResult[] = [];
  try {
    results.push(await instance.process(input));
    const finished = await instance.finish?.();
    if (finished && Symbol.asyncIterator in finished) for await (const r of finished) results.push(r);
    else if (finished) results.push(finished as StepResult);
  } finally {
    await instance.close?.();
  }
  const records = results.flatMap((r) => r.records.map((rec) => rec.value));
  const rejected = results.flatMap((r) =>
    (r.rejected ?? []).map((x) => ({ value: x.record?.value, code: x.error.code })),
  );
  const filtered = instance.finish
    ? 0
    : Math.max(0, values.length - (results[0]?.records.length ?? 0) - (results[0]?.rejected?.length ?? 0));
  return { records, rejected, filtered };
}
