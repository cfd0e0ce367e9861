import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { describe, expect, test } from 'vitest';
import { golden, sqliteCheckpointed, withSqlite } from '../../test/golden/golden.js';
import { maskPage1, parseDbHeader, STANDBY_HEADER_RANGES } from './db-header.js';
import { pageHash, PAGE_HASH_BYTES } from './page-hash.js';

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
  test('is the first 16 bytes of SHA-256 of the page', () => {
    const page = Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 31) & 0xff));
    expect(PAGE_HASH_BYTES).toBe(16);
    expect(pageHash(2, page)).toEqual(sha256(page).subarray(0, 16));
    expect(pageHash(12345, page)).toEqual(pageHash(2, page));
  });

  test('of page 1 is the hash of the masked page', () => {
    const page1 = golden('rollback.db').subarray(0, 1024);
    expect(pageHash(1, page1)).toEqual(sha256(maskPage1(page1)).subarray(0, 16));
    expect(pageHash(1, page1)).not.toEqual(pageHash(2, page1));
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
