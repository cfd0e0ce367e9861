/**
 * SIGINT/SIGTERM for daemons. The listeners go in at the very start of a command: a signal that arrives
 * while the daemon is still starting must still mean "stop cleanly" (without a listener, Node leaves the
 * default action, which kills the process on the spot). The first signal is remembered until asked for.
 */
export interface Signals {
  /** Resolves with the signal's name once one has arrived (at once if one already has). */
  readonly next: Promise<string>;
}

export function catchSignals(): Signals {
  let resolve!: (s: string) => void;
  const next = new Promise<string>((r) => (resolve = r));
  const on = (name: string) => () => resolve(name);
  process.on('SIGINT', on('SIGINT'));
  process.on('SIGTERM', on('SIGTERM'));
  return { next };
}
