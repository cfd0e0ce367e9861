/**
 * A consistent snapshot of the live database at one WAL position (DESIGN.md Capture 7), for a base or a
 * resync. The write lock is held only for a moment:
 *
 *   1. BEGIN IMMEDIATE on the spare connection: no commit can happen now, so mxFrame M is stable.
 *   2. Renew our read transaction: its snapshot is exactly M. It now caps backfill at <= M and blocks any WAL
 *      restart (or, on read slot 0, blocks backfill altogether).
 *   3. If the WAL holds frames not yet backfilled (nBackfill < M), read frames 1..M and keep the last image of
 *      each page: they override the database file. Frames 1..M are checked against the cumulative checksum
 *      the wal-index publishes for M, unless the caller (underLock) vouches that capture has itself verified
 *      exactly that chain, to exactly that checksum: then only frames nBackfill+1..M are read.
 *   4. Release the write lock. The application writes on.
 *   5. Later, at leisure: page p of the snapshot is its image from step 3, else page p of the database file.
 *      That file cannot change under us for such pages: a checkpoint only writes pages whose frames are
 *      <= our read mark <= M, and those all come from step 3.
 *
 * The snapshot stays valid until the read transaction is advanced (LiveDatabase.advanceRead).
 */
import { RedoshipError } from '../error/index.js';
import { WAL_FRAME_HEADER_BYTES, scanWalFrames, type WalChecksum } from '../sqlite/index.js';
import type { LiveDatabase } from './live-db.js';

/** Where capture continues after the snapshot: the WAL generation (salts) and the frame it covers. */
export interface CapturePosition {
  salt1: number;
  salt2: number;
  /** Last commit frame covered; 0 when the snapshot covers no frame of this generation. */
  frame: number;
  /** Cumulative checksum at `frame` (the WAL header's checksum when frame is 0), or null when no WAL header. */
  checksum: WalChecksum | null;
}

export interface Snapshot {
  readonly sizePages: number;
  readonly position: CapturePosition;
  /** Pages 1..sizePages in order. Buffers are reused between chunks: copy what you keep. */
  pages(): Generator<readonly [number, Uint8Array]>;
  /** Pages first..first+count-1 (within 1..sizePages) into `into`, count * pageSize bytes. */
  readPages(first: number, count: number, into: Buffer): void;
  /** Only the pages asked for (ascending, within 1..sizePages), read in runs. Buffers are reused: copy what you keep. */
  pagesAt(pgnos: readonly number[]): Generator<readonly [number, Uint8Array]>;
}

const PAGES_PER_READ = 256;

export interface SnapshotOptions {
  /**
   * 'capture' renews capture's own read transaction (a base or resync, written before capture moves on);
   * 'backup' pins the snapshot on a separate connection until unpin(), so capture can go on meanwhile.
   */
  readonly pin?: 'capture' | 'backup';
  /**
   * Runs while the write lock is held and the position is known (e.g. capture everything up to it). Returns
   * true only when capture has verified frames 1..position.frame of this WAL generation, ending at exactly
   * position.checksum: the snapshot then does not read and check them again (a level 1 backup's fixed cost).
   */
  readonly underLock?: (position: CapturePosition) => boolean | void;
}

