import { inputFraction, type RunProgress } from '../engine/run.ts';
import { formatBytes, formatCount, formatDuration, formatRate } from './format.ts';

/**
 * Renders run progress: records/s over the last interval, elapsed, and an ETA when the source
 * knows its input size (bytes of files, or a record count).
 */
export class ProgressReporter {
  #lastRead = 0;
  #lastAt = 0;
  #rate = 0;

  line(p: RunProgress): string {
    const dt = p.elapsedMs - this.#lastAt;
    if (dt >= 200 || this.#lastAt === 0) {
      const instant = dt > 0 ? ((p.read - this.#lastRead) / dt) * 1000 : 0;
      this.#rate = this.#rate === 0 ? instant : this.#rate * 0.6 + instant * 0.4;
      this.#lastRead = p.read;
      this.#lastAt = p.elapsedMs;
    }
    const parts = [
      `${formatCount(p.read)} read`,
      `${formatCount(p.written)} written`,
      ...(p.failed ? [`${formatCount(p.failed)} failed`] : []),
      formatRate(this.#rate),
      `elapsed ${formatDuration(p.elapsedMs)}`,
    ];
    const fraction = inputFraction(p) ?? undefined;
    if (fraction !== undefined) {
      const size = p.source.bytesTotal ? ` of ${formatBytes(p.source.bytesTotal)}` : '';
      parts.unshift(`${(fraction * 100).toFixed(1)}%${size}`);
      if (fraction > 0.001 && fraction < 1) {
        parts.push(`ETA ${formatDuration((p.elapsedMs / fraction) * (1 - fraction))}`);
      }
    }
    return parts.join(' · ');
  }
}

/**
 * Shows a progress line on stderr while a run goes: `live` redraws one line (4 times a second),
 * `plain` prints a line every `intervalMs`, `none` nothing. `clear()` wipes the live line before
 * anything else is written to the terminal.
 */
export class ProgressDisplay {
  #shown = false;
  #timer: NodeJS.Timeout | undefined;

  constructor(mode: 'live' | 'plain' | 'none', line: () => string, intervalMs: number) {
    if (mode === 'live')
      this.#timer = setInterval(() => {
        process.stderr.write(`\r\x1b[2K${line()}`);
        this.#shown = true;
      }, 250);
    else if (mode === 'plain')
      this.#timer = setInterval(() => process.stderr.write(`progress: ${line()}\n`), intervalMs);
  }

  clear = (): void => {
    if (this.#shown) process.stderr.write('\r\x1b[2K');
    this.#shown = false;
  };

  end(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.clear();
  }
}

/**
 * The display for `--progress MODE`. A redrawn line and records on one terminal glue together
 * (`… elapsed 2.8s{"id":54,…}`): when the stdout sink writes to a terminal, auto shows no
 * progress (the records are the progress, as curl hides its meter then) and live prints whole
 * lines, which never split a record.
 */
export function progressMode(requested: string, recordsOnTerminal: boolean): 'live' | 'plain' | 'none' {
  const terminal = process.stderr.isTTY === true;
  if (requested === 'live') return recordsOnTerminal ? 'plain' : 'live';
  if (requested === 'auto') return !terminal ? 'plain' : recordsOnTerminal ? 'none' : 'live';
  return requested === 'plain' ? 'plain' : 'none';
}
