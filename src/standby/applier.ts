/**
 * The applier: keeps the standby database, an ordinary SQLite file in rollback-journal mode that any client
 * may read, equal to the primary at the applied LSN (DESIGN.md Apply). One batch of records at a time:
 *
 *   1. BEGIN EXCLUSIVE on our connection: SQLite's own locks keep readers out for the batch (they wait).
 *   2. Write `<db>-journal`: the original image of page 1 and of every page at or below the original size
 *      that the batch overwrites or truncates away (journal.ts); fsync it and the directory.
 *   3. Write the new images through our raw fd; page 1 gets header bytes 18-19 = 1 (rollback journal mode),
 *      24-27 (change counter) +1 and 92-95 equal to it, 28-31 the size; cut or extend the file; fsync.
 *   4. Delete the journal and fsync the directory: the commit point.
 *   5. COMMIT, then record the applied LSN in the state file.
 *
 * A crash before 4 leaves a hot journal; SQLite (any reader, or our connection at the next start) rolls
 * the file back to exactly the old image. A crash after 4 and before 5 re-applies the batch at the next
 * start: page images are idempotent. Readers notice the new state through the change counter.
 *
 * The raw fd of the database is opened once and never closed (closing any fd of the file would drop our
 * connection's POSIX locks: DESIGN.md Capture 3 applies here too).
 */
import Database from 'better-sqlite3';
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, fsyncSync, ftruncateSync, fstatSync, openSync, readSync, realpathSync, renameSync, unlinkSync, writeFileSync, writeSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { RedoshipError, ioError } from '../error/index.js';
import { fsyncDir, restoreFromArchive, type Archive, type Lsn, type RecordPart, type RedoRecord } from '../redo/index.js';
import { DB_HEADER_BYTES, JOURNAL_SECTOR_SIZE, journalHeader, journalRecordBytes, parseDbHeader, putJournalRecord } from '../sqlite/index.js';

export const STANDBY_STATE_FILE = 'standby.state.json';

/** Original pages read and written to the journal per write (1 MiB of 4 KiB pages). */
const JOURNAL_RUN_PAGES = 256;

/*
 * standby.state.json: what the applier has applied. It is written twice per batch:
 *   before the commit point: { ...as before, pending: { lsn, commitTimeUs, changeCounter } }   (durable)
 *   after it:                { appliedLsn: lsn, ..., changeCounter }
 * At open, the database's change counter says which is true: the old counter means the batch rolled back
 * (or never started), the pending counter means it committed. Any other counter means someone else wrote.
 */
interface StandbyState {
  readonly db: string;
  readonly appliedLsn: string;
  readonly appliedCommitTimeUs: string;
  /** The change counter the applier last wrote: anything else means another writer touched the file. */
  readonly changeCounter: number;
  readonly pending?: { readonly lsn: string; readonly commitTimeUs: string; readonly changeCounter: number };
  readonly updatedAt: string;
}

export class Applier {
  private readonly fd: number;
  private readonly conn: Database.Database;
  readonly pageSize: number;
  appliedLsn: Lsn;
  appliedCommitTimeUs: bigint;
  private changeCounter: number;
  private sizePages: number;
  batches = 0;
  pagesWritten = 0;
  lastBatchMs = 0;
  maxBatchMs = 0;
  lastBatchPages = 0;

  private constructor(
    readonly db: string,
    private readonly archive: Archive,
    stateRead: StandbyState,
  ) {
    let state = stateRead;
    this.pageSize = archive.identity.pageSize;
    // Opening read-write and reading rolls back a hot journal left by a crash, before we touch anything.
    this.conn = new Database(db, { fileMustExist: true, timeout: 10_000 });
    this.conn.pragma('journal_mode = DELETE');
    this.conn.prepare('SELECT count(*) FROM sqlite_schema').get();
    try {
      this.fd = openSync(db, 'r+');
    } catch (e) {
      throw ioError('open the standby database', db, e);
    }
    const h = this.header();
    if (h.pageSize !== this.pageSize)
      throw new RedoshipError('WRONG_DATABASE', `${db} has pages of ${h.pageSize} bytes; the archive has ${this.pageSize}`, 'give the standby a new --db path; it is seeded from the archive');
    if (state.pending && h.changeCounter === state.pending.changeCounter && h.changeCounter !== state.changeCounter) {
      // The last batch committed; the process stopped before recording it.
      state = { ...state, appliedLsn: state.pending.lsn, appliedCommitTimeUs: state.pending.commitTimeUs, changeCounter: state.pending.changeCounter };
    }
    this.appliedLsn = BigInt(state.appliedLsn) as Lsn;
    this.appliedCommitTimeUs = BigInt(state.appliedCommitTimeUs);
    if (h.changeCounter !== state.changeCounter)
      throw new RedoshipError(
        'WRONG_DATABASE',
        `${db} was changed by another writer (change counter ${h.changeCounter}, the applier last wrote ${state.changeCounter}); it is no longer a copy of the primary`,
        'move it away and start the standby again: it seeds a new copy from its archive',
      );
    this.changeCounter = h.changeCounter;
    this.sizePages = Math.floor(fstatSync(this.fd).size / this.pageSize);
  }

