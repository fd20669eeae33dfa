/**
 * The config schemas every HTTP component has in common (the http step, source and sink), so
 * their validation and reference docs are identical: per-attempt timeouts, retries, redirects,
 * and how a response body is read.
 */
import { z } from 'zod';
import { durationSchema } from '../spec/duration.ts';
import { sizeSchema } from '../spec/size.ts';

/** `timeout: { connect, headers, total }` of each attempt. */
const timeout = z
  .object({
    connect: durationSchema.default('10s').describe('Longest wait to open a connection (TCP and TLS).'),
    headers: durationSchema
      .default('30s')
      .describe('Longest wait from the start of an attempt until the response headers have arrived.'),
    total: durationSchema
      .default('60s')
      .describe('Longest time for one attempt, from its start until the response body has been read.'),
  })
  .strict()
  .describe(
    'Timeouts of each attempt; a timed-out attempt fails with SLUICE_HTTP_TIMEOUT (retried on `timeout`).',
  );

const retryOn = z.union([z.number().int().min(400).max(599), z.enum(['5xx', 'network', 'timeout'])]);

const retry = z
  .object({
    attempts: z
      .number()
      .int()
      .min(1)
      .max(100)
      .default(3)
      .describe('Tries per record, the first included; 1 turns retries off.'),
    backoff: z
      .enum(['exponential', 'constant'])
      .default('exponential')
      .describe(
        'exponential: the wait before retry n is random between 0 and min(max, initial × 2^(n-1)) (full jitter); ' +
          'constant: random between 0 and initial.',
      ),
    initial: durationSchema
      .default('100ms')
      .describe('The backoff scale: the longest wait before the first retry.'),
    max: durationSchema.default('10s').describe('Longest wait before any retry, a `Retry-After` included.'),
    on: z
      .array(retryOn)
      .default([429, 502, 503, 504, 'network', 'timeout'])
      .describe(
        'What is retried: status codes (`429`), `5xx` (every server error), `network` (connection refused or ' +
          'reset, DNS failure) and `timeout`. A `Retry-After` header on a retried response (seconds or an HTTP ' +
          'date) is honoured: the retry comes no sooner than it says, up to `max`.',
      ),
  })
  .strict()
  .describe('Retries with backoff and full jitter. Retries resend the request: make the call idempotent.');

/** The default of `response.max_bytes`. */
export const DEFAULT_MAX_BYTES = '10MiB';

export const maxBytesSchema = sizeSchema
  .default(DEFAULT_MAX_BYTES)
  .describe(
    'Largest response body read, after Content-Encoding is decoded (so a small compressed body that expands ' +
      'past it, a zip bomb, is stopped too): a number of bytes or `"512KiB"`, `"10MiB"`, `"1GB"`. A larger body ' +
      'fails the call with SLUICE_HTTP_BODY_TOO_LARGE (not retried) and reading stops at the limit.',
  );

export const decompressSchema = z
  .boolean()
  .default(true)
  .describe(
    'Sends `Accept-Encoding: gzip, deflate, br, zstd` (unless the request headers set Accept-Encoding) and ' +
      'decodes a response whose Content-Encoding is gzip, x-gzip, deflate, br or zstd, error bodies included. ' +
      'false: asks for no encoding and takes the body as it comes.',
  );

/** `redirects: { max, cross_origin }`. */
export const redirectsSchema = z
  .object({
    max: z
      .number()
      .int()
      .min(0)
      .max(20)
      .default(5)
      .describe(
        'Most redirects (301, 302, 303, 307, 308 with a Location) followed per attempt; one more fails the call ' +
          'with SLUICE_HTTP_REDIRECT. 0 follows none: a 3xx is then the final response, handled by `on_status`.',
      ),
    cross_origin: z
      .boolean()
      .default(false)
      .describe(
        'Whether a redirect to another origin (scheme, host or port) is followed. false (default): such a call ' +
          'fails with SLUICE_HTTP_REDIRECT and nothing is sent there. true: it is followed without the ' +
          'credentials (Authorization, Cookie, Proxy-Authorization and the `auth.header` header are not sent ' +
          'to the other origin).',
      ),
  })
  .strict()
  .default({ max: 5, cross_origin: false })
  .describe(
    'How redirects are followed. 303 turns the request into a GET without a body, and so do 301 and 302 after ' +
      'a POST (as browsers and fetch do); 307 and 308 resend the same method and body. Retries start again ' +
      'from the configured URL.',
  );

/** `timeout`, with its defaults. */
export const timeoutSchema = timeout.default({ connect: '10s', headers: '30s', total: '60s' });

/** `retry`, with its defaults. */
export const retrySchema = retry.default({
  attempts: 3,
  backoff: 'exponential',
  initial: '100ms',
  max: '10s',
  on: [429, 502, 503, 504, 'network', 'timeout'],
});
