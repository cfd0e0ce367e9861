/*
 * BACKUP PIECE FORMAT, version 2. A piece holds page images of one backup set, in ascending pgno order.
 * Integers big-endian.
 *
 * Header, 16 bytes:   0 magic 'RDPC'   4 version (2; 1 is read)   8 compression (0 none, 1 gzip, 2 zstd)   12 flags
 *                     (bit 0: chunks are encrypted: their stored bytes are a 12-byte nonce, the AES-256-GCM
 *                     ciphertext of the compressed bytes, and the 16-byte tag)
 * Then chunks, back to back:
 *    0  4  stored length N (bytes that follow the 12-byte chunk header)
 *    4  4  CRC-32 of the bytes it covers (below)
 *    8  4  page count C (1..MAX_CHUNK_PAGES)
 *   12  N  compressed (or not) bytes of: C page numbers (u32 each), then C page images
 *
 * What the CRC covers (version 2): in an unencrypted piece, the chunk's 4*C page-number bytes (of the
 * decompressed bytes); in an encrypted one, the N stored bytes (so that damage is told from a wrong key). The
 * images are covered by the set's page hashes, which every reader compares each image with (restore,
 * validate, merge: decodePiece takes them); damage to compressed bytes shows as a stream that does not
 * decompress, a wrong length, a page-number CRC or a page hash that does not match. Version 1 (still read)
 * took the CRC over all N stored bytes: a second pass over every byte (~0.3 s of CPU per GiB here, a tenth
 * of a restore's) that could only catch what the page hashes catch.
 *
 * Invariants: (1) page numbers ascend within a chunk and across chunks; (2) a chunk is valid iff its length is
 * bounded, its CRC matches, it decompresses to exactly 4*C + C*pageSize bytes and each image matches its page
 * hash; (3) the piece ends exactly after its last chunk (a truncated piece is damage, detected by the reader
 * and by the manifest's piece checksum).
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { crc32, gunzipSync, gzipSync } from 'node:zlib';
import { Compressor, decompress as zstdDecompress } from 'zstd-napi';
import zstdBinding from 'zstd-napi/binding.js';
import { RedoshipError } from '../error/index.js';
import { PAGE_HASH_BYTES, pageHash, type PageHashAlgorithm } from '../sqlite/index.js';

export const PIECE_MAGIC = 0x52445043; // 'RDPC'
export const PIECE_VERSION = 2;
export const PIECE_HEADER_BYTES = 16;
export const CHUNK_HEADER_BYTES = 12;
/** Pages per chunk: 256 pages of 4 KiB is 1 MiB, large enough for compression to work well. */
export const MAX_CHUNK_PAGES = 256;

/**
 * zstd is the default: single-threaded zstd -1 runs ~240 MiB/s here, gzip -1 ~40 MiB/s (DESIGN.md Backups).
 * It comes from zstd-napi (the zstd C library, built from source at install).
 */
export type Compression = 'none' | 'gzip' | 'zstd';
const COMPRESSION_CODE: Record<Compression, number> = { none: 0, gzip: 1, zstd: 2 };
const CODE_COMPRESSION: Record<number, Compression> = { 0: 'none', 1: 'gzip', 2: 'zstd' };

const zstdCompressors = new Map<number, Compressor>();
function zstd(raw: Buffer, level: number): Buffer {
  let c = zstdCompressors.get(level);
  if (!c) {
    c = new Compressor();
    c.setParameters({ compressionLevel: level });
    zstdCompressors.set(level, c);
  }
  return c.compress(raw);
}

/** One compression context per level and thread, for zstdInto. */
const zstdContexts = new Map<number, InstanceType<typeof zstdBinding.CCtx>>();

/**
 * zstd-compresses raw into dst (at least maxStoredBytes long) and returns the compressed length: the same
 * frame as zstd() (ZSTD_compress2 at that level), without a new buffer for it and a copy out of it.
 */
