/**
 * Path handling for the file connector: expanding a file / glob / directory into the sorted list
 * of files to read, format inference from extensions, and Hive-style partition folder names.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import picomatch from 'picomatch';
import { escapePath, glob, isDynamicPattern } from 'tinyglobby';
import { stripCompressionExtension } from '../../formats/compression.ts';
import { SluiceError } from '../../sdk/errors.ts';
import type { S3Connection } from '../s3/client.ts';
import { parseS3Url, s3Url } from '../s3/options.ts';

export const FORMATS = ['csv', 'jsonl', 'parquet'] as const;
export type FileFormat = (typeof FORMATS)[number];

export interface InputFile {
  /** The path as the user wrote it: relative to baseDir when the config path is relative; s3://bucket/key for S3. */
  display: string;
  /** The local path; for S3, the s3:// URL. */
  absolute: string;
  size: number;
  /** Set for an S3 object. */
  s3?: { bucket: string; key: string };
}

const toPosix = (p: string): string => p.split(path.sep).join('/');

/** Hidden (`.x`) or marker (`_SUCCESS`, `_temporary`) names, skipped in directories and globs. */
export function isHiddenName(name: string): boolean {
  return name.startsWith('.') || name.startsWith('_');
}

/** Files under a directory, recursively, skipping hidden and `_`-prefixed files and folders. */
async function walk(dir: string): Promise<string[]> {
  const out: string[] = [];
  const entries = await fs.readdir(dir, { withFileTypes: true });
  for (const entry of entries) {
    if (isHiddenName(entry.name)) continue;
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) out.push(...(await walk(full)));
    else if (entry.isFile()) out.push(full);
    else if (entry.isSymbolicLink()) {
      const stat = await fs.stat(full).catch(() => undefined);
      if (stat?.isFile()) out.push(full);
      else if (stat?.isDirectory()) out.push(...(await walk(full)));
    }
  }
  return out;
}

const byCodePoint = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

/**
 * Expands `spec` (a file, a directory, or a glob) against `baseDir` into files sorted by path.
 * Throws SLUICE_SOURCE_IO when nothing matches.
 */
export async function listInputFiles(spec: string, baseDir: string): Promise<InputFile[]> {
  const relative = !path.isAbsolute(spec);
  const resolved = path.resolve(baseDir, spec);
  const display = (abs: string): string =>
    relative ? toPosix(path.relative(baseDir, abs)) || path.basename(abs) : toPosix(abs);
  let files: string[];
  const stat = await fs.stat(resolved).catch(() => undefined);
  if (stat?.isFile()) files = [resolved];
  else if (stat?.isDirectory()) files = await walk(resolved);
  else if (isDynamicPattern(spec)) {
    const pattern = relative
      ? `${escapePath(toPosix(path.resolve(baseDir)))}/${toPosix(spec).replace(/^\.\//, '')}`
      : toPosix(spec);
    const wantsHidden = isHiddenName(path.posix.basename(toPosix(spec)));
    files = (
      await glob(path.posix.normalize(pattern), {
        absolute: true,
        onlyFiles: true,
        dot: false,
        expandDirectories: false,
        followSymbolicLinks: true,
      })
    )
      .map((f) => path.resolve(f))
      .filter((f) => wantsHidden || !isHiddenName(path.basename(f)));
  } else {
    throw new SluiceError(
      'SLUICE_SOURCE_IO',
      `no such file or directory: ${spec} (resolved to ${resolved})`,
      {
        retriable: false,
        details: { path: spec, resolved },
      },
    );
  }
  if (files.length === 0)
    throw new SluiceError(
      'SLUICE_SOURCE_IO',
      stat?.isDirectory()
        ? `the directory ${spec} holds no files (hidden and _-prefixed files are skipped)`
        : `no file matches ${spec} (resolved against ${baseDir})`,
      { retriable: false, details: { path: spec } },
    );
  files.sort(byCodePoint);
  return Promise.all(
    files.map(async (absolute) => ({
      display: display(absolute),
      absolute,
      size: (await fs.stat(absolute)).size,
    })),
  );
}

/** The format a file name implies, after stripping `.gz`/`.zst`; undefined when it implies none. */
export function formatFromPath(file: string): { format: FileFormat; tsv: boolean } | undefined {
  const ext = path.extname(stripCompressionExtension(file)).toLowerCase();
  switch (ext) {
    case '.csv':
      return { format: 'csv', tsv: false };
    case '.tsv':
      return { format: 'csv', tsv: true };
    case '.jsonl':
    case '.ndjson':
    case '.json':
      return { format: 'jsonl', tsv: false };
    case '.parquet':
      return { format: 'parquet', tsv: false };
    default:
      return undefined;
  }
}

/** Characters kept as they are in a partition folder value; everything else is %-encoded. */
const UNSAFE = /[^A-Za-z0-9\-_.~]/gu;

