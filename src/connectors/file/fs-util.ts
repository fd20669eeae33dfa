/** File-system steps the file sink's part writer and committers share. */
import fsp from 'node:fs/promises';
import { SluiceError } from '../../sdk/errors.ts';

export async function exists(p: string): Promise<boolean> {
  return fsp.access(p).then(
    () => true,
    () => false,
  );
}

export async function unlinkQuietly(p: string): Promise<void> {
  await fsp.unlink(p).catch(() => {});
}

export async function renameIntoPlace(tempPath: string, finalPath: string): Promise<void> {
  try {
    await fsp.rename(tempPath, finalPath);
  } catch (err) {
    throw new SluiceError('SLUICE_SINK_IO', `cannot rename ${tempPath} to ${finalPath}: ${errorText(err)}`, {
      cause: err,
    });
  }
}

/** fsync of a file or, with `dir`, of a folder's entries (where the platform can). */
export async function syncPath(p: string, flags: string, dir = false): Promise<void> {
  const handle = await fsp.open(p, flags);
  try {
    await handle.sync();
  } catch (err) {
    if (!dir || !['EINVAL', 'EISDIR', 'EPERM', 'ENOTSUP'].includes(errnoCode(err) ?? '')) throw err;
  } finally {
    await handle.close();
  }
}

export function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

export function errnoCode(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | null)?.code;
}

export function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
