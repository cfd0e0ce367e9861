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
  sumInto(bigEndian, buf, null, offset, length, prev.s0, prev.s1);
  return { s0: sum0 >>> 0, s1: sum1 >>> 0 };
}

/*
 * The checksum loop, without an object per call. It is wal.c's walChecksumBytes exactly, on int32 values:
 * s0, s1 and the words are kept as signed 32-bit integers, each sum of three of them is exact in a double
 * (|sum| < 2^33), and `| 0` reduces it modulo 2^32, which is what the unsigned C arithmetic does; a signed
 * and an unsigned reading of the same 32 bits are equal modulo 2^32, so the final `>>> 0` gives the very
 * checksum wal.c computes. The words are read through an Int32Array (one per call, or the caller's view of
 * the whole buffer) when the bytes are 4-aligned, swapped when the checksum's byte order is not this
 * machine's; otherwise byte by byte. wal.test.ts and fuzz.test.ts hold this to the plain DataView loop.
 */

/** This machine stores an Int32Array's words little-endian. */
const NATIVE_LITTLE_ENDIAN = new Uint8Array(new Uint32Array([0x01020304]).buffer)[0] === 0x04;

/** Result of sumInto, as int32 (callers apply >>> 0). Module state: the hot loop allocates nothing. */
let sum0 = 0;
let sum1 = 0;

/**
 * Checksums buf[offset, offset+length) from (s0, s1) into sum0/sum1. words, when given, is an Int32Array over
 * all of buf (buf.byteOffset 4-aligned); offset and length are multiples of 8.
 */
function sumInto(
  bigEndian: boolean,
  buf: Uint8Array,
  words: Int32Array | null,
  offset: number,
  length: number,
  s0: number,
  s1: number,
): void {
  s0 |= 0;
  s1 |= 0;
  if (words === null) {
    if (offset < 0 || length < 0 || length % 8 !== 0 || offset + length > buf.length)
      throw new RangeError(`WAL checksum of ${length} bytes at ${offset} of ${buf.length}: out of range or not whole word pairs`);
    const at = buf.byteOffset + offset;
    if ((at & 3) !== 0 || length < 64) return sumBytes(bigEndian, buf, offset, length, s0, s1);
    words = new Int32Array(buf.buffer, at, length >>> 2);
    offset = 0; // words starts at the checksummed bytes
  }
  let i = offset >>> 2;
  const end = i + (length >>> 2);
  if (bigEndian !== NATIVE_LITTLE_ENDIAN) {
    for (; i < end; i += 2) {
      s0 = (s0 + words[i]! + s1) | 0;
      s1 = (s1 + words[i + 1]! + s0) | 0;
    }
  } else {
    for (; i < end; i += 2) {
      let x = words[i]!;
      let y = words[i + 1]!;
      x = (x << 24) | ((x & 0xff00) << 8) | ((x >>> 8) & 0xff00) | (x >>> 24);
      y = (y << 24) | ((y & 0xff00) << 8) | ((y >>> 8) & 0xff00) | (y >>> 24);
      s0 = (s0 + x + s1) | 0;
      s1 = (s1 + y + s0) | 0;
    }
  }
  sum0 = s0;
  sum1 = s1;
}

/** sumInto for unaligned bytes and short runs: the words assembled from bytes in the checksum's order. */
function sumBytes(bigEndian: boolean, b: Uint8Array, offset: number, length: number, s0: number, s1: number): void {
  const end = offset + length;
  for (let i = offset; i < end; i += 8) {
    const x = bigEndian
      ? (b[i]! << 24) | (b[i + 1]! << 16) | (b[i + 2]! << 8) | b[i + 3]!
      : b[i]! | (b[i + 1]! << 8) | (b[i + 2]! << 16) | (b[i + 3]! << 24);
    const y = bigEndian
      ? (b[i + 4]! << 24) | (b[i + 5]! << 16) | (b[i + 6]! << 8) | b[i + 7]!
      : b[i + 4]! | (b[i + 5]! << 8) | (b[i + 6]! << 16) | (b[i + 7]! << 24);
    s0 = (s0 + x + s1) | 0;
    s1 = (s1 + y + s0) | 0;
  }
  sum0 = s0;
  sum1 = s1;
}

