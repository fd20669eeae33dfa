import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { SluiceError } from '../../sdk/errors.ts';
import { clientFrom, SERVER_OPTION, TOKEN_OPTION } from '../client.ts';
import { EXIT } from '../exit-codes.ts';
import { defineCommand, parseCommand } from '../options.ts';

export const logsCommand = defineCommand({
  name: 'logs',
  usage: 'sluice logs ID [--follow] [--offset BYTES]',
  summary:
    "Print a job's log (JSON lines, each with its job_id) from a Sluice server; --follow streams it until the job ends.",
  positionals: ['ID'],
  options: {
    follow: {
      type: 'boolean',
      short: 'f',
      description: 'Keep printing new lines as the job writes them, until the job is final.',
    },
    offset: {
      type: 'string',
      value: 'BYTES',
      default: '0',
      description: 'Start this many bytes into the log (the Sluice-Log-Offset header of an earlier answer).',
    },
    server: SERVER_OPTION,
    token: TOKEN_OPTION,
  },
});

export async function logs(argv: string[]): Promise<number> {
  const { options, positionals } = parseCommand(logsCommand, argv);
  const id = positionals[0]!;
  const offset = Number(options.offset ?? '0');
  if (!Number.isInteger(offset) || offset < 0) {
    throw new SluiceError('SLUICE_USAGE', `--offset takes a whole number of bytes, got "${options.offset}"`);
  }
  const res = await clientFrom(options).response('GET', `/v1/jobs/${encodeURIComponent(id)}/logs`, {
    query: { offset: offset || undefined, follow: options.follow ? 'true' : undefined },
    headers: { accept: 'text/plain' },
    // A followed log stays open as long as the job runs.
    timeoutMs: 0,
  });
  if (!res.body) return EXIT.ok;
  try {
    // Written as it arrives, with backpressure, so `sluice logs ID -f | grep` sees lines at once.
    await pipeline(Readable.fromWeb(res.body as WebReadableStream<Uint8Array>), process.stdout, {
      end: false,
    });
  } catch (err) {
    // The reader went away (`| head`): that is the reader's choice, not a failure.
    if ((err as NodeJS.ErrnoException).code === 'EPIPE') return EXIT.ok;
    throw err;
  }
  return EXIT.ok;
}
