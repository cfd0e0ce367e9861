/**
 * Capture: turns what SQLite published in the live WAL into archived redo records, and keeps the WAL bounded.
 *
 * The loop (poll), on every wake-up:
 *   1. Read the wal-index header (a consistent snapshot; DESIGN.md Capture 2). Its mxFrame bounds every read.
 *   2. If its salts are those of the generation we are in, read frames (shipped, mxFrame], check salts and the
 *      cumulative checksum from the last shipped commit, and group them into transactions.
 *      If its salts are new, the WAL was restarted: that is legitimate only when we had shipped every frame
 *      of the old generation that we had seen published (our read transaction made sure nothing more could be
 *      published and then erased behind us); capture continues at frame 1 of the new generation.
 *   3. Append one record per transaction to the archive, durably (one fdatasync for the batch).
 *   4. Advance the held read transaction, hand over hand: the new one is opened after shipping, so its mark is
 *      >= what was published before we shipped; backfill may then catch up to what is shipped, and a reader on
 *      slot 0 happens only when everything published was backfilled, hence shipped.
 *
 * The checkpoint cycle (DESIGN.md Capture 4) bounds the WAL when mxFrame passes checkpointFrames: with the
 * write lock held, ship the tail, checkpoint PASSIVE from the reading connection, take the next read
 * transaction, release the lock; the next application writer restarts the WAL.
 *
 * Continuity on start (Capture 5): the archive's last record says which WAL generation, commit frame and
 * cumulative checksum it came from. If the live WAL still has that frame with that checksum, capture goes on
 * from there. Otherwise the gap cannot be proven empty: a 'resync' record carries exactly the pages that
 * differ from the archived state (or a base, when most pages differ), and the break is recorded.
 */
import { RedoshipError } from '../error/index.js';
import {
  archivedPageHashes,
  type ArchiveWriter,
  type Lsn,
  type RedoRecord,
} from '../redo/index.js';
import { WAL_FRAME_HEADER_BYTES, pageHash, scanWalFrames, type WalIndexHeader } from '../sqlite/index.js';
import type { LiveDatabase } from './live-db.js';
import { takeSnapshot, walMismatch, type CapturePosition, type Snapshot } from './snapshot.js';

export interface CaptureOptions {
  /** Start a checkpoint cycle once the WAL holds this many frames. Default 1000 (SQLite's autocheckpoint). */
  readonly checkpointFrames: number;
  /**
   * How long a checkpoint cycle waits for the write lock before trying again at the next wake-up. Default 0:
   * waiting would stop capture for that long (the wait is synchronous), and the next wake-up is ~2 ms away.
   */
  readonly checkpointLockTimeoutMs: number;
  /** How long a base or resync waits for the write lock before giving up. Default 10 s. */
  readonly snapshotLockTimeoutMs: number;
  /** Most WAL bytes read and archived in one batch (four batches a turn of the event loop). Default 4 MiB. */
  readonly maxBatchBytes: number;
}

export const DEFAULT_CAPTURE_OPTIONS: CaptureOptions = {
  checkpointFrames: 1000,
  checkpointLockTimeoutMs: 0,
  snapshotLockTimeoutMs: 10_000,
  maxBatchBytes: 4 * 1024 * 1024,
};

export interface CaptureStats {
  transactions: number;
  pages: number;
  bytes: number;
  batches: number;
  checkpoints: number;
  checkpointsBusy: number;
  /** Since when checkpoint cycles have failed to take the write lock (ms epoch), or 0. */
  checkpointBlockedSinceMs: number;
  walGenerations: number;
  lastMxFrame: number;
  /** Last commit frame captured, in the current WAL generation. */
  capturedFrame: number;
  lastCaptureMs: number;
  /** What start() did: 'base', 'continued', or 'resync'. */
  start: string;
}

