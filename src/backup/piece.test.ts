/** Backup pieces: round trip for each compression, and damage is always detected, never returned. */
import { randomBytes } from 'node:crypto';
import { describe, expect, test } from 'vitest';
import { RedoshipError } from '../error/index.js';
import { crc32 } from 'node:zlib';
import { PAGE_HASH_ALGORITHM, PAGE_HASH_BYTES, pageHash } from '../sqlite/index.js';
import { CHUNK_HEADER_BYTES, PIECE_HEADER_BYTES, decodePiece, encodeChunk, pieceHeader, type CompressionSpec } from './piece.js';

const pageSize = 4096;
function pages(from: number, n: number): Array<readonly [number, Buffer]> {
  // Half random, half repetitive: so compression has something to do and something it cannot do.
  return Array.from({ length: n }, (_, i) => [from + i, i % 2 ? randomBytes(pageSize) : Buffer.alloc(pageSize, i & 0xff)] as const);
}
function piece(c: CompressionSpec, chunks: Array<Array<readonly [number, Buffer]>>): Buffer {
  return Buffer.concat([pieceHeader(c), ...chunks.map((ch) => encodeChunk(ch, pageSize, c))]);
}
/** The page hashes of the chunks' pages in order: what the set's page-hash file holds for them. */
function hashesOf(chunks: Array<Array<readonly [number, Buffer]>>): Buffer {
  return Buffer.concat(chunks.flat().map(([pgno, img]) => pageHash(pgno, img)));
}

