import { createInterface } from 'node:readline';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { styleText } from 'node:util';
import { SluiceError } from '../../sdk/errors.ts';
import { clientFrom, SERVER_OPTION, TOKEN_OPTION } from '../client.ts';
import { EXIT } from '../exit-codes.ts';
import { defineCommand, parseCommand } from '../options.ts';

export const logsCommand = defineCommand({
  name: 'logs',
  usage: 'sluice logs ID [--follow] [--offset BYTES] [--json]',
  summary: "Print a job's log from a Sluice server, readable (local times, levels) or as JSON lines.",
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
    json: {
      type: 'boolean',
      description: 'Print the log as the server keeps it: JSON lines, each with its job_id.',
    },
    server: SERVER_OPTION,
    token: TOKEN_OPTION,
  },
});

/** pino's numeric levels. */
const LEVEL_NAMES: Record<number, string> = {
  10: 'trace',
  20: 'debug',
  30: 'info',
  40: 'warn',
  50: 'error',
  60: 'fatal',
};
const LEVEL_STYLE: Record<string, Parameters<typeof styleText>[0]> = {
  debug: 'gray',
  warn: 'yellow',
  error: 'red',
  fatal: ['bold', 'red'],
};
/** Fields every line carries, shown once per line in its own form or not at all. */
const HIDDEN = new Set(['time', 'level', 'msg', 'pid', 'hostname', 'job_id']);

function pad(n: number, width = 2): string {
  return String(n).padStart(width, '0');
}

/**
 * One JSON log line as a person reads it: the local date and time, the level (coloured on a
 * terminal, never when piped or with NO_COLOR), the message and the other fields. A line that is
 * not a JSON object is printed as it is.
 */
export function readableLogLine(line: string, stream: NodeJS.WriteStream = process.stdout): string {
  let entry: Record<string, unknown>;
  try {
    entry = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return line;
  }
  if (entry === null || typeof entry !== 'object' || Array.isArray(entry)) return line;
  const t = new Date(
    typeof entry.time === 'number' || typeof entry.time === 'string' ? entry.time : Number.NaN,
  );
  const time = Number.isNaN(t.getTime())
    ? ''
    : `${t.getFullYear()}-${pad(t.getMonth() + 1)}-${pad(t.getDate())} ${pad(t.getHours())}:${pad(t.getMinutes())}:${pad(t.getSeconds())}.${pad(t.getMilliseconds(), 3)} `;
  const level =
    typeof entry.level === 'number'
      ? (LEVEL_NAMES[entry.level] ?? String(entry.level))
      : String(entry.level ?? '');
  const style = LEVEL_STYLE[level];
  const shownLevel = style ? styleText(style, level.padEnd(5), { stream }) : level.padEnd(5);
  const rest = Object.fromEntries(Object.entries(entry).filter(([k]) => !HIDDEN.has(k)));
  const extra = Object.keys(rest).length ? ` ${JSON.stringify(rest)}` : '';
  return `${time}${shownLevel} ${String(entry.msg ?? '')}${extra}`;
}

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
  const body = Readable.fromWeb(res.body as WebReadableStream<Uint8Array>);
  try {
    // Written as it arrives, with backpressure, so `sluice logs ID -f | grep` sees lines at once.
    if (options.json) await pipeline(body, process.stdout, { end: false });
    else await pipeline(readableLines(body), process.stdout, { end: false });
  } catch (err) {
    // The reader went away (`| head`): that is the reader's choice, not a failure.
    if ((err as NodeJS.ErrnoException).code === 'EPIPE') return EXIT.ok;
    throw err;
  }
  return EXIT.ok;
}

async function* readableLines(body: Readable): AsyncGenerator<string> {
  for await (const line of createInterface({ input: body, crlfDelay: Number.POSITIVE_INFINITY })) {
    yield `${readableLogLine(line)}\n`;
  }
}
