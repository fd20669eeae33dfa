/** The process logger of `sluice run`, `sluice server` and job processes (shared: the server and the runner must not import cli/). */
import pino from 'pino';
import type { Logger } from '../sdk/types.ts';

export type LogFormat = 'text' | 'json';
const LEVELS = ['debug', 'info', 'warn', 'error'] as const;
export type LogLevel = (typeof LEVELS)[number];

export function isLogLevel(value: string): value is LogLevel {
  return (LEVELS as readonly string[]).includes(value);
}

/**
 * Logs go to stderr so stdout stays free for data (`stdout` sink) and summaries. JSON lines come
 * from pino; text is one readable line per event. `beforeWrite` lets a live progress line clear itself.
 */
export function createLogger(options: {
  level: LogLevel;
  format: LogFormat;
  bindings?: Record<string, unknown>;
  beforeWrite?: () => void;
}): Logger {
  if (options.format === 'json') {
    const log = pino(
      { level: options.level, base: options.bindings ?? {} },
      pino.destination({ fd: 2, sync: true }),
    );
    return {
      debug: (msg, fields) => log.debug(fields ?? {}, msg),
      info: (msg, fields) => log.info(fields ?? {}, msg),
      warn: (msg, fields) => log.warn(fields ?? {}, msg),
      error: (msg, fields) => log.error(fields ?? {}, msg),
    };
  }
  const threshold = LEVELS.indexOf(options.level);
  const write = (level: LogLevel, msg: string, fields?: Record<string, unknown>) => {
    if (LEVELS.indexOf(level) < threshold) return;
    options.beforeWrite?.();
    const extra = fields && Object.keys(fields).length ? ` ${JSON.stringify(fields)}` : '';
    process.stderr.write(`${level}: ${msg}${extra}\n`);
  };
  return {
    debug: (msg, fields) => write('debug', msg, fields),
    info: (msg, fields) => write('info', msg, fields),
    warn: (msg, fields) => write('warn', msg, fields),
    error: (msg, fields) => write('error', msg, fields),
  };
}