  private header() {
    const b = Buffer.alloc(DB_HEADER_BYTES);
    readSync(this.fd, b, 0, DB_HEADER_BYTES, 0);
    const h = parseDbHeader(b);
    if (!h) throw new RedoshipError('NOT_A_DATABASE', `${this.db} is not a SQLite database`, 'give the standby a new --db path');
    return h;
  }

  private static statePath(archive: Archive): string {
    return join(archive.dir, STANDBY_STATE_FILE);
  }

  static readState(archive: Archive): StandbyState | null {
    const p = Applier.statePath(archive);
    if (!existsSync(p)) return null;
    try {
      return JSON.parse(readFileSync(p, 'utf8')) as StandbyState;
    } catch (e) {
      throw new RedoshipError('ARCHIVE_CORRUPT', `${p} is not valid JSON`, 'move the standby database away and remove that file: the standby seeds again', { cause: e });
    }
  }

  private static writeState(archive: Archive, s: StandbyState, durable = false): void {
    const p = Applier.statePath(archive);
    writeFileSync(`${p}.tmp`, JSON.stringify(s, null, 2), durable ? { flush: true } : {});
    renameSync(`${p}.tmp`, p);
    if (durable) fsyncDir(archive.dir);
  }

  /**
   * Opens the standby database that this archive's applier keeps. Returns null when there is none yet (it
   * must be seeded). Refuses a file that is not this archive's standby.
   */
  static open(db: string, archive: Archive): Applier | null {
    const state = Applier.readState(archive);
    // No database (never seeded, removed by the operator, or a seed cut short before its rename): seed again.
    if (!existsSync(db)) return null;
    const real = realpathSync(db);
    if (!state || state.db !== real)
      throw new RedoshipError(
        'TARGET_EXISTS',
        `${db} exists but is not the standby database of ${archive.dir}`,
        'give --db a path that does not exist yet: the standby seeds it from the archive',
      );
    return new Applier(real, archive, state);
  }

  /** Builds the standby database offline from the archive up to lsn (no journal needed), then opens it. */
  static seed(db: string, archive: Archive, lsn: Lsn): Applier {
    let counter = 1;
    const r = restoreFromArchive({
      archive,
      to: db,
      untilLsn: lsn,
      beforeRename: (fd) => {
        const p1 = Buffer.alloc(DB_HEADER_BYTES);
        readSync(fd, p1, 0, DB_HEADER_BYTES, 0);
        counter = ((p1.readUInt32BE(24) + 1) >>> 0) || 1;
        patchHeader(p1, counter, null);
        writeSync(fd, p1, 0, DB_HEADER_BYTES, 0);
      },
    });
    Applier.writeState(archive, {
      db: realpathSync(db),
      appliedLsn: String(r.lsn),
      appliedCommitTimeUs: String(r.commitTimeUs),
      changeCounter: counter,
      updatedAt: new Date().toISOString(),
    });
    return Applier.open(db, archive)!;
  }

  /**
   * Takes an existing rollback-journal database as this archive's standby database at lsn (a demoted or
   * reinstated primary: the caller has made it equal to the primary's state at lsn), then opens it.
   */
  static adopt(db: string, archive: Archive, lsn: Lsn, commitTimeUs: bigint): Applier {
    const fd = openSync(db, 'r');
    const p1 = Buffer.alloc(DB_HEADER_BYTES);
    try {
      readSync(fd, p1, 0, DB_HEADER_BYTES, 0);
    } finally {
      closeSync(fd);
    }
    const h = parseDbHeader(p1);
    if (!h) throw new RedoshipError('NOT_A_DATABASE', `${db} is not a SQLite database`, 'check the --db path');
    Applier.writeState(
      archive,
      { db: realpathSync(db), appliedLsn: String(lsn), appliedCommitTimeUs: String(commitTimeUs), changeCounter: h.changeCounter, updatedAt: new Date().toISOString() },
      true,
    );
    return Applier.open(db, archive)!;
  }

