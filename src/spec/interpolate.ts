import { type Document, parse as parseYaml, Scalar, visit } from 'yaml';
import { readSecret, registerEnvValue } from './secrets.ts';

export interface Variables {
  env: Record<string, string | undefined>;
  params: Record<string, string>;
  /**
   * Why `${provider:name}` may not be used here (the control plane's allow-lists), or undefined.
   * A refused placeholder is never read, and its default is not used either.
   */
  refuse?: (provider: string, name: string) => string | undefined;
}

export interface InterpolationIssue {
  /** Offset of the scalar in the YAML text. */
  offset: number;
  message: string;
  /** Set for a placeholder the workspace does not allow. */
  forbidden?: true;
}

const PROVIDERS = ['env', 'param', 'secret'] as const;
// `${env:NAME}`, `${param:NAME}`, `${secret:NAME}`, `${env:NAME:-default}`; `$${...}` stands for a literal `${...}`.
const PLACEHOLDER = /\$?\$\{([a-z]+):([A-Za-z_][A-Za-z0-9_.-]*)(?::-([^}]*))?\}/g;
const WHOLE = /^\$\{[a-z]+:[A-Za-z_][A-Za-z0-9_.-]*(?::-[^}]*)?\}$/;

/**
 * Replaces placeholders in every string scalar of the document, in place. Substitution happens
 * after parsing, so YAML positions stay true. A plain scalar that is exactly one placeholder takes
 * the value's YAML type (`count: ${param:n}` with n=5 gives the number 5).
 */
export function interpolate(doc: Document, vars: Variables): InterpolationIssue[] {
  const issues: InterpolationIssue[] = [];
  visit(doc, {
    Scalar(_key, node) {
      if (typeof node.value !== 'string' || !node.value.includes('${')) return;
      const original = node.value;
      const offset = node.range?.[0] ?? 0;
      const replaced = original.replace(
        PLACEHOLDER,
        (match, provider: string, name: string, fallback?: string) => {
          if (match.startsWith('$$')) return match.slice(1);
          const refusal = vars.refuse?.(provider, name);
          if (refusal) {
            issues.push({ offset, message: refusal, forbidden: true });
            return match;
          }
          if (provider === 'secret') {
            const secret = readSecret(name, vars.env);
            if ('value' in secret) return secret.value;
            if (fallback !== undefined) return fallback;
            issues.push({ offset, message: secret.problem });
            return match;
          }
          const value = lookup(provider, name, vars);
          if (value !== undefined) {
            // Provenance: a value from the environment may be a credential, whatever it is used for.
            if (provider === 'env') registerEnvValue(value);
            return value;
          }
          if (fallback !== undefined) return fallback;
          issues.push({ offset, message: describeMissing(provider, name, vars) });
          return match;
        },
      );
      if (replaced === original) return;
      // A secret stays text: read as YAML, a password such as `a: b` or `123` would change type.
      if (node.type === Scalar.PLAIN && WHOLE.test(original.trim()) && !original.includes('${secret:')) {
        node.value = parseYaml(replaced) ?? replaced;
      } else {
        node.value = replaced;
      }
    },
  });
  return issues;
}

function lookup(provider: string, name: string, vars: Variables): string | undefined {
  if (provider === 'env') return vars.env[name];
  if (provider === 'param') return vars.params[name];
  return undefined;
}

function describeMissing(provider: string, name: string, vars: Variables): string {
  if (provider === 'env') {
    return `environment variable ${name} is not set (\${env:${name}}); set it, or give a default with \${env:${name}:-value}`;
  }
  if (provider === 'param') {
    const known = Object.keys(vars.params);
    const given = known.length ? `params given: ${known.join(', ')}` : 'no params were given';
    return `param ${name} is not set (\${param:${name}}); pass --param ${name}=VALUE (${given})`;
  }
  return `unknown variable provider "${provider}" in \${${provider}:${name}}; valid providers: ${PROVIDERS.join(', ')}`;
}
