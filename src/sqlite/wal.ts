/*
 * THE WAL FILE FORMAT (from SQLite's wal.c header comment, the parts redoship relies on).
 *
 * A WAL file is a 32-byte header followed by zero or more frames. Each frame is a 24-byte frame header and
 * one page image. All integers in the headers are big-endian.
 *
 * WAL header:
 *    0  4  magic: 0x377f0682 or 0x377f0683; the low bit says the checksums are computed on big-endian words
 *          (1) or on little-endian words (0)
 *    4  4  file format version, 3007000
 *    8  4  database page size (65536 is written as 65536 here)
 *   12  4  checkpoint sequence number
 *   16  4  salt-1: incremented by one at every WAL restart
 *   20  4  salt-2: a fresh random number at every restart
 *   24  4  checksum-1 \  over bytes 0..23 of this header
 *   28  4  checksum-2 /
 *
 * Frame header:
 *    0  4  page number
 *    4  4  for a commit frame, the size of the database in pages after the commit; otherwise 0
 *    8  4  salt-1 \ copied from the WAL header
 *   12  4  salt-2 /
 *   16  4  checksum-1 \ cumulative: over the 8 first bytes of this frame header and the page image,
 *   20  4  checksum-2 / starting from the checksum of the previous frame (of the WAL header for frame 1)
 *
 * A frame is valid iff its salts equal the header's and its checksum matches. A reader takes frames in order
 * and stops at the first invalid one. Frames after the last valid commit frame belong to no transaction.
 *
 * Checksum: with x[] the input as 32-bit words in the byte order the magic names, and s0, s1 the previous
 * checksum (0, 0 for the WAL header itself), for each pair of words:
 *     s0 += x[i] + s1;  s1 += x[i+1] + s0;        (modulo 2^32)
 *
 * What wal.c does NOT guarantee, and why redoship never trusts the file alone: a frame can be valid and
 * still never have been committed (a writer that died between writing frames and publishing them in the
 * wal-index), and frames after the last published commit may be overwritten in place. The published end of
 * the log is mxFrame in the wal-index header (wal-index.ts); readers of a live WAL bound every read by it.
 */

export const WAL_HEADER_BYTES = 32;
export const WAL_FRAME_HEADER_BYTES = 24;
export const WAL_MAGIC_LE = 0x377f0682;
export const WAL_MAGIC_BE = 0x377f0683;
export const WAL_FORMAT_VERSION = 3007000;

export interface WalChecksum {
  readonly s0: number;
  readonly s1: number;
}

export interface WalHeader {
  readonly bigEndianChecksum: boolean;
  readonly pageSize: number;
  readonly checkpointSeq: number;
  readonly salt1: number;
  readonly salt2: number;
  /** The header's own checksum, which seeds the checksum of frame 1. */
  readonly checksum: WalChecksum;
}

/** Parses and checks a WAL header; null when it is absent, not a WAL header, or fails its checksum. */
export function parseWalHeader(buf: Uint8Array): WalHeader | null {
  if (buf.length < WAL_HEADER_BYTES) return null;
  const v = new DataView(buf.buffer, buf.byteOffset, WAL_HEADER_BYTES);
  const magic = v.getUint32(0);
  if (magic !== WAL_MAGIC_LE && magic !== WAL_MAGIC_BE) return null;
  if (v.getUint32(4) !== WAL_FORMAT_VERSION) return null;
  const pageSize = v.getUint32(8);
  if (pageSize < 512 || pageSize > 65536 || (pageSize & (pageSize - 1)) !== 0) return null;
  const bigEndianChecksum = (magic & 1) === 1;
  const c = walChecksum(bigEndianChecksum, buf, 0, 24, { s0: 0, s1: 0 });
  if (c.s0 !== v.getUint32(24) || c.s1 !== v.getUint32(28)) return null;
  return {
    bigEndianChecksum,
    pageSize,
    checkpointSeq: v.getUint32(12),
    salt1: v.getUint32(16),
    salt2: v.getUint32(20),
    checksum: c,
  };
}

/** The WAL checksum of buf[offset, offset+length) continuing from prev. length must be a multiple of 8. */
export function walChecksum(
  bigEndian: boolean,
  buf: Uint8Array,
  offset: number,
  length: number,
  prev: WalChecksum,
): WalChecksum {
  const v = new DataView(buf.buffer, buf.byteOffset + offset, length);
  let s0 = prev.s0;
  let s1 = prev.s1;
  const le = !bigEndian;
  for (let i = 0; i < length; i += 8) {
    s0 = (s0 + v.getUint32(i, le) + s1) >>> 0;
    s1 = (s1 + v.getUint32(i + 4, le) + s0) >>> 0;
  }
  return { s0, s1 };
}

/** Byte offset of frame frameNo (1-based) in the WAL file. */
export function walFrameOffset(frameNo: number, pageSize: number): number {
  return WAL_HEADER_BYTES + (frameNo - 1) * (WAL_FRAME_HEADER_BYTES + pageSize);
}

