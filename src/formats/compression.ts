/**
 * Compression codecs by name and by file extension, as node:zlib streams.
 */
import type { Transform } from 'node:stream';
import zlib from 'node:zlib';

export type Compression = 'none' | 'gzip' | 'zstd';

const EXTENSIONS: Record<Exclude<Compression, 'none'>, string> = { gzip: '.gz', zstd: '.zst' };

/** The compression a file name implies: `.gz`/`.gzip` gzip, `.zst`/`.zstd` zstd, else none. */
export function compressionFromPath(file: string): Compression {
  const lower = file.toLowerCase();
  if (lower.endsWith('.gz') || lower.endsWith('.gzip')) return 'gzip';
  if (lower.endsWith('.zst') || lower.endsWith('.zstd')) return 'zstd';
  return 'none';
}

/** The file name without a compression extension (`a.csv.gz` → `a.csv`). */
export function stripCompressionExtension(file: string): string {
  return file.replace(/\.(gz|gzip|zst|zstd)$/i, '');
}

/** The extension a compression adds to a file name ('' for none). */
export function compressionExtension(compression: Compression): string {
  return compression === 'none' ? '' : EXTENSIONS[compression];
}

/** A streaming decompressor, or null for none. */
export function createDecompressor(compression: Compression): Transform | null {
  switch (compression) {
    case 'gzip':
      // Concatenated gzip members (as `cat a.gz b.gz` makes) are decoded one after the other.
      return zlib.createGunzip({ chunkSize: 128 * 1024 });
    case 'zstd':
      return zlib.createZstdDecompress({ chunkSize: 128 * 1024 });
    default:
      return null;
  }
}

/** A streaming compressor, or null for none. */
export function createCompressor(compression: Compression): Transform | null {
  switch (compression) {
    case 'gzip':
      return zlib.createGzip({ level: 6, chunkSize: 128 * 1024 });
    case 'zstd':
      return zlib.createZstdCompress({ chunkSize: 128 * 1024 });
    default:
      return null;
  }
}
