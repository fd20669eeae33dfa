import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { EXIT } from '../exit-codes.ts';
import { sluice } from '../test-util.ts';

let work: string;
before(async () => {
  work = await mkdtemp(path.join(tmpdir(), 'sluice-init-'));
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

describe('sluice init', () => {
  it('writes the quick start, which validates and runs from its folder', async () => {
    const dir = path.join(work, 'qs');
    const written = await sluice(['init', '--dir', dir], work);
    assert.equal(written.code, EXIT.ok, written.stderr);
    assert.match(written.stdout, /wrote .*pipeline\.yaml/);
    const run = await sluice(['run', 'pipeline.yaml', '--progress', 'none'], dir);
    assert.equal(run.code, EXIT.ok, run.stderr + run.stdout);
    const out = path.join(dir, 'out/payments');
    const [part] = (await readdir(out)).filter((f) => f.endsWith('.jsonl'));
    assert.ok(part, `no output under ${out}`);
    const records = (await readFile(path.join(out, part), 'utf8'))
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    assert.deepEqual(
      records.map((r) => [r.id, r.country, r.cents]),
      [
        [1, 'DE', 1250],
        [3, 'US', 9990],
        [4, 'NL', 725],
      ],
    );
  });

  it('writes the http enrichment template, which validates; refuses to overwrite; suggests a template', async () => {
    const dir = path.join(work, 'http');
    assert.equal((await sluice(['init', 'http', '--dir', dir], work)).code, EXIT.ok);
    const valid = await sluice(['validate', 'pipeline.yaml'], dir);
    assert.equal(valid.code, EXIT.ok, valid.stderr);
    const again = await sluice(['init', 'http', '--dir', dir], work);
    assert.equal(again.code, EXIT.usage);
    assert.match(again.stderr, /exists; --force overwrites it/);
    const typo = await sluice(['init', 'quickstrat'], work);
    assert.equal(typo.code, EXIT.usage);
    assert.match(typo.stderr, /did you mean "quickstart"\?/);
  });
});
