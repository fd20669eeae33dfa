import { parseArgs } from 'node:util';
import { SluiceError } from '../sdk/errors.ts';
import { didYouMean } from '../spec/suggest.ts';

/** One CLI option. The description is required by the type: the CLI page is generated from it. */
export interface OptionSpec {
  type: 'string' | 'boolean';
  description: string;
  short?: string;
  multiple?: boolean;
  default?: string | boolean;
  /** Placeholder shown in help, e.g. KEY=VALUE. */
  value?: string;
}

export interface CommandSpec<O extends Record<string, OptionSpec> = Record<string, OptionSpec>> {
  name: string;
  usage: string;
  summary: string;
  /** Positional argument names, shown in usage; `?` marks an optional one. */
  positionals: string[];
  options: O;
}

type OptionValue<S extends OptionSpec> = S['type'] extends 'boolean'
  ? boolean | undefined
  : S['multiple'] extends true
    ? string[] | undefined
    : string | undefined;

export type ParsedOptions<O extends Record<string, OptionSpec>> = { [K in keyof O]: OptionValue<O[K]> };

/** `--param KEY=VALUE`, for every command that loads a spec. */
export const PARAM_OPTION = {
  type: 'string',
  multiple: true,
  value: 'KEY=VALUE',
  description: 'Sets ${param:KEY} in the spec.',
} as const satisfies OptionSpec;

export function defineCommand<O extends Record<string, OptionSpec>>(spec: CommandSpec<O>): CommandSpec<O> {
  return spec;
}

export function parseCommand<O extends Record<string, OptionSpec>>(
  spec: CommandSpec<O>,
  argv: string[],
): { options: ParsedOptions<O>; positionals: string[] } {
  const config: Record<string, { type: 'string' | 'boolean'; short?: string; multiple?: boolean }> = {};
  for (const [name, o] of Object.entries(spec.options)) {
    config[name] = {
      type: o.type,
      ...(o.short ? { short: o.short } : {}),
      ...(o.multiple ? { multiple: true } : {}),
    };
  }
  try {
    const { values, positionals } = parseArgs({
      args: argv,
      options: config,
      allowPositionals: true,
      strict: true,
    });
    const required = spec.positionals.filter((p) => !p.endsWith('?'));
    if (positionals.length < required.length) {
      throw new SluiceError('SLUICE_USAGE', `missing ${required[positionals.length]}; usage: ${spec.usage}`);
    }
    if (positionals.length > spec.positionals.length) {
      throw new SluiceError(
        'SLUICE_USAGE',
        `unexpected argument "${positionals[spec.positionals.length]}"; usage: ${spec.usage}`,
      );
    }
    return { options: values as ParsedOptions<O>, positionals };
  } catch (err) {
    if (err instanceof SluiceError) throw err;
    const unknown = unknownOption(err as NodeJS.ErrnoException);
    if (unknown) {
      const hint = didYouMean(
        unknown,
        Object.keys(spec.options).map((name) => `--${name}`),
      );
      throw new SluiceError('SLUICE_USAGE', `unknown option "${unknown}"; ${hint}usage: ${spec.usage}`);
    }
    throw new SluiceError('SLUICE_USAGE', `${(err as Error).message}; usage: ${spec.usage}`);
  }
}

/** The option parseArgs refused as unknown (`--folow`), if that is what `err` is. */
function unknownOption(err: NodeJS.ErrnoException): string | undefined {
  if (err.code !== 'ERR_PARSE_ARGS_UNKNOWN_OPTION') return undefined;
  return /'([^']+)'/.exec(err.message)?.[1];
}

export function helpText(spec: CommandSpec): string {
  const lines = [`${spec.summary}`, '', `usage: ${spec.usage}`];
  const entries = Object.entries(spec.options);
  if (entries.length) {
    lines.push('', 'options:');
    for (const [name, o] of entries) {
      const flag = `${o.short ? `-${o.short}, ` : ''}--${name}${o.type === 'string' ? ` ${o.value ?? 'VALUE'}` : ''}`;
      lines.push(`  ${flag.padEnd(28)} ${o.description}${o.multiple ? ' (repeatable)' : ''}`);
    }
  }
  return lines.join('\n');
}

/** Parses repeated `--param k=v` into a map; a malformed one is a usage error. */
export function parseParams(values: string[] | undefined): Record<string, string> {
  const params: Record<string, string> = {};
  for (const item of values ?? []) {
    const eq = item.indexOf('=');
    if (eq <= 0) throw new SluiceError('SLUICE_USAGE', `--param takes KEY=VALUE, got "${item}"`);
    params[item.slice(0, eq)] = item.slice(eq + 1);
  }
  return params;
}
