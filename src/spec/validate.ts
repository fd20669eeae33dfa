import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { LineCounter, parseDocument } from 'yaml';
import type { z } from 'zod';
import type { Registry } from '../registry.ts';
import { type ErrorCode, SluiceError } from '../sdk/errors.ts';
import type {
  ComponentDefinition,
  ComponentKind,
  ConfigIssue,
  SinkDefinition,
  SourceDefinition,
  StepDefinition,
} from '../sdk/types.ts';
import { compileCondition } from '../sql/compile.ts';
import { interpolate } from './interpolate.ts';
import { type Check, envelopeSchema, type Settings, SLOT_EXTRA_KEYS } from './schema.ts';
import { formatPath, SourceMap, type SpecPath } from './source-map.ts';
import { didYouMean } from './suggest.ts';
import { pathRefusal, variableRefusal, type Workspace } from './workspace.ts';

export interface SpecIssue {
  code: ErrorCode;
  path: SpecPath;
  line: number;
  col: number;
  message: string;
}

export interface ComponentUse<D extends ComponentDefinition> {
  def: D;
  /** The component's registered name (`file`, `sql`). */
  component: string;
  /** This use's name in metrics and error records: `name:` in the spec, else derived. */
  name: string;
  config: unknown;
  path: SpecPath;
}

export interface SinkUse extends ComponentUse<SinkDefinition> {
  route?: string;
}

export interface Pipeline {
  file: string;
  baseDir: string;
  metadata: { name: string; description?: string; labels?: Record<string, string> };
  source: ComponentUse<SourceDefinition>;
  steps: ComponentUse<StepDefinition>[];
  sinks: SinkUse[];
  errors?: ComponentUse<SinkDefinition>;
  settings: Settings;
  checks: Check[];
  bounded: boolean;
}

export interface LoadOptions {
  file: string;
  /** The spec text; read from `file` when omitted. */
  text?: string;
  params?: Record<string, string>;
  env?: Record<string, string | undefined>;
  registry: Registry;
  /**
   * Set when the control plane validates a spec for a token holder: paths must stay inside it,
   * and `${env:…}`, `${secret:…}` and code-running steps are limited to what it allows.
   */
  workspace?: Workspace;
}

export class SpecInvalidError extends SluiceError {
  readonly issues: SpecIssue[];
  readonly file: string;

  constructor(file: string, issues: SpecIssue[]) {
    super(
      'SLUICE_SPEC_INVALID',
      `${file}: ${issues.length} problem${issues.length === 1 ? '' : 's'}\n${formatIssues(file, issues)}`,
    );
    this.issues = issues;
    this.file = file;
  }
}

export function formatIssues(file: string, issues: SpecIssue[]): string {
  return issues.map((i) => `${file}:${i.line}:${i.col}  ${formatPath(i.path)}: ${i.message}`).join('\n');
}

/**
 * Loads, interpolates and validates a spec, reporting every problem at once. Throws
 * SpecInvalidError; nothing runs until the whole spec is valid.
 */
export async function loadPipeline(options: LoadOptions): Promise<Pipeline> {
  const { pipeline, issues } = await validatePipeline(options);
  if (!pipeline || issues.length) throw new SpecInvalidError(options.file, issues);
  return pipeline;
}