export type CaptureEvent =
  /**
   * Records [firstLsn, lastLsn] are durable in the archive (records is empty for a streamed base or resync). Their page
   * images are views of the buffer capture reads the WAL into, which the next batch overwrites: valid during
   * the event only (copy what must outlive it; the redo server's ring keeps the framed copies the archive wrote).
   */
  | { type: 'archived'; firstLsn: Lsn; lastLsn: Lsn; records: readonly RedoRecord[]; durableAtUs: bigint }
  /**
   * Records are written to the archive and about to be synced: a primary may send them to its standbys now, as
   * unconfirmed redo (transport/protocol.ts, confirmation). 'archived' follows once they are durable, or
   * 'unwritten' when the sync failed; same lifetime of the records as for 'archived'.
   */
  | { type: 'written'; records: readonly RedoRecord[] }
  /** The sync after 'written' failed: the archive was cut back to lastLsn, and the records will get those LSNs again. */
  | { type: 'unwritten'; lastLsn: Lsn }
  | { type: 'warning'; message: string }
  | { type: 'info'; message: string };

/** Most uncaptured frames a checkpoint cycle may capture while it holds the write lock. */
const MAX_TAIL_UNDER_LOCK_FRAMES = 256;

export function nowUs(): bigint {
  return BigInt(Math.round((performance.timeOrigin + performance.now()) * 1000));
}

export class Capturer {
  private pos!: CapturePosition;
  /** mxFrame last seen published in the current generation. */
  private lastSeenMx = 0;
  readonly stats: CaptureStats = {
    transactions: 0,
    pages: 0,
    bytes: 0,
    batches: 0,
    checkpoints: 0,
    checkpointsBusy: 0,
    checkpointBlockedSinceMs: 0,
    walGenerations: 0,
    lastMxFrame: 0,
    capturedFrame: 0,
    lastCaptureMs: 0,
    start: '',
  };

  constructor(
    private readonly live: LiveDatabase,
    private readonly archive: ArchiveWriter,
    private readonly opts: CaptureOptions,
    private readonly emit: (e: CaptureEvent) => void = () => {},
  ) {}

  get lastLsn(): Lsn {
    return this.archive.lastLsn;
  }

  /** True when capture stands exactly at this WAL position (everything up to it archived). */
  /**
   * True when capture has verified this WAL generation's frames 1..p.frame and its checksum chain ends at
   * exactly p.checksum there (what a snapshot would otherwise check again).
   */
  hasVerified(p: CapturePosition): boolean {
    const c = this.pos.checksum;
    return (
      p.frame > 0 && this.pos.salt1 === p.salt1 && this.pos.salt2 === p.salt2 && this.pos.frame === p.frame &&
      c !== null && p.checksum !== null && c.s0 === p.checksum.s0 && c.s1 === p.checksum.s1
    );
  }

  isAt(p: CapturePosition): boolean {
    if (this.pos.salt1 === p.salt1 && this.pos.salt2 === p.salt2) return this.pos.frame === p.frame;
    // A new generation with no frame yet: the database file holds everything, which is everything captured
    // of the generation before (a restart needs all of it backfilled, and our read lock let nothing by).
    return p.frame === 0 && this.pos.frame >= this.lastSeenMx;
  }

  /** Takes the first base, or proves continuity with the archive, or resyncs. */
  start(): void {
    const tail = this.archive.tail;
    if (!tail) {
      this.writeBase('first start: base of the whole database');
      this.stats.start = 'base';
      return;
    }
    // Proven and caught up under the write lock: no commit can happen meanwhile, and so no WAL restart
    // either. Without it, a reader that landed on read slot 0 (everything backfilled) would not keep a
    // writer from restarting the WAL over frames not captured yet.
    const locked = this.live.tryWriteLock(this.opts.snapshotLockTimeoutMs);
    try {
      if (locked) this.live.refreshReadUnderWriteLock();
      const proven = this.proveContinuity();
      if (proven) {
        this.pos = proven.position;
        this.lastSeenMx = proven.mxFrame; // published when proven: a restart before it is captured is a break
        this.stats.start = 'continued';
        if (locked) this.poll(false);
        this.emit({ type: 'info', message: `continuing the archive after LSN ${tail.lsn} at WAL frame ${proven.position.frame}` });
        return;
      }
    } finally {
      if (locked) this.live.releaseWriteLock();
    }
    this.resync(`the WAL no longer holds the last archived commit: ${this.unproven || 'its frame differs'}`);
    this.stats.start = 'resync';
  }

