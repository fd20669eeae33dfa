/**
 * s3:// URLs and the `s3` options of a config: what validating a spec needs, without the AWS SDK
 * (client.ts loads it).
 */
import { z } from 'zod';
import { type ErrorCode, SluiceError } from '../../sdk/errors.ts';

// ---------------------------------------------------------------- URLs

export interface S3Location {
  bucket: string;
  /** The key or key prefix; '' for the whole bucket. */
  key: string;
}

const S3_URL = /^s3:\/\/([^/]*)(?:\/(.*))?$/s;
/** S3's bucket naming rules (lower case, digits, dots, hyphens; 3 to 63 characters). */
const BUCKET = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;

export function isS3Url(p: string): boolean {
  return /^s3:\/\//i.test(p);
}

/** Why `url` is not a usable s3:// URL, or undefined when it is one. */
export function s3UrlProblem(url: string): string | undefined {
  const m = S3_URL.exec(url);
  if (!m || !BUCKET.test(m[1] ?? ''))
    return `not an S3 URL: ${url} (expected s3://bucket/key, with a bucket name of 3 to 63 lower-case letters, digits, dots and hyphens)`;
  return undefined;
}

/** Splits `s3://bucket/key` (key may be empty). Throws `code` when it is not one. */
export function parseS3Url(url: string, code: ErrorCode = 'SLUICE_SPEC_INVALID'): S3Location {
  const problem = s3UrlProblem(url);
  const m = S3_URL.exec(url);
  if (problem || !m)
    throw new SluiceError(code, problem ?? `not an S3 URL: ${url}`, { retriable: false, details: { url } });
  return { bucket: m[1]!, key: m[2] ?? '' };
}

export function s3Url(bucket: string, key: string): string {
  return `s3://${bucket}/${key}`;
}

// ---------------------------------------------------------------- configuration

export const s3OptionsSchema = z
  .object({
    endpoint: z
      .url()
      .optional()
      .describe(
        'The S3 endpoint URL, for S3-compatible stores (MinIO, Ceph, R2, a local test server). Default: the ' +
          'environment variable AWS_ENDPOINT_URL_S3, then AWS_ENDPOINT_URL, else AWS S3 itself.',
      ),
    force_path_style: z
      .boolean()
      .optional()
      .describe(
        'Address buckets as `<endpoint>/<bucket>/<key>` rather than `<bucket>.<endpoint>/<key>`. Default: true when ' +
          'an endpoint is set (what most S3-compatible stores want), false for AWS S3.',
      ),
    region: z
      .string()
      .min(1)
      .optional()
      .describe(
        'The region. Default: the environment variable AWS_REGION, then AWS_DEFAULT_REGION, else us-east-1.',
      ),
  })
  .strict()
  .describe(
    'Where and how to reach S3, for s3:// paths. Credentials come from the environment, as for the AWS CLI: ' +
      'AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN), AWS_PROFILE, web identity, or the ' +
      'instance or container role.',
  );

export type S3OptionsConfig = z.output<typeof s3OptionsSchema>;

/**
 * The checks every file component's config makes of its `path` and `s3` fields (in its
 * superRefine): a well-formed s3:// URL, and `s3` options only with one.
 */
export function checkS3Fields(config: { path: string; s3?: unknown }, ctx: z.RefinementCtx): void {
  const s3 = isS3Url(config.path);
  const problem = s3 ? s3UrlProblem(config.path) : undefined;
  if (problem) ctx.addIssue({ code: 'custom', path: ['path'], message: problem });
  if (config.s3 && !s3)
    ctx.addIssue({
      code: 'custom',
      path: ['s3'],
      message: `s3 options apply to s3:// paths; "${config.path}" is a local path`,
    });
}

export interface S3Options {
  endpoint?: string | undefined;
  forcePathStyle?: boolean | undefined;
  region?: string | undefined;
}

export function s3OptionsFromConfig(config: S3OptionsConfig | undefined): S3Options {
  return { endpoint: config?.endpoint, forcePathStyle: config?.force_path_style, region: config?.region };
}
