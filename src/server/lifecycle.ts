/**
 * A job's life as an explicit state machine, persisted by the job store. Every change of state
 * goes through `assertTransition`, so an illegal move (cancelling a finished job, finishing a job
 * that never ran) is refused with the reason instead of corrupting the record.
 *
 *   pending ──start──▶ running ──exit 0──▶ succeeded
 *      │  ▲               │ │ └──exit≠0──▶ failed ──restart──▶ pending
 *      │  └──crash/restart┘ └──cancel──▶ cancelling ──stopped──▶ cancelled ──restart──▶ pending
 *      └──cancel──▶ cancelled
 */
import { SluiceError } from '../sdk/errors.ts';

export const JOB_STATES = ['pending', 'running', 'succeeded', 'failed', 'cancelling', 'cancelled'] as const;
export type JobState = (typeof JOB_STATES)[number];

export const TERMINAL_STATES: readonly JobState[] = ['succeeded', 'failed', 'cancelled'];

/** Every legal move, with what it means. Anything not listed is illegal. */
export const TRANSITIONS: Record<JobState, Partial<Record<JobState, string>>> = {
  pending: {
    running: 'its process started',
    cancelled: 'cancelled before it started',
    failed: 'it could not be started (its spec no longer validates, no process could be made)',
  },
  running: {
    succeeded: 'its process finished with every record accounted for',
    failed: 'its process failed, or died and its restart policy gave up',
    pending:
      'its process died, its run failed with a retriable error, or the server restarted: it will be restarted from its checkpoint',
    cancelling: 'cancel was asked: its process is draining',
  },
  cancelling: {
    cancelled: 'its process stopped after the cancel',
    succeeded: 'it finished before the cancel reached it',
    failed: 'it failed before the cancel reached it',
  },
  succeeded: {},
  failed: { pending: 'restarted by a user, from its last checkpoint' },
  cancelled: { pending: 'restarted by a user, from its last checkpoint' },
};

export function isTerminal(state: JobState): boolean {
  return TERMINAL_STATES.includes(state);
}

export function canTransition(from: JobState, to: JobState): boolean {
  return TRANSITIONS[from][to] !== undefined;
}

export class IllegalTransitionError extends SluiceError {
  readonly from: JobState;
  readonly to: JobState;

  constructor(jobId: string, from: JobState, to: JobState) {
    const legal = Object.keys(TRANSITIONS[from]);
    super(
      'SLUICE_JOB_STATE',
      `job ${jobId} is ${from} and cannot become ${to}; from ${from} it can become ${legal.length ? legal.join(', ') : 'nothing (it is final)'}`,
      { details: { job_id: jobId, from, to } },
    );
    this.from = from;
    this.to = to;
  }
}

export function assertTransition(jobId: string, from: JobState, to: JobState): void {
  if (!canTransition(from, to)) throw new IllegalTransitionError(jobId, from, to);
}