/** Big-endian u32 at b[at] (frame headers are big-endian whatever the checksum order). */
const u32be = (b: Uint8Array, at: number): number => ((b[at]! << 24) | (b[at + 1]! << 16) | (b[at + 2]! << 8) | b[at + 3]!) >>> 0;

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
  if (!frameValid(hdr, buf, null, offset, prev.s0, prev.s1)) return null;
  const pageStart = offset + WAL_FRAME_HEADER_BYTES;
  return {
    frameNo,
    pgno: u32be(buf, offset),
    commitSizePages: u32be(buf, offset + 4),
    page: buf.subarray(pageStart, pageStart + hdr.pageSize),
    checksum: { s0: sum0 >>> 0, s1: sum1 >>> 0 },
  };
}

/**
 * checkWalFrame without the frame object: true when the frame at buf[offset] is a valid continuation of the
 * checksum (s0, s1); its cumulative checksum is then in sum0/sum1. words as for sumInto.
 */
function frameValid(hdr: WalHeader, buf: Uint8Array, words: Int32Array | null, offset: number, s0: number, s1: number): boolean {
  if (offset < 0 || offset + WAL_FRAME_HEADER_BYTES + hdr.pageSize > buf.length) return false;
  if (u32be(buf, offset) === 0) return false;
  if (u32be(buf, offset + 8) !== hdr.salt1 || u32be(buf, offset + 12) !== hdr.salt2) return false;
  sumBytes(hdr.bigEndianChecksum, buf, offset, 8, s0, s1);
  sumInto(hdr.bigEndianChecksum, buf, words, offset + WAL_FRAME_HEADER_BYTES, hdr.pageSize, sum0, sum1);
  return sum0 >>> 0 === u32be(buf, offset + 16) && sum1 >>> 0 === u32be(buf, offset + 20);
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
  const pageSize = hdr.pageSize;
  const transactions: WalTransaction[] = [];
  let endFrame = firstFrame - 1;
  let endChecksum = prev;
  let c0 = prev.s0;
  let c1 = prev.s1;
  let txnFirst = firstFrame;
  /** pgno -> offset of its latest page image in buf, for the transaction being read. */
  let pages = new Map<number, number>();
  let stoppedAt: WalScan['stoppedAt'] = null;
  // One view of the whole buffer for every page's checksum (frames are 8-byte multiples: pages stay aligned).
  const words = (buf.byteOffset & 3) === 0 ? new Int32Array(buf.buffer, buf.byteOffset, buf.length >>> 2) : null;
  for (let frameNo = firstFrame; frameNo <= maxFrame; frameNo++) {
    const off = (frameNo - firstFrame) * frameBytes;
    if (off + frameBytes > buf.length) {
      stoppedAt = { frameNo, reason: 'incomplete' };
      break;
    }
    if (!frameValid(hdr, buf, words, off, c0, c1)) {
      stoppedAt = { frameNo, reason: 'invalid' };
      break;
    }
    c0 = sum0 >>> 0;
    c1 = sum1 >>> 0;
    pages.set(u32be(buf, off), off + WAL_FRAME_HEADER_BYTES);
    const commitSizePages = u32be(buf, off + 4);
    if (commitSizePages !== 0) {
      // A commit that shrinks the file (VACUUM, auto-vacuum) may leave frames for pages past the new end.
      const sorted: Array<readonly [number, Uint8Array]> = [];
      let ascending = true;
      for (const [pgno, at] of pages) {
        if (pgno > commitSizePages) continue;
        if (sorted.length > 0 && pgno < sorted[sorted.length - 1]![0]) ascending = false;
        sorted.push([pgno, buf.subarray(at, at + pageSize)]);
      }
      if (!ascending) sorted.sort((a, b) => a[0] - b[0]);
      const checksum = { s0: c0, s1: c1 };
      transactions.push({
        firstFrame: txnFirst,
        commitFrame: frameNo,
        sizePages: commitSizePages,
        pages: sorted,
        checksum,
      });
      endFrame = frameNo;
      endChecksum = checksum;
      txnFirst = frameNo + 1;
      pages = new Map();
    }
  }
  return { transactions, endFrame, endChecksum, stoppedAt };
}
