/** Backup pieces: round trip for each compression, and damage is always detected, never returned. */
import { randomBytes } from 'node:crypto';
import { describe, expect, test } from 'vitest';
import { RedoshipError } from '../error/index.js';
import { decodePiece, encodeChunk, pieceHeader, type CompressionSpec } from './piece.js';

const pageSize = 4096;
function pages(from: number, n: number): Array<readonly [number, Buffer]> {
  // Half random, half repetitive: so compression has something to do and something it cannot do.
  return Array.from({ length: n }, (_, i) => [from + i, i % 2 ? randomBytes(pageSize) : Buffer.alloc(pageSize, i & 0xff)] as const);
}
function piece(c: CompressionSpec, chunks: Array<Array<readonly [number, Buffer]>>): Buffer {
  return Buffer.concat([pieceHeader(c), ...chunks.map((ch) => encodeChunk(ch, pageSize, c))]);
}

describe('backup pieces', () => {
  for (const c of [{ algorithm: 'none', level: 0 }, { algorithm: 'gzip', level: 1 }, { algorithm: 'gzip', level: 9 }, { algorithm: 'zstd', level: 1 }, { algorithm: 'zstd', level: 9 }] as CompressionSpec[])
    test(`round trip (${c.algorithm}:${c.level})`, () => {
      const a = pages(1, 256);
      const b = pages(300, 17);
      const out = decodePiece('p', piece(c, [a, b]), pageSize);
      expect(out.map(([p]) => p)).toEqual([...a, ...b].map(([p]) => p));
      out.forEach(([, img], i) => expect(img.equals([...a, ...b][i]![1])).toBe(true));
    });

  test('gzip and zstd make repetitive pages smaller', () => {
    const p = pages(1, 64);
    for (const algorithm of ['gzip', 'zstd'] as const)
      expect(piece({ algorithm, level: 1 }, [p]).length).toBeLessThan(piece({ algorithm: 'none', level: 0 }, [p]).length * 0.6);
  });

  test('every truncation and every single flipped byte is refused as ARCHIVE_CORRUPT (seeded sample)', () => {
    for (const algorithm of ['gzip', 'zstd'] as const) {
    const good = piece({ algorithm, level: 1 }, [pages(1, 40), pages(50, 10)]);
    let seed = 7;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 4294967296);
    for (let i = 0; i < 400; i++) {
      const bad = Buffer.from(good);
      if (i % 2) bad[Math.floor(rnd() * bad.length)] ^= 1 + Math.floor(rnd() * 255);
      const cut = i % 2 ? bad : bad.subarray(0, Math.floor(rnd() * (bad.length - 1)));
      if (i % 2 === 0 && cut.length <= 16) continue; // a header alone is an empty piece: the manifest's page count catches it
      try {
        const out = decodePiece('p', cut, pageSize);
        // Only a flip inside gzip's own framing that still decodes to the same bytes may pass; then the
        // pages must be exactly the good ones.
        const ref = decodePiece('p', good, pageSize);
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
});
