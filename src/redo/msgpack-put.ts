/**
 * msgpack, written by hand where a copy matters: the few primitives encodeFramedPart (segment-format.ts) and
 * encodeRedoMessage (transport/server.ts) lay out, each byte for byte what msgpackr writes for the same value
 * (useRecords: false). Each put* writes at b[at] and returns the offset after what it wrote. The tests of
 * those two functions hold them to msgpackr's bytes.
 */

/** Bytes of a non-negative integer below 2^32 as msgpackr writes it. */
export const uintBytes = (v: number): number => (v < 0x80 ? 1 : v < 0x100 ? 2 : v < 0x10000 ? 3 : 5);
/** Bytes of the head of a bin of n bytes (bin8, bin16, bin32). */
export const binHeadBytes = (n: number): number => (n < 0x100 ? 2 : n < 0x10000 ? 3 : 5);

const BIGINT_MIN_U64_AS_UINT = 0x8000000000000000n;

/** v (below 2^32) after the tag of its width: tags[0] with 1 byte, tags[1] with 2, tags[2] with 4. */
function putSized(b: Buffer, at: number, v: number, tags: readonly [number, number, number]): number {
  if (v < 0x100) {
    b[at] = tags[0];
    b[at + 1] = v;
    return at + 2;
  }
  if (v < 0x10000) {
    b[at] = tags[1];
    b.writeUInt16BE(v, at + 1);
    return at + 3;
  }
  b[at] = tags[2];
  b.writeUInt32BE(v, at + 1);
  return at + 5;
}

const UINT_TAGS = [0xcc, 0xcd, 0xce] as const;
const BIN_TAGS = [0xc4, 0xc5, 0xc6] as const;

/** A non-negative integer below 2^32: positive fixint, uint8, uint16, uint32. */
export function putUint(b: Buffer, at: number, v: number): number {
  if (v < 0x80) {
    b[at] = v;
    return at + 1;
  }
  return putSized(b, at, v, UINT_TAGS);
}

/** The head of a bin of n bytes (the bytes themselves follow): bin8, bin16, bin32. */
export function putBinHead(b: Buffer, at: number, n: number): number {
  return putSized(b, at, n, BIN_TAGS);
}

/** A bigint in [0, 2^64): int64 while it fits, else uint64 (9 bytes either way). */
export function putBigint(b: Buffer, at: number, v: bigint): number {
  if (v < BIGINT_MIN_U64_AS_UINT) {
    b[at] = 0xd3;
    b.writeBigInt64BE(v, at + 1);
  } else {
    b[at] = 0xcf;
    b.writeBigUInt64BE(v, at + 1);
  }
  return at + 9;
}

/** A one-letter fixstr key. */
export function putKey(b: Buffer, at: number, key: number): number {
  b[at] = 0xa1;
  b[at + 1] = key;
  return at + 2;
}
