/*
 * THE WAL-INDEX HEADER: the first 136 bytes of the `-shm` file (wal.c: WalIndexHdr, WalCkptInfo).
 * The wal-index lives in shared memory, so its integers are in the machine's NATIVE byte order (little-endian
 * on every platform redoship runs on; checked at load). Layout:
 *
 *    0  48  WalIndexHdr, first copy        48  48  WalIndexHdr, second copy      96  40  WalCkptInfo
 *
 * WalIndexHdr:
 *    0  u32  iVersion (3007000)          16  u32  mxFrame: index of the last valid COMMIT frame in the WAL
 *    4  u32  unused                      20  u32  nPage: database size in pages after that commit
 *    8  u32  iChange: +1 each commit     24  u32[2] aFrameCksum: cumulative checksum at frame mxFrame
 *   12  u8   isInit                      32  u32[2] aSalt: the WAL header's salts, as raw big-endian bytes
 *   13  u8   bigEndCksum                 40  u32[2] aCksum: checksum (native words) over bytes 0..39
 *   14  u16  szPage (65536 stored as 1)
 *
 * WalCkptInfo (at 96):  0 u32 nBackfill   4 u32[5] aReadMark   24 u8[8] aLock   32 u32 nBackfillAttempted
 *
 * A writer updates the second copy, then the first (with a memory barrier between). A reader that sees two
 * equal copies, isInit set and a good checksum has a consistent header: the published end of the log. A
 * frame past mxFrame is not committed even if it is valid in the file (a writer may have died before
 * publishing it). Reading through a file descriptor sees what the writers' mmap wrote (one page cache).
 */

import { endianness } from 'node:os';
import { walChecksum, type WalChecksum } from './wal.js';

export const WAL_INDEX_HEADER_BYTES = 136;

export interface WalIndexHeader {
  readonly change: number;
  readonly bigEndianChecksum: boolean;
  readonly pageSize: number;
  /** Last published commit frame; 0 when the WAL holds no committed frame. */
  readonly mxFrame: number;
  readonly sizePages: number;
  readonly frameChecksum: WalChecksum;
  readonly salt1: number;
  readonly salt2: number;
  readonly nBackfill: number;
  readonly readMarks: readonly number[];
}

if (endianness() !== 'LE') {
  // The -shm file is in native byte order; only little-endian layouts are decoded here.
  throw new Error('redoship reads the SQLite wal-index in little-endian order only');
}

/**
 * Decodes a wal-index header snapshot. Returns null when the snapshot is not consistent (copies differ, not
 * initialised, bad checksum): the caller reads again, as SQLite's own readers do.
 */
export function parseWalIndexHeader(buf: Uint8Array): WalIndexHeader | null {
  if (buf.length < WAL_INDEX_HEADER_BYTES) return null;
  const a = Buffer.from(buf.buffer, buf.byteOffset, 48);
  const b = Buffer.from(buf.buffer, buf.byteOffset + 48, 48);
  if (!a.equals(b)) return null;
  const v = new DataView(buf.buffer, buf.byteOffset, WAL_INDEX_HEADER_BYTES);
  if (v.getUint32(0, true) !== 3007000) return null;
  if (v.getUint8(12) !== 1) return null;
  const c = walChecksum(false, buf, 0, 40, { s0: 0, s1: 0 });
  if (c.s0 !== v.getUint32(40, true) || c.s1 !== v.getUint32(44, true)) return null;
  const szPage = v.getUint16(14, true);
  const readMarks: number[] = [];
  for (let i = 0; i < 5; i++) readMarks.push(v.getUint32(100 + 4 * i, true));
  return {
    change: v.getUint32(8, true),
    bigEndianChecksum: v.getUint8(13) !== 0,
    pageSize: (szPage & 0xfe00) + ((szPage & 1) << 16),
    mxFrame: v.getUint32(16, true),
    sizePages: v.getUint32(20, true),
    frameChecksum: { s0: v.getUint32(24, true), s1: v.getUint32(28, true) },
    // aSalt is a byte copy of the WAL header's big-endian salts.
    salt1: v.getUint32(32, false),
    salt2: v.getUint32(36, false),
    nBackfill: v.getUint32(96, true),
    readMarks,
  };
}