/** Percent-encodes a partition value the way DuckDB and Hive name their folders. */
export function encodePartitionValue(value: unknown): string {
  if (value === null || value === undefined) return '__HIVE_DEFAULT_PARTITION__';
  let text: string;
  if (typeof value === 'string') text = value;
  else if (value instanceof Date) {
    if (Number.isNaN(value.getTime())) return '__HIVE_DEFAULT_PARTITION__';
    const iso = value.toISOString();
    text = iso.endsWith('T00:00:00.000Z') ? iso.slice(0, 10) : iso.replace('T', ' ').replace('Z', '');
  } else if (typeof value === 'object') text = JSON.stringify(value);
  else text = String(value);
  return text.replace(UNSAFE, (ch) =>
    encodeURIComponent(ch).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`),
  );
}

// ---------------------------------------------------------------- S3

/** Characters that may start glob syntax (picomatch's), escapes included: a literal prefix stops before them. */
const GLOB_CHARS = /[*?[\]{}()!+@\\]/;

/**
 * Splits an S3 key pattern into the longest literal prefix, which ListObjectsV2 narrows the listing
 * to, and whether the pattern has glob syntax at all (`logs/2024-0[1-3]/*.csv` lists under
 * `logs/2024-0`). S3 prefixes are plain string prefixes, not folders, so the prefix may end mid-name.
 */
export function splitS3Pattern(pattern: string): { prefix: string; glob: boolean } {
  if (!picomatch.scan(pattern).isGlob) return { prefix: pattern, glob: false };
  const at = pattern.search(GLOB_CHARS);
  return { prefix: at < 0 ? pattern : pattern.slice(0, at), glob: true };
}

/**
 * True when a `/`-separated segment of `key` is hidden or a marker (`.x`, `_x`) where `pattern`'s
 * segment at that place does not itself start with `.` or `_` (a pattern may name such a folder).
 */
export function hasHiddenSegment(key: string, pattern: string, from = 0): boolean {
  const keySegments = key.split('/');
  const patternSegments = pattern.split('/');
  for (let i = from; i < keySegments.length; i++) {
    const segment = keySegments[i]!;
    if (segment !== '' && isHiddenName(segment) && !isHiddenName(patternSegments[i] ?? '')) return true;
  }
  return false;
}

/** S3's key order: UTF-8 bytes. */
const byUtf8 = (a: { key: string }, b: { key: string }): number =>
  Buffer.compare(Buffer.from(a.key), Buffer.from(b.key));

/**
 * Expands `url` (s3://bucket/key, s3://bucket/prefix/ or s3://bucket/glob) into objects sorted by
 * key. A key that is no object but a prefix of others (`s3://b/logs`) is read as the folder
 * `logs/`. Below a folder or a glob's literal part, names with a hidden or `_` segment are skipped
 * (`_SUCCESS`, `_temporary/`, `.staging`), as for local files. Throws SLUICE_SOURCE_IO when nothing
 * matches.
 */
export async function listS3InputFiles(url: string, conn: S3Connection): Promise<InputFile[]> {
  const { bucket, key } = parseS3Url(url, 'SLUICE_SOURCE_IO');
  const toInput = (o: { key: string; size: number }): InputFile => ({
    display: s3Url(bucket, o.key),
    absolute: s3Url(bucket, o.key),
    size: o.size,
    s3: { bucket, key: o.key },
  });
  const { prefix, glob: isGlob } = splitS3Pattern(key);
  let objects: { key: string; size: number }[] = [];
  let folder: string | undefined;
  if (isGlob) {
    const matches = picomatch(key, { dot: false });
    // Only below the literal folders: a folder the pattern names outright is the user's choice.
    const from = prefix.split('/').length - 1;
    for await (const o of conn.list(bucket, prefix))
      if (matches(o.key) && !hasHiddenSegment(o.key, key, from)) objects.push(o);
  } else {
    const single = key !== '' && !key.endsWith('/') ? await conn.head(bucket, key) : undefined;
    if (single) objects = [{ key, size: single.size }];
    else {
      folder = key === '' || key.endsWith('/') ? key : `${key}/`;
      const from = folder.split('/').length - 1;
      for await (const o of conn.list(bucket, folder))
        if (!o.key.endsWith('/') && !hasHiddenSegment(o.key, folder, from)) objects.push(o);
    }
  }
  if (objects.length === 0)
    throw new SluiceError(
      'SLUICE_SOURCE_IO',
      isGlob
        ? `no object matches ${url} at ${conn.where} (listed the keys under s3://${bucket}/${prefix})`
        : `no object ${url} and no objects under s3://${bucket}/${folder ?? ''} at ${conn.where} (hidden and _-prefixed names are skipped)`,
      { retriable: false, details: { path: url, endpoint: conn.where } },
    );
  return objects.sort(byUtf8).map(toInput);
}
