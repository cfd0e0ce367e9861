/**
 * Typed errors. Every error a user can cause is a RedoshipError with a stable code (scripts branch on it),
 * one message saying what happened, and a hint saying what to do. The CLI prints message and hint and exits
 * non-zero; anything that is not a RedoshipError is a bug and is printed with its stack.
 *
 * All codes live in this one list; wording may improve freely, codes never change meaning.
 */
export const ERROR_CODES = {
  USAGE: 2, // bad flags or arguments
  CHECK_FAILED: 4, // a drill's check or step failed (the report says which)
  CONFIG_INVALID: 3,
  NOT_A_DATABASE: 10, // the path is missing or is not a SQLite database
  JOURNAL_MODE: 11, // the database cannot be put into WAL mode
  SQLITE_TOO_OLD: 12,
  LOCKED: 13, // another redoship process holds the database or archive
  DATABASE_BUSY: 14, // the application holds a lock we need, for longer than we wait
  WRONG_DATABASE: 20, // an archive or peer belongs to another database
  ARCHIVE_MISSING: 21, // no archive at the given path
  ARCHIVE_CORRUPT: 22, // a segment fails its checks
  ARCHIVE_GAP: 23, // LSNs missing between segments
  ARCHIVE_EMPTY: 24, // no base to restore from
  TARGET_EXISTS: 30, // a restore target already exists
  TARGET_UNREACHABLE: 31, // the requested LSN or time is not in the archive
  NOT_FOUND: 32, // an object the repository should hold is missing
  WRONG_KEY: 33, // an encrypted backup set and no key, or another key
  IO: 40, // the file system refused (full disk, permissions)
  PEER_REFUSED: 41, // the other side of a redo connection refused us, or failed to prove the secret
  PEER_UNREACHABLE: 42,
  WAL_CORRUPT: 50, // the live WAL does not match what SQLite published
  FENCED: 60, // this side was superseded by a newer incarnation (failover or switchover elsewhere)
  DIVERGED: 61, // two lines of history split: a peer holds transactions the other line never had
  ROLE: 62, // the command needs another role (a standby to promote, a primary to switch over)
  ASSERT: 99, // should be impossible: a bug
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

export class RedoshipError extends Error {
  override name = 'RedoshipError';
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly hint: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }

  /** The process exit status for this error: stable per code, never 0 or 1 (1 is left for bugs). */
  get exitCode(): number {
    return ERROR_CODES[this.code];
  }
}

export function isRedoshipError(e: unknown): e is RedoshipError {
  return e instanceof RedoshipError;
}

/** Wrap a Node file-system error in a RedoshipError that says what we were doing and what to check. */
export function ioError(action: string, path: string, cause: unknown): RedoshipError {
  const code = (cause as NodeJS.ErrnoException | undefined)?.code;
  const hint =
    code === 'ENOSPC' || code === 'EDQUOT'
      ? 'the disk is full: free space on that file system, then run the command again'
      : code === 'EACCES' || code === 'EPERM'
        ? 'check the permissions of that path for the user running redoship'
        : code === 'ENOENT'
          ? 'check that the path exists'
          : 'check the path and the file system, then run the command again';
  const why = code ? ` (${code})` : '';
  return new RedoshipError('IO', `could not ${action} ${path}${why}`, hint, { cause });
}
