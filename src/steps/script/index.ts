import { stat } from 'node:fs/promises';
import { registerHooks } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { z } from 'zod';
import { defineStep } from '../../sdk/define.ts';
import { SluiceError } from '../../sdk/errors.ts';
import type { ConfigIssue, StepDefinition } from '../../sdk/types.ts';

const MODULE_EXTENSIONS = /\.(ts|mts|js|mjs)$/;

const config = z
  .object({
    module: z
      .string()
      .min(1)
      .regex(MODULE_EXTENSIONS, { message: 'expected a .ts, .mts, .js or .mjs module' })
      .describe(
        'The module, relative to the spec file: a .ts, .mts, .js or .mjs file whose default export is a step made with `defineStep`.',
      ),
    config: z
      .record(z.string(), z.unknown())
      .default({})
      .describe("The module's own config, validated by the module's schema."),
  })
  .strict();

export type ScriptConfig = z.output<typeof config>;

function kindOf(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'function') return value.toString().startsWith('class') ? 'a class' : 'a function';
  if (typeof value === 'object') return 'an object';
  return `a ${typeof value}`;
}

/** Why `ns` is not a module whose default export is a step definition; undefined when it is. */
function whatIsWrong(ns: Record<string, unknown>): string | undefined {
  if (!('default' in ns)) {
    const names = Object.keys(ns);
    return names.length
      ? `has no default export (it exports ${names.map((n) => `\`${n}\``).join(', ')})`
      : 'exports nothing';
  }
  const def = ns.default;
  if (def === null || typeof def !== 'object' || Array.isArray(def))
    return `has a default export that is ${kindOf(def)}, not a step definition`;
  const obj = def as Record<string, unknown>;
  if (obj.kind === 'source' || obj.kind === 'sink')
    return `has a default export that is a ${obj.kind} definition (define${obj.kind === 'source' ? 'Source' : 'Sink'}), not a step`;
  if (obj.kind !== 'step') {
    const keys = Object.keys(obj);
    return `has a default export that is an object${keys.length ? ` with keys ${keys.join(', ')}` : ' with no keys'}, not a step definition`;
  }
  if (typeof obj.create !== 'function') return 'has a step definition with no create() function';
  const schema = obj.config as { safeParse?: unknown } | undefined;
  if (!schema || typeof schema.safeParse !== 'function')
    return 'has a step definition whose `config` is not a zod schema';
  return undefined;
}

// A plugin's `sluice/sdk` is the SDK of the Sluice that runs it, wherever the plugin lives: one copy
// of SluiceError and the types the engine checks against, a plugin beside a globally installed
// `sluice` with no node_modules of its own, and the checkout's examples on its TypeScript sources.
const ownExtension = path.extname(import.meta.filename); // .ts in the checkout, .js installed
const OWN_SDK: Record<string, string> = {
  'sluice/sdk': new URL(`../../sdk/index${ownExtension}`, import.meta.url).href,
  'sluice/sdk/testing': new URL(`../../sdk/testing${ownExtension}`, import.meta.url).href,
};
let ownSdkHooked = false;
function resolveSdkToOwn(): void {
  if (ownSdkHooked) return;
  ownSdkHooked = true;
  registerHooks({
    resolve: (specifier, context, nextResolve) => {
      const url = OWN_SDK[specifier];
      return url ? { url, shortCircuit: true } : nextResolve(specifier, context);
    },
  });
}

/** Loads a script module and returns its step definition; throws SLUICE_SCRIPT_INVALID otherwise. */
export async function loadScript(modulePath: string, baseDir: string): Promise<StepDefinition> {
  const file = path.resolve(baseDir, modulePath);
  const info = await stat(file).catch(() => undefined);
  if (!info?.isFile())
    throw new SluiceError('SLUICE_SCRIPT_INVALID', `script module not found: ${file}`, {
      details: { module: file },
    });
  resolveSdkToOwn();
  let ns: Record<string, unknown>;
  try {
    ns = await import(pathToFileURL(file).href);
  } catch (err) {
    throw new SluiceError(
      'SLUICE_SCRIPT_INVALID',
      `script module ${file} failed to load: ${(err as Error).message}`,
      {
        cause: err,
        details: { module: file },
      },
    );
  }
  const problem = whatIsWrong(ns);
  if (problem)
    throw new SluiceError(
      'SLUICE_SCRIPT_INVALID',
      `script module ${file} ${problem}; it must \`export default defineStep({ ... })\``,
      { details: { module: file, exports: Object.keys(ns) } },
    );
  return ns.default as StepDefinition;
}

function issuePath(p: readonly PropertyKey[]): (string | number)[] {
  return ['config', ...p.map((k) => (typeof k === 'number' ? k : String(k)))];
}

export const scriptStep = defineStep({
  name: 'script',
  summary:
    'Runs a step written in TypeScript or JavaScript: a module whose default export is made with defineStep.',
  description: `Loads a module (\`.ts\`, \`.mts\`, \`.js\` or \`.mjs\`, resolved against the spec file's directory) whose default export is a step definition made with \`defineStep\` from \`sluice/sdk\`, and runs it as if it were built in. \`config\` is handed to the module after its own zod schema has validated it; the module's problems (its schema's issues, its \`check()\`) are reported under \`config\` when the spec is validated, before any record moves.

A module that cannot be found or loaded, or whose default export is not a step definition, is refused with \`SLUICE_SCRIPT_INVALID\`. TypeScript modules run through Node's type stripping: erasable syntax only, relative imports with their \`.ts\` extension. The shorthand \`script: plugins/mask-email.ts\` sets just \`module\`.`,
  config,
  shorthand: 'module',
  examples: [
    {
      title: 'Mask email addresses with a plugin',
      yaml: `module: plugins/mask-email.ts
config:
  field: contact_email
  keep: 2
`,
    },
    { title: 'A module with no config', yaml: 'module: ./steps/normalise.mjs\n' },
  ],
  runsCode: true,
  paths: (cfg) => [{ path: ['module'], value: cfg.module }],
  async check(cfg, { baseDir }): Promise<ConfigIssue[]> {
    let def: StepDefinition;
    try {
      def = await loadScript(cfg.module, baseDir);
    } catch (err) {
      if (err instanceof SluiceError) return [{ path: ['module'], message: err.message }];
      throw err;
    }
    const parsed = def.config.safeParse(cfg.config);
    if (!parsed.success)
      return parsed.error.issues.map((issue) => ({ path: issuePath(issue.path), message: issue.message }));
    if (!def.check) return [];
    const found = await def.check(parsed.data, { baseDir });
    return found.map((issue) => ({ ...issue, path: issuePath(issue.path) }));
  },
  async create(cfg, ctx) {
    const def = await loadScript(cfg.module, ctx.baseDir);
    const parsed = def.config.safeParse(cfg.config);
    if (!parsed.success) {
      const list = parsed.error.issues.map((i) => `${issuePath(i.path).join('.')}: ${i.message}`).join('; ');
      throw new SluiceError('SLUICE_SPEC_INVALID', `script ${cfg.module} (${def.name}): ${list}`, {
        details: { module: cfg.module },
      });
    }
    return def.create(parsed.data, ctx);
  },
});