  /** The WAL still holds the archive's last commit frame, with the same cumulative checksum? */
  private proveContinuity(): { position: CapturePosition; mxFrame: number } | null {
    const p = this.proveAt();
    const idx = this.live.readWalIndex();
    return p && idx ? { position: p, mxFrame: idx.mxFrame } : null;
  }

  /** Why the last proveAt() failed, for the resync's note. */
  private unproven = '';

  private proveAt(): CapturePosition | null {
    const w = this.archive.tail?.wal;
    const fail = (why: string) => ((this.unproven = why), null);
    if (!w) return fail('the last archived record names no WAL position');
    const idx = this.live.readWalIndex();
    const hdr = this.live.readWalHeader();
    if (!idx || !hdr) return fail(!hdr ? 'the WAL has no header' : 'the wal-index is not readable');
    if (hdr.salt1 !== w.salt1 || hdr.salt2 !== w.salt2 || idx.salt1 !== w.salt1 || idx.salt2 !== w.salt2)
      return fail(`the WAL was restarted (salts ${hdr.salt1 >>> 0}/${hdr.salt2 >>> 0}, archived ${w.salt1 >>> 0}/${w.salt2 >>> 0}; wal-index mxFrame ${idx.mxFrame}, backfilled ${idx.nBackfill})`);
    if (idx.mxFrame < w.commitFrame) return fail(`the WAL holds ${idx.mxFrame} frames, the archive's last commit is frame ${w.commitFrame}`);
    if (w.commitFrame === 0) {
      // The archive ended at a snapshot of an empty generation: continuity holds iff it is still this one
      // and the header checksum matches.
      if (hdr.checksum.s0 !== w.s0 || hdr.checksum.s1 !== w.s1) return fail('the WAL header checksum differs from the archived one');
      return { salt1: w.salt1, salt2: w.salt2, frame: 0, checksum: hdr.checksum };
    }
    const f = this.live.readFrames(hdr.pageSize, w.commitFrame, w.commitFrame);
    if (f.length < WAL_FRAME_HEADER_BYTES) return fail(`frame ${w.commitFrame} could not be read`);
    if (f.readUInt32BE(4) === 0 || f.readUInt32BE(8) !== w.salt1 || f.readUInt32BE(12) !== w.salt2) return fail(`frame ${w.commitFrame} is not the archived commit frame`);
    if (f.readUInt32BE(16) !== w.s0 || f.readUInt32BE(20) !== w.s1) return fail(`frame ${w.commitFrame} has another checksum than archived`);
    return { salt1: w.salt1, salt2: w.salt2, frame: w.commitFrame, checksum: { s0: w.s0, s1: w.s1 } };
  }

  private walPositionOf(p: CapturePosition) {
    return p.checksum
      ? { salt1: p.salt1, salt2: p.salt2, commitFrame: p.frame, s0: p.checksum.s0, s1: p.checksum.s1 }
      : null;
  }

  private writeBase(note: string): void {
    this.live.ensureWalHeader(this.opts.snapshotLockTimeoutMs);
    const snap = takeSnapshot(this.live, this.opts.snapshotLockTimeoutMs);
    this.archiveBase(snap, note, false);
    this.afterSnapshot(snap);
  }

