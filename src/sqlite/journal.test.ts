/**
 * The rollback journal the applier writes, checked against SQLite itself: a database overwritten (and grown
 * or cut) after our journal was written is rolled back by SQLite to exactly the old image.
 */
import Database from 'better-sqlite3';
import { existsSync, mkdtempSync, readFileSync, writeFileSync, openSync, writeSync, ftruncateSync, closeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { buildJournal, journalChecksum } from './journal.js';

function makeDb(dir: string, rows: number): string {
  const p = join(dir, 'db.sqlite');
  const db = new Database(p);
  db.exec('CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)');
  const ins = db.prepare('INSERT INTO t (v) VALUES (?)');
  db.transaction(() => {
    for (let i = 0; i < rows; i++) ins.run(Buffer.alloc(900, i & 0xff));
  })();
  db.close();
  return p;
}

function pages(buf: Buffer, pageSize: number): Array<readonly [number, Buffer]> {
  const out: Array<readonly [number, Buffer]> = [];
  for (let i = 0; i * pageSize < buf.length; i++) out.push([i + 1, buf.subarray(i * pageSize, (i + 1) * pageSize)]);
  return out;
}

describe('rollback journal', () => {
  test('checksum samples every 200th byte from the end, plus the nonce, mod 2^32', () => {
    const page = Buffer.alloc(1024);
    page[824] = 7;
    page[624] = 1;
    page[24] = 100;
    page[1023] = 99; // not sampled
    expect(journalChecksum(5, page)).toBe(5 + 7 + 1 + 0 + 0 + 100);
    expect(journalChecksum(0xffffffff, page)).toBe((0xffffffff + 108) >>> 0);
  });

  for (const change of ['overwrite', 'grow', 'shrink'] as const)
    test(`SQLite rolls a hot journal back to the exact old image (${change})`, () => {
      const dir = mkdtempSync(join(tmpdir(), 'journal-'));
      const db = makeDb(dir, 60);
      const before = readFileSync(db);
      const pageSize = before.readUInt16BE(16);
      const n = before.length / pageSize;
      const all = pages(before, pageSize);
      // Journal page 1, a few overwritten pages, and (for shrink) every page cut away.
      const touched = change === 'shrink' ? all.filter(([p]) => p === 1 || p > n - 5) : all.filter(([p]) => p === 1 || p % 3 === 0);
      writeFileSync(`${db}-journal`, buildJournal(pageSize, n, touched));
      const fd = openSync(db, 'r+');
      for (const [p] of touched) writeSync(fd, Buffer.alloc(pageSize, 0xab), 0, pageSize, (p - 1) * pageSize);
      if (change === 'grow') writeSync(fd, Buffer.alloc(pageSize * 3, 0xcd), 0, pageSize * 3, n * pageSize);
      if (change === 'shrink') ftruncateSync(fd, (n - 5) * pageSize);
      closeSync(fd);
      // Any connection that reads finds the hot journal and plays it back.
      const c = new Database(db);
      expect(c.prepare('PRAGMA integrity_check').pluck().get()).toBe('ok');
      expect(c.prepare('SELECT count(*) FROM t').pluck().get()).toBe(60);
      c.close();
      expect(existsSync(`${db}-journal`)).toBe(false);
      expect(readFileSync(db).equals(before)).toBe(true);
    });

  test('a journal with a wrong checksum on its first record is NOT played back (why the checksum must be right)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'journal-'));
    const db = makeDb(dir, 20);
    const before = readFileSync(db);
    const pageSize = before.readUInt16BE(16);
    const j = buildJournal(pageSize, before.length / pageSize, pages(before, pageSize).filter(([p]) => p === 2), 1234);
    j.writeUInt32BE((j.readUInt32BE(512 + 4 + pageSize) + 1) >>> 0, 512 + 4 + pageSize); // break the checksum
    writeFileSync(`${db}-journal`, j);
    const fd = openSync(db, 'r+');
    writeSync(fd, Buffer.alloc(pageSize, 0xab), 0, pageSize, pageSize);
    closeSync(fd);
    const c = new Database(db);
    c.prepare('SELECT count(*) FROM sqlite_schema').get();
    c.close();
    expect(readFileSync(db).subarray(pageSize, 2 * pageSize).equals(Buffer.alloc(pageSize, 0xab))).toBe(true);
  });
});
