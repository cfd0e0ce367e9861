/*
 * The in-memory ring of redo just archived (recent.ts): it serves exactly the bytes the archive holds, only
 * consecutive LSNs, within its byte bound, and hands over to the archive (and back) between records.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { Archive, ArchiveCursor, type Lsn, type RedoRecord } from '../redo/index.js';
import { RecentOrArchiveCursor, RecentRedo } from './recent.js';

const ROOT = mkdtempSync(join(tmpdir(), 'redoship-recent-test-'));
afterAll(() => rmSync(ROOT, { recursive: true, force: true }));
const PAGE = 512;

function txn(lsn: bigint, pages: number): RedoRecord {
  const list: Array<readonly [number, Uint8Array]> = [];
  for (let p = 1; p <= pages; p++) list.push([p, Buffer.alloc(PAGE, Number((lsn * 7n + BigInt(p)) % 251n))]);
  return { kind: 'txn', lsn: lsn as Lsn, commitTimeUs: 1_000_000n + lsn, sizePages: Math.max(1, pages), pages: list, wal: null };
}

function concat(parts: ReadonlyArray<{ readonly raw: Uint8Array }>): Buffer {
  return Buffer.concat(parts.map((p) => p.raw));
}

describe('RecentRedo', () => {
  test('serves the archive bytes of consecutive records; forgets on a gap or a base; drops the oldest past its bound', () => {
    const dir = join(ROOT, 'a');
    const a = Archive.create(dir, { databaseId: '0123456789abcdef0123456789abcdef', pageSize: PAGE, databasePath: '/x.db' });
    const w = a.openWriter({ segmentBytes: 1 << 30, segmentAgeMs: 3_600_000, incarnation: 1 });
    const ring = new RecentRedo(PAGE, 40 * PAGE);
    const recs = Array.from({ length: 20 }, (_, i) => txn(BigInt(i + 1), 1 + (i % 4)));
    try {
      for (const batch of [recs.slice(0, 3), recs.slice(3, 10), recs.slice(10)]) {
        w.append(batch);
        ring.push(batch);
      }
      // Bound: 40 pages; records 1..20 hold 50 pages, so the oldest went.
      const first = ring.firstLsn!;
      expect(first).toBeGreaterThan(1n);
      expect(ring.lastLsn).toBe(20n);
      const got = ring.read(first, 1 << 30)!;
      expect(got.records).toBe(Number(21n - first));
      const disk = new ArchiveCursor(a, first as Lsn).read(1 << 30);
      expect(Buffer.concat(got.framed).equals(concat(disk))).toBe(true);
      expect(ring.read(1n, 1 << 30)).toBeNull(); // older than it holds
      expect(ring.read(21n, 1 << 30)).toEqual({ framed: [], records: 0 }); // caught up
      expect(ring.read(22n, 1 << 30)).toBeNull();
      // maxBytes: at least one record, then stops once past it.
      expect(ring.read(first, 1)!.records).toBe(1);
      ring.push([txn(30n, 1)]); // a gap: forget
      expect(ring.firstLsn).toBe(30n);
      ring.push([]); // a base streamed past it: forget
      expect(ring.firstLsn).toBeNull();
    } finally {
      w.close({ seal: false });
    }
  });

  test('a cursor reads the archive while behind, then the ring, and sends every record once, in order', () => {
    const dir = join(ROOT, 'b');
    const a = Archive.create(dir, { databaseId: '0123456789abcdef0123456789abcdef', pageSize: PAGE, databasePath: '/x.db' });
    const w = a.openWriter({ segmentBytes: 1 << 30, segmentAgeMs: 3_600_000, incarnation: 1 });
    const ring = new RecentRedo(PAGE, 10 * PAGE);
    try {
      const recs = Array.from({ length: 30 }, (_, i) => txn(BigInt(i + 1), 2));
      w.append(recs.slice(0, 25));
      ring.push(recs.slice(0, 25)); // holds the last 5 only
      const c = new RecentOrArchiveCursor(ring, (l) => new ArchiveCursor(a, l as Lsn), () => w.lastLsn, 1n);
      const sent: Buffer[] = [];
      for (let i = 0; i < 100; i++) {
        const parts = c.read(3 * PAGE); // small reads: the hand-over happens between records
        if (parts.length === 0) break;
        sent.push(concat(parts));
      }
      expect(c.nextLsn).toBe(26n);
      w.append(recs.slice(25));
      ring.push(recs.slice(25));
      sent.push(concat(c.read(1 << 30)));
      expect(c.nextLsn).toBe(31n);
      expect(c.read(1 << 30)).toEqual([]);
      expect(Buffer.concat(sent).equals(concat(new ArchiveCursor(a, 1n as Lsn).read(1 << 30)))).toBe(true);
    } finally {
      w.close({ seal: false });
    }
  });
});
