import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parse } from 'yaml';
import { z } from 'zod';
import { checkAbortEndsRead, readAll, sourceConformance, testContext } from '../../sdk/testing.ts';
import type { RecordValue, SluiceRecord } from '../../sdk/types.ts';
import { compileExpression, mulberry32 } from './dsl.ts';
import { type GenerateConfig, generateSource, parseRate } from './index.ts';

function cfg(input: unknown): GenerateConfig {
  return generateSource.config.parse(input);
}

async function generate(input: unknown, batchSize = 100): Promise<SluiceRecord[]> {
  const source = await generateSource.create(cfg(input), testContext({ batchSize }));
  const batches = await readAll(source);
  await source.close();
  return batches.flatMap((b) => b.records);
}

async function values(fields: Record<string, unknown>, count = 2000, seed = 7): Promise<RecordValue[]> {
  return (await generate({ count, seed, fields })).map((r) => r.value);
}

function issues(input: unknown): string[] {
  const result = generateSource.config.safeParse(input);
  assert.equal(result.success, false);
  return result.error!.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
}

sourceConformance('generate', {
  create: (ctx) => generateSource.create(cfg({ count: 53 }), ctx),
  expectedRecords: 53,
});
sourceConformance('generate (rate-limited)', {
  create: (ctx) => generateSource.create(cfg({ count: 30, rate: '2000/s', fields: { id: 'uuid' } }), ctx),
  expectedRecords: 30,
});

describe('generate: config', () => {
  it('parses every example with the yaml package and the schema', () => {
    assert.equal(generateSource.examples.length >= 1 && generateSource.examples.length <= 3, true);
    for (const example of generateSource.examples) {
      const result = generateSource.config.safeParse(parse(example.yaml));
      assert.equal(result.success, true, `${example.title}: ${JSON.stringify(result.error?.issues)}`);
    }
  });

  it('converts to JSON Schema, with a description on every field', () => {
    const schema = z.toJSONSchema(generateSource.config, { io: 'input' }) as {
      properties: Record<string, { description?: string }>;
      additionalProperties: boolean;
    };
    assert.deepEqual(Object.keys(schema.properties).sort(), ['count', 'fields', 'rate', 'seed']);
    for (const [key, prop] of Object.entries(schema.properties)) assert.ok(prop.description, key);
    assert.equal(schema.additionalProperties, false);
  });

  it('defaults seed to 1 and fields to an id sequence', () => {
    assert.deepEqual(cfg({ count: 1 }), { count: 1, seed: 1, fields: { id: 'seq' } });
  });

  it('needs a count or a rate', () => {
    assert.deepEqual(issues({}), [
      'count: give `count` (a bounded run), `rate` (an endless stream), or both',
    ]);
    assert.equal(generateSource.config.safeParse({ rate: '5/s' }).success, true);
    assert.equal(generateSource.bounded(cfg({ rate: '5/s' })), false);
    assert.equal(generateSource.bounded(cfg({ rate: '5/s', count: 10 })), true);
  });

  it('refuses unknown keys, bad counts and bad rates', () => {
    assert.match(issues({ count: 1, cont: 2 }).join(), /Unrecognized key: "cont"/);
    assert.match(issues({ count: -1 }).join(), /^count:/);
    assert.match(issues({ count: 1.5 }).join(), /^count:/);
    assert.match(issues({ rate: '5/day' }).join(), /rate: expected a rate such as 1000\/s/);
    assert.deepEqual(issues({ rate: '0/s' }), ['rate: a rate must be more than zero']);
  });

  it('parses rates per second, minute and hour', () => {
    assert.equal(parseRate('1000/s'), 1000);
    assert.equal(parseRate(' 30 / min '), 0.5);
    assert.equal(parseRate('7200/h'), 2);
    assert.equal(parseRate('1.5/s'), 1.5);
    assert.equal(parseRate('10/ms'), undefined);
    assert.equal(parseRate('fast'), undefined);
  });

  it('names the field and lists valid generators for an unknown generator', () => {
    const [issue, ...rest] = issues({ count: 1, fields: { amount: 'intt(1, 9)' } });
    assert.equal(rest.length, 0);
    assert.match(issue!, /^fields\.amount: field "amount": unknown generator "intt" \(did you mean int\?\)/);
    for (const g of ['seq', 'int(min, max)', 'pick(a, b, ...)', 'weighted(a:3, b:1)', 'uuid', 'template('])
      assert.ok(issue!.includes(g), g);
  });

  it('reports every bad field at once, nested ones with their full path', () => {
    const found = issues({
      count: 1,
      fields: {
        ok: 'seq',
        a: 'int(1)',
        b: { c: { d: 'pick(a, b' } },
        e: 'int(9, 1)',
        f: 'seq | nul(0.1)',
        g: 'bool(2)',
        h: "template('x {nope}')",
        i: 'uuid extra',
        j: '',
        k: 'weighted(a:0)',
        l: "timestamp('yesterday')",
        m: 'float(1, x)',
        n: 'string(-1)',
      },
    });
    const expected: [string, RegExp][] = [
      ['fields.a', /field "a": int takes \(min, max\), got 1 argument/],
      ['fields.b.c.d', /field "b\.c\.d": unclosed "\(" after pick/],
      ['fields.e', /min 9 is greater than max 1/],
      ['fields.f', /unknown modifier "nul".*only modifier is null\(p\)/],
      ['fields.g', /bool: p must be between 0 and 1/],
      ['fields.h', /template: in \{nope\}: unknown generator "nope"/],
      ['fields.i', /unexpected "extra" after uuid/],
      ['fields.j', /empty expression; valid generators/],
      ['fields.k', /at least one weight must be positive/],
      ['fields.l', /"yesterday" is not an ISO 8601 time/],
      ['fields.m', /max must be a number, got x/],
      ['fields.n', /string: lengths must satisfy/],
    ];
    assert.equal(found.length, expected.length, found.join('\n'));
    expected.forEach(([path, re], i) => {
      assert.ok(found[i]!.startsWith(`${path}: `), found[i]);
      assert.match(found[i]!, re);
    });
  });
});