  /** Appends a base of the snapshot as the next LSN (streamed: a base can be the whole database). */
  private archiveBase(snap: Snapshot, note: string, continuityBreak: boolean): void {
    const lsn = (this.archive.lastLsn + 1n) as Lsn;
    this.archive.appendStream(
      { kind: 'base', lsn, commitTimeUs: nowUs(), sizePages: snap.sizePages, wal: this.walPositionOf(snap.position), note, continuityBreak },
      snap.pages(),
    );
    this.emit({ type: 'archived', firstLsn: lsn, lastLsn: lsn, records: [], durableAtUs: nowUs() });
    this.emit({ type: continuityBreak ? 'warning' : 'info', message: `${continuityBreak ? 'break in continuity recorded' : 'archived a base'} as LSN ${lsn}: ${note}` });
  }

  private afterSnapshot(snap: Snapshot): void {
    this.pos = snap.position;
    this.lastSeenMx = snap.position.frame;
    this.live.advanceRead();
  }

  /**
   * Records a break: a resync record with exactly the pages that differ from the archived state at the
   * archive's last LSN (a base when most pages differ). Never guesses which transactions happened between.
   */
  resync(reason: string): void {
    this.live.ensureWalHeader(this.opts.snapshotLockTimeoutMs);
    const snap = takeSnapshot(this.live, this.opts.snapshotLockTimeoutMs);
    const archived = archivedPageHashes(this.archive.archive, this.archive.lastLsn, pageHash);
    const differ: number[] = [];
    for (const [pgno, page] of snap.pages()) {
      const h = archived.hashes[pgno - 1];
      if (!h || !h.equals(pageHash(pgno, page))) differ.push(pgno);
    }
    if (differ.length * 2 > snap.sizePages) {
      this.archiveBase(snap, `resync (${reason}): ${differ.length} of ${snap.sizePages} pages differ, so a full base`, true);
    } else {
      const lsn = (this.archive.lastLsn + 1n) as Lsn;
      const want = new Set(differ);
      const note = `resync (${reason}): ${differ.length} pages differ from LSN ${this.archive.lastLsn}; size ${archived.sizePages} -> ${snap.sizePages} pages`;
      // Streamed like a base, part by part: up to half the database may differ, too much to hold at once.
      this.archive.appendStream(
        { kind: 'resync', lsn, commitTimeUs: nowUs(), sizePages: snap.sizePages, wal: this.walPositionOf(snap.position), note, continuityBreak: true },
        (function* () {
          for (const [pgno, page] of snap.pages()) if (want.has(pgno)) yield [pgno, page] as const;
        })(),
      );
      this.emit({ type: 'archived', firstLsn: lsn, lastLsn: lsn, records: [], durableAtUs: nowUs() });
      this.emit({ type: 'warning', message: `break in continuity recorded as LSN ${lsn}: ${note}` });
    }
    this.afterSnapshot(snap);
  }

  /**
   * Captures everything published so far. Returns the number of transactions archived. With advance=false
   * the read transaction is kept (the caller holds the write lock and renews it itself).
   */
  poll(advance = true, maxBatches = Infinity): number {
    let total = 0;
    for (let batches = 0; batches < maxBatches; batches++) {
      const idx = this.live.readWalIndex();
      if (!idx) break; // the -shm is being rewritten right now; the next wake-up reads it again
      const n = this.captureFrom(idx);
      if (n <= 0) break;
      total += n;
      if (this.pos.frame >= idx.mxFrame) break;
    }
    // Advanced once, after shipping: the new read transaction's mark is then >= what was published when
    // this poll began, and a backlog is never left unprotected between batches.
    if (advance && total > 0) this.live.advanceRead();
    return total;
  }

  /** Published frames of the current generation not captured yet (read from the wal-index now). */
  lagFrames(): number {
    const idx = this.live.readWalIndex();
    if (!idx) return 0;
    if (idx.salt1 !== this.pos.salt1 || idx.salt2 !== this.pos.salt2) return idx.mxFrame;
    return Math.max(0, idx.mxFrame - this.pos.frame);
  }

