/**
 * The CLI's client of the control plane's v1 REST API: where the server is, the bearer token, and
 * turning the API's `{ error: { code, message, details } }` bodies back into SluiceErrors so the
 * commands fail the same way the engine does.
 */

import type { OperatorSummary } from '../engine/stats.ts';
import { ERROR_CODES, type ErrorCode, SluiceError } from '../sdk/errors.ts';
import type { JobState } from '../server/lifecycle.ts';
import { formatPath, type SpecPath } from '../spec/source-map.ts';
import type { SpecIssue } from '../spec/validate.ts';
import type { OptionSpec } from './options.ts';

export const DEFAULT_SERVER = 'http://127.0.0.1:7878';

/** Options every command that talks to the server takes, defined once so they read the same everywhere. */
export const SERVER_OPTION = {
  type: 'string',
  value: 'URL',
  description: `URL of the Sluice server (default: $SLUICE_SERVER, else ${DEFAULT_SERVER}).`,
} as const satisfies OptionSpec;

export const TOKEN_OPTION = {
  type: 'string',
  value: 'TOKEN',
  description: 'API token sent as `Authorization: Bearer TOKEN` (default: $SLUICE_TOKEN).',
} as const satisfies OptionSpec;

export const JSON_OPTION = {
  type: 'boolean',
  description: "Print the API's JSON response instead of a table.",
} as const satisfies OptionSpec;

export const CLIENT_OPTIONS = { server: SERVER_OPTION, token: TOKEN_OPTION, json: JSON_OPTION } as const;

export interface ApiClientOptions {
  /** `--server`; falls back to SLUICE_SERVER, then the default. */
  server?: string | undefined;
  /** `--token`; falls back to SLUICE_TOKEN. */
  token?: string | undefined;
  env?: NodeJS.ProcessEnv;
  /** How long a request may take before the server counts as unavailable; 0 waits forever. */
  timeoutMs?: number;
}

export interface RequestOptions {
  body?: unknown;
  query?: Record<string, string | number | boolean | undefined>;
  headers?: Record<string, string>;
  /** Overrides the client's timeout (0: none, for streamed responses). */
  timeoutMs?: number;
}

export class ApiClient {
  readonly server: string;
  readonly #token: string | undefined;
  readonly #timeoutMs: number;

  constructor(options: ApiClientOptions = {}) {
    const env = options.env ?? process.env;
    const server = options.server || env.SLUICE_SERVER || DEFAULT_SERVER;
    let url: URL;
    try {
      url = new URL(server);
    } catch {
      throw new SluiceError(
        'SLUICE_USAGE',
        `--server takes a URL such as ${DEFAULT_SERVER}, got "${server}"`,
      );
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      throw new SluiceError('SLUICE_USAGE', `--server takes an http:// or https:// URL, got "${server}"`);
    }
    this.server = url.href.replace(/\/+$/, '');
    this.#token = options.token || env.SLUICE_TOKEN || undefined;
    this.#timeoutMs = options.timeoutMs ?? 30_000;
  }

  /** Sends a request and parses the JSON answer; an API error is thrown as a SluiceError. */
  async request<T>(method: string, path: string, options: RequestOptions = {}): Promise<T> {
    const res = await this.response(method, path, options);
    return (await res.json()) as T;
  }

