/**
 * A cursor over an archive's framed parts from one LSN on, across segments, for serving redo to a standby.
 * It remembers the segment and byte offset it stopped at, so reading on is O(what is read), and it follows
 * the open segment as it grows and when it is sealed (renamed).
 */
import { join } from 'node:path';
import type { Archive } from './archive.js';
import { SegmentReader, assembleRecord } from './segment-reader.js';
import type { RecordPart } from './segment-format.js';
import type { Lsn, RedoRecord } from './types.js';

export interface CursorPart {
  readonly part: RecordPart;
  readonly raw: Buffer;
}

export class ArchiveCursor {
  /** Next part wanted. */
  private lsn: Lsn;
  private partNo = 0;
  private seg: { firstLsn: Lsn; name: string; offset: number } | null = null;

  /**
   * limit: the last LSN it may start reading (a cascading standby serves onward only what its primary
   * confirmed durable, though its archive holds more: transport/protocol.ts). A record begun is read on.
   */
  constructor(
    private readonly archive: Archive,
    fromLsn: Lsn,
    private readonly limit?: () => bigint,
  ) {
    this.lsn = fromLsn;
  }

  get nextLsn(): Lsn {
    return this.lsn;
  }

  /** True between records (false while a record's parts are being read). */
  get atRecordStart(): boolean {
    return this.partNo === 0;
  }

  /**
   * Reads parts from where the cursor stands, up to about maxBytes (at least one part when one is there).
   * Returns [] when the archive holds nothing more yet. Throws ARCHIVE_GAP / ARCHIVE_CORRUPT.
   */
  read(maxBytes: number): CursorPart[] {
    const out: CursorPart[] = [];
    let bytes = 0;
    const limit = this.limit?.();
    let limited = false;
    for (let guard = 0; guard < 1000 && bytes < maxBytes && !limited; guard++) {
      if (limit !== undefined && this.partNo === 0 && this.lsn > limit) break;
      if (!this.seg && !this.locate()) break;
      const s = this.seg!;
      let reader: SegmentReader;
      try {
        reader = new SegmentReader(join(this.archive.segmentsDir, s.name), this.archive.identityExpect);
      } catch (e) {
        // Sealed (renamed) since we looked: the same bytes under its final name, so the offset holds.
        const renamed = this.archive.segmentNames().find((x) => x.firstLsn === s.firstLsn);
        if (renamed && renamed.name !== s.name) {
          s.name = renamed.name;
          continue;
        }
        this.seg = null;
        if (this.locate()) continue;
        throw e;
      }
      let progressed = false;
      try {
        for (const { part, raw, offset } of reader.parts({ offset: s.offset, lsn: this.lsn, part: this.partNo })) {
          if (limit !== undefined && part.part === 0 && part.lsn > limit) {
            limited = true;
            break;
          }
          out.push({ part, raw });
          bytes += raw.length;
          progressed = true;
          s.offset = offset + raw.length;
          if (part.last) {
            this.lsn = (this.lsn + 1n) as Lsn;
            this.partNo = 0;
          } else this.partNo++;
          if (bytes >= maxBytes) break;
        }
      } finally {
        reader.close();
      }
      if (bytes >= maxBytes || limited) break;
      if (reader.damage && reader.damage.offset < reader.fileBytes) {
        // Damage, not just "the writer has not written more yet": report it as the archive would.
        if (s.name.endsWith('.seg')) reader.assertUndamaged();
      }
      if (s.name.endsWith('.seg')) {
        this.seg = null; // on to the next segment
        continue;
      }
      if (!progressed) {
        // The open segment has nothing new; it may have been sealed meanwhile.
        const sealedNow = this.archive.segmentNames().find((x) => x.firstLsn === s.firstLsn && x.lastLsn !== null);
        if (sealedNow) {
          s.name = sealedNow.name;
          continue;
        }
        break;
      }
    }
    return out;
  }

