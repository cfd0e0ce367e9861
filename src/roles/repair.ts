/**
 * Page repair (block media recovery, CONCEPTS.md): rewrites damaged pages of a live database from a source
 * that knows their committed image, while the rest of the database stays online.
 *
 * What the right image is. The application's write lock is held throughout, so the database is at one LSN N
 * (the primary's archive holds everything up to the last commit: we wait for that). A page's image at N is
 * its last image at or before N: from an archive, the last record up to N that wrote it (or the base it
 * starts from); from a standby's or backup's copy at an earlier LSN S, that copy overlaid with any record
 * in (S, N] that wrote the page. Only the database FILE is repaired: if the WAL holds a newer frame of the
 * page, readers already get that frame, and the checkpoint will write it over ours (the same image).
 *
 * Verified by page hash: the image written is read back and compared, and each image from a standby or a
 * backup is checked against what the archive says when the archive holds the page's last change.
 */
import Database from 'better-sqlite3';
import { fsyncSync, openSync, readSync, writeSync } from 'node:fs';
import { RedoshipError, ioError } from '../error/index.js';
import { Archive, type Lsn } from '../redo/index.js';
import { WAL_HEADER_BYTES, parseWalHeader, parseWalIndexHeader, WAL_INDEX_HEADER_BYTES, pageHash, PAGE_HASH_ALGORITHM, type PageHashAlgorithm } from '../sqlite/index.js';

/**
 * The images of pgnos at lsn, from an archive: the last record up to lsn that wrote each (starting from the
 * latest base at or before lsn). A page missing from the result did not exist at lsn.
 */
export function pageImagesAt(archive: Archive, pgnos: readonly number[], lsn: Lsn): Map<number, Buffer> {
  const base = archive.latestBaseAtOrBefore(lsn);
  if (base === null) throw new RedoshipError('ARCHIVE_EMPTY', `the archive ${archive.dir} has no base at or before LSN ${lsn}`, 'repair from a backup repository instead');
  return overlay(archive, new Map(), pgnos, base, lsn);
}

/** Applies to `images` every record in [from, to] that writes one of pgnos (and the sizes they set). */
export function overlay(archive: Archive, images: Map<number, Buffer>, pgnos: readonly number[], from: Lsn, to: Lsn): Map<number, Buffer> {
  const want = new Set(pgnos);
  const ps = archive.identity.pageSize;
  // Part by part: the first record is a base, the whole database (see Archive.partsInRange).
  for (const part of archive.partsInRange(from, to)) {
    for (let i = 0; i < part.pgnos.length; i++) if (want.has(part.pgnos[i]!)) images.set(part.pgnos[i]!, Buffer.from(part.pageData.subarray(i * ps, (i + 1) * ps)));
    for (const p of [...images.keys()]) if (p > part.sizePages) images.delete(p);
  }
  return images;
}

export interface RepairTarget {
  readonly db: string;
  readonly pageSize: number;
  /** The LSN the database is at, with the write lock held. */
  readonly lsn: Lsn;
  /** Writes the images into the database file, reads them back, and releases the lock. */
  write(images: Map<number, Buffer>): Array<{ pgno: number; hash: string }>;
  release(): void;
}

/**
 * Takes the application's write lock on db and waits until the archive holds its last commit (a primary
 * must be capturing it), so that the database is at the archive's last LSN while we repair.
 */
