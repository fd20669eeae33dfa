/**
 * The signals that stop `sluice`, each acted on once however it arrives.
 *
 * On a Node older than 22.18, bin/sluice.js re-runs itself on the Node 24 of node_modules and
 * waits for it. A terminal's Ctrl-C reaches every process of the foreground group, so both the
 * launcher and this process get it; a `kill` of the launcher's pid reaches the launcher alone. The
 * launcher therefore counts the signals it gets and tells this process (over the IPC channel), and
 * this process acts on the larger of that count and its own: a Ctrl-C is one stop, not two (a
 * second signal stops at once and discards uncommitted output), and a signal sent to the launcher
 * alone still stops the run.
 */
export const STOP_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
export type StopSignal = (typeof STOP_SIGNALS)[number];

/** What the launcher sends for each stop signal it gets: the count of that signal so far. */
export interface LauncherSignalMessage {
  sluiceSignal: StopSignal;
  count: number;
}

const received = new Map<StopSignal, number>();
const fromLauncher = new Map<StopSignal, number>();
const acted = new Map<StopSignal, number>();
const handlers = new Map<StopSignal, Set<(signal: StopSignal) => void>>();
let routing = false;

function isStopSignal(x: unknown): x is StopSignal {
  return (STOP_SIGNALS as readonly unknown[]).includes(x);
}

function settle(signal: StopSignal): void {
  const count = Math.max(received.get(signal) ?? 0, fromLauncher.get(signal) ?? 0);
  while ((acted.get(signal) ?? 0) < count) {
    acted.set(signal, (acted.get(signal) ?? 0) + 1);
    const listeners = handlers.get(signal);
    if (!listeners?.size) {
      // Nothing handles it: do what the signal does to a process without a handler.
      for (const s of STOP_SIGNALS) process.removeAllListeners(s);
      process.kill(process.pid, signal);
      return;
    }
    for (const handler of [...listeners]) handler(signal);
  }
}

function route(): void {
  if (routing) return;
  routing = true;
  for (const signal of STOP_SIGNALS) {
    process.on(signal, () => {
      received.set(signal, (received.get(signal) ?? 0) + 1);
      settle(signal);
    });
  }
}

/**
 * Called first thing in the process the launcher started: from now on the launcher's signal
 * messages count. Until a command handles a signal, it ends the process as it would have.
 */
export function listenToLauncher(): void {
  route();
  if (!process.channel) return;
  process.on('message', (message: Partial<LauncherSignalMessage> | null) => {
    const signal = message?.sluiceSignal;
    if (!isStopSignal(signal) || typeof message?.count !== 'number') return;
    fromLauncher.set(signal, Math.max(fromLauncher.get(signal) ?? 0, message.count));
    settle(signal);
  });
  // The channel only carries signals: it must not keep the process alive.
  process.channel.unref();
}

/** Calls `handler` once per stop of each of `signals`; returns the function that removes it. */
export function onStopSignal(
  signals: readonly StopSignal[],
  handler: (signal: StopSignal) => void,
): () => void {
  route();
  for (const signal of signals) {
    if (!handlers.has(signal)) handlers.set(signal, new Set());
    handlers.get(signal)!.add(handler);
  }
  return () => {
    for (const signal of signals) handlers.get(signal)?.delete(handler);
  };
}
