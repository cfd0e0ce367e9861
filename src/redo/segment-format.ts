/*
 * ARCHIVE SEGMENT FORMAT, version 1. Integers big-endian.
 *
 * File name:  IIIIIIII-FFFFFFFFFFFFFFFF.open                     the one segment being written
 *             IIIIIIII-FFFFFFFFFFFFFFFF-LLLLLLLLLLLLLLLL.seg    sealed: immutable
 *   (I incarnation, F first LSN, L last LSN, lower-case hex, fixed width so names sort in LSN order)
 *
 * Header, 48 bytes:
 *    0  4  magic 'RDSG'                  28  8  first LSN
 *    4  4  format version (1)            36  4  page size
 *    8 16  database id (archive.json)    40  4  zero
 *   24  4  incarnation                   44  4  CRC-32 of bytes 0..43
 *
 * Then record parts, back to back:
 *    0  4  body length N (1 ≤ N ≤ MAX_PART_BYTES)
 *    4  4  CRC-32 of the body
 *    8  N  body: one msgpack map (decodePart below gives the fields)
 *
 * A record (one LSN) is one or more parts with part numbers 0, 1, ... and `last` set on the final one, so a
 * transaction of any size is written in bounded pieces. Invariants:
 *  (1) Records hold LSNs firstLsn, firstLsn+1, ... in order: no gap, no repeat.
 *  (2) A part is valid iff its length is within bounds, its CRC matches and its body decodes.
 *  (3) In the open segment the first invalid part, or a record missing its `last` part, is a torn tail left
 *      by a crash: everything from the start of that record is cut off and captured again.
 *  (4) A sealed segment is immutable and complete; any invalid part in it is damage (never cut silently).
 *  (5) A record never spans two segments: segments are sealed only between records.
 *  (6) The open segment may end in preallocated room: zero bytes, written and synced ahead so that an append
 *      overwrites allocated blocks and its fdatasync needs no file-system journal commit (1.6-3.8x faster
 *      here). A zero part header at a record boundary, with the file's last 8 bytes zero too, is the end of
 *      the records, not damage (a length is never 0). Sealing cuts the room off: a sealed file ends with its
 *      last record.
 */

import { crc32 } from 'node:zlib';
import { Packr } from 'msgpackr';
import { RedoshipError } from '../error/index.js';
import { binHeadBytes, putBigint, putBinHead, putKey, putUint, uintBytes } from './msgpack-put.js';
import type { Lsn, RecordKind, WalPosition } from './types.js';

export const SEGMENT_MAGIC = 0x52445347; // 'RDSG'
export const SEGMENT_VERSION = 1;
export const SEGMENT_HEADER_BYTES = 48;
export const PART_HEADER_BYTES = 8;
/** Page bytes carried by one part: large enough to amortise framing, small enough to bound memory. */
export const MAX_PART_PAGE_BYTES = 8 * 1024 * 1024;
/** Largest part body accepted by a reader: page bytes of the largest part plus generous room for fields. */
export const MAX_PART_BYTES = MAX_PART_PAGE_BYTES + 65536 + 1024 * 1024;

export interface SegmentHeader {
  readonly databaseId: string;
  readonly incarnation: number;
  readonly firstLsn: Lsn;
  readonly pageSize: number;
}

export function encodeSegmentHeader(h: SegmentHeader): Buffer {
  const b = Buffer.alloc(SEGMENT_HEADER_BYTES);
  b.writeUInt32BE(SEGMENT_MAGIC, 0);
  b.writeUInt32BE(SEGMENT_VERSION, 4);
  Buffer.from(h.databaseId, 'hex').copy(b, 8);
  b.writeUInt32BE(h.incarnation, 24);
  b.writeBigUInt64BE(h.firstLsn, 28);
  b.writeUInt32BE(h.pageSize, 36);
  b.writeUInt32BE(crc32(b.subarray(0, 44)), 44);
  return b;
}

