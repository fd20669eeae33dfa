/**
 * `${secret:NAME}`: a value read from a file `NAME` in the secrets folder, as Kubernetes and
 * Docker mount secrets (`$SLUICE_SECRETS_DIR`, default `/run/secrets`). Every value read, and
 * every value `${env:...}` interpolated (registerEnvValue), is remembered for the life of the process, so that components which record text (the http step's
 * error records and logs) can redact it wherever it was used.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';

export const DEFAULT_SECRETS_DIR = '/run/secrets';

const seen = new Set<string>();

/** The folder secrets are read from: `SLUICE_SECRETS_DIR`, else /run/secrets. */
export function secretsDir(env: Record<string, string | undefined>): string {
  return env.SLUICE_SECRETS_DIR || DEFAULT_SECRETS_DIR;
}

/**
 * The secret NAME (one trailing newline trimmed), or an explanation of why there is none. Names
 * are plain file names (the interpolation pattern allows no `/`), so nothing outside the folder
 * is read.
 */
export function readSecret(
  name: string,
  env: Record<string, string | undefined>,
): { value: string } | { problem: string } {
  const dir = secretsDir(env);
  const file = path.join(dir, name);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why =
      code === 'ENOENT'
        ? 'there is no such file'
        : code === 'EACCES'
          ? 'it cannot be read (permission denied)'
          : code === 'EISDIR'
            ? 'it is a folder'
            : `it cannot be read (${code ?? String(err)})`;
    return {
      problem: `secret ${name} is not available (\${secret:${name}}): ${why} at ${file}; mount it there or set SLUICE_SECRETS_DIR to the folder that holds it`,
    };
  }
  const value = text.replace(/\r?\n$/, '');
  registerSecret(value);
  return { value };
}

/** Remembers a value to redact (a secret read by `${secret:...}`, or any other the caller knows of). */
export function registerSecret(value: string): void {
  if (value) seen.add(value);
}

/**
 * Env values shorter than this are not redacted: `${env:DEBUG}` = `1` or a port such as `8080`
 * would otherwise blank every such digit run in every message. A credential is longer.
 */
export const MIN_REDACTED_ENV_LENGTH = 6;

/**
 * Remembers a value interpolated from `${env:...}` to redact, as a secret is: the spec does not say
 * which variables hold credentials, so every one of at least MIN_REDACTED_ENV_LENGTH characters is.
 */
export function registerEnvValue(value: string): void {
  if (value.length >= MIN_REDACTED_ENV_LENGTH) seen.add(value);
}

/** Every secret value read so far in this process. */
export function registeredSecrets(): string[] {
  return [...seen];
}