  /** Sends a request and returns the successful response unread (for streams and status codes). */
  async response(method: string, path: string, options: RequestOptions = {}): Promise<Response> {
    const url = new URL(this.server + path);
    for (const [k, v] of Object.entries(options.query ?? {})) {
      if (v !== undefined) url.searchParams.set(k, String(v));
    }
    const headers: Record<string, string> = { accept: 'application/json', ...options.headers };
    if (this.#token) headers.authorization = `Bearer ${this.#token}`;
    let body: string | undefined;
    if (options.body !== undefined) {
      headers['content-type'] = 'application/json';
      body = JSON.stringify(options.body);
    }
    const timeoutMs = options.timeoutMs ?? this.#timeoutMs;
    let res: Response;
    try {
      res = await fetch(url, {
        method,
        headers,
        ...(body === undefined ? {} : { body }),
        ...(timeoutMs > 0 ? { signal: AbortSignal.timeout(timeoutMs) } : {}),
      });
    } catch (err) {
      throw unavailable(this.server, err);
    }
    if (!res.ok) throw await apiError(res);
    return res;
  }
}

function unavailable(server: string, err: unknown): SluiceError {
  const e = err as { name?: string; message?: string; cause?: { code?: string; message?: string } };
  // fetch hides the socket error (ECONNREFUSED, ENOTFOUND, ...) in its cause.
  const reason =
    e.name === 'TimeoutError'
      ? 'no answer in time'
      : (e.cause?.code ?? e.cause?.message ?? e.message ?? String(err));
  return new SluiceError(
    'SLUICE_SERVER_UNAVAILABLE',
    `cannot reach the Sluice server at ${server}: ${reason}; start one with \`sluice server\` or set --server / SLUICE_SERVER`,
    { cause: err },
  );
}

interface ErrorBody {
  error?: { code?: unknown; message?: unknown; details?: unknown };
}

/** The API's error body as a SluiceError; anything else (a proxy's HTML page) keeps its status. */
async function apiError(res: Response): Promise<SluiceError> {
  const text = await res.text();
  let parsed: ErrorBody | undefined;
  try {
    parsed = JSON.parse(text) as ErrorBody;
  } catch {
    parsed = undefined;
  }
  const error = parsed?.error;
  if (!error || typeof error.message !== 'string') {
    const excerpt = text.trim().slice(0, 200);
    return new SluiceError(
      'SLUICE_INTERNAL',
      `the server answered HTTP ${res.status} ${res.statusText}${excerpt ? `: ${excerpt}` : ''}`,
      { details: { status: res.status } },
    );
  }
  const rawCode = typeof error.code === 'string' ? error.code : '';
  const known = Object.hasOwn(ERROR_CODES, rawCode);
  const code: ErrorCode = known ? (rawCode as ErrorCode) : 'SLUICE_INTERNAL';
  const details =
    error.details && typeof error.details === 'object' ? (error.details as Record<string, unknown>) : {};
  const issues = specIssues(details);
  let message = known || !rawCode ? error.message : `${rawCode}: ${error.message}`;
  if (issues.length) {
    message = `the spec has ${issues.length} problem${issues.length === 1 ? '' : 's'}\n${issues
      .map((i) => `  ${i.line}:${i.col}  ${formatPath(i.path)}: ${i.message}`)
      .join('\n')}`;
  }
  return new SluiceError(code, message, { details: { ...details, status: res.status } });
}

/** The `details.issues` of a SLUICE_SPEC_INVALID answer, as the validator's own issues. */
export function specIssues(details: Record<string, unknown> | undefined): SpecIssue[] {
  const issues = details?.issues;
  if (!Array.isArray(issues)) return [];
  return issues.map((raw) => {
    const i = (raw ?? {}) as Record<string, unknown>;
    const path: SpecPath = Array.isArray(i.path)
      ? (i.path as SpecPath)
      : typeof i.path === 'string' && i.path
        ? [i.path]
        : [];
    return {
      code: (typeof i.code === 'string' && Object.hasOwn(ERROR_CODES, i.code)
        ? i.code
        : 'SLUICE_SPEC_INVALID') as ErrorCode,
      path,
      message: String(i.message ?? ''),
      line: Number(i.line ?? 0),
      col: Number(i.col ?? 0),
    } as SpecIssue;
  });
}

/** The client for a command's `--server` and `--token`. */
export function clientFrom(options: { server?: string | undefined; token?: string | undefined }): ApiClient {
  return new ApiClient({ server: options.server, token: options.token });
}

// The API's job JSON, as the CLI reads it (docs/server.md has the full contract).
export interface ApiJobCounts {
  read: number;
  written: number;
  failed: number;
  filtered: number;
  records_per_second: number;
  elapsed_ms: number;
}

/** The summary's operator rows are the engine's own (the server stores the run summary as is). */
export type ApiOperatorSummary = OperatorSummary;

export interface ApiRunSummary {
  status?: string;
  elapsed_ms?: number;
  records?: { read: number; written: number; filtered: number; failed: number; skipped?: number };
  records_per_second?: number;
  operators?: ApiOperatorSummary[];
  outputs?: Record<string, string[]>;
  errors?: { count: number; by_code: Record<string, number>; outputs: string[] };
  failure?: { code: string; message: string } | null;
  /** Counts over every attempt of the job (a restarted job has several). */
  totals?: { read: number; written: number; filtered: number; failed: number; skipped?: number };
  attempts?: unknown[];
}

export interface ApiCheck {
  check: string;
  severity: string;
  passed: boolean;
  message: string;
}

export type ApiJobState = JobState;

export interface ApiJob {
  id: string;
  pipeline: { id: string; name: string; version: number };
  params: Record<string, string>;
  state: ApiJobState;
  restarts: number;
  restart_policy?: { attempts: number; backoff_ms: number; max_backoff_ms: number };
  reason: string | null;
  schedule_id: string | null;
  scheduled_for: string | null;
  created_at: string;
  updated_at: string;
  started_at: string | null;
  ended_at: string | null;
  next_start_at: string | null;
  summary: ApiRunSummary | null;
  checks: ApiCheck[] | null;
  progress: Partial<ApiJobCounts> | null;
}

export interface ApiJobEvent {
  seq: number;
  at: string | number;
  from_state: ApiJobState | null;
  to_state: ApiJobState;
  reason: string | null;
}