/** Returns the header, or a reason it is not a valid segment header. */
export function decodeSegmentHeader(b: Uint8Array): SegmentHeader | string {
  if (b.length < SEGMENT_HEADER_BYTES) return `header is ${b.length} bytes, expected ${SEGMENT_HEADER_BYTES}`;
  const buf = Buffer.from(b.buffer, b.byteOffset, SEGMENT_HEADER_BYTES);
  if (buf.readUInt32BE(0) !== SEGMENT_MAGIC) return 'not a redoship segment (bad magic)';
  if (buf.readUInt32BE(44) !== crc32(buf.subarray(0, 44))) return 'header checksum mismatch';
  const version = buf.readUInt32BE(4);
  if (version !== SEGMENT_VERSION) return `segment format version ${version}; this redoship reads ${SEGMENT_VERSION}`;
  return {
    databaseId: buf.subarray(8, 24).toString('hex'),
    incarnation: buf.readUInt32BE(24),
    firstLsn: buf.readBigUInt64BE(28) as Lsn,
    pageSize: buf.readUInt32BE(36),
  };
}

/** One part of a record: the unit framed, checksummed and written. */
export interface RecordPart {
  readonly kind: RecordKind;
  readonly lsn: Lsn;
  readonly commitTimeUs: bigint;
  readonly sizePages: number;
  readonly part: number;
  readonly last: boolean;
  /** Page numbers, ascending. */
  readonly pgnos: Uint32Array;
  /** pgnos.length page images back to back. */
  readonly pageData: Uint8Array;
  readonly wal: WalPosition | null;
  readonly note: string | undefined;
  readonly continuityBreak: boolean;
}

const packr = new Packr({ useRecords: false, int64AsType: 'bigint', mapsAsObjects: true });
const KIND_CODE: Record<RecordKind, string> = { base: 'b', txn: 't', resync: 'r' };
const CODE_KIND: Record<string, RecordKind> = { b: 'base', t: 'txn', r: 'resync' };

/** Frames a part: length, CRC, body, as one buffer. */
export function encodePart(p: RecordPart): Buffer {
  return Buffer.concat(encodePartBuffers(p));
}

/** Frames a part as [8-byte frame header, body], without copying the body again (for writev). */
export function encodePartBuffers(p: RecordPart): [Buffer, Buffer] {
  const pg = Buffer.alloc(p.pgnos.length * 4);
  for (let i = 0; i < p.pgnos.length; i++) pg.writeUInt32BE(p.pgnos[i]!, i * 4);
  const body = packr.pack({
    k: KIND_CODE[p.kind],
    l: BigInt(p.lsn),
    t: p.commitTimeUs,
    n: p.sizePages,
    p: p.part,
    e: p.last,
    g: pg,
    d: p.pageData,
    w: p.wal ? [p.wal.salt1, p.wal.salt2, p.wal.commitFrame, p.wal.s0, p.wal.s1] : null,
    ...(p.note !== undefined ? { x: p.note } : {}),
    ...(p.continuityBreak ? { z: true } : {}),
  });
  const head = Buffer.alloc(PART_HEADER_BYTES);
  head.writeUInt32BE(body.length, 0);
  head.writeUInt32BE(crc32(body), 4);
  return [head, body];
}

/*
 * The same frame, written without msgpackr and without an intermediate copy of the pages: encodeFramedPart
 * lays out the very bytes encodePartBuffers produces (header, then body) in one buffer, copying each page
 * image once, from wherever the record holds it. The layout is msgpackr's for this Packr (useRecords false):
 *   a map16 (0xde, count) of one-letter fixstr keys in the order k l t n p e g d w [z];
 *   k a one-letter fixstr; l and t int64 (0xd3) below 2^63, uint64 (0xcf) above; n, p and the five numbers
 *   of w as msgpackr writes a non-negative integer below 2^32 (itself below 0x80, then 0xcc, 0xcd, 0xce);
 *   e a boolean; g and d bin8/16/32 by length; w a fixarray of 5, or nil; z true when present.
 * Anything else (a note: msgpackr has several encodings of a string; an integer outside those ranges; a page
 * shorter than pageSize) is left to encodePartBuffers: encodeFramedPart returns null. segment.test.ts holds
 * the two to the same bytes over random records.
 */

const isU32Int = (v: number): boolean => v >>> 0 === v;
const BIGINT_MAX_U64 = 0xffffffffffffffffn;

/** The fields of a record every part of it repeats. */
export interface PartMeta {
  readonly kind: RecordKind;
  readonly lsn: Lsn;
  readonly commitTimeUs: bigint;
  readonly sizePages: number;
  readonly wal: WalPosition | null;
  readonly note?: string | undefined;
  readonly continuityBreak?: boolean | undefined;
}

