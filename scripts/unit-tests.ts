/**
 * `npm run test:unit`: every `src/**\/*.test.ts` except the integration tests (`*.int.test.ts`,
 * which need PostgreSQL, Kafka or S3), selected by file name, run by Node's test runner. Extra
 * arguments go to `node --test`.
 */
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { glob } from 'tinyglobby';

const root = path.resolve(import.meta.dirname, '..');
const files = (await glob('src/**/*.test.ts', { cwd: root, ignore: ['**/*.int.test.ts'] })).sort();
if (process.argv.includes('--list')) {
  process.stdout.write(`${files.join('\n')}\n`);
  process.exit(0);
}
const args = ['--test', '--test-concurrency=2', ...process.argv.slice(2), ...files];
const result = spawnSync(process.execPath, args, { cwd: root, stdio: 'inherit' });
process.exit(result.status ?? 1);
