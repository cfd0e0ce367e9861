/**
 * Appends records to the open segment and makes them durable; seals it. Writes only (segment-reader.ts
 * reads). A record is durable once append() returns: its parts are written with one write() and the file
 * is fdatasync()ed. Sealing fsyncs, renames .open to .seg and fsyncs the directory.
 *
 * Preallocation (segment-format.ts (6)): once a segment has taken PREALLOCATE_AFTER_APPENDS appends, an
 * append that reaches past the room written so far also writes PREALLOCATE_BYTES of zeros after its parts,
 * in the same write and sync. The appends after it overwrite those zeros, and their fdatasync then flushes
 * data only: on ext4 here that skips the journal commit an append needs, which is most of its time (and all
 * of it while other writers keep the journal busy). Sealing and closing cut the room off again.
 */
import { closeSync, existsSync, fdatasyncSync, fsyncSync, ftruncateSync, openSync, renameSync, writeSync, writevSync, unlinkSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { ioError } from '../error/index.js';
import {
  MAX_PART_PAGE_BYTES,
  SEGMENT_HEADER_BYTES,
  encodeFramedPart,
  encodePart,
  encodePartBuffers,
  encodeSegmentHeader,
  segmentName,
  type RecordPart,
  type SegmentHeader,
} from './segment-format.js';
import type { Lsn, RedoRecord } from './types.js';

export function fsyncDir(dir: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(dir, 'r');
    fsyncSync(fd);
  } catch (e) {
    throw ioError('sync directory', dir, e);
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/** Writes a whole file and fsyncs it (not its directory); IO error naming it. */
export function writeDurably(path: string, data: Uint8Array): void {
  try {
    const fd = openSync(path, 'w');
    try {
      writeSync(fd, data);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  } catch (e) {
    throw ioError('write', path, e);
  }
}

/** A record's fields without its pages: what every part of it repeats. */
export type RecordMeta = Omit<RedoRecord, 'pages'>;

/**
 * Splits a record into parts of at most MAX_PART_PAGE_BYTES of page data, lazily: pages may come from an
 * iterator over a whole database (a base) without all being in memory at once. A record without pages still
 * has one (last) part.
 */
export function* recordParts(
  meta: RecordMeta,
  pages: Iterable<readonly [number, Uint8Array]>,
  pageSize: number,
): Generator<RecordPart> {
  const perPart = Math.max(1, Math.floor(MAX_PART_PAGE_BYTES / pageSize));
  // Each page is copied into the part's buffer as it arrives: the iterator may reuse its buffers (a base
  // reads the database through one buffer), so a view kept for later would be overwritten.
  // The fields a part carries, named one by one: a spread would also copy whatever else meta holds (a
  // record passed as its own meta brings its whole pages array along) into every part.
  const make = (pgnos: number[], data: Buffer, part: number, last: boolean): RecordPart => ({
    kind: meta.kind,
    lsn: meta.lsn,
    commitTimeUs: meta.commitTimeUs,
    sizePages: meta.sizePages,
    wal: meta.wal,
    note: meta.note,
    continuityBreak: meta.continuityBreak === true,
    part,
    last,
    pgnos: Uint32Array.from(pgnos),
    pageData: data.subarray(0, pgnos.length * pageSize),
  });
  let part = 0;
  let pgnos: number[] = [];
  // A transaction's pages come as an array of known length: allocate exactly (a small transaction must not
  // cost an 8 MiB buffer). A base streams from an iterator: full-size part buffers.
  const known = Array.isArray(pages) ? (pages as unknown[]).length : -1;
  let consumed = 0;
  const nextBuffer = () => Buffer.allocUnsafe((known >= 0 ? Math.max(1, Math.min(perPart, known - consumed)) : perPart) * pageSize);
  let data = nextBuffer();
  // A full part is held back until we know whether another page follows it (then it is not the last).
  let full: { pgnos: number[]; data: Buffer } | null = null;
  for (const [pgno, page] of pages) {
    if (full) {
      yield make(full.pgnos, full.data, part++, false);
      full = null;
    }
    data.set(page.subarray(0, pageSize), pgnos.length * pageSize);
    pgnos.push(pgno);
    consumed++;
    if (pgnos.length === perPart) {
      full = { pgnos, data };
      pgnos = [];
      data = nextBuffer();
    }
  }
  if (full) yield make(full.pgnos, full.data, part, true);
  else yield make(pgnos, data, part, true);
}

/** Frames of records appended lately, by record object: the redo server sends the very bytes written. */
const framedOf = new WeakMap<RedoRecord, Buffer[]>();

/**
 * A record framed as the archive holds it (and as redo messages carry it): its parts back to back, as buffers
 * to be written in order (one [header + body] buffer per part, or [header, body] pairs). Framed once per
 * record object, at its first call: a record the archive's writer appended is not framed again for standbys.
 *
 * The buffers are the record's own, shared with nothing: encodeFramedPart copies the page images in,
 * encodePartBuffers packs them into msgpackr's output, which it never writes over again. So what the WeakMap
 * and the redo server's ring keep cannot change when the pages' source (a WAL read buffer, a base's page
 * buffer) is reused. alloc, when given, supplies the encodeFramedPart buffers: the redo server's ring passes
 * its arena (transport/slab-arena.ts), which takes them back only when the ring drops the record.
 */
export function framedRecord(r: RedoRecord, pageSize: number, alloc?: (size: number) => Buffer): Buffer[] {
  let bufs = framedOf.get(r);
  if (!bufs) {
    bufs = (Array.isArray(r.pages) && framedDirect(r, r.pages, pageSize, alloc)) || framedViaParts(r, pageSize);
    framedOf.set(r, bufs);
  }
  return bufs;
}

/** The record's parts as recordParts splits them, each written by encodeFramedPart; null if one cannot be. */
function framedDirect(r: RedoRecord, pages: ReadonlyArray<readonly [number, Uint8Array]>, pageSize: number, alloc?: (size: number) => Buffer): Buffer[] | null {
  const perPart = Math.max(1, Math.floor(MAX_PART_PAGE_BYTES / pageSize));
  const parts = Math.max(1, Math.ceil(pages.length / perPart));
  const bufs: Buffer[] = [];
  for (let k = 0; k < parts; k++) {
    const from = k * perPart;
    const b = encodeFramedPart(r, pages, from, Math.min(perPart, pages.length - from), k, k === parts - 1, pageSize, alloc);
    if (!b) return null;
    bufs.push(b);
  }
  return bufs;
}

function framedViaParts(r: RedoRecord, pageSize: number): Buffer[] {
  const bufs: Buffer[] = [];
  for (const p of recordParts(r, r.pages, pageSize)) bufs.push(...encodePartBuffers(p));
  return bufs;
}

/** writev of all the buffers at position; a short write (rare on files) is finished buffer by buffer. */
function writeAllv(fd: number, bufs: Buffer[], position: number): number {
  const total = bufs.reduce((n, b) => n + b.length, 0);
  let done = writevSync(fd, bufs, position);
  if (done < total) {
    let off = 0;
    for (const b of bufs) {
      const end = off + b.length;
      if (end > done) {
        const from = Math.max(0, done - off);
        let w = from;
        while (w < b.length) w += writeSync(fd, b, w, b.length - w, position + off + w);
        done = end;
      }
      off = end;
    }
  }
  return position + total;
}

/** Zeros written ahead of the records of a busy segment. */
const PREALLOCATE_BYTES = 1024 * 1024;
/** Appends a segment takes before it preallocates: an idle or short segment stays exactly its records. */
const PREALLOCATE_AFTER_APPENDS = 32;
const ZEROS = Buffer.alloc(PREALLOCATE_BYTES);

export class SegmentWriter {
  /** Bytes in the file: the records (bytes), then preallocated zeros. */
  private allocated: number;
  private appends = 0;

  private constructor(
    private path: string,
    private fd: number,
    readonly header: SegmentHeader,
    /** Bytes in the file, all of them complete records. */
    public bytes: number,
    public lastLsn: Lsn,
  ) {
    this.allocated = bytes;
  }

  get firstLsn(): Lsn {
    return this.header.firstLsn;
  }
  get recordCount(): number {
    return Number(this.lastLsn - this.header.firstLsn + 1n);
  }
  get filePath(): string {
    return this.path;
  }

  static create(dir: string, header: SegmentHeader): SegmentWriter {
    const path = join(dir, segmentName(header.incarnation, header.firstLsn, null));
    // Written under a name no reader lists, then renamed: a reader in another thread or process (a standby's
    // applier, `archive verify`) never finds the segment without its header. A crash leaves at most a
    // *.creating file, which nothing reads and the next create of that name replaces.
    const creating = `${path}.creating`;
    let fd = -1;
    try {
      if (existsSync(path)) throw Object.assign(new Error(`${path} exists`), { code: 'EEXIST' });
      fd = openSync(creating, 'w');
      writeSync(fd, encodeSegmentHeader(header), 0, SEGMENT_HEADER_BYTES, 0);
      fsyncSync(fd);
      renameSync(creating, path);
    } catch (e) {
      if (fd >= 0) closeSync(fd);
      try {
        unlinkSync(creating);
      } catch {
        /* never created, or renamed already */
      }
      throw ioError('create archive segment', path, e);
    }
    fsyncDir(dir);
    return new SegmentWriter(path, fd, header, SEGMENT_HEADER_BYTES, (header.firstLsn - 1n) as Lsn);
  }

  /** Continues an open segment after a crash: cuts it to validEnd (the end of its last complete record). */
  static reopen(path: string, header: SegmentHeader, validEnd: number, lastLsn: Lsn): SegmentWriter {
    let fd: number;
    try {
      fd = openSync(path, 'r+');
      ftruncateSync(fd, validEnd);
      fsyncSync(fd);
    } catch (e) {
      throw ioError('reopen archive segment', path, e);
    }
    return new SegmentWriter(path, fd, header, validEnd, lastLsn);
  }

  /**
   * Appends records (LSNs lastLsn+1, +2, ...) and returns once they are durable. beforeSync runs once they
   * are written and before the fdatasync (a primary sends them to its standbys then, so that the two syncs
   * overlap: transport/protocol.ts, confirmation); if the sync then fails, the file is cut back and this throws.
   */
  append(records: readonly RedoRecord[], alloc?: (size: number) => Buffer, beforeSync?: () => void): void {
    const bufs: Buffer[] = [];
    let expect = this.lastLsn + 1n;
    for (const r of records) {
      if (r.lsn !== expect) throw new Error(`assert: appending LSN ${r.lsn} where ${expect} belongs`);
      expect++;
      bufs.push(...framedRecord(r, this.header.pageSize, alloc));
    }
    if (this.pending) throw new Error(`assert: appending records while LSN ${this.pending.lsn} is incomplete`);
    this.writeDurably(() => [bufs], beforeSync);
    this.lastLsn = (expect - 1n) as Lsn;
  }

  /** The record whose parts have been appended in part (appendRaw) and whose last part has not come yet. */
  private pending: { lsn: Lsn; nextPart: number } | null = null;

  get hasIncompleteRecord(): boolean {
    return this.pending !== null;
  }

  /** Where the incomplete record starts, so that it can be cut when its sender starts it over. */
  private pendingStart = 0;

  /** Cuts an incomplete record (appendRaw) off the end: its sender will send it again from part 0. */
  dropIncomplete(): void {
    if (!this.pending) return;
    try {
      ftruncateSync(this.fd, this.pendingStart);
      fdatasyncSync(this.fd);
    } catch (e) {
      throw ioError('cut an incomplete record from', this.path, e);
    }
    this.bytes = this.allocated = this.pendingStart;
    this.pending = null;
  }

  /**
   * Appends parts received from elsewhere (a standby's receiver), already framed and checked, durably. They
   * must continue the segment: the next part of an incomplete record, or part 0 of LSN lastLsn+1. A record
   * becomes complete with its last part; an incomplete one at the end of the file is a torn tail until then.
   */
  appendRaw(parts: ReadonlyArray<{ readonly lsn: Lsn; readonly part: number; readonly last: boolean; readonly raw: Uint8Array }>): void {
    let pending = this.pending;
    let lastLsn = this.lastLsn;
    for (const p of parts) {
      const want = pending ?? { lsn: (lastLsn + 1n) as Lsn, nextPart: 0 };
      if (p.lsn !== want.lsn || p.part !== want.nextPart)
        throw new Error(`assert: part ${p.part} of LSN ${p.lsn} where part ${want.nextPart} of LSN ${want.lsn} belongs`);
      if (p.last) {
        lastLsn = p.lsn;
        pending = null;
      } else pending = { lsn: p.lsn, nextPart: p.part + 1 };
    }
    const before = this.bytes;
    this.writeDurably(() => parts.map((p) => Buffer.from(p.raw.buffer, p.raw.byteOffset, p.raw.length)));
    if (pending && (!this.pending || this.pending.lsn !== pending.lsn)) {
      // A new incomplete record began in this batch: find where (after the last part with `last`).
      let off = before;
      this.pendingStart = before;
      for (const p of parts) {
        off += p.raw.length;
        if (p.last) this.pendingStart = off;
      }
    }
    this.pending = pending;
    this.lastLsn = lastLsn;
  }

  /**
   * Appends one record whose pages come from an iterator (a base of a whole database), part by part, and
   * returns once it is durable. Nothing of it counts until its last part is written and synced.
   */
  appendStream(meta: RecordMeta, pages: Iterable<readonly [number, Uint8Array]>): void {
    if (this.pending) throw new Error(`assert: appending a record while LSN ${this.pending.lsn} is incomplete`);
    if (meta.lsn !== this.lastLsn + 1n) throw new Error(`assert: appending LSN ${meta.lsn} where ${this.lastLsn + 1n} belongs`);
    const pageSize = this.header.pageSize;
    this.writeDurably(function* () {
      for (const p of recordParts(meta, pages, pageSize)) yield encodePart(p);
    });
    this.lastLsn = meta.lsn;
  }

  /**
   * Writes buffers (or groups of buffers, written with one writev each) at the end, runs beforeSync, then
   * fdatasyncs; on failure (of any of these) cuts the file back to where it was and throws IO.
   */
  private writeDurably(bufs: () => Iterable<Buffer | Buffer[]>, beforeSync?: () => void): void {
    let at = this.bytes;
    let allocated = this.allocated;
    try {
      for (const b of bufs()) {
        if (Array.isArray(b)) {
          if (b.length <= 512) at = writeAllv(this.fd, b, at);
          else for (let i = 0; i < b.length; i += 512) at = writeAllv(this.fd, b.slice(i, i + 512), at);
          continue;
        }
        let done = 0;
        while (done < b.length) done += writeSync(this.fd, b, done, b.length - done, at + done);
        at += b.length;
      }
      if (at > allocated) {
        allocated = at;
        if (this.appends >= PREALLOCATE_AFTER_APPENDS) {
          let done = 0;
          while (done < ZEROS.length) done += writeSync(this.fd, ZEROS, done, ZEROS.length - done, at + done);
          allocated = at + ZEROS.length;
        }
      }
      beforeSync?.();
      fdatasyncSync(this.fd);
    } catch (e) {
      try {
        ftruncateSync(this.fd, this.bytes);
        this.allocated = this.bytes;
      } catch {
        /* the reopen after a restart cuts it */
      }
      throw ioError('append to archive segment', this.path, e);
    }
    this.bytes = at;
    this.allocated = allocated;
    this.appends++;
  }

  /** Cuts preallocated room off, so that the file ends with its last record. */
  private cutRoom(): void {
    if (this.allocated > this.bytes) {
      ftruncateSync(this.fd, this.bytes);
      this.allocated = this.bytes;
    }
  }

  /**
   * Seals the segment: it becomes immutable under its final name. A segment with no record is removed
   * instead (a sealed segment always holds at least one). Returns the sealed path, or null.
   */
  seal(): string | null {
    // Every step can fail (EIO, a full directory) and be retried: the fd is closed only at the very end, and
    // a failed seal leaves the segment open and appendable under its .open name.
    const dir = dirname(this.path);
    try {
      this.cutRoom();
      fsyncSync(this.fd);
    } catch (e) {
      throw ioError('sync archive segment', this.path, e);
    }
    if (this.recordCount === 0) {
      try {
        unlinkSync(this.path);
      } catch (e) {
        throw ioError('remove the empty archive segment', this.path, e);
      }
      fsyncDir(dir);
      closeSync(this.fd);
      return null;
    }
    const sealed = join(dir, segmentName(this.header.incarnation, this.header.firstLsn, this.lastLsn));
    try {
      renameSync(this.path, sealed);
    } catch (e) {
      throw ioError(`seal archive segment ${basename(this.path)} as`, sealed, e);
    }
    this.path = sealed;
    fsyncDir(dir); // if this fails, the rename stands; the next seal attempt syncs the directory again
    closeSync(this.fd);
    return sealed;
  }

  /** Closes without sealing (the segment stays open for the next run to continue). */
  close(): void {
    try {
      this.cutRoom();
      fsyncSync(this.fd);
    } finally {
      closeSync(this.fd);
    }
  }
}