  /** Applies records (consecutive, after appliedLsn) as one atomic batch. */
  apply(records: readonly RedoRecord[]): void {
    if (records.length === 0) return;
    if (records[0]!.lsn !== this.appliedLsn + 1n)
      throw new Error(`assert: applying LSN ${records[0]!.lsn} after ${this.appliedLsn}`);
    const finalImages = new Map<number, Uint8Array>();
    let finalSize = this.sizePages;
    for (const r of records) {
      if (r.kind === 'base') finalImages.clear(); // a base replaces everything before it
      for (const [pgno, page] of r.pages) finalImages.set(pgno, page);
      finalSize = r.sizePages;
      for (const p of finalImages.keys()) if (p > finalSize) finalImages.delete(p);
    }
    this.commitBatch(records[records.length - 1]!, finalSize, finalImages.keys(), (write) => {
      for (const [pgno, page] of finalImages) write(pgno, page);
    });
  }

  /**
   * Applies one record too large to hold in memory (a base or a resync of much of the database) as its own
   * atomic batch, reading its pages from the archive twice, one part at a time: once for their numbers (the
   * journal must hold the originals before any page is written), once to write them. `parts` yields the
   * record's parts in order each time it is called.
   */
  applyStreamed(meta: Omit<RedoRecord, 'pages'>, parts: () => Iterable<RecordPart>): void {
    if (meta.lsn !== this.appliedLsn + 1n) throw new Error(`assert: applying LSN ${meta.lsn} after ${this.appliedLsn}`);
    const pageSize = this.pageSize;
    const pgnos = new Set<number>();
    for (const p of parts()) for (const pgno of p.pgnos) if (pgno <= meta.sizePages) pgnos.add(pgno);
    this.commitBatch(meta, meta.sizePages, pgnos, (write) => {
      for (const p of parts()) {
        for (let i = 0; i < p.pgnos.length; i++) {
          const pgno = p.pgnos[i]!;
          if (pgno <= meta.sizePages) write(pgno, p.pageData.subarray(i * pageSize, (i + 1) * pageSize));
        }
      }
    });
  }

  /**
   * The batch protocol of the file comment (steps 1-5) for a batch that leaves the file finalSize pages long
   * with new images of the pages in `written` (each at most finalSize), which writePages hands to `write`,
   * each page once, in any order. Only page numbers are held in memory; the originals go to the journal in
   * runs, and the images come from writePages as it goes.
   */
  private commitBatch(
    last: { readonly lsn: Lsn; readonly commitTimeUs: bigint },
    finalSize: number,
    written: Iterable<number>,
    writePages: (write: (pgno: number, image: Uint8Array) => void) => void,
  ): void {
    const pageSize = this.pageSize;
    const t0 = performance.now();
    this.conn.prepare('BEGIN EXCLUSIVE').run();
    let committed = false;
    let pages = 0;
    const journal = `${this.db}-journal`;
    try {
      const h = this.header();
      if (h.changeCounter !== this.changeCounter)
        throw new RedoshipError('WRONG_DATABASE', `${this.db} was changed by another writer (change counter ${h.changeCounter}, expected ${this.changeCounter})`, 'move it away and start the standby again: it seeds a new copy');
      const origSize = Math.floor(fstatSync(this.fd).size / pageSize);
      // Originals: page 1 always (its header changes), every page the batch overwrites at or below the
      // original size, and every page the batch cuts away.
      const want = new Set<number>([1]);
      for (const p of written) if (p <= origSize) want.add(p);
      for (let p = finalSize + 1; p <= origSize; p++) want.add(p);
      const originals = Uint32Array.from(want).sort();
      const page1Original = Buffer.alloc(pageSize);
      readSync(this.fd, page1Original, 0, pageSize, 0);
      this.writeJournal(journal, origSize, originals);
      fsyncDir(dirname(this.db));

      const counter = (this.changeCounter + 1) >>> 0 || 1;
      let page1Written = false;
      writePages((pgno, image) => {
        if (pgno === 1) {
          const page1 = Buffer.from(image.subarray(0, pageSize));
          patchHeader(page1, counter, finalSize);
          writeSync(this.fd, page1, 0, pageSize, 0);
          page1Written = true;
        } else writeSync(this.fd, image, 0, pageSize, (pgno - 1) * pageSize);
        pages++;
      });
      if (!page1Written) {
        patchHeader(page1Original, counter, finalSize);
        writeSync(this.fd, page1Original, 0, pageSize, 0);
        pages++;
      }
      ftruncateSync(this.fd, finalSize * pageSize);
      fsyncSync(this.fd);
      crashPoint('apply-before-commit', last.lsn);
      Applier.writeState(
        this.archive,
        {
          db: this.db,
          appliedLsn: String(this.appliedLsn),
          appliedCommitTimeUs: String(this.appliedCommitTimeUs),
          changeCounter: this.changeCounter,
          pending: { lsn: String(last.lsn), commitTimeUs: String(last.commitTimeUs), changeCounter: counter },
          updatedAt: new Date().toISOString(),
        },
        true,
      );
      crashPoint('apply-pending-recorded', last.lsn);
      unlinkSync(journal);
      committed = true; // the commit point: what follows may fail without undoing it
      this.changeCounter = counter;
      this.sizePages = finalSize;
      fsyncDir(dirname(this.db));
      crashPoint('apply-after-commit', last.lsn);
    } catch (e) {
      // Before the commit point the journal stays: if pages were written, SQLite rolls them back (any reader,
      // or our next BEGIN). After it, the batch stands and is applied again (idempotently) by the retry.
      throw e instanceof RedoshipError ? e : ioError('apply redo to', this.db, e);
    } finally {
      this.conn.prepare(committed ? 'COMMIT' : 'ROLLBACK').run();
    }
    this.appliedLsn = last.lsn;
    this.appliedCommitTimeUs = last.commitTimeUs;
    this.batches++;
    this.pagesWritten += pages;
    this.lastBatchMs = performance.now() - t0;
    this.maxBatchMs = Math.max(this.maxBatchMs, this.lastBatchMs);
    this.lastBatchPages = pages;
    Applier.writeState(this.archive, {
      db: this.db,
      appliedLsn: String(last.lsn),
      appliedCommitTimeUs: String(last.commitTimeUs),
      changeCounter: this.changeCounter,
      updatedAt: new Date().toISOString(),
    });
  }