describe('generate: records', () => {
  it('is deterministic: same seed, same records; another seed, other records', async () => {
    const fields = { id: 'uuid', n: 'int(1, 1000000)', s: 'string(5)', x: 'float(0, 1) | null(0.2)' };
    const a = await values(fields, 500, 3);
    assert.deepEqual(await values(fields, 500, 3), a);
    assert.notDeepEqual(await values(fields, 500, 4), a);
    // batching does not change the stream
    const small = (await generate({ count: 500, seed: 3, fields }, 7)).map((r) => r.value);
    assert.deepEqual(small, a);
  });

  it('positions every record at partition "generate", offset = the record number', async () => {
    const records = await generate({ count: 250 }, 100);
    assert.equal(records.length, 250);
    records.forEach((r, i) => {
      assert.deepEqual(r.meta.position, { partition: 'generate', offset: i + 1 });
      assert.deepEqual(r.value, { id: i + 1 });
    });
  });

  it('respects the context batch size and reports recordsTotal', async () => {
    const source = await generateSource.create(cfg({ count: 25 }), testContext({ batchSize: 10 }));
    assert.deepEqual(source.progress?.(), { recordsTotal: 25 });
    const sizes = (await readAll(source)).map((b) => b.records.length);
    assert.deepEqual(sizes, [10, 10, 5]);
    const endless = await generateSource.create(cfg({ rate: '1/s' }), testContext());
    assert.deepEqual(endless.progress?.(), {});
  });

  it('count 0 yields nothing', async () => {
    assert.deepEqual(await generate({ count: 0 }), []);
  });

  it('seq counts from 1, or from a start by a step', async () => {
    const v = await values({ a: 'seq', b: 'seq(10, 5)', c: 'seq(100)' }, 3);
    assert.deepEqual(v, [
      { a: 1, b: 10, c: 100 },
      { a: 2, b: 15, c: 101 },
      { a: 3, b: 20, c: 102 },
    ]);
  });

  it('int covers both ends, and only integers in range', async () => {
    const seen = new Set((await values({ v: 'int(-2, 2)' })).map((r) => r.v));
    assert.deepEqual([...seen].sort(), [-1, -2, 0, 1, 2]);
  });

  it('float stays in [min, max) and rounds to the decimals given', async () => {
    for (const { v, w } of await values({ v: 'float(1.5, 2.5)', w: 'float(0, 100, 2)' })) {
      assert.ok((v as number) >= 1.5 && (v as number) < 2.5);
      assert.ok((w as number) >= 0 && (w as number) <= 100);
      assert.equal(Math.round((w as number) * 100) / 100, w);
    }
  });

  it('pick keeps numbers as numbers, quoted text as strings', async () => {
    const seen = new Set((await values({ v: "pick(1, 2.5, a, 'b c', '3', true)" })).map((r) => r.v));
    assert.deepEqual(new Set(seen), new Set([1, 2.5, 'a', 'b c', '3', true]));
  });

  it('weighted follows the weights', async () => {
    const v = (await values({ v: "weighted(a:3, 'b:x':1, 7:0)" }, 4000)).map((r) => r.v);
    const a = v.filter((x) => x === 'a').length;
    const b = v.filter((x) => x === 'b:x').length;
    assert.equal(a + b, 4000); // weight 0 is never drawn
    assert.ok(Math.abs(a / 4000 - 0.75) < 0.03, `a share ${a / 4000}`);
  });

  it('uuid has the RFC 4122 version 4 shape and does not repeat', async () => {
    const ids = (await values({ v: 'uuid' }, 5000)).map((r) => r.v as string);
    for (const id of ids)
      assert.match(id, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    assert.equal(new Set(ids).size, ids.length);
  });

  it('string has the length asked, letters and digits only', async () => {
    for (const { a, b } of await values({ a: 'string(12)', b: 'string(2, 4)' }, 500)) {
      assert.match(a as string, /^[A-Za-z0-9]{12}$/);
      assert.match(b as string, /^[A-Za-z0-9]{2,4}$/);
    }
  });

  it('bool and null(p) follow their probabilities', async () => {
    const v = await values(
      { t: 'bool(0.9)', h: 'bool', n: 'int(1, 9) | null(0.25)', z: 'seq | null(0)' },
      4000,
    );
    const share = (f: (r: RecordValue) => boolean) => v.filter(f).length / v.length;
    assert.ok(Math.abs(share((r) => r.t === true) - 0.9) < 0.03);
    assert.ok(Math.abs(share((r) => r.h === true) - 0.5) < 0.04);
    assert.ok(Math.abs(share((r) => r.n === null) - 0.25) < 0.03);
    assert.ok(v.every((r) => r.n === null || (Number.isInteger(r.n) && (r.n as number) >= 1)));
    assert.equal(
      share((r) => r.z === null),
      0,
    );
  });

  it('timestamp counts milliseconds from the run start, or steps from a given start', async () => {
    const before = Date.now();
    const v = await values(
      { a: 'timestamp', b: "timestamp('2024-01-01T00:00:00Z', 90s)", c: 'timestamp(2024-03-01, 250)' },
      3,
    );
    const a0 = Date.parse(v[0]!.a as string);
    assert.ok(a0 >= before && a0 <= Date.now());
    assert.equal(Date.parse(v[2]!.a as string) - a0, 2);
    assert.deepEqual(
      v.map((r) => r.b),
      ['2024-01-01T00:00:00.000Z', '2024-01-01T00:01:30.000Z', '2024-01-01T00:03:00.000Z'],
    );
    assert.equal(v[1]!.c, '2024-03-01T00:00:00.250Z');
    const [now] = await values({ t: 'timestamp(now, 1m)' }, 2);
    assert.ok(Math.abs(Date.parse(now!.t as string) - Date.now()) < 5000);
  });

  it('timestamp(now) is the wall clock when each record is generated, not one second per record', async () => {
    const before = Date.now();
    // Paced, so the run spans real time: 40 records at 400/s take about 0.1 s, far from the 39 s
    // that one second per record would claim.
    const records = await generate({ count: 40, rate: '400/s', fields: { t: 'timestamp(now)' } }, 10);
    const after = Date.now();
    const times = records.map((r) => Date.parse(r.value.t as string));
    assert.equal(times.length, 40);
    for (const [i, t] of times.entries()) {
      assert.ok(
        t >= before && t <= after,
        `record ${i + 1}: ${new Date(t).toISOString()} is outside the run`,
      );
      if (i > 0) assert.ok(t >= times[i - 1]!, `record ${i + 1} is earlier than the one before it`);
    }
  });

  it('const, constants and nested maps', async () => {
    const v = await values(
      { c: "const('EUR')", n: 'const(3)', k: 5, f: false, z: null, o: { id: 'seq', in: { x: 'const(x)' } } },
      2,
    );
    assert.deepEqual(v, [
      { c: 'EUR', n: 3, k: 5, f: false, z: null, o: { id: 1, in: { x: 'x' } } },
      { c: 'EUR', n: 3, k: 5, f: false, z: null, o: { id: 2, in: { x: 'x' } } },
    ]);
  });

  it('name and email come from the built-in lists', async () => {
    for (const { n, e } of await values({ n: 'name', e: 'email' }, 300)) {
      assert.match(n as string, /^[A-Z][a-z]+ [A-Z][a-z]+$/);
      assert.match(e as string, /^[a-z]+\.[a-z]+@[a-z]+\.(com|org|net|example)$/);
    }
  });

  it('template fills {expressions}, with {{ }} as literal braces', async () => {
    const v = await values(
      { t: "template('ord-{seq}-{int(5, 5)} {{x}}')", u: 'template("{pick(\'a\')}/{seq(0, 2)}")' },
      2,
    );
    assert.deepEqual(v, [
      { t: 'ord-1-5 {x}', u: 'a/0' },
      { t: 'ord-2-5 {x}', u: 'a/2' },
    ]);
  });

  it('compiled expressions draw from the PRNG only (mulberry32 is reproducible)', () => {
    const a = mulberry32(9);
    const b = mulberry32(9);
    for (let i = 0; i < 100; i++) assert.equal(a.u32(), b.u32());
    const g = compileExpression('int(1, 6)', { rng: mulberry32(1), startMs: 0 });
    const h = compileExpression('int(1, 6)', { rng: mulberry32(1), startMs: 0 });
    for (let n = 1; n <= 50; n++) assert.equal(g(n), h(n));
  });
});

describe('generate: pacing', () => {
  it('paces a rate with a token bucket, in batches of at most 100 ms of records', async () => {
    const source = await generateSource.create(
      cfg({ count: 30, rate: '100/s' }),
      testContext({ batchSize: 100 }),
    );
    const started = performance.now();
    const batches = await readAll(source);
    const elapsed = performance.now() - started;
    assert.deepEqual(
      batches.map((b) => b.records.length),
      [10, 10, 10],
    );
    // The first batch is free (a full bucket); the other 20 records take 200 ms at 100/s.
    assert.ok(elapsed >= 180, `took ${elapsed} ms`);
    assert.ok(elapsed < 2000, `took ${elapsed} ms`);
  });

  it('an abort ends a slow endless stream at once', async () => {
    const controller = new AbortController();
    const source = await generateSource.create(
      cfg({ rate: '1/min' }),
      testContext({ signal: controller.signal }),
    );
    const started = performance.now();
    assert.deepEqual(await checkAbortEndsRead(source, controller, 500), []);
    assert.ok(performance.now() - started < 500);
  });

  it('close() ends reading', async () => {
    const source = await generateSource.create(cfg({ rate: '1000000/s' }), testContext({ batchSize: 10 }));
    let n = 0;
    for await (const batch of source.read()) {
      n += batch.records.length;
      if (n >= 50) await source.close();
    }
    assert.equal(n, 50);
  });
});
