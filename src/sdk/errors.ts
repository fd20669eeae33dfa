/**
 * Errors are classes with stable string codes. Every code is listed in ERROR_CODES with a
 * description; docs/errors.md is generated from that table and a test keeps it current.
 */

export const ERROR_CODES = {
  SLUICE_SPEC_INVALID: {
    retriable: false,
    description: 'The pipeline spec failed validation; every problem is listed with its YAML line:column.',
  },
  SLUICE_SPEC_YAML: {
    retriable: false,
    description: 'The spec is not well-formed YAML.',
  },
  SLUICE_SPEC_VARIABLE: {
    retriable: false,
    description:
      'A `${env:NAME}` or `${param:NAME}` placeholder names a variable that is not set, or a `${secret:NAME}` names a file that is not in the secrets folder (`$SLUICE_SECRETS_DIR`, default /run/secrets).',
  },
  SLUICE_SPEC_FORBIDDEN: {
    retriable: false,
    description:
      "The control plane does not allow what the spec asks for (docs/server.md, Workspaces and confinement): a path outside the server's data root and allowed roots (absolute, `..`, a symbolic link out), an `${env:NAME}` not on the server's allow-list, a `${secret:NAME}` not granted to the API token, or a `script` step on a server that does not allow code.",
  },
  SLUICE_USAGE: {
    retriable: false,
    description: 'The command line is wrong: an unknown command or option, or a missing argument.',
  },
  SLUICE_DECODE: {
    retriable: false,
    description:
      'A source could not decode a record: a malformed CSV line, invalid JSON, a bad value for a declared column type.',
  },
  SLUICE_SOURCE_IO: {
    retriable: true,
    description: 'A source failed to read: a missing file, a permission error, a corrupt compressed stream.',
  },
  SLUICE_SINK_IO: {
    retriable: true,
    description: 'A sink failed to write or commit.',
  },
  SLUICE_SINK_ROLLED_BACK: {
    retriable: true,
    description:
      'A sink lost output it had not committed yet (its transaction was rolled back when the connection dropped). The run fails at once rather than commit a checkpoint past the lost records; `sluice run` and `sluice server` restart it from its last checkpoint per settings.restart.',
  },
  SLUICE_SINK_REJECTED: {
    retriable: false,
    description: 'A sink refused a record, for example a value its format cannot hold.',
  },
  SLUICE_OUTPUT_CLOSED: {
    retriable: false,
    description:
      "A sink's reader went away for good: whatever read stdout closed the pipe (`sluice run spec.yaml | head`). The run stops reading and ends as interrupted, with no error records for what it could not write; its last saved checkpoint stays, so a resume writes again what followed it. `sluice run` exits 141, like a tool killed by SIGPIPE.",
  },
  SLUICE_EXPR_INVALID: {
    retriable: false,
    description:
      'A SQL expression in the spec does not parse, or uses a construct outside the supported subset.',
  },
  SLUICE_EXPR_EVAL: {
    retriable: false,
    description:
      'A SQL expression failed on one record (a bad cast, an overflow); the record goes to the errors sink.',
  },
  SLUICE_SQL_TYPE_CONFLICT: {
    retriable: false,
    description:
      'A record does not fit the table a set-level SQL query (GROUP BY, ORDER BY, ...) collects: one of its fields has a type that cannot be unified with earlier records (a string where numbers were).',
  },
  SLUICE_SCHEMA_VIOLATION: {
    retriable: false,
    description: 'A record does not match the JSON Schema of a `validate` step.',
  },
  SLUICE_STEP_FAILED: {
    retriable: false,
    description: 'A step threw an error on a record that it did not classify itself.',
  },
  SLUICE_HTTP_STATUS: {
    retriable: false,
    description:
      "An `http` step's or sink's final response (after retries) had a status that `on_status` sends to the errors sink (by default any non-2xx); details hold the status, the attempt count and the first KiB of the body. Retriable for 408, 429 and 5xx.",
  },
  SLUICE_HTTP_NETWORK: {
    retriable: true,
    description:
      "An `http` step's or sink's call failed without a response after its retries: connection refused or reset, a DNS failure.",
  },
  SLUICE_HTTP_TIMEOUT: {
    retriable: true,
    description:
      "An `http` step's or sink's call ran out of time after its retries; details say which deadline (connect, headers, total).",
  },
  SLUICE_HTTP_RESPONSE: {
    retriable: false,
    description:
      "An `http` step's response body is not valid JSON where JSON was asked for (`response.as`), or does not decode as its Content-Encoding says (a corrupt gzip, br, deflate or zstd stream).",
  },
  SLUICE_HTTP_REDIRECT: {
    retriable: false,
    description:
      "An `http` step's, source's or sink's call was redirected where it may not follow: more than `redirects.max` times, to another origin while `redirects.cross_origin` is false, or to a Location that is not an http(s) URL. Details name the status, the Location and the hops followed; nothing is sent to the refused URL.",
  },
  SLUICE_HTTP_BODY_TOO_LARGE: {
    retriable: false,
    description:
      "An `http` step's, source's or sink's response body was larger than `response.max_bytes` (10 MiB by default), counted after Content-Encoding is decoded, so a compressed bomb is stopped too. Reading stops at the limit; details hold `max_bytes`.",
  },
  SLUICE_HTTP_TEMPLATE: {
    retriable: false,
    description:
      "An `http` step's or sink's request could not be rendered for a record: a placeholder names a field that is missing (or null), or a value cannot go where it stands (a line break in a header, `..` as a path segment). No request is sent.",
  },
  SLUICE_HTTP_CIRCUIT_OPEN: {
    retriable: true,
    description:
      "An `http` step's circuit breaker for the host was open (too many recent attempts failed) and `breaker.when_open` is `error`, so the record's call was not sent; details name the origin, the breaker state and the milliseconds until probes are let through.",
  },
  SLUICE_HTTP_AUTH: {
    retriable: false,
    description:
      'An `http` step could not get an OAuth2 access token: the token endpoint refused the client credentials (details hold its status and the first KiB of its body, redacted), answered without an access_token, or could not be reached after 3 tries. Retriable when the endpoint failed (429, 5xx, network).',
  },
  SLUICE_ROUTE_UNMATCHED: {
    retriable: false,
    description: 'A record matched the `route` of no sink.',
  },
  SLUICE_SCRIPT_INVALID: {
    retriable: false,
    description: 'A `script` module could not be loaded or does not export a step made with `defineStep`.',
  },
  SLUICE_ERROR_LIMIT: {
    retriable: false,
    description: 'The job failed because `max_errors` or `max_error_rate` was exceeded.',
  },
  SLUICE_INTERRUPTED: {
    retriable: false,
    description:
      'The run was stopped by SIGINT or SIGTERM; what was read before the signal was drained and committed.',
  },
  SLUICE_CHECKPOINT: {
    retriable: false,
    description:
      'The checkpoint could not be read or written: a corrupt or unreadable checkpoint file, or a save that failed (the run fails rather than carry on without one).',
  },
  SLUICE_QUERY_FAILED: {
    retriable: false,
    description:
      'The SQL of `sluice query` failed in DuckDB: a syntax error (shown with a caret), an unknown table or column, or an output file it could not read.',
  },
  SLUICE_JOB_STATE: {
    retriable: false,
    description:
      'A job cannot make the asked change of state (cancel a finished job, restart a succeeded one); the message lists the legal ones.',
  },
  SLUICE_JOB_PROCESS: {
    retriable: true,
    description:
      "A job's process died (killed, out of memory, crashed) or could not be started; its restart policy decides whether it runs again from its checkpoint.",
  },
  SLUICE_NOT_FOUND: {
    retriable: false,
    description: 'The API has no pipeline, job, schedule, webhook or token with that id or name.',
  },
  SLUICE_UNAUTHORIZED: {
    retriable: false,
    description:
      'The request carries no API token, or one that is unknown or revoked: send `Authorization: Bearer TOKEN`.',
  },
  SLUICE_FORBIDDEN: {
    retriable: false,
    description: "The API token's scopes do not allow this call (read < write < admin).",
  },
  SLUICE_CONFLICT: {
    retriable: false,
    description:
      'The request conflicts with what the server holds: an `Idempotency-Key` reused with a different body, a pipeline name already taken.',
  },
  SLUICE_LAST_ADMIN_TOKEN: {
    retriable: false,
    description:
      'The API refuses to revoke the last live admin token (409): create another admin token first. With no admin token left, `sluice server token create` on the server writes one into the job store.',
  },
  SLUICE_METHOD_NOT_ALLOWED: {
    retriable: false,
    description:
      'The API path exists but not with this HTTP method (405); the `Allow` header and the message list the methods it takes.',
  },
  SLUICE_UNSUPPORTED_MEDIA_TYPE: {
    retriable: false,
    description:
      'The request body has a Content-Type the API does not read (415): send application/json, or a spec as YAML (application/yaml, text/yaml, text/plain).',
  },
  SLUICE_BAD_REQUEST: {
    retriable: false,
    description: 'The API request is malformed: the message names the field and what would be valid.',
  },
  SLUICE_SERVER_UNAVAILABLE: {
    retriable: true,
    description: 'The CLI could not reach the control plane at `--server` (or `SLUICE_SERVER`).',
  },
  SLUICE_INTERNAL: {
    retriable: false,
    description: 'An unexpected failure inside Sluice: please report it with the run.json.',
  },
} as const satisfies Record<string, { retriable: boolean; description: string }>;

export type ErrorCode = keyof typeof ERROR_CODES;

export interface SluiceErrorOptions {
  cause?: unknown;
  /** Overrides the code's default. Retriable errors are retried by the engine with backoff. */
  retriable?: boolean;
  /** Structured facts for the error record: field, value, expected, line, ... */
  details?: Record<string, unknown>;
}

export class SluiceError extends Error {
  readonly code: ErrorCode;
  readonly retriable: boolean;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, options: SluiceErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'SluiceError';
    this.code = code;
    this.retriable = options.retriable ?? ERROR_CODES[code].retriable;
    this.details = options.details;
  }
}

/** Wraps anything thrown into a SluiceError, keeping the original as the cause. */
export function toSluiceError(err: unknown, fallback: ErrorCode = 'SLUICE_INTERNAL'): SluiceError {
  if (err instanceof SluiceError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new SluiceError(fallback, message, { cause: err });
}