export function zstdInto(dst: Uint8Array, raw: Uint8Array, level: number): number {
  let c = zstdContexts.get(level);
  if (!c) {
    c = new zstdBinding.CCtx();
    c.setParameter(zstdBinding.CParameter.compressionLevel, level);
    zstdContexts.set(level, c);
  }
  return c.compress2(dst, raw);
}

let zstdDctx: InstanceType<typeof zstdBinding.DCtx> | null = null;

/**
 * zstd-decompresses stored into dst, which must be exactly as long as the content is meant to be: the
 * decompressed length, or an error when the frame is larger (zstd refuses to overrun dst) or not one frame.
 */
export function zstdDecompressInto(dst: Uint8Array, stored: Uint8Array): number {
  zstdDctx ??= new zstdBinding.DCtx();
  return zstdDctx.decompress(dst, stored);
}

export interface CompressionSpec {
  readonly algorithm: Compression;
  /** Algorithm level (gzip 1..9). */
  readonly level: number;
}

export function pieceHeader(c: CompressionSpec, encrypted = false): Buffer {
  const b = Buffer.alloc(PIECE_HEADER_BYTES);
  b.writeUInt32BE(PIECE_MAGIC, 0);
  b.writeUInt32BE(PIECE_VERSION, 4);
  b.writeUInt32BE(COMPRESSION_CODE[c.algorithm], 8);
  b.writeUInt32BE(encrypted ? 1 : 0, 12);
  return b;
}

function encrypt(key: Buffer, plain: Buffer): Buffer {
  const nonce = randomBytes(12);
  const c = createCipheriv('aes-256-gcm', key, nonce);
  const body = Buffer.concat([c.update(plain), c.final()]);
  return Buffer.concat([nonce, body, c.getAuthTag()]);
}

/** One chunk: the pages (ascending, each pageSize bytes) framed and compressed. */
export function encodeChunk(pages: ReadonlyArray<readonly [number, Uint8Array]>, pageSize: number, c: CompressionSpec, key?: Buffer): Buffer {
  const raw = Buffer.allocUnsafe(pages.length * (4 + pageSize));
  pages.forEach(([pgno, page], i) => {
    raw.writeUInt32BE(pgno, i * 4);
    raw.set(page, pages.length * 4 + i * pageSize);
  });
  const { stored, crc } = encodeRaw(raw, pages.length, c, key);
  return Buffer.concat([chunkHeader(stored.length, crc, pages.length), stored]);
}

/** A chunk's raw bytes (count page numbers, then images) as stored: compressed, maybe encrypted; with their CRC. */
export function encodeRaw(raw: Buffer, count: number, c: CompressionSpec, key?: Buffer): { stored: Buffer; crc: number } {
  const compressed = c.algorithm === 'gzip' ? gzipSync(raw, { level: c.level }) : c.algorithm === 'zstd' ? zstd(raw, c.level) : raw;
  const stored = key ? encrypt(key, compressed) : compressed;
  return { stored, crc: chunkCrc(raw, stored, count, key !== undefined) };
}

/**
 * The CRC a version 2 chunk's header carries (see the format above): of its raw bytes' page numbers, or of
 * its stored bytes when encrypted.
 */
export function chunkCrc(raw: Uint8Array, stored: Uint8Array, count: number, encrypted: boolean): number {
  return encrypted ? crc32(stored) : crc32(raw.subarray(0, 4 * count));
}

export function chunkHeader(storedBytes: number, crc: number, count: number): Buffer {
  const head = Buffer.alloc(CHUNK_HEADER_BYTES);
  writeChunkHeader(head, storedBytes, crc, count);
  return head;
}

/** A chunk header into the first CHUNK_HEADER_BYTES of buf. */
export function writeChunkHeader(buf: Buffer, storedBytes: number, crc: number, count: number): void {
  buf.writeUInt32BE(storedBytes, 0);
  buf.writeUInt32BE(crc, 4);
  buf.writeUInt32BE(count, 8);
}

export function pieceCorrupt(name: string, offset: number, why: string): RedoshipError {
  return new RedoshipError(
    'ARCHIVE_CORRUPT',
    `backup piece ${name} is damaged at byte ${offset}: ${why}`,
    'run `redoship validate` to see all damage; restore from another copy (--copy destination) or an older backup set',
  );
}