export function takeSnapshot(live: LiveDatabase, lockTimeoutMs: number, opts: SnapshotOptions = {}): Snapshot {
  if (!live.tryWriteLock(lockTimeoutMs))
    throw new RedoshipError(
      'DATABASE_BUSY',
      `could not take the write lock of ${live.path} within ${lockTimeoutMs} ms to take a consistent snapshot`,
      'an application transaction or a RESTART/TRUNCATE checkpoint held it; try again, or raise --lock-timeout',
    );
  const overlay = new Map<number, Uint8Array>();
  let sizePages: number;
  let position: CapturePosition;
  try {
    if (opts.pin === 'backup') live.pinUnderWriteLock();
    else live.refreshReadUnderWriteLock();
    const idx = live.readWalIndex();
    if (!idx) throw new RedoshipError('WAL_CORRUPT', `the wal-index of ${live.path} is not consistent`, 'check that only SQLite writes the -shm file');
    const hdr = live.readWalHeader();
    const m = idx.mxFrame;
    if (m > 0) {
      if (!hdr || hdr.salt1 !== idx.salt1 || hdr.salt2 !== idx.salt2)
        throw walMismatch(live.path, 'the WAL header does not match the wal-index');
      if (hdr.pageSize !== live.pageSize) throw walMismatch(live.path, `WAL page size ${hdr.pageSize} != ${live.pageSize}`);
      sizePages = idx.sizePages;
      position = { salt1: idx.salt1, salt2: idx.salt2, frame: m, checksum: idx.frameChecksum };
    } else {
      sizePages = live.dbHeaderSizePages();
      position = hdr && hdr.salt1 === idx.salt1 && hdr.salt2 === idx.salt2
        ? { salt1: idx.salt1, salt2: idx.salt2, frame: 0, checksum: hdr.checksum }
        : { salt1: idx.salt1, salt2: idx.salt2, frame: 0, checksum: null };
    }
    const vouched = opts.underLock?.(position) === true;
    if (m > 0 && hdr) {
      if (vouched) {
        // Capture verified frames 1..M: their bytes cannot change while our read transaction holds M.
        if (idx.nBackfill < m) overlayFrames(live.readFrames(hdr.pageSize, idx.nBackfill + 1, m), idx.nBackfill + 1, m - idx.nBackfill, hdr.salt1, hdr.salt2, hdr.pageSize, overlay, live.path);
      } else {
        // Frames are needed only when not all of them are in the database file yet; the checksum chain is
        // checked either way, through frame M, against what SQLite published.
        const frames = live.readFrames(hdr.pageSize, 1, m);
        const scan = scanWalFrames(hdr, frames, 1, m, hdr.checksum);
        if (scan.endFrame !== m || scan.endChecksum.s0 !== idx.frameChecksum.s0 || scan.endChecksum.s1 !== idx.frameChecksum.s1)
          throw walMismatch(live.path, `frames 1..${m} do not verify against the wal-index (stopped at ${scan.endFrame})`);
        if (idx.nBackfill < m)
          for (const t of scan.transactions) for (const [pgno, page] of t.pages) overlay.set(pgno, Buffer.from(page));
      }
    }
  } catch (e) {
    if (opts.pin === 'backup') live.unpin();
    throw e;
  } finally {
    live.releaseWriteLock();
  }
  for (const p of overlay.keys()) if (p > sizePages) overlay.delete(p);
  const size = sizePages;
  const ps = live.pageSize;
  const readPages = (first: number, count: number, into: Buffer): void => {
    live.readDbPages(first, count, into);
    if (overlay.size === 0) return;
    for (let i = 0; i < count; i++) {
      const img = overlay.get(first + i);
      if (img) into.set(img, i * ps);
    }
  };
  return {
    sizePages: size,
    position,
    *pages() {
      const buf = Buffer.alloc(PAGES_PER_READ * live.pageSize);
      for (let first = 1; first <= size; first += PAGES_PER_READ) {
        const n = Math.min(PAGES_PER_READ, size - first + 1);
        const chunk = live.readDbPages(first, n, buf);
        for (let i = 0; i < n; i++) {
          const pgno = first + i;
          yield [pgno, overlay.get(pgno) ?? chunk.subarray(i * live.pageSize, (i + 1) * live.pageSize)] as const;
        }
      }
    },
    readPages,
    *pagesAt(pgnos) {
      const buf = Buffer.alloc(PAGES_PER_READ * ps);
      for (let i = 0; i < pgnos.length; ) {
        // A run of consecutive page numbers is one read.
        let n = 1;
        while (n < PAGES_PER_READ && i + n < pgnos.length && pgnos[i + n] === pgnos[i]! + n) n++;
        readPages(pgnos[i]!, n, buf);
        for (let k = 0; k < n; k++) yield [pgnos[i]! + k, buf.subarray(k * ps, (k + 1) * ps)] as const;
        i += n;
      }
    },
  };
}

/**
 * The last image of each page in frames first..first+count-1 (raw WAL frames, as read), into overlay. Only for frames
 * whose checksum chain capture has verified: this checks that each is a frame of this generation (salts),
 * not the chain again.
 */
function overlayFrames(frames: Buffer, first: number, count: number, salt1: number, salt2: number, pageSize: number, overlay: Map<number, Uint8Array>, path: string): void {
  const frameBytes = WAL_FRAME_HEADER_BYTES + pageSize;
  if (frames.length !== count * frameBytes) throw walMismatch(path, `the WAL ends inside frame ${first + Math.floor(frames.length / frameBytes)}, before frame ${first + count - 1}`);
  for (let off = 0; off < frames.length; off += frameBytes) {
    const pgno = frames.readUInt32BE(off);
    if (pgno === 0 || frames.readUInt32BE(off + 8) !== salt1 || frames.readUInt32BE(off + 12) !== salt2)
      throw walMismatch(path, `frame ${first + off / frameBytes} is not a frame of this WAL generation`);
    overlay.set(pgno, frames.subarray(off + WAL_FRAME_HEADER_BYTES, off + frameBytes));
  }
}

export function walMismatch(path: string, why: string): RedoshipError {
  return new RedoshipError(
    'WAL_CORRUPT',
    `the WAL of ${path} does not verify: ${why}`,
    'this happens if something other than SQLite writes the -wal/-shm files, or the disk is failing; redoship will resync on its next start',
  );
}