  /** Whether capture stands at the end of what SQLite has published (nothing left to capture now). */
  caughtUp(): boolean {
    const idx = this.live.readWalIndex();
    return !!idx && idx.salt1 === this.pos.salt1 && idx.salt2 === this.pos.salt2 && idx.mxFrame === this.pos.frame;
  }

  /** One batch. Returns transactions archived, 0 when nothing new, -1 when the WAL is mid-restart. */
  private captureFrom(idx: WalIndexHeader): number {
    this.stats.lastMxFrame = idx.mxFrame;
    if (idx.salt1 !== this.pos.salt1 || idx.salt2 !== this.pos.salt2) {
      if (idx.mxFrame === 0) return 0; // restarted, nothing committed in the new generation yet
      if (this.pos.frame < this.lastSeenMx)
        throw walMismatch(this.live.path, `the WAL restarted before frames ${this.pos.frame + 1}..${this.lastSeenMx} were captured`);
      const hdr = this.live.readWalHeader();
      if (!hdr || hdr.salt1 !== idx.salt1 || hdr.salt2 !== idx.salt2) return -1;
      this.pos = { salt1: idx.salt1, salt2: idx.salt2, frame: 0, checksum: hdr.checksum };
      this.lastSeenMx = 0;
      this.stats.walGenerations++;
    }
    this.lastSeenMx = Math.max(this.lastSeenMx, idx.mxFrame);
    if (idx.mxFrame <= this.pos.frame) {
      if (idx.mxFrame < this.pos.frame)
        throw walMismatch(this.live.path, `the wal-index went back from frame ${this.pos.frame} to ${idx.mxFrame} in one generation`);
      return 0;
    }
    const hdr = this.live.readWalHeader();
    if (!hdr || hdr.salt1 !== idx.salt1 || hdr.salt2 !== idx.salt2) return -1;
    if (!this.pos.checksum) this.pos.checksum = hdr.checksum;
    const frameBytes = WAL_FRAME_HEADER_BYTES + hdr.pageSize;
    const first = this.pos.frame + 1;
    let last = Math.min(idx.mxFrame, first - 1 + Math.max(1, Math.floor(this.opts.maxBatchBytes / frameBytes)));
    for (;;) {
      // Into a buffer read into again by the next batch: the records below live only through this batch (see 'archived').
      const frames = this.live.readFrames(hdr.pageSize, first, last, true);
      const scan = scanWalFrames(hdr, frames, first, last, this.pos.checksum);
      if (scan.stoppedAt && last === idx.mxFrame)
        throw walMismatch(this.live.path, `frame ${scan.stoppedAt.frameNo} is ${scan.stoppedAt.reason} though published (mxFrame ${idx.mxFrame})`);
      if (scan.transactions.length === 0) {
        if (last === idx.mxFrame) throw walMismatch(this.live.path, `no commit frame in ${first}..${last}`);
        last = Math.min(idx.mxFrame, first - 1 + (last - first + 1) * 2); // one transaction larger than a batch
        continue;
      }
      const t0 = nowUs();
      let lsn = this.archive.lastLsn;
      const records: RedoRecord[] = scan.transactions.map((t) => ({
        kind: 'txn' as const,
        lsn: (lsn = (lsn + 1n) as Lsn),
        commitTimeUs: t0,
        sizePages: t.sizePages,
        pages: t.pages,
        wal: { salt1: hdr.salt1, salt2: hdr.salt2, commitFrame: t.commitFrame, s0: t.checksum.s0, s1: t.checksum.s1 },
      }));
      try {
        this.archive.append(records, (written) => this.emit({ type: 'written', records: written }));
      } catch (e) {
        this.emit({ type: 'unwritten', lastLsn: this.archive.lastLsn });
        throw e;
      }
      this.pos = { salt1: hdr.salt1, salt2: hdr.salt2, frame: scan.endFrame, checksum: scan.endChecksum };
      this.stats.capturedFrame = scan.endFrame;
      const durableAtUs = nowUs();
      this.stats.transactions += records.length;
      this.stats.batches++;
      this.stats.lastCaptureMs = Date.now();
      for (const r of records) this.stats.pages += r.pages.length;
      this.stats.bytes += (scan.endFrame - first + 1) * frameBytes;
      this.emit({ type: 'archived', firstLsn: records[0]!.lsn, lastLsn: records[records.length - 1]!.lsn, records, durableAtUs });
      return records.length;
    }
  }

