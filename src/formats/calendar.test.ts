import assert from 'node:assert/strict';
import { test } from 'node:test';
import { civilFromDays, daysFromCivil, isLeapYear, monthDays } from './calendar.ts';

test('civilFromDays and daysFromCivil agree with Date.UTC over 1600-2400, and invert each other far beyond', () => {
  for (let days = Date.UTC(1600, 0, 1) / 86_400_000; days < Date.UTC(2400, 0, 1) / 86_400_000; days += 7) {
    const d = new Date(days * 86_400_000);
    assert.deepEqual(civilFromDays(days), [d.getUTCFullYear(), d.getUTCMonth() + 1, d.getUTCDate()]);
  }
  // DuckDB's DATE range, years -5877641 to 5881580: no Date to check against, but exact both ways
  for (const days of [-2_147_483_646, -719_528, -1, 0, 59, 60, 2_147_483_646]) {
    const [y, m, d] = civilFromDays(days);
    assert.equal(daysFromCivil(y, m, d), days);
  }
  assert.deepEqual(civilFromDays(-719_528), [0, 1, 1]); // 1 BC, astronomical year 0
});

test('monthDays: February of leap years (every 4th, not every 100th, every 400th)', () => {
  assert.deepEqual(
    [2000, 1900, 2024, 2023, 0, -4].map((y) => monthDays(y, 2)),
    [29, 28, 29, 28, 29, 29],
  );
  assert.equal(monthDays(2023, 12), 31);
  assert.ok(isLeapYear(0) && !isLeapYear(-1));
});
