export type OperatorKind = 'source' | 'step' | 'route' | 'sink' | 'errors';

/** Counters the engine keeps for every operator; plugin authors never write metrics. */
export class OperatorStats {
  readonly name: string;
  readonly kind: OperatorKind;
  readonly component: string;
  in = 0;
  out = 0;
  filtered = 0;
  failed = 0;
  /** Milliseconds spent inside the operator's own code. */
  timeMs = 0;
  batches = 0;

  constructor(name: string, kind: OperatorKind, component: string) {
    this.name = name;
    this.kind = kind;
    this.component = component;
  }

  /**
   * Records counts for one batch: what is neither out nor failed was filtered, unless the operator
   * holds records back (`pairs` false), when its output does not answer to this batch's input.
   */
  count(inCount: number, outCount: number, failedCount: number, elapsedMs: number, pairs = true): void {
    this.in += inCount;
    this.out += outCount;
    this.failed += failedCount;
    if (pairs) this.filtered += Math.max(0, inCount - outCount - failedCount);
    this.timeMs += elapsedMs;
    this.batches++;
  }

  toJSON(): OperatorSummary {
    return {
      name: this.name,
      kind: this.kind,
      component: this.component,
      in: this.in,
      out: this.out,
      filtered: this.filtered,
      failed: this.failed,
      time_ms: Math.round(this.timeMs),
    };
  }
}

export interface OperatorSummary {
  name: string;
  kind: OperatorKind;
  component: string;
  in: number;
  out: number;
  filtered: number;
  failed: number;
  time_ms: number;
}
