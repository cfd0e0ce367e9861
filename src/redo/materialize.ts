/**
 * Restore from an archive alone: the latest base at or before the target, then every record up to it.
 * Writes to a temporary file beside the target, syncs, and renames it into place (DESIGN.md Apply: offline
 * work needs no journal), so the target path holds either nothing or the whole restored database.
 *
 * Page images are applied in LSN order; when a record shrinks the database the file is cut at once, so a
 * page that later comes back can only hold what a later record wrote.
 */
import { closeSync, existsSync, fsyncSync, ftruncateSync, openSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { RedoshipError, ioError } from '../error/index.js';
import { Archive } from './archive.js';
import { fsyncDir } from './segment-writer.js';
import type { Lsn } from './types.js';

export interface RestoreOptions {
  readonly archive: string | Archive;
  readonly to: string;
  /** Stop after this LSN. Default: the archive's last. */
  readonly untilLsn?: bigint;
  /** Stop after the last transaction committed at or before this time. */
  readonly untilTime?: Date;
  readonly onProgress?: (p: { lsn: Lsn; targetLsn: Lsn; pages: number }) => void;
  /** Called with the temporary file's fd once every page is written, before it is synced and renamed. */
  readonly beforeRename?: (fd: number) => void;
}

export interface RestoreResult {
  readonly path: string;
  readonly lsn: Lsn;
  readonly baseLsn: Lsn;
  readonly records: number;
  readonly pagesWritten: number;
  readonly sizePages: number;
  readonly pageSize: number;
  readonly commitTimeUs: bigint;
}

export function restoreFromArchive(o: RestoreOptions): RestoreResult {
  const archive = typeof o.archive === 'string' ? Archive.open(o.archive) : o.archive;
  const to = resolve(o.to);
  if (existsSync(to))
    throw new RedoshipError('TARGET_EXISTS', `${to} already exists`, 'restore to a new path, or remove that file first');
  for (const side of ['-wal', '-shm', '-journal'])
    if (existsSync(to + side))
      throw new RedoshipError('TARGET_EXISTS', `${to + side} exists (left by another database)`, 'remove it, or restore to another path');
  const tail = archive.tail();
  if (!tail) throw new RedoshipError('ARCHIVE_EMPTY', `the archive ${archive.dir} holds no record`, 'start `redoship primary` on the database first');
  let target = tail.lsn;
  if (o.untilLsn !== undefined) {
    if (o.untilLsn > tail.lsn)
      throw new RedoshipError('TARGET_UNREACHABLE', `LSN ${o.untilLsn} is past the archive's last LSN ${tail.lsn}`, `use --until-lsn ${tail.lsn} or less`);
    target = o.untilLsn as Lsn;
  }
  if (o.untilTime) {
    const t = archive.lsnAtTime(BigInt(o.untilTime.getTime()) * 1000n);
    if (t === null)
      throw new RedoshipError('TARGET_UNREACHABLE', `the archive has no transaction at or before ${o.untilTime.toISOString()}`, 'run `redoship archive list` to see the times it covers');
    if (t < target) target = t;
  }
  const baseLsn = archive.latestBaseAtOrBefore(target);
  if (baseLsn === null)
    throw new RedoshipError('TARGET_UNREACHABLE', `the archive has no base at or before LSN ${target}`, 'restore to a later LSN');
  const pageSize = archive.identity.pageSize;
  const tmp = `${to}.redoship-restore-${process.pid}`;
  let fd: number;
  try {
    fd = openSync(tmp, 'wx+');
  } catch (e) {
    throw ioError('create', tmp, e);
  }
  let done = false;
  try {
    let sizePages = 0;
    let records = 0;
    let pagesWritten = 0;
    let last: { lsn: Lsn; commitTimeUs: bigint } | null = null;
    for (const rec of archive.records(baseLsn, target)) {
      for (const [pgno, page] of rec.pages) {
        writeSync(fd, page, 0, pageSize, (pgno - 1) * pageSize);
        pagesWritten++;
      }
      if (rec.sizePages < sizePages || rec.kind === 'base') ftruncateSync(fd, rec.sizePages * pageSize);
      sizePages = rec.sizePages;
      records++;
      last = { lsn: rec.lsn, commitTimeUs: rec.commitTimeUs };
      o.onProgress?.({ lsn: rec.lsn, targetLsn: target, pages: pagesWritten });
    }
    if (!last || last.lsn !== target)
      throw new RedoshipError(
        'ARCHIVE_GAP',
        `the archive ends at LSN ${last?.lsn ?? baseLsn - 1n}, before the target LSN ${target}`,
        `its last segment may be torn; restore with --until-lsn ${last?.lsn ?? baseLsn - 1n}`,
      );
    ftruncateSync(fd, sizePages * pageSize);
    o.beforeRename?.(fd);
    fsyncSync(fd);
    closeSync(fd);
    renameSync(tmp, to);
    fsyncDir(dirname(to));
    done = true;
    return { path: to, lsn: last.lsn, baseLsn, records, pagesWritten, sizePages, pageSize, commitTimeUs: last.commitTimeUs };
  } catch (e) {
    if (!done) {
      try {
        closeSync(fd);
      } catch {
        /* already closed */
      }
      try {
        unlinkSync(tmp);
      } catch {
        /* nothing to remove */
      }
    }
    if (e instanceof RedoshipError) throw e;
    throw ioError('write the restored database', tmp, e);
  }
}
