/** Process exit codes of `sluice`, distinct per outcome so scripts can tell them apart. */
export const EXIT = {
  /** The command did what it was asked; a run succeeded. */
  ok: 0,
  /** The job ran and failed: a source, step or sink failed, or the error policy was exceeded. */
  failed: 1,
  /** The spec is invalid; nothing ran. */
  specInvalid: 2,
  /** The command line is wrong (unknown command or option, missing argument). */
  usage: 64,
  /** The run was stopped by SIGINT or SIGTERM; what was read was drained and committed. */
  interrupted: 130,
  /**
   * The reader of the stdout sink closed the pipe (`sluice run spec.yaml | head`): the run stopped
   * reading and ended quietly at its last checkpoint, exiting as a tool killed by SIGPIPE does
   * (128 + 13), so that a script can tell a cut-off run from a complete one.
   */
  outputClosed: 141,
} as const;
