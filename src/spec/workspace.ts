/**
 * The workspace a spec runs in when the control plane runs it for a token holder: the folders its
 * paths may reach, the environment variables and secrets its placeholders may read, and whether
 * it may load code. `sluice run` on a user's own machine has no workspace: nothing is confined.
 */
import { realpathSync } from 'node:fs';
import path from 'node:path';
import picomatch from 'picomatch';

export interface Workspace {
  /** Relative paths (and a relative `base_dir`) resolve here. */
  dataRoot: string;
  /** Other folders an admin allowed paths into, besides the data root. */
  extraRoots: readonly string[];
  /**
   * Folders inside the roots that no spec may reach: the server's own state (its store, every
   * job's runs, checkpoints and logs), which lies in the data root when that is the folder the
   * server started in.
   */
  hidden?: readonly string[];
  /** Names or glob patterns of the environment variables `${env:…}` may read. */
  env: readonly string[];
  /** Names or glob patterns of the secrets `${secret:…}` may read; undefined: every secret. */
  secrets?: readonly string[] | undefined;
  /** Whether `script` steps (TypeScript or JavaScript modules) may run. */
  scripts: boolean;
}

/** Every folder a workspace's paths may reach: the data root first. */
export function workspaceRoots(ws: Workspace): string[] {
  return [ws.dataRoot, ...ws.extraRoots].map((r) => path.resolve(r));
}

export function matchesAny(patterns: readonly string[], name: string): boolean {
  return patterns.some((p) => picomatch.isMatch(name, p, { dot: true }));
}

/** Why `${provider:name}` is not allowed in this workspace, or undefined when it is. */
export function variableRefusal(ws: Workspace, provider: string, name: string): string | undefined {
  if (provider === 'env' && !matchesAny(ws.env, name)) {
    const allowed = ws.env.length ? `allowed: ${ws.env.join(', ')}` : 'none is allowed';
    return `\${env:${name}} is not allowed on this server: environment variables are limited to an allow-list (${allowed}); an admin adds names with \`sluice server --allow-env NAME\`, or pass the value as a param`;
  }
  if (provider === 'secret' && ws.secrets && !matchesAny(ws.secrets, name)) {
    const granted = ws.secrets.length ? `granted: ${ws.secrets.join(', ')}` : 'it is granted none';
    return `\${secret:${name}} is not granted to this API token (${granted}); an admin grants secrets when creating a token (\`secrets: [${name}]\`)`;
  }
  return undefined;
}

/** The secrets a spec's text names (`${secret:NAME}`), for a check that needs no params. */
export function secretsNamed(spec: string): string[] {
  return [...new Set([...spec.matchAll(/\$\{secret:([A-Za-z_][A-Za-z0-9_.-]*)/g)].map((m) => m[1]!))];
}

/** The real path of `p`, or of its deepest existing ancestor joined with the rest. */
function realish(p: string): string {
  const rest: string[] = [];
  let cur = p;
  for (;;) {
    try {
      return path.join(realpathSync(cur), ...rest.reverse());
    } catch {
      const parent = path.dirname(cur);
      if (parent === cur) return p;
      rest.push(path.basename(cur));
      cur = parent;
    }
  }
}

function inside(root: string, p: string): boolean {
  const rel = path.relative(root, p);
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
}

/**
 * Why the path `value` (as written in the spec, relative to `baseDir`) is outside the workspace,
 * or undefined when it is inside. Absolute paths are refused unless they fall in a root an admin
 * allowed; `..` may not leave the roots; a symbolic link inside a root may not point out of it.
 */
export function pathRefusal(ws: Workspace, baseDir: string, value: string): string | undefined {
  const roots = workspaceRoots(ws);
  // A glob's braces and `..` are expanded by the glob library, not by path.resolve: refused.
  if (/[*?[\]{}]/.test(value) && value.split(/[/{},]/).includes('..')) {
    return `path ${JSON.stringify(value)} is a glob with \`..\` in it; on this server a glob stays inside its folder`;
  }
  const resolved = path.resolve(baseDir, value);
  const allowed = roots.find((r) => inside(r, resolved));
  const where = `the data root ${roots[0]}${roots.length > 1 ? ` or an allowed root (${roots.slice(1).join(', ')})` : ''}`;
  if (!allowed) {
    const how = path.isAbsolute(value)
      ? 'absolute paths are refused on this server'
      : '`..` may not leave the workspace';
    return `path ${JSON.stringify(value)} resolves to ${resolved}, outside ${where}: ${how}; write a path relative to the data root (an admin may allow more roots with \`sluice server --allow-root DIR\`)`;
  }
  const real = realish(resolved);
  if (!roots.some((r) => inside(realish(r), real))) {
    return `path ${JSON.stringify(value)} leads through a symbolic link to ${real}, outside ${where}`;
  }
  const hidden = (ws.hidden ?? []).find((h) => inside(realish(path.resolve(h)), real));
  if (hidden) {
    return `path ${JSON.stringify(value)} resolves to ${real}, inside ${hidden}, the server's own state (its store, jobs' runs, checkpoints and logs), which no spec may read or write`;
  }
  return undefined;
}

/**
 * The folder a stored spec's relative paths resolve against: `base_dir` as a client sent it
 * (relative: under the data root; absolute: inside a root), else the data root.
 */
export function resolveBaseDir(
  ws: Workspace,
  baseDir: string | undefined,
): { dir: string } | { problem: string } {
  if (baseDir === undefined) return { dir: path.resolve(ws.dataRoot) };
  const problem = pathRefusal(ws, ws.dataRoot, baseDir);
  if (problem) return { problem: `base_dir: ${problem}` };
  return { dir: path.resolve(ws.dataRoot, baseDir) };
}