  /**
   * Writes `<db>-journal` with the original images of the pages `originals` (ascending) and fsyncs it: the
   * header, then the page records, read from the file and written JOURNAL_RUN_PAGES at a time.
   */
  private writeJournal(path: string, origSize: number, originals: Uint32Array): void {
    const pageSize = this.pageSize;
    const nonce = randomBytes(4).readUInt32BE(0);
    const recordBytes = journalRecordBytes(pageSize);
    const jfd = openSync(path, 'w');
    try {
      writeSync(jfd, journalHeader(pageSize, origSize, originals.length, nonce), 0, JOURNAL_SECTOR_SIZE, 0);
      const out = Buffer.allocUnsafe(Math.min(originals.length, JOURNAL_RUN_PAGES) * recordBytes);
      const image = Buffer.alloc(pageSize);
      let at = JOURNAL_SECTOR_SIZE;
      for (let k = 0; k < originals.length; ) {
        const n = Math.min(JOURNAL_RUN_PAGES, originals.length - k);
        for (let i = 0; i < n; i++) {
          const pgno = originals[k + i]!;
          image.fill(0); // a page past the end of the file reads as zeros, as SQLite's would
          readSync(this.fd, image, 0, pageSize, (pgno - 1) * pageSize);
          putJournalRecord(out, i * recordBytes, pgno, image, pageSize, nonce);
        }
        writeSync(jfd, out, 0, n * recordBytes, at);
        at += n * recordBytes;
        k += n;
      }
      fsyncSync(jfd);
    } finally {
      closeSync(jfd);
    }
  }
}

/**
 * Test hook for crash tests: REDOSHIP_CRASH_AT=apply-before-commit[:LSN] makes the process kill itself with
 * SIGKILL at that point of a batch (after the new pages are written and synced, before the journal is
 * deleted), the way a power cut or an OOM kill would, so the hot-journal path is tested deterministically.
 */
function crashPoint(name: string, lsn: bigint): void {
  const want = process.env.REDOSHIP_CRASH_AT;
  if (!want) return;
  const [point, at] = want.split(':');
  if (point === name && (at === undefined || BigInt(at) <= lsn)) process.kill(process.pid, 'SIGKILL');
}

/** Sets the header fields that make page 1 a rollback-journal database at this change counter. */
function patchHeader(page1: Buffer, counter: number, sizePages: number | null): void {
  page1[18] = 1;
  page1[19] = 1;
  page1.writeUInt32BE(counter, 24);
  page1.writeUInt32BE(counter, 92);
  if (sizePages !== null) page1.writeUInt32BE(sizePages, 28);
}
