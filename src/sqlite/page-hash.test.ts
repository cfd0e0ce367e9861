import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { describe, expect, test } from 'vitest';
import { golden, sqliteCheckpointed, withSqlite } from '../../test/golden/golden.js';
import { maskPage1, parseDbHeader, STANDBY_HEADER_RANGES } from './db-header.js';
import { pageHash, pageHashAlgorithmNamed, pageHashInto, PAGE_HASH_ALGORITHM, PAGE_HASH_ALGORITHMS, PAGE_HASH_BYTES } from './page-hash.js';

const sha256 = (b: Uint8Array): Buffer => createHash('sha256').update(b).digest();

const pages = (file: Buffer, pageSize: number): Buffer[] =>
  Array.from({ length: file.length / pageSize }, (_, i) => file.subarray(i * pageSize, (i + 1) * pageSize));

const hashes = (file: Buffer): string[] => {
  const ps = parseDbHeader(file)!.pageSize;
  return pages(file, ps).map((p, i) => pageHash(i + 1, p).toString('hex'));
};

/** Offsets where two equal-length buffers differ. */
const diff = (a: Buffer, b: Buffer): number[] => [...a.keys()].filter((i) => a[i] !== b[i]);
const masked = (i: number): boolean => STANDBY_HEADER_RANGES.some(([s, e]) => i >= s && i < e);

describe('pageHash', () => {
  // Known answers from two other XXH3 implementations (@node-rs/xxhash's Rust port and hash-wasm's build of
  // the reference C), run by hand: the canonical 128-bit form, high half first.
  test('is XXH3-128 of the page in canonical form, the same bytes as other implementations give', () => {
    const page = Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 31) & 0xff));
    expect(PAGE_HASH_BYTES).toBe(16);
    expect(PAGE_HASH_ALGORITHM).toBe('xxh3-128');
    expect(pageHash(2, page).toString('hex')).toBe('20cb17a3c7d96f47c90052126f9618dc');
    expect(pageHash(2, Buffer.from('abc')).toString('hex')).toBe('06b05ab6733a618578af5f94892f3950');
    expect(pageHash(12345, page)).toEqual(pageHash(2, page));
  });

  test('sha256-128 (sets written before the manifest named it) is the first 16 bytes of SHA-256', () => {
    const page = Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 31) & 0xff));
    expect(pageHash(2, page, 'sha256-128')).toEqual(sha256(page).subarray(0, 16));
    expect(pageHash(2, page, 'sha256-128')).not.toEqual(pageHash(2, page));
  });

  test('pageHashInto writes the same bytes at the offset, for either algorithm', () => {
    const page = randomBytes(4096);
    for (const a of PAGE_HASH_ALGORITHMS) {
      const out = Buffer.alloc(40, 0xee);
      pageHashInto(7, page, out, 11, a);
      expect(out.subarray(11, 27)).toEqual(pageHash(7, page, a));
      expect(out.subarray(0, 11).every((b) => b === 0xee) && out.subarray(27).every((b) => b === 0xee)).toBe(true);
    }
  });

  test('of page 1 is the hash of the masked page', () => {
    const page1 = golden('rollback.db').subarray(0, 1024);
    for (const a of PAGE_HASH_ALGORITHMS) {
      expect(pageHash(1, page1, a)).toEqual(pageHash(2, maskPage1(page1), a));
      expect(pageHash(1, page1, a)).not.toEqual(pageHash(2, page1, a));
    }
  });

  test('of page 1 ignores exactly the journal-mode and writer fields', () => {
    const page1 = Buffer.from(golden('rollback.db').subarray(0, 1024));
    const base = pageHash(1, page1);
    for (let i = 0; i < 100; i++) {
      const other = Buffer.from(page1);
      other[i] = other[i]! ^ 0x5a;
      expect(pageHash(1, other).equals(base), `byte ${i}`).toBe(masked(i));
    }
  });

  test('of any other page covers every byte', () => {
    const page = Buffer.alloc(512, 0x42);
    const base = pageHash(2, page);
    for (const i of [0, 18, 19, 24, 27, 92, 95, 511]) {
      const other = Buffer.from(page);
      other[i] = 0;
      expect(pageHash(2, other).equals(base), `byte ${i}`).toBe(false);
    }
  });

  test('does not modify the page and accepts views', () => {
    const file = golden('rollback.db');
    const before = Buffer.from(file);
    const view = new Uint8Array(file.buffer, file.byteOffset, 1024);
    expect(pageHash(1, view)).toEqual(pageHash(1, Buffer.from(view)));
    expect(file.equals(before)).toBe(true);
    // Page 2 goes to the hash as it is (page 1 is copied to be masked): a plain Uint8Array at an offset,
    // and a view into shared memory (a restore's slab), hash as a Buffer copy of the same bytes does.
    const page = randomBytes(4096);
    const backing = new Uint8Array(4096 + 37);
    backing.set(page, 37);
    const shared = new Uint8Array(new SharedArrayBuffer(4096 + 11), 11, 4096);
    shared.set(page);
    for (const a of PAGE_HASH_ALGORITHMS) {
      expect(pageHash(2, new Uint8Array(backing.buffer, 37, 4096), a)).toEqual(pageHash(2, page, a));
      expect(pageHash(2, shared, a)).toEqual(pageHash(2, page, a));
    }
  });

  test('pageHashAlgorithmNamed: a known name, none (sha256-128, what came before the name), or null for an unknown one', () => {
    expect(pageHashAlgorithmNamed('xxh3-128')).toBe('xxh3-128');
    expect(pageHashAlgorithmNamed('sha256-128')).toBe('sha256-128');
    expect(pageHashAlgorithmNamed(undefined)).toBe('sha256-128');
    expect(pageHashAlgorithmNamed('blake9-128')).toBeNull();
    expect(pageHashAlgorithmNamed(7)).toBeNull();
  });
});

describe('pageHash against real SQLite: a change of journal mode leaves every page hash unchanged', () => {
  test('rollback journal -> WAL', () => {
    const before = golden('rollback.db');
    const after = withSqlite({ '': before }, (db, path) => {
      db.pragma('journal_mode = WAL');
      db.close();
      return readFileSync(path);
    });
    expect(after.length).toBe(before.length);
    expect(parseDbHeader(after)!.writeVersion).toBe(2);
    expect(diff(before, after).length).toBeGreaterThan(0);
    expect(diff(before, after).filter((i) => !masked(i))).toEqual([]);
    expect(hashes(after)).toEqual(hashes(before));
  });

  test('WAL (checkpointed) -> rollback journal', () => {
    const before = sqliteCheckpointed('basic');
    const after = withSqlite({ '': before }, (db, path) => {
      db.pragma('journal_mode = DELETE');
      db.close();
      return readFileSync(path);
    });
    expect(after.length).toBe(before.length);
    expect(parseDbHeader(after)!.writeVersion).toBe(1);
    expect(diff(before, after).length).toBeGreaterThan(0);
    expect(diff(before, after).filter((i) => !masked(i))).toEqual([]);
    expect(hashes(after)).toEqual(hashes(before));
  });
});
