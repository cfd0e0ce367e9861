/**
 * Incarnation histories (history.ts) and forks of a real archive on disk (ArchiveWriter.fork / adoptHistory /
 * rewindTo): which peer is superseded, which diverged, and that a fork keeps every record either on the
 * line or set aside, never lost, with segments split exactly at the fork point.
 */
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { RedoshipError } from '../error/index.js';
import { Archive } from './archive.js';
import {
  FIRST_INCARNATION,
  checkHistory,
  compareHistories,
  historyFromJson,
  historyToJson,
  incarnationOf,
  nextIncarnation,
  readHistory,
  type History,
} from './history.js';
import type { Lsn, RedoRecord } from './types.js';

const ROOT = mkdtempSync(join(tmpdir(), 'redoship-history-test-'));
afterAll(() => rmSync(ROOT, { recursive: true, force: true }));
let n = 0;
const fresh = () => join(ROOT, `a${n++}`);

const PAGE = 512;
function rec(lsn: number, kind: RedoRecord['kind'] = 'txn'): RedoRecord {
  return { kind, lsn: BigInt(lsn) as Lsn, commitTimeUs: BigInt(1_700_000_000_000_000 + lsn), sizePages: 2, pages: [[2, Buffer.alloc(PAGE, lsn & 0xff)]], wal: null };
}

describe('history', () => {
  const h1: History = [FIRST_INCARNATION];
  const h2 = [...h1, nextIncarnation(h1, 10n, 'promoted')];
  const h3 = [...h2, nextIncarnation(h2, 20n, 'switchover')];
  const sibling = [...h1, nextIncarnation(h1, 12n, 'promoted')]; // another standby promoted too: same number

  test('compare: same, behind, ahead, diverged, with the fork point', () => {
    expect(compareHistories(h2, h2)).toEqual({ relation: 'same', forkLsn: 0n });
    expect(compareHistories(h1, h3)).toEqual({ relation: 'behind', forkLsn: 10n });
    expect(compareHistories(h2, h3)).toEqual({ relation: 'behind', forkLsn: 20n });
    expect(compareHistories(h3, h1)).toEqual({ relation: 'ahead', forkLsn: 10n });
    expect(sibling[1]!.incarnation).toBe(h2[1]!.incarnation);
    expect(compareHistories(h2, sibling)).toEqual({ relation: 'diverged', forkLsn: 10n });
  });

  test('the incarnation of an LSN on a line', () => {
    expect([1, 10, 11, 20, 21, 1000].map((l) => incarnationOf(h3, BigInt(l)))).toEqual([1, 1, 2, 2, 3, 3]);
  });

  test('JSON round trip, and bad histories refused', () => {
    expect(historyFromJson(historyToJson(h3), 'x')).toEqual(h3);
    expect(checkHistory([])).toMatch(/empty/);
    expect(checkHistory([{ ...FIRST_INCARNATION, forkLsn: 3n }])).toMatch(/LSN 0/);
    expect(checkHistory([h3[0]!, h3[2]!, h3[1]!])).toMatch(/out of order/);
    expect(checkHistory([h1[0]!, { ...h2[1]!, id: 'zz' }])).toMatch(/id/);
    expect(() => historyFromJson([{ incarnation: 'x' }], 'f')).toThrow(RedoshipError);
    expect(() => nextIncarnation(h3, 5n, 'promoted')).toThrow(/cannot fork/);
  });
});