export async function lockForRepair(db: string, archive: Archive, timeoutMs = 10_000): Promise<RepairTarget> {
  // Raw fds are opened before SQLite takes any lock and never closed: closing any fd of a file drops every
  // POSIX lock this process holds on it, our write lock included (DESIGN.md Capture 3). The process ends soon.
  let fds: { db: number; shm: number; wal: number };
  try {
    fds = { db: openSync(db, 'r+'), shm: openSync(`${db}-shm`, 'r'), wal: openSync(`${db}-wal`, 'r') };
  } catch (e) {
    throw ioError('open (with its -wal and -shm files; is a primary running on it?)', db, e);
  }
  const conn = new Database(db, { fileMustExist: true, timeout: timeoutMs });
  let locked = false;
  try {
    if (String(conn.pragma('journal_mode', { simple: true })).toLowerCase() !== 'wal')
      throw new RedoshipError('JOURNAL_MODE', `${db} is not in WAL mode: it is not a redoship primary`, 'repair a standby by seeding it again; repair runs on a primary');
    conn.prepare('BEGIN IMMEDIATE').run();
    locked = true;
    const pageSize = conn.pragma('page_size', { simple: true }) as number;
    const deadline = Date.now() + timeoutMs;
    let lsn: Lsn | null = null;
    while (lsn === null) {
      lsn = archivedUpToNow(fds, archive);
      if (lsn !== null) break;
      if (Date.now() > deadline)
        throw new RedoshipError('ARCHIVE_GAP', `the archive ${archive.dir} does not hold the last commit of ${db}`, 'start `redoship primary` on the database (it captures the WAL), then repair again');
      await new Promise((r) => setTimeout(r, 20));
    }
    const at = lsn;
    return {
      db,
      pageSize,
      lsn: at,
      write(images) {
        const fd = fds.db;
        const out: Array<{ pgno: number; hash: string }> = [];
        try {
          for (const [pgno, img] of [...images].sort((x, y) => x[0] - y[0])) {
            if (img.length !== pageSize) throw new RedoshipError('ASSERT', `page ${pgno} image is ${img.length} bytes`, 'this is a bug; please report it');
            writeSync(fd, img, 0, pageSize, (pgno - 1) * pageSize);
          }
          fsyncSync(fd);
          const back = Buffer.alloc(pageSize);
          for (const [pgno, img] of images) {
            readSync(fd, back, 0, pageSize, (pgno - 1) * pageSize);
            const h = pageHash(pgno, back);
            if (!h.equals(pageHash(pgno, img))) throw new RedoshipError('IO', `page ${pgno} of ${db} reads back different from what was written`, 'the storage is failing: move the database to sound storage');
            out.push({ pgno, hash: h.toString('hex') });
          }
        } catch (e) {
          throw e instanceof RedoshipError ? e : ioError('write pages of', db, e);
        } finally {
          conn.prepare('ROLLBACK').run();
          locked = false;
        }
        return out;
      },
      release() {
        if (locked) conn.prepare('ROLLBACK').run();
        locked = false;
        conn.close();
      },
    };
  } catch (e) {
    if (locked) conn.prepare('ROLLBACK').run();
    conn.close();
    throw e;
  }
}

/**
 * The archive's last LSN when it holds the database's last commit: its last record's WAL position is the
 * last commit frame in the WAL now (same salts), or the WAL holds no frame. Null when it is behind.
 */
function archivedUpToNow(fds: { shm: number; wal: number }, archive: Archive): Lsn | null {
  const tail = archive.tail();
  if (!tail) return null;
  const b = Buffer.alloc(WAL_INDEX_HEADER_BYTES);
  readSync(fds.shm, b, 0, WAL_INDEX_HEADER_BYTES, 0);
  const h = parseWalIndexHeader(b);
  const mx = h?.mxFrame ?? 0;
  if (mx === 0) return tail.lsn;
  const salts = [h!.salt1, h!.salt2];
  if (!tail.wal) return null;
  const hb = Buffer.alloc(WAL_HEADER_BYTES);
  readSync(fds.wal, hb, 0, WAL_HEADER_BYTES, 0);
  if (!parseWalHeader(hb)) return null;
  return tail.wal.salt1 === salts[0] && tail.wal.salt2 === salts[1] && tail.wal.commitFrame === mx ? tail.lsn : null;
}

/**
 * A standby's or primary's answer to a `page-images` control request (repair from ws://): the images of
 * args.pgnos at args.lsn from the archive at archiveDir, each with its page hash (hex) taken with
 * hashAlgorithm (page-hash.ts; a reply without it, from an older version, means sha256-128), base64 for JSON.
 */
export function pageImagesReply(archiveDir: string, args: Record<string, unknown>): { pages: Array<[number, string, string]>; lsn: string; hashAlgorithm: PageHashAlgorithm } {
  const pgnos = Array.isArray(args.pgnos) ? args.pgnos.filter((p): p is number => Number.isInteger(p) && (p as number) > 0) : [];
  if (pgnos.length === 0 || pgnos.length > 100_000) throw new RedoshipError('USAGE', 'page-images needs pgnos', 'this is a bug in repair');
  const a = Archive.open(archiveDir);
  if (args.databaseId !== a.identity.databaseId)
    throw new RedoshipError('WRONG_DATABASE', `this server keeps database ${a.identity.databaseId}, not ${String(args.databaseId)}`, 'repair from a standby or primary of the same database');
  const lsn = BigInt(String(args.lsn)) as Lsn;
  const last = a.tail()?.lsn ?? 0n;
  if (last < lsn) throw new RedoshipError('TARGET_UNREACHABLE', `this archive (${archiveDir}) holds up to LSN ${last}, not yet ${lsn}`, 'wait until it has received it, then repair again');
  const m = pageImagesAt(a, pgnos, lsn);
  return { lsn: String(lsn), hashAlgorithm: PAGE_HASH_ALGORITHM, pages: [...m].map(([p, img]) => [p, img.toString('base64'), pageHash(p, img).toString('hex')]) };
}
