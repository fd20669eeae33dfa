import { readFileSync } from 'node:fs';
import path from 'node:path';

/**
 * The version in Sluice's own package.json: the nearest one above this module that is named
 * `sluice` (the same from the checkout and from an installed or built package).
 */
export function packageVersion(): string {
  let dir = import.meta.dirname;
  for (;;) {
    try {
      const pkg = JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8')) as {
        name?: string;
        version?: string;
      };
      if (pkg.name === 'sluice' && pkg.version) return pkg.version;
    } catch {
      // no package.json here: look one folder up
    }
    const parent = path.dirname(dir);
    if (parent === dir) return 'unknown';
    dir = parent;
  }
}
