import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { defaultRegistry } from '../registry.ts';
import { DEFAULT_SECRETS_DIR, readSecret, registeredSecrets, secretsDir } from './secrets.ts';
import { loadPipeline, validatePipeline } from './validate.ts';

const registry = defaultRegistry();
let dir: string;

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'sluice-secrets-'));
  await writeFile(path.join(dir, 'api_token'), 'tok-from-file-SECRET\n');
  await writeFile(path.join(dir, 'pin'), '0123');
  await writeFile(path.join(dir, 'yamlish'), 'a: b # c\r\n');
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

const spec = (auth: string) => `apiVersion: sluice/v1
kind: Pipeline
metadata: { name: secrets }
source:
  generate: { count: 1, fields: { id: seq } }
steps:
  - http:
      request: { url: "https://api.example.com/v1/{{ id }}" }
      auth: ${auth}
sink:
  stdout: { format: jsonl }
`;

describe('${secret:NAME}', () => {
  it('reads the file NAME in SLUICE_SECRETS_DIR, trims one trailing newline, keeps the value text, and remembers it for redaction', async () => {
    const text = `apiVersion: sluice/v1
kind: Pipeline
metadata: { name: secrets }
source:
  generate: { count: 1, fields: { id: seq } }
steps:
  - http:
      request:
        url: "https://api.example.com/v1/{{ id }}"
        headers:
          X-Token: "t=\${secret:api_token}"
      auth:
        basic:
          username: \${secret:pin}
          password: \${secret:yamlish}
sink:
  stdout: { format: jsonl }
`;
    const pipeline = await loadPipeline({ file: 's.yaml', text, registry, env: { SLUICE_SECRETS_DIR: dir } });
    const config = pipeline.steps[0]!.config as {
      auth: { basic: { username: unknown; password: unknown } };
      request: { headers: Record<string, string> };
    };
    assert.equal(config.auth.basic.username, '0123', 'a whole-placeholder secret stays a string');
    assert.equal(config.auth.basic.password, 'a: b # c');
    assert.equal(config.request.headers['X-Token'], 't=tok-from-file-SECRET');
    for (const value of ['0123', 'a: b # c', 'tok-from-file-SECRET'])
      assert.ok(registeredSecrets().includes(value));
  });

  it('reports a missing secret at its line:column, naming the file and how to fix it', async () => {
    const { issues } = await validatePipeline({
      file: 's.yaml',
      text: spec('{ bearer: "${secret:nope}" }'),
      registry,
      env: { SLUICE_SECRETS_DIR: dir },
    });
    assert.deepEqual(issues, [
      {
        code: 'SLUICE_SPEC_VARIABLE',
        path: [],
        line: 9,
        col: 23,
        message: `secret nope is not available (\${secret:nope}): there is no such file at ${path.join(dir, 'nope')}; mount it there or set SLUICE_SECRETS_DIR to the folder that holds it`,
      },
    ]);
  });

  it('takes a default, defaults the folder to /run/secrets, and reads nothing outside the folder', async () => {
    const pipeline = await loadPipeline({
      file: 's.yaml',
      text: spec('{ bearer: "${secret:absent:-fallback}" }'),
      registry,
      env: { SLUICE_SECRETS_DIR: dir },
    });
    assert.equal((pipeline.steps[0]!.config as { auth: { bearer: string } }).auth.bearer, 'fallback');
    assert.equal(secretsDir({}), DEFAULT_SECRETS_DIR);
    assert.equal(DEFAULT_SECRETS_DIR, '/run/secrets');
    // A name with a slash is not a placeholder at all: the text is left as written and fails nothing here.
    const { issues } = await validatePipeline({
      file: 's.yaml',
      text: spec('{ bearer: "${secret:../etc/passwd}" }'),
      registry,
      env: { SLUICE_SECRETS_DIR: dir },
    });
    assert.deepEqual(issues, []);
    assert.ok('problem' in readSecret('..', { SLUICE_SECRETS_DIR: dir }));
  });
});