/** One framed chunk of a piece, not yet checked beyond its bounds. */
export interface StoredChunk {
  /** Offset of its header in the piece (for messages). */
  readonly offset: number;
  readonly stored: Buffer;
  readonly count: number;
  readonly crc: number;
}

/** What a piece's header says about how to read its chunks. */
export interface PieceFormat {
  readonly version: number;
  readonly algorithm: Compression;
  readonly encrypted: boolean;
}

/** The piece's header. Throws ARCHIVE_CORRUPT / WRONG_KEY. */
export function readPieceHeader(name: string, buf: Buffer, key: Buffer | undefined): PieceFormat {
  if (buf.length < PIECE_HEADER_BYTES || buf.readUInt32BE(0) !== PIECE_MAGIC) throw pieceCorrupt(name, 0, 'not a redoship backup piece');
  const version = buf.readUInt32BE(4);
  if (version !== 1 && version !== PIECE_VERSION) throw pieceCorrupt(name, 4, `piece format version ${version} (this redoship reads 1 and ${PIECE_VERSION})`);
  const algorithm = CODE_COMPRESSION[buf.readUInt32BE(8)];
  if (!algorithm) throw pieceCorrupt(name, 8, `unknown compression ${buf.readUInt32BE(8)}`);
  const flags = buf.readUInt32BE(12);
  if (flags > 1) throw pieceCorrupt(name, 12, `unknown flags ${flags}`);
  const encrypted = flags === 1;
  if (encrypted && !key) throw new RedoshipError('WRONG_KEY', `backup piece ${name} is encrypted`, 'give the key file it was made with: --encrypt-key-file FILE');
  return { version, algorithm, encrypted };
}

/** The most stored bytes a chunk may claim: all its pages uncompressed, zstd's worst case, a nonce and a tag. */
export const maxStoredBytes = (pageSize: number): number => MAX_CHUNK_PAGES * (4 + pageSize) + 65536 + 28;

/** The chunks of a piece, in order, with their lengths and counts bounded (invariants (2) and (3)). */
export function* pieceChunks(name: string, buf: Buffer, pageSize: number): Generator<StoredChunk> {
  let off = PIECE_HEADER_BYTES;
  while (off < buf.length) {
    if (off + CHUNK_HEADER_BYTES > buf.length) throw pieceCorrupt(name, off, 'the piece ends inside a chunk header');
    const len = buf.readUInt32BE(off);
    const count = buf.readUInt32BE(off + 8);
    const maxStored = maxStoredBytes(pageSize);
    if (len > maxStored || count === 0 || count > MAX_CHUNK_PAGES) throw pieceCorrupt(name, off, `chunk claims ${len} bytes, ${count} pages`);
    if (off + CHUNK_HEADER_BYTES + len > buf.length) throw pieceCorrupt(name, off, 'the piece ends inside a chunk (truncated)');
    yield { offset: off, stored: buf.subarray(off + CHUNK_HEADER_BYTES, off + CHUNK_HEADER_BYTES + len), count, crc: buf.readUInt32BE(off + 4) };
    off += CHUNK_HEADER_BYTES + len;
  }
}

/**
 * A chunk's raw bytes (count page numbers, then count images) from what is stored: CRC checked, decrypted,
 * decompressed, its length checked. The page numbers are checked to ascend within the chunk. Raw bytes
 * that differ from the stored ones are put in `into` when given (exactly count * (4 + pageSize) bytes;
 * zstd decompresses straight into it). The caller must compare each image with its page hash (the CRC may
 * not cover them: see the format above).
 */