export async function validatePipeline(
  options: LoadOptions,
): Promise<{ pipeline?: Pipeline; issues: SpecIssue[] }> {
  const text = options.text ?? (await readFile(options.file, 'utf8'));
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  const map = new SourceMap(doc, lineCounter, text);
  const issues: SpecIssue[] = [];
  const at = (code: ErrorCode, p: SpecPath, message: string, atKey = false) => {
    issues.push({ code, path: p, message, ...map.locate(p, atKey) });
  };

  for (const error of doc.errors) {
    const pos = lineCounter.linePos(error.pos[0]);
    issues.push({
      code: 'SLUICE_SPEC_YAML',
      path: [],
      line: pos.line,
      col: pos.col,
      message: firstLine(error.message),
    });
  }
  if (issues.length) return { issues };

  const ws = options.workspace;
  const vars = {
    env: options.env ?? process.env,
    params: options.params ?? {},
    ...(ws ? { refuse: (provider: string, name: string) => variableRefusal(ws, provider, name) } : {}),
  };
  for (const issue of interpolate(doc, vars)) {
    const pos = lineCounter.linePos(issue.offset);
    issues.push({
      code: issue.forbidden ? 'SLUICE_SPEC_FORBIDDEN' : 'SLUICE_SPEC_VARIABLE',
      path: [],
      line: pos.line,
      col: pos.col,
      message: issue.message,
    });
  }

  const raw: unknown = doc.toJS();
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    at('SLUICE_SPEC_INVALID', [], 'a spec is a YAML map with apiVersion, kind, metadata, source and sink');
    return { issues };
  }

  const envelope = envelopeSchema.safeParse(raw);
  if (!envelope.success) {
    for (const issue of envelope.error.issues) reportZodIssue(issue, [], raw, envelopeSchema, at);
  }

  const rawSpec = raw as Record<string, unknown>;
  if (rawSpec.source === undefined)
    at('SLUICE_SPEC_INVALID', [], 'missing `source`: a pipeline reads from one source');
  const source = resolveSlot('source', ['source'], rawSpec.source, options.registry, at);
  const steps: ComponentUse<StepDefinition>[] = [];
  if (Array.isArray(rawSpec.steps)) {
    rawSpec.steps.forEach((slot, i) => {
      const use = resolveSlot('step', ['steps', i], slot, options.registry, at);
      if (use) steps.push(use as ComponentUse<StepDefinition>);
    });
  }

  const sinks: SinkUse[] = [];
  if (rawSpec.sink !== undefined && rawSpec.sinks !== undefined) {
    at('SLUICE_SPEC_INVALID', ['sinks'], 'give either `sink` (one) or `sinks` (a list), not both', true);
  } else if (rawSpec.sink === undefined && rawSpec.sinks === undefined) {
    at('SLUICE_SPEC_INVALID', [], 'missing `sink` (or `sinks`): a pipeline needs somewhere to write');
  }
  if (rawSpec.sink !== undefined) {
    const use = resolveSlot('sink', ['sink'], rawSpec.sink, options.registry, at);
    if (use) sinks.push(use as SinkUse);
  }
  if (Array.isArray(rawSpec.sinks)) {
    rawSpec.sinks.forEach((slot, i) => {
      const use = resolveSlot('sink', ['sinks', i], slot, options.registry, at);
      if (use) sinks.push(use as SinkUse);
    });
  }
  const errors =
    rawSpec.errors === undefined
      ? undefined
      : resolveSlot('errors', ['errors'], rawSpec.errors, options.registry, at);

  const uses = [source, ...steps, ...sinks, errors].filter(
    (u): u is ComponentUse<ComponentDefinition> => !!u,
  );
  nameUses(steps, sinks, at);

  const baseDir = path.dirname(path.resolve(options.file));
  // In a workspace, a component whose paths leave it is not checked either: its check would read them.
  const confined = ws ? uses.filter((use) => !refuseOutside(ws, baseDir, use, map, issues)) : uses;
  await Promise.all(
    confined.map(async (use) => {
      if (!use.def.check) return;
      let found: ConfigIssue[];
      try {
        found = await use.def.check(use.config as never, { baseDir });
      } catch (err) {
        found = [{ path: [], message: err instanceof Error ? err.message : String(err) }];
      }
      for (const issue of found) reportConfigIssue(map, issues, use, issue);
    }),
  );
  await Promise.all(
    sinks.map(async (sink) => {
      if (sink.route === undefined) return;
      try {
        await compileCondition(sink.route);
      } catch (err) {
        const offset = err instanceof SluiceError ? (err.details?.offset as number | undefined) : undefined;
        const p = [...sink.path, 'route'];
        const loc = offset === undefined ? map.locate(p) : map.locateInScalar(p, offset);
        issues.push({ code: 'SLUICE_EXPR_INVALID', path: p, ...loc, message: (err as Error).message });
      }
    }),
  );

  // A value whose placeholder could not be resolved fails its schema too: report the cause once.
  const isVariable = (i: SpecIssue) =>
    i.code === 'SLUICE_SPEC_VARIABLE' || i.code === 'SLUICE_SPEC_FORBIDDEN';
  const unresolved = new Set(issues.filter(isVariable).map((i) => `${i.line}:${i.col}`));
  if (unresolved.size) {
    const kept = issues.filter((i) => isVariable(i) || !unresolved.has(`${i.line}:${i.col}`));
    issues.splice(0, issues.length, ...kept);
  }
  if (issues.length || !envelope.success || !source) {
    issues.sort((a, b) => a.line - b.line || a.col - b.col);
    return { issues };
  }
  const bounded = (source.def as SourceDefinition).bounded(source.config as never);
  if (!bounded) {
    await refuseSetLevelSteps(steps, source, baseDir, map, issues);
    if (issues.length) {
      issues.sort((a, b) => a.line - b.line || a.col - b.col);
      return { issues };
    }
  }
  return {
    issues,
    pipeline: {
      file: options.file,
      baseDir,
      metadata: envelope.data.metadata,
      source: source as ComponentUse<SourceDefinition>,
      steps,
      sinks,
      ...(errors ? { errors: errors as ComponentUse<SinkDefinition> } : {}),
      settings: envelope.data.settings,
      checks: envelope.data.checks,
      bounded,
    },
  };
}

