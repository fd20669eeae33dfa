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