export function decodeStored(name: string, c: StoredChunk, pageSize: number, format: PieceFormat, key: Buffer | undefined, into?: Buffer): Buffer {
  const { offset: off, stored, count } = c;
  const { algorithm } = format;
  const crcOfStored = format.version === 1 || format.encrypted;
  if (crcOfStored && crc32(stored) !== c.crc) throw pieceCorrupt(name, off, 'chunk checksum mismatch');
  let plain: Buffer = stored;
  if (key) {
    if (stored.length < 28) throw pieceCorrupt(name, off, 'an encrypted chunk shorter than its nonce and tag');
    try {
      const d = createDecipheriv('aes-256-gcm', key, stored.subarray(0, 12));
      d.setAuthTag(stored.subarray(stored.length - 16));
      plain = Buffer.concat([d.update(stored.subarray(12, stored.length - 16)), d.final()]);
    } catch {
      throw new RedoshipError('WRONG_KEY', `backup piece ${name} does not decrypt at byte ${off} (the CRC matched: the key is wrong)`, 'give the key file the set was made with');
    }
  }
  let raw: Buffer;
  const want = count * (4 + pageSize);
  try {
    if (algorithm === 'zstd' && into && into.length === want) {
      const n = zstdDecompressInto(into, plain);
      raw = into.subarray(0, n);
    } else
      raw =
        algorithm === 'gzip'
          ? gunzipSync(plain, { maxOutputLength: want })
          : algorithm === 'zstd'
            ? zstdDecompress(plain)
            : plain;
  } catch (e) {
    throw pieceCorrupt(name, off, `chunk does not decompress (${(e as Error).message})`);
  }
  if (raw.length !== want) throw pieceCorrupt(name, off, `chunk holds ${raw.length} bytes for ${count} pages`);
  if (!crcOfStored && crc32(raw.subarray(0, 4 * count)) !== c.crc) throw pieceCorrupt(name, off, 'chunk checksum mismatch');
  if (into && raw !== stored && raw.buffer !== into.buffer) {
    if (into.length !== want) throw new Error(`assert: ${into.length} bytes of room for a chunk of ${want}`);
    raw.copy(into);
    raw = into;
  }
  for (let i = 1; i < count; i++) if (raw.readUInt32BE(i * 4) <= raw.readUInt32BE(i * 4 - 4)) throw pieceCorrupt(name, off, 'page numbers do not ascend');
  return raw;
}

/**
 * A piece's pages in order, decoded a chunk at a time (memory: the piece and one decoded chunk), checking
 * everything: expected holds the page hashes of its pages in order (from the set's page-hash file, at the
 * piece's first page, taken with `algorithm`), and every image is compared with its own before it is yielded. Throws ARCHIVE_CORRUPT
 * naming the piece. An image is a view of the piece or of the chunk's decoded bytes.
 */
export function* piecePages(name: string, buf: Buffer, pageSize: number, key: Buffer | undefined, expected: Buffer, algorithm: PageHashAlgorithm): Generator<readonly [number, Buffer]> {
  const format = readPieceHeader(name, buf, key);
  let lastPgno = 0;
  let k = 0;
  for (const c of pieceChunks(name, buf, pageSize)) {
    const raw = decodeStored(name, c, pageSize, format, format.encrypted ? key : undefined);
    const count = c.count;
    if (raw.readUInt32BE(0) <= lastPgno) throw pieceCorrupt(name, c.offset, 'page numbers do not ascend');
    for (let i = 0; i < count; i++, k++) {
      const pgno = raw.readUInt32BE(i * 4);
      const image = raw.subarray(count * 4 + i * pageSize, count * 4 + (i + 1) * pageSize);
      if (expected.length < (k + 1) * PAGE_HASH_BYTES) throw pieceCorrupt(name, c.offset, `it holds more pages than the set's page-hash file lists`);
      if (!pageHash(pgno, image, algorithm).equals(expected.subarray(k * PAGE_HASH_BYTES, (k + 1) * PAGE_HASH_BYTES))) throw pieceCorrupt(name, c.offset, `page ${pgno} does not match its recorded hash`);
      yield [pgno, image];
    }
    lastPgno = raw.readUInt32BE((count - 1) * 4);
  }
}

/** piecePages, all at once. */
export function decodePiece(name: string, buf: Buffer, pageSize: number, key: Buffer | undefined, expected: Buffer, algorithm: PageHashAlgorithm): Array<readonly [number, Buffer]> {
  return [...piecePages(name, buf, pageSize, key, expected, algorithm)];
}
