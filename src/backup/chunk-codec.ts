/**
 * One chunk into and out of its stored form, with its page hashes: the work codec-worker.ts does on a worker
 * thread, and take.ts does inline for a set too small to be worth starting workers for. Pure computation on
 * the buffers given (the encode buffer layout is codec-pool.ts's).
 */
import { PAGE_HASH_BYTES, pageHash } from '../sqlite/index.js';
import { CHUNK_HEADER_BYTES, MAX_CHUNK_PAGES, decodeStored, encodeRaw, writeChunkHeader, type Compression, type CompressionSpec } from './piece.js';

/** The page hashes of raw chunk bytes (count page numbers, then count images), PAGE_HASH_BYTES each. */
export function pageHashes(raw: Buffer, count: number, pageSize: number): Buffer {
  const out = Buffer.allocUnsafeSlow(count * PAGE_HASH_BYTES);
  for (let i = 0; i < count; i++) pageHash(raw.readUInt32BE(i * 4), raw.subarray(count * 4 + i * pageSize, count * 4 + (i + 1) * pageSize)).copy(out, i * PAGE_HASH_BYTES);
  return out;
}

/**
 * Encodes the chunk in an encode buffer (codec-pool.ts: header room, MAX_CHUNK_PAGES page-number slots, then
 * the images). framed is the chunk as the piece holds it; inPlace when it is `all`'s own memory (stored
 * uncompressed and unencrypted), else new shared memory.
 */
export function encodeChunkBuffer(all: Buffer, count: number, pageSize: number, c: CompressionSpec, key: Buffer | undefined): { framed: Buffer; hashes: Buffer; inPlace: boolean } {
  const imagesAt = CHUNK_HEADER_BYTES + MAX_CHUNK_PAGES * 4;
  if (count < MAX_CHUNK_PAGES) all.copyWithin(CHUNK_HEADER_BYTES + count * 4, imagesAt, imagesAt + count * pageSize);
  const raw = all.subarray(CHUNK_HEADER_BYTES, CHUNK_HEADER_BYTES + count * (4 + pageSize));
  const hashes = pageHashes(raw, count, pageSize);
  const { stored, crc } = encodeRaw(raw, c, key);
  let framed: Buffer;
  const inPlace = stored === raw;
  if (inPlace) framed = all.subarray(0, CHUNK_HEADER_BYTES + raw.length);
  else {
    framed = Buffer.from(new SharedArrayBuffer(CHUNK_HEADER_BYTES + stored.length));
    stored.copy(framed, CHUNK_HEADER_BYTES);
  }
  writeChunkHeader(framed, stored.length, crc, count);
  return { framed, hashes, inPlace };
}

/**
 * Checks and decodes one chunk's stored bytes (piece.ts decodeStored: CRC, decryption, decompression, length,
 * page numbers ascending), and hashes its pages. raw is `stored` itself when it was stored as is.
 */
export function decodeChunk(name: string, offset: number, stored: Buffer, count: number, crc: number, pageSize: number, algorithm: Compression, key: Buffer | undefined): { raw: Buffer; hashes: Buffer } {
  const raw = decodeStored(name, { offset, stored, count, crc }, pageSize, algorithm, key);
  return { raw, hashes: pageHashes(raw, count, pageSize) };
}
