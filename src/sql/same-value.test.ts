import assert from 'node:assert/strict';
import { test } from 'node:test';
import { callsTranscendental, sameValue } from './same-value.ts';

test('sameValue: NaN, the sign of zero, relative 1e-15 only for transcendental results, bigints, Dates, nesting', () => {
  assert.ok(sameValue(Number.NaN, Number.NaN));
  assert.ok(!sameValue(-0, 0));
  assert.ok(sameValue(-0, -0));
  assert.ok(!sameValue(0.1 + 0.2, 0.3));
  assert.ok(sameValue(0.1 + 0.2, 0.3, true));
  assert.ok(!sameValue(1, 1 + 1e-14, true));
  assert.ok(sameValue(2n ** 60n, 2n ** 60n));
  assert.ok(!sameValue(2n ** 60n, 2n ** 60n + 1n));
  assert.ok(sameValue(42n, 42));
  assert.ok(!sameValue(42n, 42.5));
  assert.ok(sameValue(new Date(5), new Date(5)));
  assert.ok(!sameValue(new Date(5), 5));
  assert.ok(sameValue(Buffer.from('ab'), new Uint8Array([97, 98])));
  assert.ok(sameValue([{ a: [1, null] }], [{ a: [1, null] }]));
  assert.ok(!sameValue({ a: 1, b: 2 }, { b: 2, a: 1 }));
  assert.ok(!sameValue([1], { 0: 1 }));
  assert.ok(!sameValue('1', 1));
  assert.ok(sameValue(null, undefined));
});

test('sameValue: the differential oracle is as strict as the conformance suite (sign of zero, last bits, -nan text)', () => {
  // each was equal under the differential tests' former rule
  assert.ok(!sameValue([0], [-0]));
  assert.ok(!sameValue(1, 1 + Number.EPSILON));
  assert.ok(!sameValue('-nan', 'nan'));
});

test('callsTranscendental: functions from the C library, and the power operators', () => {
  assert.ok(callsTranscendental('SELECT ln(x) FROM input'));
  assert.ok(callsTranscendental('SELECT x ** 2 FROM input'));
  assert.ok(!callsTranscendental('SELECT x + 1 FROM input'));
});