/**
 * Reports the paths of `use` that leave the workspace, and a code-running step the workspace does
 * not allow. True when something was reported.
 */
function refuseOutside(
  ws: Workspace,
  baseDir: string,
  use: ComponentUse<ComponentDefinition>,
  map: SourceMap,
  issues: SpecIssue[],
): boolean {
  const before = issues.length;
  const refuse = (p: SpecPath, message: string) =>
    issues.push({ code: 'SLUICE_SPEC_FORBIDDEN', path: p, ...map.locate(p), message });
  if (use.def.runsCode && !ws.scripts) {
    refuse(
      [...use.path, use.component],
      `the ${use.component} step runs code and is not allowed on this server; an admin allows it with \`sluice server --allow-scripts\``,
    );
  }
  for (const p of use.def.paths?.(use.config as never) ?? []) {
    const problem = pathRefusal(ws, baseDir, p.value);
    if (problem) refuse([...use.path, use.component, ...p.path], problem);
  }
  return issues.length > before;
}

/**
 * On an unbounded source, a step that needs the whole input (set-level SQL) would never emit:
 * refused, at the construct that needs it.
 */
async function refuseSetLevelSteps(
  steps: ComponentUse<StepDefinition>[],
  source: ComponentUse<ComponentDefinition>,
  baseDir: string,
  map: SourceMap,
  issues: SpecIssue[],
): Promise<void> {
  await Promise.all(
    steps.map(async (use) => {
      if (!use.def.needsBoundedInput) return;
      let need: Awaited<ReturnType<NonNullable<StepDefinition['needsBoundedInput']>>>;
      try {
        need = await use.def.needsBoundedInput(use.config as never, { baseDir });
      } catch {
        return; // `check` reports what is wrong with the config
      }
      if (!need) return;
      const p = [...use.path, use.component, ...need.path];
      const loc = need.offset === undefined ? map.locate(p) : map.locateInScalar(p, need.offset);
      issues.push({
        code: 'SLUICE_SPEC_INVALID',
        path: p,
        ...loc,
        message:
          `${need.reason}; the source ${source.component} is unbounded (it does not end by itself), ` +
          'so the step would never emit; windowing is not supported yet: read a bounded input (a file, a count)',
      });
    }),
  );
}

type Reporter = (code: ErrorCode, path: SpecPath, message: string, atKey?: boolean) => void;

const SLOT_KIND: Record<keyof typeof SLOT_EXTRA_KEYS, ComponentKind> = {
  source: 'source',
  step: 'step',
  sink: 'sink',
  errors: 'sink',
};

