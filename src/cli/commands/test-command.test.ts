import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { EXIT } from '../exit-codes.ts';
import { sluice } from '../test-util.ts';

let work: string;
before(async () => {
  work = await mkdtemp(path.join(tmpdir(), 'sluice-test-cmd-'));
  const init = await sluice(['init', '--dir', work], work);
  assert.equal(init.code, EXIT.ok, init.stderr);
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

const PASSING = `cases:
  - name: positive amounts become cents
    input:
      - { id: 1, country: de, amount: 12.5, email: a@x.com }
      - { id: 2, country: fr, amount: 0, email: b@x.com }
    output:
      - { id: 1, country: DE, cents: 1250, email: a@x.com }
    filtered: 1
  - name: an amount that is not a number is rejected
    input:
      - { id: 3, country: us, amount: x, email: c@x.com }
    output: []
    errors:
      - { code: SLUICE_EXPR_EVAL }
`;

describe('sluice test', () => {
  it('runs the steps on the cases in SPEC.test.yaml and exits 0 when each matches', async () => {
    await writeFile(path.join(work, 'pipeline.test.yaml'), PASSING);
    const r = await sluice(['test', 'pipeline.yaml'], work);
    assert.equal(r.code, EXIT.ok, r.stdout + r.stderr);
    assert.match(r.stdout, /ok {3}positive amounts become cents/);
    assert.match(r.stdout, /2 of 2 cases passed/);
  });

  it('prints a diff of expected and actual records and exits 1 on a mismatch', async () => {
    const wrong = path.join(work, 'wrong.test.yaml');
    await writeFile(
      wrong,
      PASSING.replace('cents: 1250', 'cents: 125').replace('filtered: 1', 'filtered: 0'),
    );
    const r = await sluice(['test', 'pipeline.yaml', '--cases', wrong], work);
    assert.equal(r.code, EXIT.failed, r.stdout + r.stderr);
    assert.match(r.stdout, /FAIL positive amounts become cents/);
    assert.match(r.stdout, /- expected \{"id":1,"country":"DE","cents":125,"email":"a@x.com"\}/);
    assert.match(r.stdout, /\+ actual {3}\{"id":1,"country":"DE","cents":1250,"email":"a@x.com"\}/);
    assert.match(r.stdout, /filtered: expected 0, actual 1/);
    assert.match(r.stdout, /1 of 2 cases passed/);
  });

  it('says where the fixture file should be when there is none, and what is wrong in a bad one', async () => {
    const none = await sluice(['test', 'pipeline.yaml', '--cases', 'missing.test.yaml'], work);
    assert.equal(none.code, EXIT.usage);
    assert.match(none.stderr, /no fixture file missing\.test\.yaml/);
    await writeFile(path.join(work, 'bad.test.yaml'), 'cases:\n  - name: x\n    inputs: []\n');
    const bad = await sluice(['test', 'pipeline.yaml', '--cases', 'bad.test.yaml'], work);
    assert.equal(bad.code, EXIT.usage);
    assert.match(bad.stderr, /bad\.test\.yaml is not a valid fixture file/);
  });
});