  /** Finds the segment holding the next LSN. False when the archive does not hold it (yet). */
  private locate(): boolean {
    for (const s of this.archive.segmentNames()) {
      if (s.firstLsn <= this.lsn && (s.lastLsn === null || this.lsn <= s.lastLsn)) {
        if (this.partNo !== 0) return false; // cannot resume inside a record without its offset
        this.seg = { firstLsn: s.firstLsn, name: s.name, offset: -1 };
        if (this.skipTo()) return true;
        // The open segment does not reach the LSN yet (a reader that starts ahead of the archive, as a
        // reinstated standby's applier does): look again when more is written.
        this.seg = null;
        return false;
      }
    }
    return false;
  }

  /**
   * Positions the cursor at the start of LSN this.lsn in the located segment: where it starts, or the end
   * of the complete records when it is the very next one to be written. False when the segment ends
   * further back than that (the LSN is not written yet, and neither is the one before it).
   */
  private skipTo(): boolean {
    const s = this.seg!;
    const reader = new SegmentReader(join(this.archive.segmentsDir, s.name), this.archive.identityExpect);
    try {
      for (const { part, offset } of reader.parts()) {
        if (part.lsn === this.lsn && part.part === 0) {
          s.offset = offset;
          return true;
        }
      }
      s.offset = reader.validEnd;
      return reader.lastLsn + 1n >= this.lsn;
    } finally {
      reader.close();
    }
  }
}

/** Page bytes above which ArchiveRecordReader hands a record over without its pages (streamed: true). */
export const LARGE_RECORD_BYTES = 64 * 1024 * 1024;

/**
 * A record as ArchiveRecordReader gives it. streamed: the record held more than LARGE_RECORD_BYTES of pages (a
 * base, a large resync), so `pages` is empty and its parts are to be read from the archive
 * (Archive.partsInRange(lsn, lsn)) by whoever applies it.
 */
export type ReadRecord = RedoRecord & { readonly streamed?: true };

/**
 * Whole records from a cursor: parts are gathered until a record's last part, so a caller sees a record
 * only when the archive holds all of it. A record larger than LARGE_RECORD_BYTES is not held: its parts are
 * dropped as they pass, and it comes out with streamed: true and no pages.
 */
export class ArchiveRecordReader {
  private readonly cursor: ArchiveCursor;
  private partial: RecordPart[] = [];
  private partialBytes = 0;
  /** The first part of a record being passed over (too large to hold), or null. */
  private passing: RecordPart | null = null;
  /** Complete records read ahead of what the caller took. */
  private ahead: ReadRecord[] = [];

  constructor(
    private readonly archive: Archive,
    fromLsn: Lsn,
    /** Page bytes above which a record is passed over (streamed: true); a parameter for tests. */
    private readonly largeRecordBytes = LARGE_RECORD_BYTES,
  ) {
    this.cursor = new ArchiveCursor(archive, fromLsn);
  }

  /** The next complete record without taking it, or null when the archive holds no more yet. */
  peek(): ReadRecord | null {
    if (this.ahead.length === 0) this.fill();
    return this.ahead[0] ?? null;
  }

  take(): ReadRecord | null {
    const r = this.peek();
    if (r) this.ahead.shift();
    return r;
  }

  /** Reads until a record is complete or the archive holds no more (a large record takes many reads). */
  private fill(): void {
    while (this.ahead.length === 0) {
      const parts = this.cursor.read(8 * 1024 * 1024);
      if (parts.length === 0) return;
      this.gather(parts);
    }
  }

  private gather(parts: readonly CursorPart[]): void {
    for (const { part } of parts) {
      if (!this.passing) {
        this.partial.push(part);
        this.partialBytes += part.pageData.length;
        if (this.partialBytes > this.largeRecordBytes && !part.last) {
          this.passing = this.partial[0]!;
          this.partial = [];
        }
      }
      if (!part.last) continue;
      if (this.passing) {
        const first = this.passing;
        this.ahead.push({
          kind: first.kind,
          lsn: first.lsn,
          commitTimeUs: first.commitTimeUs,
          sizePages: part.sizePages,
          pages: [],
          wal: part.wal,
          ...(first.note !== undefined ? { note: first.note } : {}),
          ...(first.continuityBreak ? { continuityBreak: true } : {}),
          streamed: true,
        });
      } else this.ahead.push(assembleRecord(this.partial, this.archive.identity.pageSize));
      this.partial = [];
      this.partialBytes = 0;
      this.passing = null;
    }
  }
}