function resolveSlot(
  slot: keyof typeof SLOT_EXTRA_KEYS,
  slotPath: SpecPath,
  value: unknown,
  registry: Registry,
  at: Reporter,
): ComponentUse<ComponentDefinition> | undefined {
  if (value === undefined) return undefined;
  const kind = SLOT_KIND[slot];
  const valid = registry.names(kind);
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    at(
      'SLUICE_SPEC_INVALID',
      slotPath,
      `expected a map with one ${kind} component, one of: ${valid.join(', ')}`,
    );
    return undefined;
  }
  const extras: readonly string[] = SLOT_EXTRA_KEYS[slot];
  const entries = Object.entries(value as Record<string, unknown>);
  const componentKeys = entries.filter(([k]) => !extras.includes(k));
  if (componentKeys.length !== 1) {
    const found = componentKeys.map(([k]) => k);
    at(
      'SLUICE_SPEC_INVALID',
      slotPath,
      found.length === 0
        ? `no ${kind} component given; expected one of: ${valid.join(', ')}`
        : `expected exactly one ${kind} component, found ${found.length}: ${found.join(', ')}` +
            (extras.length ? ` (besides ${extras.join(', ')})` : ''),
    );
    return undefined;
  }
  const [component, rawConfig] = componentKeys[0]!;
  const def = registry.get(kind, component);
  if (!def) {
    at('SLUICE_SPEC_INVALID', [...slotPath, component], unknownName(`${kind}`, component, valid), true);
    return undefined;
  }
  const configPath = [...slotPath, component];
  const expanded =
    typeof rawConfig === 'string' && def.shorthand ? { [def.shorthand]: rawConfig } : (rawConfig ?? {});
  const parsed = def.config.safeParse(expanded);
  const record = value as Record<string, unknown>;
  let ok = parsed.success;
  if (!parsed.success) {
    for (const issue of parsed.error.issues) reportZodIssue(issue, configPath, expanded, def.config, at);
  }
  if (
    record.name !== undefined &&
    (typeof record.name !== 'string' || !/^[A-Za-z0-9_.-]+$/.test(record.name))
  ) {
    at('SLUICE_SPEC_INVALID', [...slotPath, 'name'], 'a name is letters, digits, "_", "." and "-"');
    ok = false;
  }
  if (record.route !== undefined && typeof record.route !== 'string') {
    at('SLUICE_SPEC_INVALID', [...slotPath, 'route'], 'a route is a SQL condition, e.g. "country = \'DE\'"');
    ok = false;
  }
  if (!ok || !parsed.success) return undefined;
  return {
    def,
    component,
    name: typeof record.name === 'string' ? record.name : '',
    config: parsed.data,
    path: slotPath,
    ...(typeof record.route === 'string' ? { route: record.route } : {}),
  };
}

/** Gives every step and sink a unique name: its `name:`, else the component name (+ `_2`, `_3`...). */
function nameUses(steps: ComponentUse<StepDefinition>[], sinks: SinkUse[], at: Reporter): void {
  for (const group of [steps, sinks] as ComponentUse<ComponentDefinition>[][]) {
    const taken = new Set<string>();
    for (const use of group) {
      if (!use.name) continue;
      if (taken.has(use.name))
        at('SLUICE_SPEC_INVALID', [...use.path, 'name'], `name "${use.name}" is used twice`);
      taken.add(use.name);
    }
    for (const use of group) {
      if (use.name) continue;
      let candidate = use.component;
      for (let n = 2; taken.has(candidate); n++) candidate = `${use.component}_${n}`;
      use.name = candidate;
      taken.add(candidate);
    }
  }
}

function reportConfigIssue(
  map: SourceMap,
  issues: SpecIssue[],
  use: ComponentUse<ComponentDefinition>,
  issue: ConfigIssue,
): void {
  const p = [...use.path, use.component, ...issue.path];
  const loc = issue.offset === undefined ? map.locate(p) : map.locateInScalar(p, issue.offset);
  issues.push({ code: 'SLUICE_SPEC_INVALID', path: p, ...loc, message: issue.message });
}