export interface WalFrame {
  readonly frameNo: number;
  readonly pgno: number;
  /** Database size in pages after the commit, for a commit frame; 0 otherwise. */
  readonly commitSizePages: number;
  /** The page image (a view into the caller's buffer). */
  readonly page: Uint8Array;
  /** Cumulative checksum through this frame. */
  readonly checksum: WalChecksum;
}

/**
 * Checks one frame (header + page, at buf[offset]) against the WAL header and the cumulative checksum of the
 * frame before it. Returns the frame, or null when it is not a valid continuation.
 */
export function checkWalFrame(
  hdr: WalHeader,
  buf: Uint8Array,
  offset: number,
  frameNo: number,
  prev: WalChecksum,
): WalFrame | null {
  const frameBytes = WAL_FRAME_HEADER_BYTES + hdr.pageSize;
  if (offset + frameBytes > buf.length) return null;
  const v = new DataView(buf.buffer, buf.byteOffset + offset, WAL_FRAME_HEADER_BYTES);
  const pgno = v.getUint32(0);
  if (pgno === 0) return null;
  if (v.getUint32(8) !== hdr.salt1 || v.getUint32(12) !== hdr.salt2) return null;
  let c = walChecksum(hdr.bigEndianChecksum, buf, offset, 8, prev);
  c = walChecksum(hdr.bigEndianChecksum, buf, offset + WAL_FRAME_HEADER_BYTES, hdr.pageSize, c);
  if (c.s0 !== v.getUint32(16) || c.s1 !== v.getUint32(20)) return null;
  const pageStart = offset + WAL_FRAME_HEADER_BYTES;
  return {
    frameNo,
    pgno,
    commitSizePages: v.getUint32(4),
    page: buf.subarray(pageStart, pageStart + hdr.pageSize),
    checksum: c,
  };
}

/** One committed transaction found in the WAL: the last image of every page it wrote. */
export interface WalTransaction {
  readonly firstFrame: number;
  readonly commitFrame: number;
  /** Database size in pages after the commit. */
  readonly sizePages: number;
  /** pgno -> final page image, in ascending pgno order. Views into the caller's buffer. */
  readonly pages: ReadonlyArray<readonly [pgno: number, page: Uint8Array]>;
  /** Cumulative checksum at the commit frame. */
  readonly checksum: WalChecksum;
}

export interface WalScan {
  readonly transactions: WalTransaction[];
  /** Frame number of the last commit frame taken (firstFrame - 1 when none). */
  readonly endFrame: number;
  readonly endChecksum: WalChecksum;
  /** Why the scan stopped before maxFrame, or null when it reached it. */
  readonly stoppedAt: { frameNo: number; reason: 'invalid' | 'incomplete' } | null;
}

/**
 * Groups the frames in buf into committed transactions. buf holds frames firstFrame, firstFrame+1, ... back
 * to back; prev is the cumulative checksum after frame firstFrame-1. Frames past maxFrame are never looked at
 * (they may be unpublished or being rewritten). Frames after the last commit frame are not returned.
 */
export function scanWalFrames(
  hdr: WalHeader,
  buf: Uint8Array,
  firstFrame: number,
  maxFrame: number,
  prev: WalChecksum,
): WalScan {
  const frameBytes = WAL_FRAME_HEADER_BYTES + hdr.pageSize;
  const transactions: WalTransaction[] = [];
  let endFrame = firstFrame - 1;
  let endChecksum = prev;
  let c = prev;
  let txnFirst = firstFrame;
  let pages = new Map<number, Uint8Array>();
  let stoppedAt: WalScan['stoppedAt'] = null;
  for (let frameNo = firstFrame; frameNo <= maxFrame; frameNo++) {
    const off = (frameNo - firstFrame) * frameBytes;
    if (off + frameBytes > buf.length) {
      stoppedAt = { frameNo, reason: 'incomplete' };
      break;
    }
    const f = checkWalFrame(hdr, buf, off, frameNo, c);
    if (!f) {
      stoppedAt = { frameNo, reason: 'invalid' };
      break;
    }
    c = f.checksum;
    pages.set(f.pgno, f.page);
    if (f.commitSizePages !== 0) {
      // A commit that shrinks the file (VACUUM, auto-vacuum) may leave frames for pages past the new end.
      const sorted = [...pages.entries()].filter(([p]) => p <= f.commitSizePages).sort((a, b) => a[0] - b[0]);
      transactions.push({
        firstFrame: txnFirst,
        commitFrame: frameNo,
        sizePages: f.commitSizePages,
        pages: sorted,
        checksum: c,
      });
      endFrame = frameNo;
      endChecksum = c;
      txnFirst = frameNo + 1;
      pages = new Map();
    }
  }
  return { transactions, endFrame, endChecksum, stoppedAt };
}