/**
 * Part `part` of a record: pages[from, from+count) framed as one buffer [8-byte part header, body], byte for
 * byte encodePart of the same part (see above), or null when this part is for encodePartBuffers to write.
 * The buffer comes from alloc (default: a new one).
 */
export function encodeFramedPart(
  meta: PartMeta,
  pages: ReadonlyArray<readonly [number, Uint8Array]>,
  from: number,
  count: number,
  part: number,
  last: boolean,
  pageSize: number,
  alloc: (size: number) => Buffer = Buffer.allocUnsafe,
): Buffer | null {
  if (meta.note !== undefined) return null;
  const code = KIND_CODE[meta.kind];
  if (code === undefined) return null;
  const { lsn, commitTimeUs: t, sizePages: n, wal } = meta;
  if (typeof lsn !== 'bigint' || lsn < 0n || lsn > BIGINT_MAX_U64 || typeof t !== 'bigint' || t < 0n || t > BIGINT_MAX_U64) return null;
  if (!isU32Int(n) || !isU32Int(part)) return null;
  let walBytes = 1;
  if (wal) {
    const { salt1, salt2, commitFrame, s0, s1 } = wal;
    if (!isU32Int(salt1) || !isU32Int(salt2) || !isU32Int(commitFrame) || !isU32Int(s0) || !isU32Int(s1)) return null;
    walBytes = 1 + uintBytes(salt1) + uintBytes(salt2) + uintBytes(commitFrame) + uintBytes(s0) + uintBytes(s1);
  }
  for (let i = from; i < from + count; i++) {
    const pg = pages[i]!;
    if (!isU32Int(pg[0]) || pg[1].length < pageSize) return null;
  }
  const brk = meta.continuityBreak === true;
  const gLen = count * 4;
  const dLen = count * pageSize;
  const bodyLen =
    3 + // map16
    4 + // k
    11 + // l
    11 + // t
    2 + uintBytes(n) +
    2 + uintBytes(part) +
    3 + // e
    2 + binHeadBytes(gLen) + gLen +
    2 + binHeadBytes(dLen) + dLen +
    2 + walBytes +
    (brk ? 3 : 0);
  const out = alloc(PART_HEADER_BYTES + bodyLen);
  let at = PART_HEADER_BYTES;
  out[at++] = 0xde;
  out[at++] = 0;
  out[at++] = brk ? 10 : 9;
  at = putKey(out, at, 0x6b); // k
  at = putKey(out, at, code.charCodeAt(0));
  at = putKey(out, at, 0x6c); // l
  at = putBigint(out, at, lsn);
  at = putKey(out, at, 0x74); // t
  at = putBigint(out, at, t);
  at = putKey(out, at, 0x6e); // n
  at = putUint(out, at, n);
  at = putKey(out, at, 0x70); // p
  at = putUint(out, at, part);
  at = putKey(out, at, 0x65); // e
  out[at++] = last ? 0xc3 : 0xc2;
  at = putKey(out, at, 0x67); // g
  at = putBinHead(out, at, gLen);
  for (let i = from; i < from + count; i++) {
    out.writeUInt32BE(pages[i]![0], at);
    at += 4;
  }
  at = putKey(out, at, 0x64); // d
  at = putBinHead(out, at, dLen);
  for (let i = from; i < from + count; i++) {
    const page = pages[i]![1];
    out.set(page.length === pageSize ? page : page.subarray(0, pageSize), at);
    at += pageSize;
  }
  at = putKey(out, at, 0x77); // w
  if (wal) {
    out[at++] = 0x95;
    at = putUint(out, at, wal.salt1);
    at = putUint(out, at, wal.salt2);
    at = putUint(out, at, wal.commitFrame);
    at = putUint(out, at, wal.s0);
    at = putUint(out, at, wal.s1);
  } else out[at++] = 0xc0;
  if (brk) {
    at = putKey(out, at, 0x7a); // z
    out[at++] = 0xc3;
  }
  if (at !== out.length) throw new Error(`assert: encoded a part of ${at} bytes into ${out.length}`);
  out.writeUInt32BE(bodyLen, 0);
  out.writeUInt32BE(crc32(out.subarray(PART_HEADER_BYTES)), 4);
  return out;
}

