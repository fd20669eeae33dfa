/** Sluice's DuckDBs run in UTC whatever the host's zone, as compiled SQL does. */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { test } from 'node:test';
import { promisify } from 'node:util';

const run = promisify(execFile);

test('the DuckDB path reads TIMESTAMPTZ in UTC on a host in another zone, as compiled SQL reads it', async () => {
  const index = new URL('./index.ts', import.meta.url).href;
  const script = `
    import { BatchQuery } from ${JSON.stringify(index)};
    const sql = "SELECT CAST(ts AS TIMESTAMPTZ)::VARCHAR AS s, hour(CAST(ts AS TIMESTAMPTZ)) AS h FROM input";
    const value = { ts: new Date('2024-03-01T10:30:00Z') };
    const q = await BatchQuery.open(sql);
    const r = await q.process([{ value, meta: {} }]);
    await q.close();
    process.stdout.write(JSON.stringify(r.records[0].value));
  `;
  const { stdout } = await run(process.execPath, ['--input-type=module', '-e', script], {
    env: { ...process.env, TZ: 'America/New_York' },
  });
  // in the host's zone, the record's 10:30 UTC became 10:30 New York time: '2024-03-01 10:30:00-05'
  assert.deepEqual(JSON.parse(stdout), { s: '2024-03-01 10:30:00+00', h: 10 });
});
