/**
 * Reads one segment file: checks the header, then every part (length bound, CRC, decode, LSN order), and
 * assembles parts into records. Reads only; what to do with a torn tail (cut it, or call it damage) is the
 * caller's decision, given `damage` and `validEnd` after iteration. See segment-format.ts for the format.
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { crc32 } from 'node:zlib';
import { ioError } from '../error/index.js';
import {
  MAX_PART_BYTES,
  PART_HEADER_BYTES,
  SEGMENT_HEADER_BYTES,
  decodePartBody,
  decodeSegmentHeader,
  segmentCorrupt,
  type RecordPart,
  type SegmentHeader,
} from './segment-format.js';
import type { Lsn, RedoRecord } from './types.js';

export interface SegmentDamage {
  /**
   * Where reading failed: the invalid part, or the end of the file. The complete records end at validEnd,
   * which is at or before this (a record's earlier parts may be intact).
   */
  readonly offset: number;
  readonly reason: string;
  /** The LSN of the record that is damaged or incomplete. */
  readonly lsn: Lsn;
}

export class SegmentReader {
  readonly header: SegmentHeader;
  readonly fileBytes: number;
  /** Offset just past the last complete record seen so far. */
  validEnd = SEGMENT_HEADER_BYTES;
  /** Last complete record's LSN; header.firstLsn - 1 when none. */
  lastLsn: Lsn;
  damage: SegmentDamage | null = null;
  private readonly fd: number;
  private closed = false;

  /** Throws ARCHIVE_CORRUPT when the header is bad or belongs to another database or page size. */
  constructor(
    readonly path: string,
    expect: { databaseId: string; pageSize: number },
  ) {
    try {
      this.fd = openSync(path, 'r');
    } catch (e) {
      throw ioError('open archive segment', path, e);
    }
    try {
      this.fileBytes = fstatSync(this.fd).size;
      const hb = Buffer.alloc(SEGMENT_HEADER_BYTES);
      const n = readSync(this.fd, hb, 0, SEGMENT_HEADER_BYTES, 0);
      const h = decodeSegmentHeader(hb.subarray(0, n));
      if (typeof h === 'string') throw segmentCorrupt(path, 0, h);
      if (h.databaseId !== expect.databaseId)
        throw segmentCorrupt(path, 8, `it belongs to database ${h.databaseId}, this archive is ${expect.databaseId}`);
      if (h.pageSize !== expect.pageSize)
        throw segmentCorrupt(path, 36, `page size ${h.pageSize}, this archive has ${expect.pageSize}`);
      this.header = h;
      this.lastLsn = (h.firstLsn - 1n) as Lsn;
    } catch (e) {
      this.close();
      throw e;
    }
  }

  close(): void {
    if (!this.closed) {
      this.closed = true;
      closeSync(this.fd);
    }
  }

  /**
   * Yields every part in order, with the offset where it starts. Stops at the first damage (recorded in
   * `damage`) or at the end of the file; `validEnd` and `lastLsn` then describe the complete records.
   */
  *parts(): Generator<{ part: RecordPart; offset: number }> {
    const head = Buffer.alloc(PART_HEADER_BYTES);
    let off = SEGMENT_HEADER_BYTES;
    let recordStart = off;
    let expectLsn = this.header.firstLsn;
    let expectPart = 0;
    const fail = (reason: string) => {
      this.damage = { offset: off, reason, lsn: expectLsn };
    };
    try {
      while (off < this.fileBytes) {
        if (off + PART_HEADER_BYTES > this.fileBytes) return fail('file ends inside a part header');
        readSync(this.fd, head, 0, PART_HEADER_BYTES, off);
        const len = head.readUInt32BE(0);
        if (len === 0 || len > MAX_PART_BYTES) return fail(`part claims ${len} bytes`);
        if (off + PART_HEADER_BYTES + len > this.fileBytes) return fail('file ends inside a part');
        const body = Buffer.allocUnsafe(len);
        readSync(this.fd, body, 0, len, off + PART_HEADER_BYTES);
        if (crc32(body) !== head.readUInt32BE(4)) return fail('part checksum mismatch');
        const part = decodePartBody(body, this.header.pageSize);
        if (typeof part === 'string') return fail(part);
        if (part.lsn !== expectLsn) return fail(`holds LSN ${part.lsn} where LSN ${expectLsn} belongs`);
        if (part.part !== expectPart) return fail(`part ${part.part} of LSN ${part.lsn} where part ${expectPart} belongs`);
        yield { part, offset: off };
        off += PART_HEADER_BYTES + len;
        if (part.last) {
          this.lastLsn = part.lsn;
          this.validEnd = off;
          recordStart = off;
          expectLsn = (expectLsn + 1n) as Lsn;
          expectPart = 0;
        } else {
          expectPart++;
        }
      }
      // The file ends between parts of one record: reading failed at the end of the file.
      if (recordStart !== off) fail('the last record is incomplete (its final part is missing)');
    } catch (e) {
      throw ioError('read archive segment', this.path, e);
    }
  }

  /**
   * Yields whole records with LSN in [fromLsn, toLsn]. Parts of records outside the range are decoded and
   * checked but not assembled.
   */
  *records(fromLsn: Lsn = 0n as Lsn, toLsn: Lsn = BigInt(2 ** 63) as Lsn): Generator<RedoRecord> {
    let acc: RecordPart[] = [];
    for (const { part } of this.parts()) {
      if (part.lsn < fromLsn || part.lsn > toLsn) continue;
      acc.push(part);
      if (part.last) {
        yield assembleRecord(acc, this.header.pageSize);
        acc = [];
      }
    }
  }

  /** After iterating: ARCHIVE_CORRUPT for any damage, as in a sealed segment. */
  assertUndamaged(): void {
    if (this.damage)
      throw segmentCorrupt(this.path, this.damage.offset, `${this.damage.reason} (LSN ${this.damage.lsn})`);
  }
}

export function assembleRecord(parts: readonly RecordPart[], pageSize: number): RedoRecord {
  const first = parts[0]!;
  const pages: Array<readonly [number, Uint8Array]> = [];
  for (const p of parts)
    for (let i = 0; i < p.pgnos.length; i++)
      pages.push([p.pgnos[i]!, p.pageData.subarray(i * pageSize, (i + 1) * pageSize)]);
  const last = parts[parts.length - 1]!;
  return {
    kind: first.kind,
    lsn: first.lsn,
    commitTimeUs: first.commitTimeUs,
    sizePages: last.sizePages,
    pages,
    wal: last.wal,
    ...(first.note !== undefined ? { note: first.note } : {}),
    ...(first.continuityBreak ? { continuityBreak: true } : {}),
  };
}