function reportZodIssue(
  issue: z.core.$ZodIssue,
  base: SpecPath,
  value: unknown,
  schema: z.ZodType,
  at: Reporter,
): void {
  const rel = issue.path.filter((s): s is string | number => typeof s !== 'symbol');
  const p = [...base, ...rel];
  switch (issue.code) {
    case 'unrecognized_keys': {
      const known = objectKeysAt(schema, rel);
      for (const key of issue.keys) {
        const hint = known.length
          ? `${didYouMean(key, known)}valid keys: ${known.join(', ')}`
          : 'this map takes no other keys';
        at('SLUICE_SPEC_INVALID', [...p, key], `unknown key "${key}"; ${hint}`, true);
      }
      return;
    }
    case 'invalid_type': {
      if (valueAt(value, rel) === undefined) {
        const parent = p.slice(0, -1);
        at('SLUICE_SPEC_INVALID', p, `missing required key "${String(p.at(-1))}" in ${formatPath(parent)}`);
        return;
      }
      at('SLUICE_SPEC_INVALID', p, `expected ${issue.expected}, got ${describeValue(valueAt(value, rel))}`);
      return;
    }
    case 'invalid_value': {
      const options = issue.values.map((v) => JSON.stringify(v));
      const got = valueAt(value, rel);
      const suggestion = typeof got === 'string' ? didYouMean(got, issue.values.map(String)) : '';
      at('SLUICE_SPEC_INVALID', p, `got ${describeValue(got)}; ${suggestion}expected ${options.join(' | ')}`);
      return;
    }
    default:
      at('SLUICE_SPEC_INVALID', p, issue.message);
  }
}

function unknownName(kind: string, name: string, valid: string[]): string {
  return `unknown ${kind} "${name}"; ${didYouMean(name, valid)}valid ${kind}s: ${valid.join(', ')}`;
}

function valueAt(value: unknown, p: SpecPath): unknown {
  let cur = value;
  for (const seg of p) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<string | number, unknown>)[seg];
  }
  return cur;
}

function describeValue(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a map';
  if (typeof value === 'string')
    return `the string ${JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value)}`;
  return `${typeof value} ${String(value)}`;
}

function firstLine(text: string): string {
  return text.split('\n')[0] ?? text;
}

interface ZodDefLike {
  type: string;
  shape?: Record<string, z.ZodType>;
  innerType?: z.ZodType;
  element?: z.ZodType;
  options?: z.ZodType[];
  in?: z.ZodType;
  out?: z.ZodType;
  valueType?: z.ZodType;
  getter?: () => z.ZodType;
}

function defOf(schema: z.ZodType): ZodDefLike {
  return (schema as unknown as { _zod: { def: ZodDefLike } })._zod.def;
}

/** The keys an object schema at `p` accepts, to suggest the nearest one for a misspelt key. */
export function objectKeysAt(schema: z.ZodType, p: SpecPath): string[] {
  const found = new Set<string>();
  const walk = (s: z.ZodType, rest: SpecPath, depth: number) => {
    if (depth > 50) return;
    const def = defOf(s);
    switch (def.type) {
      case 'object':
        if (!rest.length) for (const k of Object.keys(def.shape ?? {})) found.add(k);
        else {
          const next = def.shape?.[String(rest[0])];
          if (next) walk(next, rest.slice(1), depth + 1);
        }
        return;
      case 'optional':
      case 'nullable':
      case 'default':
      case 'prefault':
      case 'readonly':
      case 'catch':
        if (def.innerType) walk(def.innerType, rest, depth + 1);
        return;
      case 'pipe':
        if (def.in) walk(def.in, rest, depth + 1);
        return;
      case 'lazy':
        if (def.getter) walk(def.getter(), rest, depth + 1);
        return;
      case 'union':
        for (const o of def.options ?? []) walk(o, rest, depth + 1);
        return;
      case 'array':
        if (rest.length && def.element) walk(def.element, rest.slice(1), depth + 1);
        return;
      case 'record':
        if (rest.length && def.valueType) walk(def.valueType, rest.slice(1), depth + 1);
        return;
      default:
        return;
    }
  };
  walk(schema, p, 0);
  return [...found];
}
