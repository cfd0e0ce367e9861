/**
 * Restore from an archive alone: the latest base at or before the target, then every record up to it.
 * Writes to a temporary file beside the target, syncs, and renames it into place (DESIGN.md Apply: offline
 * work needs no journal), so the target path holds either nothing or the whole restored database.
 *
 * Page images are applied in LSN order; when a record shrinks the database the file is cut at once, so a
 * page that later comes back can only hold what a later record wrote.
 */
import Database from 'better-sqlite3';
import { closeSync, existsSync, fsync, fsyncSync, ftruncateSync, openSync, renameSync, rmSync, unlinkSync, writeSync, writevSync } from 'node:fs';
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
  let result!: RestoreResult;
  buildFile(to, (fd) => {
    let pagesWritten = 0;
    const r = applyRecords(fd, archive, baseLsn, target, pageSize, 0, (lsn, pages) => {
      pagesWritten = pages;
      o.onProgress?.({ lsn, targetLsn: target, pages });
    });
    o.beforeRename?.(fd);
    result = { path: to, lsn: r.lastLsn, baseLsn, records: r.records, pagesWritten, sizePages: r.sizePages, pageSize, commitTimeUs: r.commitTimeUs };
  });
  return result;
}

/**
 * Builds a file offline: fill(fd) writes a temporary file beside `to`, which is then synced, checked
 * (checkIntegrity) and renamed into place (and the directory synced). On any failure the temporary file is
 * removed: `to` ends up holding the whole result or nothing. Non-Redoship errors become IO errors naming the
 * file. fill may be async (pages read from a repository); buildFile then returns a promise, and syncs the
 * file on libuv's thread pool while SQLite checks it here (both read what is in the page cache; the rename
 * waits for both).
 */
export function buildFile(to: string, fill: (fd: number) => void): void;
export function buildFile(to: string, fill: (fd: number) => Promise<void>): Promise<void>;
export function buildFile(to: string, fill: (fd: number) => void | Promise<void>): void | Promise<void> {
  const tmp = `${to}.redoship-restore-${process.pid}`;
  let fd: number;
  try {
    fd = openSync(tmp, 'wx+');
  } catch (e) {
    throw ioError('create', tmp, e);
  }
  const finish = () => {
    fsyncSync(fd);
    checkIntegrity(tmp);
    closeSync(fd);
    renameSync(tmp, to);
    fsyncDir(dirname(to));
  };
  const finishAsync = async () => {
    const synced = new Promise<void>((res, rej) => fsync(fd, (e) => (e ? rej(e) : res())));
    synced.catch(() => undefined);
    try {
      checkIntegrity(tmp);
    } finally {
      await synced.catch(() => undefined); // the fd stays open until the sync is over, whatever happens
    }
    await synced;
    closeSync(fd);
    renameSync(tmp, to);
    fsyncDir(dirname(to));
  };
  const fail = (e: unknown): never => {
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
    if (e instanceof RedoshipError) throw e;
    throw ioError('write the restored database', tmp, e);
  };
  try {
    const pending = fill(fd);
    if (pending instanceof Promise) return pending.then(finishAsync).catch(fail);
    finish();
  } catch (e) {
    fail(e);
  }
}

/**
 * SQLite's own PRAGMA integrity_check on a restored file before it is put in place (DESIGN.md Backups:
 * restore verifies). Its -wal/-shm, made by opening it, are removed again. ARCHIVE_CORRUPT when not ok.
 * SQLite reads the file memory-mapped (up to its 2 GiB cap): no read call and no copy per page, which made
 * the check ~5x faster on a 274 MiB file here. The file is a private temporary one nothing else writes.
 */
const MMAP_BYTES = 2 ** 40; // SQLite caps it at its SQLITE_MAX_MMAP_SIZE

export function checkIntegrity(path: string): void {
  const db = new Database(path);
  let result: string[];
  try {
    db.pragma(`mmap_size = ${MMAP_BYTES}`);
    result = db.prepare('PRAGMA integrity_check').pluck().all() as string[];
  } finally {
    db.close();
    for (const side of ['-wal', '-shm']) rmSync(path + side, { force: true });
  }
  if (result.join() !== 'ok')
    throw new RedoshipError(
      'ARCHIVE_CORRUPT',
      `the restored database fails SQLite's integrity_check: ${result.slice(0, 3).join('; ')}`,
      'the backup or archive holds damage its checksums did not catch: run `redoship validate`/`archive verify`, restore from another copy',
    );
}