const isU32 = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= 0xffffffff;
const toBigint = (v: unknown): bigint | null =>
  typeof v === 'bigint' ? v : typeof v === 'number' && Number.isSafeInteger(v) ? BigInt(v) : null;

/**
 * Decodes a part body that passed its CRC. Returns the part or a reason it is malformed. Every field is
 * checked: a body that passed the CRC but came from a buggy or hostile writer is still refused.
 */
export function decodePartBody(body: Uint8Array, pageSize: number): RecordPart | string {
  let raw: unknown;
  try {
    raw = packr.unpack(body);
  } catch (e) {
    return `body does not decode (${(e as Error).message})`;
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return 'body is not a map';
  const o = raw as Record<string, unknown>;
  const kind = typeof o.k === 'string' ? CODE_KIND[o.k] : undefined;
  if (!kind) return 'unknown record kind';
  const l = toBigint(o.l);
  const t = toBigint(o.t);
  if (l === null || l < 1n) return 'bad lsn';
  if (t === null || t < 0n) return 'bad commit time';
  if (!isU32(o.n) || o.n < 1) return 'bad database size';
  if (!isU32(o.p)) return 'bad part number';
  if (typeof o.e !== 'boolean') return 'bad last flag';
  if (!(o.g instanceof Uint8Array) || o.g.length % 4 !== 0) return 'bad page list';
  if (!(o.d instanceof Uint8Array)) return 'bad page data';
  const count = o.g.length / 4;
  if (o.d.length !== count * pageSize) return `page data is ${o.d.length} bytes for ${count} pages of ${pageSize}`;
  const gv = new DataView(o.g.buffer, o.g.byteOffset, o.g.length);
  const pgnos = new Uint32Array(count);
  for (let i = 0; i < count; i++) {
    const pgno = gv.getUint32(i * 4);
    if (pgno < 1 || pgno > o.n || (i > 0 && pgno <= pgnos[i - 1]!)) return 'page numbers not ascending within size';
    pgnos[i] = pgno;
  }
  let wal: WalPosition | null = null;
  if (o.w !== null && o.w !== undefined) {
    if (!Array.isArray(o.w) || o.w.length !== 5 || !o.w.every(isU32)) return 'bad WAL position';
    const [salt1, salt2, commitFrame, s0, s1] = o.w as number[];
    wal = { salt1: salt1!, salt2: salt2!, commitFrame: commitFrame!, s0: s0!, s1: s1! };
  }
  if (o.x !== undefined && typeof o.x !== 'string') return 'bad note';
  if (o.z !== undefined && o.z !== true) return 'bad break flag';
  return {
    kind,
    lsn: l as Lsn,
    commitTimeUs: t,
    sizePages: o.n,
    part: o.p,
    last: o.e,
    pgnos,
    pageData: o.d,
    wal,
    note: o.x as string | undefined,
    continuityBreak: o.z === true,
  };
}

export function segmentName(incarnation: number, firstLsn: Lsn, lastLsn: Lsn | null): string {
  const i = incarnation.toString(16).padStart(8, '0');
  const f = firstLsn.toString(16).padStart(16, '0');
  return lastLsn === null ? `${i}-${f}.open` : `${i}-${f}-${lastLsn.toString(16).padStart(16, '0')}.seg`;
}

export function parseSegmentName(
  name: string,
): { incarnation: number; firstLsn: Lsn; lastLsn: Lsn | null } | null {
  const m = /^([0-9a-f]{8})-([0-9a-f]{16})(?:-([0-9a-f]{16})\.seg|\.open)$/.exec(name);
  if (!m) return null;
  return {
    incarnation: parseInt(m[1]!, 16),
    firstLsn: BigInt('0x' + m[2]!) as Lsn,
    lastLsn: m[3] ? (BigInt('0x' + m[3]) as Lsn) : null,
  };
}

export function segmentCorrupt(path: string, offset: number, why: string, cause?: unknown): RedoshipError {
  return new RedoshipError(
    'ARCHIVE_CORRUPT',
    `archive segment ${path} is damaged at byte ${offset}: ${why}`,
    'run `redoship archive verify` to see all damage; restore from another copy of the archive (a standby or a backup repository)',
    cause === undefined ? undefined : { cause },
  );
}
