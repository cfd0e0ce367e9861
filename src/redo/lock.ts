/**
 * One writer per database and per archive, on one machine: a lock file holding the owner's pid, created with
 * O_EXCL. A lock whose pid is no longer alive (the owner was killed) is taken over. Node has no flock(), and
 * POSIX locks on the database itself belong to SQLite (DESIGN.md Capture 3), so a pid file it is.
 */
import { closeSync, openSync, readFileSync, unlinkSync, writeSync, renameSync } from 'node:fs';
import { RedoshipError, ioError } from '../error/index.js';

export interface PidLock {
  readonly path: string;
  release(): void;
}

/** True when a process with this pid exists (on this machine). */
export function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Takes the lock or throws LOCKED naming the holder. `what` names the thing locked, for the message. */
export function acquirePidLock(path: string, what: string, info?: string): PidLock {
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const fd = openSync(path, 'wx');
      writeSync(fd, `${process.pid}\n${info ? `${info}\n` : ''}`);
      closeSync(fd);
      let released = false;
      return {
        path,
        release() {
          if (released) return;
          released = true;
          try {
            if (readFileSync(path, 'utf8').split('\n')[0]!.trim() === String(process.pid)) unlinkSync(path);
          } catch {
            /* already gone */
          }
        },
      };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw ioError('create lock file', path, e);
    }
    let holder = NaN;
    try {
      holder = parseInt(readFileSync(path, 'utf8'), 10);
    } catch {
      continue; // removed meanwhile: try again
    }
    // Our own pid: this very process holds it (a second start in one process) - refused like any holder.
    if (Number.isFinite(holder) && isProcessAlive(holder)) {
      throw new RedoshipError(
        'LOCKED',
        `${what} is in use by another redoship process (pid ${holder}, lock file ${path})`,
        `stop that process first; one redoship process may write ${what} at a time`,
      );
    }
    // Stale: its owner died. Move it aside atomically so two takers cannot both remove it.
    try {
      renameSync(path, `${path}.stale-${process.pid}`);
      unlinkSync(`${path}.stale-${process.pid}`);
    } catch {
      /* another taker moved it: retry */
    }
  }
  throw new RedoshipError('LOCKED', `could not take the lock ${path}`, 'remove it if no redoship process is running');
}

/** The second line of a live lock file (what its holder wrote there, e.g. a primary's archive), or null. */
export function lockInfo(path: string): string | null {
  try {
    const [pid, info] = readFileSync(path, 'utf8').split('\n');
    return info && isProcessAlive(parseInt(pid!, 10)) ? info : null;
  } catch {
    return null;
  }
}
