/**
 * The last LSN a standby's archive holds that its primary confirmed durable (transport/protocol.ts,
 * confirmation), kept in the archive directory so that it holds across restarts:
 *
 *   confirmed.json   { "lsn": "N" }
 *
 * The standby applies and serves onward only records up to it, and sets aside only records after it when a
 * primary turns out to have lost them. An archive without the file was written before confirmation existed,
 * when every record was sent durable, or an archive a primary writes (each of its records is its own,
durable): all of it counts as confirmed. A primary removes the file when it starts (removeConfirmed).
 *
 * Written without fsync, at most every CONFIRMED_WRITE_MS while it moves: after a crash of the machine it may
 * name an older LSN than it reached. That only holds apply back until the primary confirms again; and what it
 * would let a reconnect set aside is what the primary itself no longer holds, kept in diverged/ all the same.
 */
import { existsSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { RedoshipError } from '../error/index.js';

export const CONFIRMED_FILE = 'confirmed.json';
export const CONFIRMED_WRITE_MS = 200;

/** The confirmed LSN, or null when the archive predates confirmation (then everything it holds is). */
export function readConfirmed(archiveDir: string): bigint | null {
  const p = join(archiveDir, CONFIRMED_FILE);
  if (!existsSync(p)) return null;
  try {
    const o = JSON.parse(readFileSync(p, 'utf8')) as { lsn?: unknown };
    if (typeof o.lsn !== 'string' || !/^[0-9]{1,20}$/.test(o.lsn)) throw new Error('no lsn');
    return BigInt(o.lsn);
  } catch (e) {
    throw new RedoshipError('CONFIG_INVALID', `${p} is not a valid confirmed-LSN file`, 'remove it: the standby then treats everything its archive holds as confirmed', { cause: e });
  }
}

export function writeConfirmed(archiveDir: string, lsn: bigint): void {
  const p = join(archiveDir, CONFIRMED_FILE);
  writeFileSync(`${p}.tmp`, `{ "lsn": "${lsn}" }\n`);
  renameSync(`${p}.tmp`, p);
}

/** For a primary starting on an archive: every record in it is its own from now on (see the top). */
export function removeConfirmed(archiveDir: string): void {
  rmSync(join(archiveDir, CONFIRMED_FILE), { force: true });
}
