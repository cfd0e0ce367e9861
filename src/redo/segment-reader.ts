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

  private zeroEnd: boolean | null = null;

  /** Whether the file's last 8 bytes are zero (preallocated room runs to the end of the file). */
  private endsInZeros(): boolean {
    if (this.zeroEnd === null) {
      const n = Math.min(8, this.fileBytes);
      const b = Buffer.alloc(n);
      readSync(this.fd, b, 0, n, this.fileBytes - n);
      this.zeroEnd = b.every((x) => x === 0);
    }
    return this.zeroEnd;
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
   * `from` resumes at a part boundary found by an earlier pass (offset, and the LSN and part expected there).
   */
  *parts(from?: { offset: number; lsn: Lsn; part: number }): Generator<{ part: RecordPart; offset: number; raw: Buffer }> {
    const head = Buffer.alloc(PART_HEADER_BYTES);
    let off = from?.offset ?? SEGMENT_HEADER_BYTES;
    let recordStart = from && from.part > 0 ? -1 : off;
    let expectLsn = from?.lsn ?? this.header.firstLsn;
    let expectPart = from?.part ?? 0;
    const fail = (reason: string) => {
      this.damage = { offset: off, reason, lsn: expectLsn };
    };
    try {
      while (off < this.fileBytes) {
        if (off + PART_HEADER_BYTES > this.fileBytes) return fail('file ends inside a part header');
        readSync(this.fd, head, 0, PART_HEADER_BYTES, off);
        const len = head.readUInt32BE(0);
        if (len === 0 && head.readUInt32BE(4) === 0 && this.endsInZeros()) {
          // Preallocated room (segment-format.ts (6)): the records end here.
          if (recordStart !== off) fail('the last record is incomplete (its final part is missing)');
          return;
        }
        if (len === 0 || len > MAX_PART_BYTES) return fail(`part claims ${len} bytes`);
        if (off + PART_HEADER_BYTES + len > this.fileBytes) return fail('file ends inside a part');
        const raw = Buffer.allocUnsafe(PART_HEADER_BYTES + len);
        head.copy(raw);
        readSync(this.fd, raw, PART_HEADER_BYTES, len, off + PART_HEADER_BYTES);
        const part = checkFramedPart(raw, this.header.pageSize, expectLsn, expectPart);
        if (typeof part === 'string') return fail(part);
        yield { part, offset: off, raw };
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

/**
 * Checks one framed part (length, CRC, body) that should hold part expectPart of LSN expectLsn. Returns the
 * decoded part or why it is not valid. Shared by segment files and redo messages on the wire.
 */
export function checkFramedPart(raw: Uint8Array, pageSize: number, expectLsn: Lsn, expectPart: number): RecordPart | string {
  if (raw.length < PART_HEADER_BYTES) return 'part header cut short';
  const v = new DataView(raw.buffer, raw.byteOffset, raw.length);
  const len = v.getUint32(0);
  if (len === 0 || len > MAX_PART_BYTES) return `part claims ${len} bytes`;
  if (PART_HEADER_BYTES + len !== raw.length) return 'part length does not match its frame';
  const body = raw.subarray(PART_HEADER_BYTES);
  if (crc32(body) !== v.getUint32(4)) return 'part checksum mismatch';
  const part = decodePartBody(body, pageSize);
  if (typeof part === 'string') return part;
  if (part.lsn !== expectLsn) return `holds LSN ${part.lsn} where LSN ${expectLsn} belongs`;
  if (part.part !== expectPart) return `part ${part.part} of LSN ${part.lsn} where part ${expectPart} belongs`;
  return part;
}

/**
 * Splits a buffer of framed parts (a redo message) into checked parts that continue at (lsn, part).
 * Returns the parts, or why the buffer is not a valid continuation.
 */
export function splitFramedParts(
  buf: Uint8Array,
  pageSize: number,
  next: { lsn: Lsn; part: number },
): Array<{ part: RecordPart; raw: Uint8Array }> | string {
  const out: Array<{ part: RecordPart; raw: Uint8Array }> = [];
  let off = 0;
  let { lsn, part: partNo } = next;
  while (off < buf.length) {
    if (off + PART_HEADER_BYTES > buf.length) return 'message ends inside a part header';
    const len = new DataView(buf.buffer, buf.byteOffset + off, PART_HEADER_BYTES).getUint32(0);
    if (len === 0 || len > MAX_PART_BYTES || off + PART_HEADER_BYTES + len > buf.length) return `part claims ${len} bytes`;
    const raw = buf.subarray(off, off + PART_HEADER_BYTES + len);
    const p = checkFramedPart(raw, pageSize, lsn, partNo);
    if (typeof p === 'string') return p;
    out.push({ part: p, raw });
    off += raw.length;
    if (p.last) {
      lsn = (lsn + 1n) as Lsn;
      partNo = 0;
    } else partNo++;
  }
  return out;
}
