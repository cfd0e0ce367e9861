/**
 * One chunk into and out of its stored form, with its page hashes: the work codec-worker.ts does on a worker
 * thread, and take.ts does inline for a set too small to be worth starting workers for. Pure computation on
 * the buffers given (the encode buffer layout is codec-pool.ts's).
 */
import { PAGE_HASH_ALGORITHM, PAGE_HASH_BYTES, pageHashInto, type PageHashAlgorithm } from '../sqlite/page-hash.js';
import { encodeOutputAt } from './codec-pool.js';
import { CHUNK_HEADER_BYTES, MAX_CHUNK_PAGES, chunkCrc, decodeStored, encodeRaw, maxStoredBytes, writeChunkHeader, zstdInto, type CompressionSpec, type PieceFormat } from './piece.js';

/** The page hashes of raw chunk bytes (count page numbers, then count images), PAGE_HASH_BYTES each. */
export function pageHashes(raw: Buffer, count: number, pageSize: number, algorithm: PageHashAlgorithm = PAGE_HASH_ALGORITHM): Buffer {
  const out = Buffer.allocUnsafeSlow(count * PAGE_HASH_BYTES);
  for (let i = 0; i < count; i++) pageHashInto(raw.readUInt32BE(i * 4), raw.subarray(count * 4 + i * pageSize, count * 4 + (i + 1) * pageSize), out, i * PAGE_HASH_BYTES, algorithm);
  return out;
}

/**
 * Encodes the chunk in an encode buffer (codec-pool.ts: header room, MAX_CHUNK_PAGES page-number slots, the
 * images, then an output area). framed is the chunk as the piece holds it, always in `all`'s own memory: in
 * place when stored uncompressed and unencrypted, else in the output area (zstd compresses straight into it).
 */
export function encodeChunkBuffer(all: Buffer, count: number, pageSize: number, c: CompressionSpec, key: Buffer | undefined): { framed: Buffer; hashes: Buffer; inPlace: boolean } {
  const imagesAt = CHUNK_HEADER_BYTES + MAX_CHUNK_PAGES * 4;
  if (count < MAX_CHUNK_PAGES) all.copyWithin(CHUNK_HEADER_BYTES + count * 4, imagesAt, imagesAt + count * pageSize);
  const raw = all.subarray(CHUNK_HEADER_BYTES, CHUNK_HEADER_BYTES + count * (4 + pageSize));
  const hashes = pageHashes(raw, count, pageSize);
  let framed: Buffer;
  if (c.algorithm === 'none' && !key) framed = all.subarray(0, CHUNK_HEADER_BYTES + raw.length);
  else {
    const out = encodeOutputAt(pageSize);
    const room = all.subarray(out + CHUNK_HEADER_BYTES, out + CHUNK_HEADER_BYTES + maxStoredBytes(pageSize));
    let n: number;
    if (c.algorithm === 'zstd' && !key) n = zstdInto(room, raw, c.level);
    else {
      const { stored } = encodeRaw(raw, count, c, key);
      if (stored.length > room.length) throw new Error(`assert: a chunk of ${stored.length} stored bytes`);
      room.set(stored);
      n = stored.length;
    }
    framed = all.subarray(out, out + CHUNK_HEADER_BYTES + n);
  }
  writeChunkHeader(framed, framed.length - CHUNK_HEADER_BYTES, chunkCrc(raw, framed.subarray(CHUNK_HEADER_BYTES), count, key !== undefined), count);
  return { framed, hashes, inPlace: true };
}

/**
 * Checks and decodes one chunk's stored bytes (piece.ts decodeStored: CRC, decryption, decompression, length,
 * page numbers ascending), and hashes its pages with `algorithm`. raw is `stored` itself when it was stored as is, else in
 * `into` when given (count * (4 + pageSize) bytes).
 */
export function decodeChunk(name: string, offset: number, stored: Buffer, count: number, crc: number, pageSize: number, format: PieceFormat, key: Buffer | undefined, algorithm: PageHashAlgorithm, into?: Buffer): { raw: Buffer; hashes: Buffer } {
  const raw = decodeStored(name, { offset, stored, count, crc }, pageSize, format, key, into);
  return { raw, hashes: pageHashes(raw, count, pageSize, algorithm) };
}
