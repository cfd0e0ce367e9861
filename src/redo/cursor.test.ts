/**
 * ArchiveRecordReader: whole records in order, and a record larger than its threshold handed out without its
 * pages (streamed: true), whose parts the archive still gives in full. Real segments, written by ArchiveWriter.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { Archive } from './archive.js';
import { ArchiveRecordReader } from './cursor.js';
import type { Lsn, RedoRecord } from './types.js';

const ROOT = mkdtempSync(join(tmpdir(), 'redoship-cursor-test-'));
afterAll(() => rmSync(ROOT, { recursive: true, force: true }));
const PAGE = 512;
const L = (n: number) => BigInt(n) as Lsn;

/** A page whose bytes say which page and which LSN wrote it. */
function pageOf(pgno: number, lsn: number): Buffer {
  const b = Buffer.alloc(PAGE, lsn & 0xff);
  b.writeUInt32BE(pgno, 0);
  b.writeUInt32BE(lsn, 4);
  return b;
}

function rec(lsn: number, kind: RedoRecord['kind'], pgnos: number[], sizePages: number, note?: string): RedoRecord {
  return {
    kind,
    lsn: L(lsn),
    commitTimeUs: BigInt(1_700_000_000_000_000 + lsn),
    sizePages,
    pages: pgnos.map((p) => [p, pageOf(p, lsn)] as const),
    wal: null,
    ...(note !== undefined ? { note, continuityBreak: true } : {}),
  };
}

describe('ArchiveRecordReader', () => {
  test('records in order; one over the threshold comes without pages, and the archive still holds all of them', () => {
    const dir = join(ROOT, 'a');
    const archive = Archive.create(dir, { databaseId: '0123456789abcdef0123456789abcdef', pageSize: PAGE, databasePath: join(dir, 'app.db') });
    const w = archive.openWriter({ segmentBytes: 64 * 1024 * 1024, segmentAgeMs: 60_000 });
    const big = 40_000; // 20 MiB of 512-byte pages: three parts
    w.append([rec(1, 'base', [1, 2, 3, 4, 5, 6, 7, 8], 8)]);
    w.append([rec(2, 'txn', [2, 5, 8], 8)]);
    w.appendStream(
      { kind: 'resync', lsn: L(3), commitTimeUs: 1_700_000_000_000_003n, sizePages: big, wal: null, note: 'a large resync', continuityBreak: true },
      (function* () {
        for (let p = 1; p <= big; p++) yield [p, pageOf(p, 3)] as const;
      })(),
    );
    w.append([rec(4, 'txn', [1, 9], big), rec(5, 'txn', Array.from({ length: 1000 }, (_, i) => i + 100), big)]);
    w.close({ seal: true });

    const reader = new ArchiveRecordReader(Archive.open(dir), L(1), 1024 * 1024);
    const got: Array<{ lsn: bigint; kind: string; pages: number; streamed: boolean; sizePages: number; note?: string | undefined }> = [];
    for (let r = reader.take(); r; r = reader.take()) got.push({ lsn: r.lsn, kind: r.kind, pages: r.pages.length, streamed: r.streamed === true, sizePages: r.sizePages, note: r.note });
    expect(got).toEqual([
      { lsn: 1n, kind: 'base', pages: 8, streamed: false, sizePages: 8, note: undefined },
      { lsn: 2n, kind: 'txn', pages: 3, streamed: false, sizePages: 8, note: undefined },
      { lsn: 3n, kind: 'resync', pages: 0, streamed: true, sizePages: big, note: 'a large resync' },
      { lsn: 4n, kind: 'txn', pages: 2, streamed: false, sizePages: big, note: undefined },
      { lsn: 5n, kind: 'txn', pages: 1000, streamed: false, sizePages: big, note: undefined },
    ]);

    // What an applier of the streamed record reads: every page, in order, with its own bytes.
    let next = 1;
    let parts = 0;
    for (const part of Archive.open(dir).partsInRange(L(3), L(3))) {
      parts++;
      for (let i = 0; i < part.pgnos.length; i++, next++) {
        expect(part.pgnos[i]).toBe(next);
        if (next % 997 === 1) expect(part.pageData.subarray(i * PAGE, (i + 1) * PAGE).equals(pageOf(next, 3))).toBe(true);
      }
    }
    expect(next - 1).toBe(big);
    expect(parts).toBeGreaterThan(1);
  });
});