describe('forks of an archive on disk', () => {
  function archiveWith(last: number, segmentBytes = 4096): { archive: Archive; dir: string } {
    const dir = fresh();
    const archive = Archive.create(dir, { databaseId: '0123456789abcdef0123456789abcdef', pageSize: PAGE, databasePath: join(dir, 'app.db') });
    const w = archive.openWriter({ segmentBytes, segmentAgeMs: 60_000 });
    w.append([rec(1, 'base')]);
    for (let l = 2; l <= last; l++) w.append([rec(l)]);
    w.close({ seal: true });
    return { archive, dir };
  }
  const lsns = (a: Archive) => [...a.records(1n as Lsn)].map((r) => Number(r.lsn));

  test('fork sets aside exactly the records after the fork point, splitting the segment that spans it', () => {
    const { archive, dir } = archiveWith(40);
    const before = archive.segments().length;
    expect(before).toBeGreaterThan(3);
    const w = archive.openWriter({ segmentBytes: 4096, segmentAgeMs: 60_000 });
    const { incarnation, setAside } = w.fork(23n as Lsn, 'promoted');
    expect(incarnation.incarnation).toBe(2);
    expect(setAside.records.map((r) => Number(r.lsn))).toEqual(Array.from({ length: 17 }, (_, i) => 24 + i));
    expect(w.lastLsn).toBe(23n);
    // The new incarnation continues the LSNs, in segments named with it.
    w.append([rec(24), rec(25)]);
    w.close({ seal: true });
    expect(lsns(archive)).toEqual(Array.from({ length: 25 }, (_, i) => i + 1));
    expect(archive.verify().problems).toEqual([]);
    const names = archive.segmentNames().map((s) => s.name);
    expect(names[names.length - 1]).toMatch(/^00000002-0{14}18-/);
    expect(readHistory(dir).map((e) => [e.incarnation, e.forkLsn])).toEqual([
      [1, 0n],
      [2, 23n],
    ]);
    // The set-aside records are whole segments in diverged/, listed in records.json.
    const side = setAside.dir!;
    const listed = JSON.parse(readFileSync(join(side, 'records.json'), 'utf8')) as { records: Array<{ lsn: string }> };
    expect(listed.records.map((r) => Number(r.lsn))).toEqual(setAside.records.map((r) => Number(r.lsn)));
    expect(readdirSync(side).filter((f) => f.endsWith('.seg')).length).toBeGreaterThan(0);
  });

  test('a batch that crosses a fork point is written into two segments', () => {
    const { archive } = archiveWith(5, 1 << 20);
    const w = archive.openWriter({ segmentBytes: 1 << 20, segmentAgeMs: 60_000 });
    w.fork(5n as Lsn, 'promoted');
    w.close({ seal: true });
    // A standby of this line that is behind receives 4..8 in one go: incarnation 1 up to 5, then 2.
    const { archive: behind } = archiveWith(3, 1 << 20);
    const bw = behind.openWriter({ segmentBytes: 1 << 20, segmentAgeMs: 60_000 });
    bw.adoptHistory(archive.history(), 'the primary');
    bw.append([rec(4), rec(5), rec(6), rec(7)]);
    bw.close({ seal: true });
    expect(behind.segments().map((s) => [s.incarnation, Number(s.firstLsn), Number(s.lastLsn)])).toEqual([
      [1, 1, 3],
      [1, 4, 5],
      [2, 6, 7],
    ]);
    expect(behind.verify().problems).toEqual([]);
  });

  test('adoptHistory refuses a superseded peer and a line this archive left, changing nothing', () => {
    const { archive: a } = archiveWith(30);
    const aw = a.openWriter({ segmentBytes: 4096, segmentAgeMs: 60_000 });
    aw.fork(30n as Lsn, 'promoted');
    const ahead = aw.history;
    aw.close({ seal: true });
    // b forked the same line at 20, but holds records up to 30 of incarnation 1 (it diverged).
    const { archive: b, dir: bdir } = archiveWith(30);
    const bw = b.openWriter({ segmentBytes: 4096, segmentAgeMs: 60_000 });
    const forkedAt20 = [...bw.history, nextIncarnation(bw.history, 20n, 'promoted')];
    expect(() => bw.adoptHistory(forkedAt20, 'peer')).toThrow(expect.objectContaining({ code: 'DIVERGED' }));
    expect(readHistory(bdir)).toEqual([FIRST_INCARNATION]);
    // A peer that never saw the fork is superseded from a's point of view.
    const aw2 = a.openWriter({ segmentBytes: 4096, segmentAgeMs: 60_000 });
    expect(() => aw2.adoptHistory([FIRST_INCARNATION], 'old primary')).toThrow(expect.objectContaining({ code: 'FENCED' }));
    expect(aw2.history).toEqual(ahead);
    aw2.close({ seal: false });
    // Reinstate: b rewinds to the fork point and follows.
    const { setAside } = bw.rewindTo(20n as Lsn, forkedAt20, 'reinstate');
    expect(setAside.records.length).toBe(10);
    expect(bw.lastLsn).toBe(20n);
    bw.close({ seal: true });
    expect(lsns(b)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
    expect(b.verify().problems).toEqual([]);
  });
});

describe('archive lookups', () => {
  test('latestBaseAtOrBefore finds the newest base at or before an LSN, from the newest segment back', () => {
    const dir = fresh();
    const archive = Archive.create(dir, { databaseId: '0123456789abcdef0123456789abcdef', pageSize: PAGE, databasePath: join(dir, 'app.db') });
    const w = archive.openWriter({ segmentBytes: 4096, segmentAgeMs: 60_000 });
    const bases = new Set([1, 17, 18, 40]);
    for (let l = 1; l <= 60; l++) w.append([rec(l, bases.has(l) ? 'base' : 'txn')]);
    w.close({ seal: true });
    expect(archive.segments().length).toBeGreaterThan(5);
    for (let t = 1; t <= 60; t++) {
      const expected = Math.max(...[...bases].filter((b) => b <= t));
      expect(archive.latestBaseAtOrBefore(BigInt(t) as Lsn), `at ${t}`).toBe(BigInt(expected));
    }
    expect(archive.latestBaseAtOrBefore(1000n as Lsn)).toBe(40n);
  });
});
