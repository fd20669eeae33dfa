import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { EXIT } from './exit-codes.ts';
import { COMMANDS } from './main.ts';
import { ROOT, sluice } from './test-util.ts';

describe('the command table', () => {
  it("names each command and gives its summary as the command's own spec does", async () => {
    for (const entry of COMMANDS) {
      const { spec } = await entry.load();
      assert.equal(entry.name, spec.name);
      assert.equal(
        entry.summary,
        spec.summary,
        `main.ts's summary of "${entry.name}" differs from its spec's`,
      );
    }
  });
});

describe('the CLI a person expects', () => {
  it('--version and -V print the package version', async () => {
    const { version } = JSON.parse(
      await import('node:fs/promises').then((fs) => fs.readFile(`${ROOT}/package.json`, 'utf8')),
    );
    for (const flag of ['--version', '-V']) {
      const result = await sluice([flag], ROOT);
      assert.equal(result.code, EXIT.ok);
      assert.equal(result.stdout, `${version}\n`);
    }
  });

  it('suggests the command or option meant by a typo', async () => {
    const command = await sluice(['vaildate', 'x.yaml'], ROOT);
    assert.equal(command.code, EXIT.usage);
    assert.match(command.stderr, /unknown command "vaildate"; did you mean "validate"\?/);
    const option = await sluice(['validate', 'x.yaml', '--parm', 'a=b'], ROOT);
    assert.equal(option.code, EXIT.usage);
    assert.match(option.stderr, /unknown option "--parm"; did you mean "--param"\?/);
  });

  it('prints completion scripts for bash and zsh that know every command and its options', async () => {
    const bash = await sluice(['completion', 'bash'], ROOT);
    assert.equal(bash.code, EXIT.ok, bash.stderr);
    assert.match(bash.stdout, /complete -o filenames -F _sluice sluice/);
    assert.match(bash.stdout, /"validate"\*\) opts="--param --json --help"/);
    const zsh = await sluice(['completion', 'zsh'], ROOT);
    assert.match(zsh.stdout, /^#compdef sluice/);
    assert.match(zsh.stdout, /"server token create"\*\) opts=\(/);
    const fish = await sluice(['completion', 'fish'], ROOT);
    assert.equal(fish.code, EXIT.usage);
    assert.match(fish.stderr, /shells: bash, zsh/);
  });
});