/**
 * Applies the archive's records [from, to] to the file at fd (pages at their offsets; the file cut whenever a
 * record shrinks the database, so a page that comes back can only hold what a later record wrote). startSize
 * is the file's size in pages before. ARCHIVE_GAP when the archive ends before `to`.
 */
export function applyRecords(
  fd: number,
  archive: Archive,
  from: Lsn,
  to: Lsn,
  pageSize: number,
  startSize: number,
  onRecord?: (lsn: Lsn, pagesWritten: number) => void,
): { lastLsn: Lsn; commitTimeUs: bigint; sizePages: number; records: number } {
  let sizePages = startSize;
  let records = 0;
  let pagesWritten = 0;
  let last: { lsn: Lsn; commitTimeUs: bigint } | null = null;
  const batch = new PageBatch(fd, pageSize);
  // Part by part, not record by record: a base is the whole database, and one assembled record would hold all
  // of it in memory (a seed or restore of a database larger than memory would fail). Pages of a record whose
  // last part never comes (a torn tail) may reach the file; that is then ARCHIVE_GAP below, and every caller
  // writes into a temporary file that a failure removes.
  for (const part of archive.partsInRange(from, to)) {
    for (let i = 0; i < part.pgnos.length; i++) {
      batch.put(part.pgnos[i]!, part.pageData.subarray(i * pageSize, (i + 1) * pageSize));
      pagesWritten++;
    }
    if (!part.last) continue;
    if (part.sizePages < sizePages || part.kind === 'base') {
      batch.flush();
      ftruncateSync(fd, part.sizePages * pageSize);
    }
    sizePages = part.sizePages;
    records++;
    last = { lsn: part.lsn, commitTimeUs: part.commitTimeUs };
    onRecord?.(part.lsn, pagesWritten);
  }
  if (!last || last.lsn !== to)
    throw new RedoshipError(
      'ARCHIVE_GAP',
      `the archive ends at LSN ${last?.lsn ?? from - 1n}, before the target LSN ${to}`,
      `its last segment may be torn; restore with --until-lsn ${last?.lsn ?? from - 1n}`,
    );
  batch.flush();
  ftruncateSync(fd, sizePages * pageSize);
  return { lastLsn: last.lsn, commitTimeUs: last.commitTimeUs, sizePages, records };
}

/**
 * Page writes held back and written together: the latest image of each page since the last flush (copied
 * into an arena of its own, so callers may reuse their buffers), then written in ascending order, runs of
 * consecutive pages with one call. Redo rewrites the same pages over and over (and a base is every page
 * once): one write per page each time cost most of a restore's time. Writes of different pages commute and
 * only the last image of a page counts, so the file ends as if each page had been written in turn; callers
 * flush before anything else touches the file (a truncation).
 */
class PageBatch {
  private static readonly CAPACITY_PAGES = 4096;
  private static readonly RUN_PAGES = 256;
  private readonly arena: Buffer;
  private readonly slots = new Map<number, number>();

  constructor(
    private readonly fd: number,
    private readonly pageSize: number,
  ) {
    this.arena = Buffer.allocUnsafe(PageBatch.CAPACITY_PAGES * pageSize);
  }

  put(pgno: number, image: Uint8Array): void {
    let slot = this.slots.get(pgno);
    if (slot === undefined) {
      if (this.slots.size === PageBatch.CAPACITY_PAGES) this.flush();
      slot = this.slots.size;
      this.slots.set(pgno, slot);
    }
    this.arena.set(image.subarray(0, this.pageSize), slot * this.pageSize);
  }

  flush(): void {
    const ps = this.pageSize;
    const pgnos = [...this.slots.keys()].sort((a, b) => a - b);
    for (let i = 0; i < pgnos.length; ) {
      let n = 1;
      while (n < PageBatch.RUN_PAGES && i + n < pgnos.length && pgnos[i + n] === pgnos[i]! + n) n++;
      const views = pgnos.slice(i, i + n).map((p) => this.arena.subarray(this.slots.get(p)! * ps, (this.slots.get(p)! + 1) * ps));
      const position = (pgnos[i]! - 1) * ps;
      // A short writev is finished page by page (writing a page twice is harmless).
      if (writevSync(this.fd, views, position) !== n * ps) views.forEach((v, k) => writeFully(this.fd, v, position + k * ps));
      i += n;
    }
    this.slots.clear();
  }
}

function writeFully(fd: number, buf: Uint8Array, position: number): void {
  let done = 0;
  while (done < buf.length) done += writeSync(fd, buf, done, buf.length - done, position + done);
}
