/**
 * Change tracking (change-tracker.ts): the tracker's own rules, and a property test that, for random records
 * written through a real ArchiveWriter and random ranges, the pages it answers equal the pages read back
 * from the segments by an Archive opened afresh (which holds no tracking).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { prng } from '../../test/helpers/prng.js';
import { Archive } from './archive.js';
import { ChangeTracker } from './change-tracker.js';
import type { Lsn, RedoRecord } from './types.js';

const ROOT = mkdtempSync(join(tmpdir(), 'redoship-changes-test-'));
afterAll(() => rmSync(ROOT, { recursive: true, force: true }));
const L = (n: number) => BigInt(n) as Lsn;
const sorted = (s: Set<number>) => [...s].sort((a, b) => a - b);

describe('ChangeTracker', () => {
  test('consecutive notes, a base as every page, a gap starts over, clear', () => {
    const t = new ChangeTracker();
    expect(t.range).toBeNull();
    expect(t.covers(1n, 1n)).toBe(false);
    t.note(L(5), [3, 1], 10);
    t.note(L(6), [7], 10);
    t.note(L(7), 'all', 4);
    expect(t.range).toEqual({ firstLsn: 5n, lastLsn: 7n });
    expect(sorted(t.pagesWritten(5n, 6n))).toEqual([1, 3, 7]);
    expect(sorted(t.pagesWritten(7n, 7n))).toEqual([1, 2, 3, 4]);
    expect(t.covers(4n, 6n)).toBe(false);
    expect(t.covers(5n, 8n)).toBe(false);
    expect(t.covers(6n, 5n)).toBe(false);
    expect(() => t.pagesWritten(4n, 6n)).toThrow(/assert/);
    // A record that does not follow the last one: nothing older is trusted any more.
    t.note(L(9), [2], 10);
    expect(t.range).toEqual({ firstLsn: 9n, lastLsn: 9n });
    t.clear();
    expect(t.range).toBeNull();
  });

  test('holds at most maxPages page numbers, dropping the oldest records first', () => {
    const t = new ChangeTracker(10);
    for (let l = 1; l <= 10_000; l++) t.note(L(l), [l % 7, 100 + (l % 3), 200], 300);
    const r = t.range!;
    expect(r.lastLsn).toBe(10_000n);
    expect(r.firstLsn).toBe(10_000n - 2n); // 3 pages per record, at most 10 pages: 3 records
    expect(sorted(t.pagesWritten(r.firstLsn, r.lastLsn))).toEqual([...new Set([9998 % 7, 9999 % 7, 10000 % 7])].sort((a, b) => a - b).concat([100, 101, 102, 200]));
    // A single record larger than the bound is still held (the newest is never dropped).
    t.note(L(10_001), Array.from({ length: 50 }, (_, i) => i + 1), 300);
    expect(t.range).toEqual({ firstLsn: 10_001n, lastLsn: 10_001n });
  });
});

describe('ChangeTracker against a plain model (one array per record, the former storage)', () => {
  test('random notes, gaps, bases and bounds: the same range and pages, through many wrap-arounds of its rings', () => {
    const rand = prng(7);
    for (const maxPages of [1, 5, 37, 300]) {
      const t = new ChangeTracker(maxPages);
      let model: { first: bigint; recs: Array<number[] | { all: number }> } = { first: 0n, recs: [] };
      const weight = (c: number[] | { all: number }) => (Array.isArray(c) ? c.length : 1);
      let lsn = 1n;
      for (let i = 0; i < 4000; i++) {
        if (rand() < 0.01) lsn += 2n; // a gap: both start over
        const all = rand() < 0.05;
        const pgnos = Array.from({ length: Math.floor(rand() * (rand() < 0.02 ? 3 * maxPages + 2 : 8)) }, () => 1 + Math.floor(rand() * 1000));
        const sizePages = Math.floor(rand() * 20);
        const given = rand() < 0.5 ? pgnos : new Set(pgnos); // an array may repeat a page: each one counts
        t.note(L(Number(lsn)), all ? 'all' : given, sizePages);
        const c = all ? { all: sizePages } : [...given];
        if (model.recs.length === 0 || lsn !== model.first + BigInt(model.recs.length)) model = { first: lsn, recs: [] };
        model.recs.push(c);
        let held = model.recs.reduce((n, r) => n + weight(r), 0);
        while (held > maxPages && model.recs.length > 1) {
          held -= weight(model.recs.shift()!);
          model.first++;
        }
        lsn++;
        expect(t.range).toEqual({ firstLsn: model.first, lastLsn: model.first + BigInt(model.recs.length - 1) });
        if (i % 7 === 0) {
          const a = Math.floor(rand() * model.recs.length);
          const b = a + Math.floor(rand() * (model.recs.length - a));
          const want = new Set<number>();
          for (const r of model.recs.slice(a, b + 1)) for (const p of Array.isArray(r) ? r : Array.from({ length: r.all }, (_, k) => k + 1)) want.add(p);
          expect(sorted(t.pagesWritten(model.first + BigInt(a), model.first + BigInt(b))), `max ${maxPages} note ${i}`).toEqual(sorted(want));
        }
      }
    }
  });
});

describe('change tracking against the segments', () => {
  test('random records and ranges: the tracker answers what the segments hold', () => {
    const rand = prng(20261122);
    const PAGE = 512;
    const dir = join(ROOT, 'a');
    const archive = Archive.create(dir, { databaseId: '0123456789abcdef0123456789abcdef', pageSize: PAGE, databasePath: join(dir, 'app.db') });
    const w = archive.openWriter({ segmentBytes: 16 * 1024, segmentAgeMs: 60_000 });
    const page = Buffer.alloc(PAGE, 7);
    const rec = (lsn: number, kind: RedoRecord['kind'], pgnos: number[], sizePages: number): RedoRecord => ({
      kind,
      lsn: L(lsn),
      commitTimeUs: BigInt(1_700_000_000_000_000 + lsn),
      sizePages,
      pages: pgnos.map((p) => [p, page] as const),
      wal: null,
    });
    let lsn = 1;
    w.append([rec(lsn, 'base', [1, 2, 3, 4, 5, 6, 7, 8], 8)]);
    let size = 8;
    while (lsn < 400) {
      const batch: RedoRecord[] = [];
      for (let k = 1 + Math.floor(rand() * 4); k > 0; k--) {
        lsn++;
        if (rand() < 0.01) {
          batch.push(rec(lsn, 'base', Array.from({ length: size }, (_, i) => i + 1), size));
          continue;
        }
        size = Math.max(2, size + Math.floor(rand() * 5) - 2);
        const pgnos = [...new Set(Array.from({ length: 1 + Math.floor(rand() * 4) }, () => 1 + Math.floor(rand() * size)))].sort((a, b) => a - b);
        batch.push(rec(lsn, rand() < 0.05 ? 'resync' : 'txn', pgnos, size));
      }
      w.append(batch);
    }
    w.close({ seal: true });
    expect(archive.segments().length).toBeGreaterThan(3);
    const fromSegments = Archive.open(dir);
    expect(fromSegments.changes.range).toBeNull();
    expect(archive.changes.range).toEqual({ firstLsn: 1n, lastLsn: BigInt(lsn) });
    for (let i = 0; i < 200; i++) {
      const a = 1 + Math.floor(rand() * lsn);
      const b = a + Math.floor(rand() * (lsn - a + 1));
      expect(sorted(archive.pagesWritten(L(a), L(b))), `${a}..${b}`).toEqual(sorted(fromSegments.pagesWritten(L(a), L(b))));
    }
  });
});
