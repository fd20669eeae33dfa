import { createHash, randomBytes } from 'node:crypto';

/**
 * Ids that sort by creation time (`job_0lzk3m2a9f3c1d`): list pages use the id as their cursor,
 * and a person reading two ids can tell which came first.
 */
export function newId(prefix: string): string {
  return `${prefix}_${Date.now().toString(36).padStart(9, '0')}${randomBytes(5).toString('hex')}`;
}

export function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}
