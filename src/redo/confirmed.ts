/**
 * The last LSN a standby's archive holds that its primary confirmed durable (transport/protocol.ts,
 * confirmation), kept in the archive directory so that it holds across restarts:
 *
 *   confirmed.json   { "lsn": "N" }
 *
 * The standby applies and serves onward only records up to it, and sets aside only records after it when a
 * primary turns out to have lost them. An archive without the file was written before confirmation existed,
 * when every record was sent durable, or an archive a primary writes (each of its records is its own,
 * durable): all of it counts as confirmed. A primary removes the file when it starts (removeConfirmed).
 *
 * Written durably (a synced temporary file renamed over it: a crash leaves the old or the new one, never a
 * torn one) at most every CONFIRMED_WRITE_MS while it moves, so after a crash it may name an older LSN than
 * the standby reached. The standby then takes the larger of it and its applied LSN (applied records were
 * confirmed); the rest only waits for the primary to confirm again, and what an older value would let a
 * reconnect set aside is what the primary itself no longer holds, kept in diverged/ all the same.
 */
import { existsSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { open, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { RedoshipError, ioError } from '../error/index.js';
import { fsyncDir, writeDurably } from './segment-writer.js';

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
    throw new RedoshipError(
      'CONFIG_INVALID',
      `${p} is not a valid confirmed-LSN file`,
      'it is written durably, so something else damaged it: write { "lsn": "N" } into it, N the last LSN you know the primary holds (its `redoship status`); removing it makes everything the archive holds count as confirmed',
      { cause: e },
    );
  }
}

export function writeConfirmed(archiveDir: string, lsn: bigint): void {
  const p = join(archiveDir, CONFIRMED_FILE);
  writeDurably(`${p}.tmp`, Buffer.from(`{ "lsn": "${lsn}" }\n`));
  try {
    renameSync(`${p}.tmp`, p);
  } catch (e) {
    throw ioError('write', p, e);
  }
  fsyncDir(archiveDir);
}

/** writeConfirmed on libuv's pool, for a running standby: its receiving thread never waits for these syncs. */
export async function writeConfirmedAsync(archiveDir: string, lsn: bigint): Promise<void> {
  const p = join(archiveDir, CONFIRMED_FILE);
  try {
    const f = await open(`${p}.tmp`, 'w');
    try {
      await f.writeFile(`{ "lsn": "${lsn}" }\n`);
      await f.sync();
    } finally {
      await f.close();
    }
    await rename(`${p}.tmp`, p);
    const d = await open(archiveDir, 'r');
    try {
      await d.sync();
    } finally {
      await d.close();
    }
  } catch (e) {
    throw ioError('write', p, e);
  }
}

/** For a primary starting on an archive: every record in it is its own from now on (see the top). */
export function removeConfirmed(archiveDir: string): void {
  rmSync(join(archiveDir, CONFIRMED_FILE), { force: true });
}