  /** The WAL generation and mxFrame at the last complete checkpoint: no new cycle until checkpointFrames more. */
  private backfilledAt: { generation: string; mxFrame: number } | null = null;
  private lastCheckpointTryMs = 0;
  private lastBlockedWarningMs = 0;

  /** Runs a checkpoint cycle if the WAL has grown past checkpointFrames. Returns true when one ran. */
  maybeCheckpoint(): boolean {
    if (this.stats.lastMxFrame < this.opts.checkpointFrames) return false;
    const b = this.backfilledAt;
    if (b && b.generation === `${this.pos.salt1}:${this.pos.salt2}` && this.stats.lastMxFrame - b.mxFrame < this.opts.checkpointFrames)
      return false;
    // A cycle that ran but could not backfill everything (application readers cap it) is not rerun at once.
    if (Date.now() - this.lastCheckpointTryMs < 50) return false;
    // The cycle captures the tail while holding the application's write lock: only when the tail is short,
    // so the lock is held for a moment (DESIGN.md Capture 4), never while capture works through a backlog.
    if (this.lagFrames() > MAX_TAIL_UNDER_LOCK_FRAMES) return false;
    const ran = this.checkpoint();
    if (ran) this.lastCheckpointTryMs = Date.now();
    return ran;
  }

  /** The checkpoint cycle (see the file comment). Returns false when the write lock was not to be had. */
  checkpoint(): boolean {
    if (!this.live.tryWriteLock(this.opts.checkpointLockTimeoutMs)) {
      this.stats.checkpointsBusy++;
      const now = Date.now();
      if (!this.stats.checkpointBlockedSinceMs) this.stats.checkpointBlockedSinceMs = now;
      else if (now - this.stats.checkpointBlockedSinceMs > 10_000 && now - this.lastBlockedWarningMs > 10_000) {
        this.lastBlockedWarningMs = now;
        this.emit({
          type: 'warning',
          message: `could not take the write lock to checkpoint for ${Math.round((now - this.stats.checkpointBlockedSinceMs) / 1000)} s; the WAL grows (${this.stats.lastMxFrame} frames). An application RESTART/TRUNCATE checkpoint or a long write transaction holds it.`,
        });
      }
      return false;
    }
    try {
      this.poll(false);
      if (!this.caughtUp()) return false; // never backfill (and so let the WAL restart) past what is archived
      const r = this.live.checkpointUnderWriteLock();
      if (r.busy === 0 && r.log === r.checkpointed)
        this.backfilledAt = { generation: `${this.pos.salt1}:${this.pos.salt2}`, mxFrame: r.log };
    } finally {
      this.live.releaseWriteLock();
    }
    this.stats.checkpoints++;
    this.stats.checkpointBlockedSinceMs = 0;
    return true;
  }

  /** Captures the committed tail under the write lock, so nothing published is left behind at shutdown. */
  drain(): void {
    if (this.live.tryWriteLock(2000)) {
      try {
        this.poll(false);
      } finally {
        this.live.releaseWriteLock();
      }
    } else {
      this.poll();
    }
  }
}

export function captureError(e: unknown): e is RedoshipError {
  return e instanceof RedoshipError && e.code === 'WAL_CORRUPT';
}