describe('backup pieces', () => {
  for (const c of [{ algorithm: 'none', level: 0 }, { algorithm: 'gzip', level: 1 }, { algorithm: 'gzip', level: 9 }, { algorithm: 'zstd', level: 1 }, { algorithm: 'zstd', level: 9 }] as CompressionSpec[])
    test(`round trip (${c.algorithm}:${c.level})`, () => {
      const a = pages(1, 256);
      const b = pages(300, 17);
      const out = decodePiece('p', piece(c, [a, b]), pageSize, undefined, hashesOf([a, b]), PAGE_HASH_ALGORITHM);
      expect(out.map(([p]) => p)).toEqual([...a, ...b].map(([p]) => p));
      out.forEach(([, img], i) => expect(img.equals([...a, ...b][i]![1])).toBe(true));
    });

  test('gzip and zstd make repetitive pages smaller', () => {
    const p = pages(1, 64);
    for (const algorithm of ['gzip', 'zstd'] as const)
      expect(piece({ algorithm, level: 1 }, [p]).length).toBeLessThan(piece({ algorithm: 'none', level: 0 }, [p]).length * 0.6);
  });

  test('every truncation and every single flipped byte is refused as ARCHIVE_CORRUPT (seeded sample)', () => {
    for (const algorithm of ['none', 'gzip', 'zstd'] as const) {
    const chunks = [pages(1, 40), pages(50, 10)];
    const good = piece({ algorithm, level: 1 }, chunks);
    const expected = hashesOf(chunks);
    let seed = 7;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 4294967296);
    for (let i = 0; i < 400; i++) {
      const bad = Buffer.from(good);
      if (i % 2) bad[Math.floor(rnd() * bad.length)] ^= 1 + Math.floor(rnd() * 255);
      const cut = i % 2 ? bad : bad.subarray(0, Math.floor(rnd() * (bad.length - 1)));
      if (i % 2 === 0 && cut.length <= 16) continue; // a header alone is an empty piece: the manifest's page count catches it
      try {
        const out = decodePiece('p', cut, pageSize, undefined, expected, PAGE_HASH_ALGORITHM);
        // Only a flip inside gzip's own framing that still decodes to the same bytes may pass; then the
        // pages must be exactly the good ones.
        expect(algorithm).toBe('gzip');
        const ref = decodePiece('p', good, pageSize, undefined, expected, PAGE_HASH_ALGORITHM);
        expect(out.length).toBe(ref.length);
        out.forEach(([pg, img], k) => {
          expect(pg).toBe(ref[k]![0]);
          expect(img.equals(ref[k]![1])).toBe(true);
        });
      } catch (e) {
        expect(e).toBeInstanceOf(RedoshipError);
        expect((e as RedoshipError).code).toBe('ARCHIVE_CORRUPT');
      }
    }
    }
  });

  test('pages are checked with the algorithm the set names: sha256-128 hashes pass as sha256-128 and are refused as xxh3-128', () => {
    const chunk = pages(40, 9);
    const good = piece({ algorithm: 'zstd', level: 1 }, [chunk]);
    const sha = Buffer.concat(chunk.map(([pgno, img]) => pageHash(pgno, img, 'sha256-128')));
    expect(decodePiece('p', good, pageSize, undefined, sha, 'sha256-128').map(([p]) => p)).toEqual(chunk.map(([p]) => p));
    expect(() => decodePiece('p', good, pageSize, undefined, sha, 'xxh3-128')).toThrow(/page 40 does not match its recorded hash/);
    expect(() => decodePiece('p', good, pageSize, undefined, hashesOf([chunk]), 'sha256-128')).toThrow(/page 40 does not match its recorded hash/);
  });

  test('version 2, uncompressed: the CRC covers the page numbers, the page hashes the images; version 1 is still read', () => {
    const chunk = pages(7, 5);
    const good = piece({ algorithm: 'none', level: 0 }, [chunk]);
    const at = PIECE_HEADER_BYTES + CHUNK_HEADER_BYTES;
    expect(good.readUInt32BE(4)).toBe(2);
    expect(good.readUInt32BE(PIECE_HEADER_BYTES + 4)).toBe(crc32(good.subarray(at, at + 4 * 5)));
    const expected = hashesOf([chunk]);
    const refused = (b: Buffer, why: RegExp) => expect(() => decodePiece('p', b, pageSize, undefined, expected, PAGE_HASH_ALGORITHM)).toThrow(why);
    const pgnoFlipped = Buffer.from(good);
    pgnoFlipped[at + 4 * 2 + 3]! ^= 0x01; // page 9 -> 8: still a page number, the CRC refuses it
    refused(pgnoFlipped, /chunk checksum mismatch/);
    const imageFlipped = Buffer.from(good);
    imageFlipped[at + 4 * 5 + 3 * pageSize + 17]! ^= 0x10;
    refused(imageFlipped, /page 10 does not match its recorded hash/);
    // The same chunk with a wrong hash file: refused, not returned.
    const otherHashes = Buffer.from(expected);
    otherHashes[PAGE_HASH_BYTES * 4]! ^= 1;
    expect(() => decodePiece('p', good, pageSize, undefined, otherHashes, PAGE_HASH_ALGORITHM)).toThrow(/page 11 does not match its recorded hash/);
    expect(() => decodePiece('p', good, pageSize, undefined, expected.subarray(0, 4 * PAGE_HASH_BYTES), PAGE_HASH_ALGORITHM)).toThrow(/more pages than/);
    // Version 1: the CRC over all the stored bytes. Read as before; a version 2 CRC under a version 1 header
    // (or the reverse) is damage.
    const v1 = Buffer.from(good);
    v1.writeUInt32BE(1, 4);
    refused(v1, /chunk checksum mismatch/);
    v1.writeUInt32BE(crc32(v1.subarray(at)), PIECE_HEADER_BYTES + 4);
    expect(decodePiece('p', v1, pageSize, undefined, expected, PAGE_HASH_ALGORITHM).map(([p]) => p)).toEqual([7, 8, 9, 10, 11]);
    const v2WithV1Crc = Buffer.from(v1);
    v2WithV1Crc.writeUInt32BE(2, 4);
    refused(v2WithV1Crc, /chunk checksum mismatch/);
  });
});
