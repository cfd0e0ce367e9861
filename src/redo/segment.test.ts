/*
 * The archive segment format (segment-format.ts), its writer and its reader: unit tests, then a seeded,
 * deterministic fuzz of damaged segment files.
 *
 * What the fuzz asserts, for every damaged copy of a segment the writer wrote:
 *  - reading never throws anything but a RedoshipError (and only for a damaged 48-byte header: damage in the
 *    records is reported through `damage`, never thrown);
 *  - every record the reader yields is exactly one that was written, in LSN order from the first, and it yields
 *    exactly the records that lie wholly before the first damaged byte: a flip of up to 3 bits is always caught
 *    (CRC-32 has Hamming distance 4 for bodies this size, < 11 KiB), so nothing past it can be yielded;
 *  - `validEnd`, `lastLsn` and `damage` agree with that: validEnd is the end of the last yielded record (so every
 *    byte before it is intact), lastLsn its LSN, and damage is null exactly when the file is a clean prefix cut
 *    at a record boundary (or one followed by zeros only: preallocated room); otherwise it points at or after
 *    validEnd and names the LSN that follows lastLsn;
 *  - `hasValidPartAfter` (which tells a torn tail from damage in the middle of the open segment) says yes when
 *    a flip left intact records behind the damage, and no for a truncation or garbage appended at the end.
 * Each failure names the seed, the iteration and the damage so that it can be replayed.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { afterAll, describe, expect, test } from 'vitest';
import { RedoshipError } from '../error/index.js';
import { Archive, hasValidPartAfter } from './archive.js';
import {
  MAX_PART_BYTES,
  MAX_PART_PAGE_BYTES,
  PART_HEADER_BYTES,
  SEGMENT_HEADER_BYTES,
  decodePartBody,
  decodeSegmentHeader,
  encodeFramedPart,
  encodePart,
  encodeSegmentHeader,
  parseSegmentName,
  segmentName,
  type RecordPart,
  type SegmentHeader,
} from './segment-format.js';
import { SegmentReader } from './segment-reader.js';
import { SegmentWriter, framedRecord, recordParts } from './segment-writer.js';
import type { Lsn, RecordKind, RedoRecord } from './types.js';

const ROOT = mkdtempSync(join(tmpdir(), 'redoship-segment-test-'));
afterAll(() => rmSync(ROOT, { recursive: true, force: true }));
let dirCount = 0;
function freshDir(): string {
  const d = join(ROOT, `d${dirCount++}`);
  mkdirSync(d);
  return d;
}

const DB_ID = '0123456789abcdef0123456789abcdef';

/** mulberry32: a tiny 32-bit PRNG, good enough to pick positions and contents. */
function prng(seed: number) {
  let a = seed >>> 0;
  const next = (): number => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number): number => Math.floor(next() * n);
  const u32 = (): number => int(0x100000000);
  const bytes = (n: number): Buffer => {
    const b = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i++) b[i] = int(256);
    return b;
  };
  return { next, int, u32, bytes, pick: <T>(xs: readonly T[]): T => xs[int(xs.length)]! };
}
type Rng = ReturnType<typeof prng>;

const KINDS: RecordKind[] = ['base', 'txn', 'resync'];
const NOTES = [undefined, undefined, '', 'resync after a WAL restart', 'ünïcødé ✓ 🗄️', 'x'.repeat(300)];

function randomRecord(rng: Rng, lsn: bigint, pageSize: number, maxPages = 8): RedoRecord {
  const sizePages = 1 + rng.int(40);
  const count = rng.int(Math.min(maxPages, sizePages) + 1);
  const set = new Set<number>();
  while (set.size < count) set.add(1 + rng.int(sizePages));
  const pgnos = [...set].sort((a, b) => a - b);
  const note = rng.pick(NOTES);
  return {
    kind: rng.pick(KINDS),
    lsn: lsn as Lsn,
    commitTimeUs: 1_700_000_000_000_000n + BigInt(rng.int(2 ** 40)),
    sizePages,
    pages: pgnos.map((p) => [p, rng.bytes(pageSize)] as const),
    wal: rng.next() < 0.3 ? null : { salt1: rng.u32(), salt2: rng.u32(), commitFrame: rng.u32(), s0: rng.u32(), s1: rng.u32() },
    ...(note !== undefined ? { note } : {}),
    ...(rng.next() < 0.2 ? { continuityBreak: true } : {}),
  };
}

/** A record as plain data, comparable with toEqual whatever the buffer classes. */
function plain(r: RedoRecord) {
  return {
    kind: r.kind,
    lsn: r.lsn,
    commitTimeUs: r.commitTimeUs,
    sizePages: r.sizePages,
    wal: r.wal,
    note: r.note,
    continuityBreak: r.continuityBreak === true,
    pages: r.pages.map(([p, d]) => [p, Buffer.from(d.buffer, d.byteOffset, d.byteLength).toString('hex')]),
  };
}

function header(firstLsn: bigint, pageSize: number, incarnation = 1): SegmentHeader {
  return { databaseId: DB_ID, incarnation, firstLsn: firstLsn as Lsn, pageSize };
}

/** Writes records into a new open segment with SegmentWriter; returns its path (the writer is closed). */
function writeSegment(dir: string, h: SegmentHeader, records: readonly RedoRecord[], batches = 1): string {
  const w = SegmentWriter.create(dir, h);
  const per = Math.max(1, Math.ceil(records.length / batches));
  for (let i = 0; i < records.length; i += per) w.append(records.slice(i, i + per));
  const path = w.filePath;
  w.close();
  return path;
}

interface ReadResult {
  records: RedoRecord[];
  reader: SegmentReader;
}

function readAll(path: string, pageSize: number, databaseId = DB_ID): ReadResult {
  const reader = new SegmentReader(path, { databaseId, pageSize });
  try {
    return { records: [...reader.records()], reader };
  } finally {
    reader.close();
  }
}

/** Offsets where each record of a clean segment ends (from the parts the reader reports). */
function recordEnds(path: string, pageSize: number): number[] {
  const reader = new SegmentReader(path, { databaseId: DB_ID, pageSize });
  const ends: number[] = [];
  const bytes = readFileSync(path);
  try {
    for (const { part, offset } of reader.parts()) {
      if (part.last) ends.push(offset + PART_HEADER_BYTES + bytes.readUInt32BE(offset));
    }
  } finally {
    reader.close();
  }
  return ends;
}

describe('segment header and names', () => {
  test('header round trip, and every damaged header byte is refused', () => {
    const h = header(0x0123456789abn, 4096, 7);
    const b = encodeSegmentHeader(h);
    expect(b.length).toBe(SEGMENT_HEADER_BYTES);
    expect(decodeSegmentHeader(b)).toEqual(h);
    for (let i = 0; i < SEGMENT_HEADER_BYTES; i++) {
      for (const bit of [0, 7]) {
        const d = Buffer.from(b);
        d[i]! ^= 1 << bit;
        expect(typeof decodeSegmentHeader(d), `byte ${i} bit ${bit}`).toBe('string');
      }
    }
    expect(decodeSegmentHeader(b.subarray(0, 47))).toMatch(/47 bytes/);
    const v2 = Buffer.from(b);
    v2.writeUInt32BE(2, 4);
    v2.writeUInt32BE(crc32(v2.subarray(0, 44)), 44);
    expect(decodeSegmentHeader(v2)).toMatch(/version 2/);
  });

  test('names sort in LSN order and parse back', () => {
    expect(segmentName(1, 1n as Lsn, null)).toBe('00000001-0000000000000001.open');
    expect(segmentName(1, 0x10n as Lsn, 0x1ffn as Lsn)).toBe('00000001-0000000000000010-00000000000001ff.seg');
    expect(parseSegmentName('00000001-0000000000000010-00000000000001ff.seg')).toEqual({ incarnation: 1, firstLsn: 16n, lastLsn: 511n });
    expect(parseSegmentName('00000002-0000000000000003.open')).toEqual({ incarnation: 2, firstLsn: 3n, lastLsn: null });
    for (const bad of ['x.seg', '00000001-0000000000000001.seg', '00000001-0000000000000001.open.tmp', '00000001-000000000000000G.open'])
      expect(parseSegmentName(bad), bad).toBeNull();
    const names = [2n, 10n, 255n, 256n, 4096n].map((l) => segmentName(1, l as Lsn, (l + 1n) as Lsn));
    expect([...names].sort()).toEqual(names);
  });
});

describe('writer and reader', () => {
  test('records written are read back exactly, in order, across several appends', () => {
    const rng = prng(1);
    const dir = freshDir();
    const records = Array.from({ length: 30 }, (_, i) => randomRecord(rng, 100n + BigInt(i), 512));
    const path = writeSegment(dir, header(100n, 512), records, 7);
    const { records: got, reader } = readAll(path, 512);
    expect(got.map(plain)).toEqual(records.map(plain));
    expect(reader.damage).toBeNull();
    expect(reader.lastLsn).toBe(129n);
    expect(reader.validEnd).toBe(reader.fileBytes);
    // a range
    const r2 = new SegmentReader(path, { databaseId: DB_ID, pageSize: 512 });
    try {
      expect([...r2.records(110n as Lsn, 112n as Lsn)].map(plain)).toEqual(records.slice(10, 13).map(plain));
    } finally {
      r2.close();
    }
  });

  test('an empty segment (header only) reads as no record and no damage', () => {
    const path = writeSegment(freshDir(), header(5n, 1024), []);
    const { records, reader } = readAll(path, 1024);
    expect(records).toEqual([]);
    expect(reader.damage).toBeNull();
    expect(reader.lastLsn).toBe(4n);
    expect(reader.validEnd).toBe(SEGMENT_HEADER_BYTES);
  });

  test('a segment of another database or page size is refused with ARCHIVE_CORRUPT', () => {
    const path = writeSegment(freshDir(), header(1n, 512), [randomRecord(prng(2), 1n, 512)]);
    const refused = (f: () => unknown) => {
      try {
        f();
      } catch (e) {
        expect(e).toBeInstanceOf(RedoshipError);
        expect((e as RedoshipError).code).toBe('ARCHIVE_CORRUPT');
        return (e as Error).message;
      }
      throw new Error('not refused');
    };
    expect(refused(() => new SegmentReader(path, { databaseId: 'f'.repeat(32), pageSize: 512 }))).toMatch(/belongs to database/);
    expect(refused(() => new SegmentReader(path, { databaseId: DB_ID, pageSize: 4096 }))).toMatch(/page size 512/);
  });

  test('the writer refuses an LSN out of order', () => {
    const rng = prng(3);
    const w = SegmentWriter.create(freshDir(), header(1n, 512));
    try {
      w.append([randomRecord(rng, 1n, 512)]);
      expect(() => w.append([randomRecord(rng, 3n, 512)])).toThrow(/LSN 3 where 2 belongs/);
      expect(() => w.append([randomRecord(rng, 1n, 512)])).toThrow(/LSN 1 where 2 belongs/);
      expect(w.lastLsn).toBe(1n);
    } finally {
      w.close();
    }
  });

  test('reopen cuts a torn tail at validEnd and appending continues after it', () => {
    const rng = prng(4);
    const dir = freshDir();
    const records = Array.from({ length: 5 }, (_, i) => randomRecord(rng, 1n + BigInt(i), 512));
    const path = writeSegment(dir, header(1n, 512), records);
    const full = readFileSync(path);
    const ends = recordEnds(path, 512);
    truncateSync(path, ends[3]! - 10); // tear the 4th record
    const r = readAll(path, 512);
    expect(r.records.map(plain)).toEqual(records.slice(0, 3).map(plain));
    expect(r.reader.damage).toMatchObject({ lsn: 4n, offset: ends[2] });
    expect(r.reader.validEnd).toBe(ends[2]);
    const w = SegmentWriter.reopen(path, r.reader.header, r.reader.validEnd, r.reader.lastLsn);
    const again = [randomRecord(rng, 4n, 512), randomRecord(rng, 5n, 512)];
    w.append(again);
    w.close();
    const back = readAll(path, 512);
    expect(back.reader.damage).toBeNull();
    expect(back.records.map(plain)).toEqual([...records.slice(0, 3), ...again].map(plain));
    expect(readFileSync(path).subarray(0, ends[2]).equals(full.subarray(0, ends[2]))).toBe(true);
  });

  test('seal renames to the final name; a segment without records is removed', () => {
    const rng = prng(5);
    const dir = freshDir();
    const w = SegmentWriter.create(dir, header(9n, 512));
    w.append([randomRecord(rng, 9n, 512), randomRecord(rng, 10n, 512)]);
    const sealed = w.seal()!;
    expect(sealed.endsWith(segmentName(1, 9n as Lsn, 10n as Lsn))).toBe(true);
    expect(readAll(sealed, 512).records.map((r) => r.lsn)).toEqual([9n, 10n]);
    const e = SegmentWriter.create(dir, header(11n, 512));
    expect(e.seal()).toBeNull();
  });
});

describe('preallocated room (segment-format.ts (6))', () => {
  test('a busy segment writes zeros ahead; readers end cleanly at them; a crash leaves them; reopen, seal and close cut them', () => {
    const rng = prng(6);
    const dir = freshDir();
    const w = SegmentWriter.create(dir, header(1n, 512));
    const records = Array.from({ length: 60 }, (_, i) => randomRecord(rng, 1n + BigInt(i), 512));
    for (const r of records.slice(0, 50)) w.append([r]);
    const path = w.filePath;
    // Not closed: as a crash leaves it. The file holds the 50 records, then zeros.
    let r = readAll(path, 512);
    expect(r.reader.fileBytes).toBeGreaterThan(w.bytes);
    expect(readFileSync(path).subarray(w.bytes).every((b) => b === 0)).toBe(true);
    expect(r.records.map(plain)).toEqual(records.slice(0, 50).map(plain));
    expect(r.reader.damage).toBeNull();
    expect(r.reader.validEnd).toBe(w.bytes);
    // A record torn inside the room is a torn tail, not the clean end.
    const torn = readFileSync(path);
    torn.writeUInt32BE(1000, w.bytes); // a part header claiming 1000 bytes, the rest zeros
    const tornPath = join(dir, 'torn.open');
    writeFileSync(tornPath, torn);
    expect(readAll(tornPath, 512).reader.damage).toMatchObject({ lsn: 51n, offset: w.bytes });
    // Garbage at the very end of the file is not room: it is damage (a torn tail for the open segment).
    writeFileSync(tornPath, Buffer.concat([readFileSync(path), Buffer.from('garbage!')]));
    expect(readAll(tornPath, 512).reader.damage).toMatchObject({ lsn: 51n, offset: w.bytes });
    // Reopened after the crash: cut to the records, appending continues, the room comes back.
    const w2 = SegmentWriter.reopen(path, r.reader.header, r.reader.validEnd, r.reader.lastLsn);
    for (const x of records.slice(50)) w2.append([x]);
    r = readAll(path, 512);
    expect(r.records.map(plain)).toEqual(records.map(plain));
    expect(r.reader.damage).toBeNull();
    const sealed = w2.seal()!;
    const s = readAll(sealed, 512);
    expect(s.reader.fileBytes).toBe(s.reader.validEnd); // a sealed segment ends with its last record
    expect(s.records.map(plain)).toEqual(records.map(plain));
    // close() (a clean stop) cuts the room too.
    const w3 = SegmentWriter.create(freshDir(), header(1n, 512));
    for (const x of records.slice(0, 40)) w3.append([x]);
    const p3 = w3.filePath;
    w3.close();
    expect(readAll(p3, 512).reader.fileBytes).toBe(readAll(p3, 512).reader.validEnd);
  });
});

describe('records split into parts', () => {
  const meta = { kind: 'base' as const, lsn: 1n as Lsn, commitTimeUs: 42n, sizePages: 1, wal: null };

  test('part boundaries: 0 pages, exactly one part full, one page more, exactly two parts full', () => {
    const pageSize = 65536;
    const per = MAX_PART_PAGE_BYTES / pageSize;
    const page = Buffer.alloc(pageSize, 7);
    const shape = (n: number) =>
      [...recordParts({ ...meta, sizePages: Math.max(1, n) }, Array.from({ length: n }, (_, i) => [i + 1, page] as const), pageSize)].map(
        (p) => [p.part, p.pgnos.length, p.last],
      );
    expect(shape(0)).toEqual([[0, 0, true]]);
    expect(shape(1)).toEqual([[0, 1, true]]);
    expect(shape(per)).toEqual([[0, per, true]]);
    expect(shape(per + 1)).toEqual([
      [0, per, false],
      [1, 1, true],
    ]);
    expect(shape(2 * per)).toEqual([
      [0, per, false],
      [1, per, true],
    ]);
  });

  test('a record larger than MAX_PART_PAGE_BYTES is written in parts and read back whole (append and appendStream)', () => {
    const pageSize = 4096;
    const per = MAX_PART_PAGE_BYTES / pageSize;
    const n = 2 * per + 5; // three parts, ~16.8 MiB
    const rng = prng(6);
    const pages = Array.from({ length: n }, (_, i) => {
      const b = Buffer.alloc(pageSize, i & 0xff);
      b.writeUInt32BE(i + 1, 0);
      b.set(rng.bytes(16), 100);
      return [i + 1, b] as const;
    });
    const big: RedoRecord = { kind: 'base', lsn: 1n as Lsn, commitTimeUs: 1n, sizePages: n, pages, wal: null, note: 'base' };
    const small = randomRecord(rng, 2n, pageSize);
    const dir = freshDir();
    const w = SegmentWriter.create(dir, header(1n, pageSize));
    w.append([big, small]);
    const { pages: _p, ...bigMeta } = { ...big, lsn: 3n as Lsn };
    w.appendStream(bigMeta, pages.values());
    const path = w.filePath;
    w.close();

    const reader = new SegmentReader(path, { databaseId: DB_ID, pageSize });
    const parts: Array<[bigint, number, boolean, number]> = [];
    try {
      for (const { part } of reader.parts()) {
        parts.push([part.lsn, part.part, part.last, part.pgnos.length]);
        expect(PART_HEADER_BYTES + part.pageData.length).toBeLessThanOrEqual(MAX_PART_BYTES);
      }
    } finally {
      reader.close();
    }
    expect(parts).toEqual([
      [1n, 0, false, per],
      [1n, 1, false, per],
      [1n, 2, true, 5],
      [2n, 0, true, small.pages.length],
      [3n, 0, false, per],
      [3n, 1, false, per],
      [3n, 2, true, 5],
    ]);
    const got = readAll(path, pageSize);
    expect(got.reader.damage).toBeNull();
    expect(got.records.map((r) => r.lsn)).toEqual([1n, 2n, 3n]);
    for (const r of [got.records[0]!, got.records[2]!]) {
      expect(r.pages.length).toBe(n);
      for (let i = 0; i < n; i++) {
        expect(r.pages[i]![0]).toBe(i + 1);
        if (!Buffer.from(r.pages[i]![1]).equals(pages[i]![1])) throw new Error(`LSN ${r.lsn} page ${i + 1} differs`);
      }
      expect(r.note).toBe('base');
      expect(r.sizePages).toBe(n);
    }
    expect(plain(got.records[1]!)).toEqual(plain(small));

    // Torn inside the big record (a crash while writing it: appendStream writes part by part), at the boundary
    // between two of its parts or inside one: nothing of it is yielded (invariant 3), and in the open segment of
    // an archive it is a torn tail, which the next writer cuts (it is the end of the file, not damage in the middle).
    const bytes = readFileSync(path);
    const firstPartEnd = SEGMENT_HEADER_BYTES + PART_HEADER_BYTES + bytes.readUInt32BE(SEGMENT_HEADER_BYTES);
    const secondPartEnd = firstPartEnd + PART_HEADER_BYTES + bytes.readUInt32BE(firstPartEnd);
    for (const cut of [firstPartEnd, secondPartEnd, firstPartEnd + 1000]) {
      const archDir = freshDir();
      const archive = Archive.create(archDir, { databaseId: DB_ID, pageSize, databasePath: join(archDir, 'app.db') });
      const seg = join(archive.segmentsDir, segmentName(1, 1n as Lsn, null));
      writeFileSync(seg, bytes.subarray(0, cut));
      const t = readAll(seg, pageSize);
      expect(t.records, `cut at ${cut}`).toEqual([]);
      expect(t.reader.validEnd).toBe(SEGMENT_HEADER_BYTES);
      expect(t.reader.lastLsn).toBe(0n);
      expect(t.reader.damage?.lsn).toBe(1n);
      if (cut !== firstPartEnd + 1000) expect(t.reader.damage?.reason).toMatch(/incomplete/);
      const rep = archive.verify();
      expect(rep.segments[0]!.damage, `cut at ${cut} (${cut === secondPartEnd ? 'after two whole parts' : 'one part'})`).toBeNull();
      expect(rep.segments[0]!.tornTail, `cut at ${cut}`).toMatch(/LSN 1/);
      expect(rep.problems).toEqual([]);
      const w = archive.openWriter({ segmentBytes: 1 << 30, segmentAgeMs: 60_000, incarnation: 1 });
      expect(w.recovered, `cut at ${cut}`).toMatch(/torn tail/);
      w.close({ seal: false });
      expect(readFileSync(seg).length).toBe(SEGMENT_HEADER_BYTES);
    }
  });
});

describe('parts framed without msgpackr (encodeFramedPart)', () => {
  /** The part as recordParts would make it, for encodePart (msgpackr): the reference bytes. */
  const asPart = (r: RedoRecord, from: number, count: number, part: number, last: boolean, pageSize: number): RecordPart => ({
    kind: r.kind,
    lsn: r.lsn,
    commitTimeUs: r.commitTimeUs,
    sizePages: r.sizePages,
    wal: r.wal,
    note: r.note,
    continuityBreak: r.continuityBreak === true,
    part,
    last,
    pgnos: Uint32Array.from(r.pages.slice(from, from + count).map(([p]) => p)),
    pageData: Buffer.concat(r.pages.slice(from, from + count).map(([, d]) => d.subarray(0, pageSize))),
  });
  const U32_EDGES = [0, 1, 0x7f, 0x80, 0xff, 0x100, 0xffff, 0x10000, 0x7fffffff, 0x80000000, 0xffffffff];
  const BIG_EDGES = [0n, 1n, 0x7fn, 0x80n, 0xffffffffn, 0x100000000n, 2n ** 53n + 1n, 2n ** 63n - 1n, 2n ** 63n, 2n ** 64n - 1n];

  test('the same bytes as encodePart over random records, at every integer and length boundary', () => {
    const rng = prng(11);
    let compared = 0;
    for (let i = 0; i < 3000; i++) {
      const pageSize = rng.pick([512, 1024, 4096, 65536]);
      const base = randomRecord(rng, 1n, pageSize, pageSize === 65536 ? 3 : 20);
      const { note: _note, ...noNote } = base;
      const r: RedoRecord = {
        ...noNote,
        lsn: (rng.next() < 0.5 ? BigInt(1 + rng.int(1000)) : rng.pick(BIG_EDGES)) as Lsn,
        commitTimeUs: rng.next() < 0.5 ? base.commitTimeUs : rng.pick(BIG_EDGES),
        sizePages: rng.next() < 0.5 ? base.sizePages : rng.pick(U32_EDGES),
        wal: rng.next() < 0.5 || !base.wal ? base.wal : { salt1: rng.pick(U32_EDGES), salt2: rng.pick(U32_EDGES), commitFrame: rng.pick(U32_EDGES), s0: rng.pick(U32_EDGES), s1: rng.pick(U32_EDGES) },
      };
      const part = rng.next() < 0.5 ? rng.int(3) : rng.pick(U32_EDGES);
      const last = rng.next() < 0.5;
      const from = rng.int(r.pages.length + 1);
      const count = rng.int(r.pages.length - from + 1);
      const got = encodeFramedPart(r, r.pages, from, count, part, last, pageSize);
      const want = encodePart(asPart(r, from, count, part, last, pageSize));
      expect(got, `iteration ${i}`).not.toBeNull();
      expect(got!.equals(want), `iteration ${i}: ${got!.toString('hex').slice(0, 200)} vs ${want.toString('hex').slice(0, 200)}`).toBe(true);
      compared++;
    }
    expect(compared).toBe(3000);
  });

  test('page lists crossing bin8/bin16/bin32 lengths (64 and 16384 page numbers)', () => {
    for (const n of [0, 1, 63, 64, 65, 16383, 16384]) {
      const page = Buffer.alloc(512, n & 0xff);
      const r: RedoRecord = { kind: 'txn', lsn: 9n as Lsn, commitTimeUs: 5n, sizePages: n + 1, pages: Array.from({ length: n }, (_, i) => [i + 1, page] as const), wal: null };
      expect(encodeFramedPart(r, r.pages, 0, n, 0, true, 512)!.equals(encodePart(asPart(r, 0, n, 0, true, 512))), `${n} pages`).toBe(true);
    }
  });

  test('what it does not write itself is left to msgpackr: notes, negative or huge integers, short pages', () => {
    const page = Buffer.alloc(512, 1);
    const r: RedoRecord = { kind: 'txn', lsn: 2n as Lsn, commitTimeUs: 5n, sizePages: 3, pages: [[1, page]], wal: null };
    expect(encodeFramedPart({ ...r, note: '' }, r.pages, 0, 1, 0, true, 512)).toBeNull();
    expect(encodeFramedPart({ ...r, lsn: 2n ** 64n as Lsn }, r.pages, 0, 1, 0, true, 512)).toBeNull();
    expect(encodeFramedPart({ ...r, commitTimeUs: -1n }, r.pages, 0, 1, 0, true, 512)).toBeNull();
    expect(encodeFramedPart({ ...r, sizePages: -1 }, r.pages, 0, 1, 0, true, 512)).toBeNull();
    expect(encodeFramedPart({ ...r, sizePages: 1.5 }, r.pages, 0, 1, 0, true, 512)).toBeNull();
    expect(encodeFramedPart({ ...r, wal: { salt1: -1, salt2: 0, commitFrame: 0, s0: 0, s1: 0 } }, r.pages, 0, 1, 0, true, 512)).toBeNull();
    expect(encodeFramedPart(r, [[1, page.subarray(0, 100)]], 0, 1, 0, true, 512)).toBeNull();
    expect(encodeFramedPart(r, [[2 ** 32, page]], 0, 1, 0, true, 512)).toBeNull();
    // framedRecord then frames them as before, through recordParts and msgpackr.
    const noted: RedoRecord = { ...r, note: 'ünïcødé ✓', continuityBreak: true };
    expect(Buffer.concat(framedRecord(noted, 512)).equals(Buffer.concat([...recordParts(noted, noted.pages, 512)].map(encodePart)))).toBe(true);
  });

  test('framedRecord: every part of a multi-part record as recordParts + encodePart, in buffers of its own', () => {
    const pageSize = 65536;
    const per = MAX_PART_PAGE_BYTES / pageSize;
    const rng = prng(12);
    for (const n of [0, 1, per, per + 1, 2 * per]) {
      const source = Buffer.alloc(n * pageSize);
      for (let i = 0; i < n; i++) source.set(rng.bytes(16), i * pageSize + 7);
      const pages = Array.from({ length: n }, (_, i) => [i + 1, source.subarray(i * pageSize, (i + 1) * pageSize)] as const);
      const r: RedoRecord = { kind: 'txn', lsn: 3n as Lsn, commitTimeUs: 7n, sizePages: Math.max(1, n), pages, wal: { salt1: 1, salt2: 2, commitFrame: 3, s0: 4, s1: 5 } };
      const want = Buffer.concat([...recordParts(r, pages, pageSize)].map(encodePart));
      const framed = framedRecord(r, pageSize);
      expect(framed.length).toBe(Math.max(1, Math.ceil(n / per)));
      expect(Buffer.concat(framed).equals(want), `${n} pages`).toBe(true);
      expect(framedRecord(r, pageSize)).toBe(framed); // framed once per record object
      // The frames copied the pages: reusing the source (a WAL read buffer) does not change what is kept.
      source.fill(0xee);
      expect(Buffer.concat(framed).equals(want)).toBe(true);
      for (const b of framed) expect(b.buffer === source.buffer).toBe(false);
    }
  });
});

describe('parts that pass their CRC but are wrong', () => {
  const pageSize = 512;
  const good: RecordPart = {
    kind: 'txn',
    lsn: 1n as Lsn,
    commitTimeUs: 5n,
    sizePages: 3,
    part: 0,
    last: true,
    pgnos: Uint32Array.from([1, 3]),
    pageData: Buffer.alloc(2 * pageSize, 1),
    wal: null,
    note: undefined,
    continuityBreak: false,
  };
  const file = (...parts: RecordPart[]) => {
    const dir = freshDir();
    const path = join(dir, segmentName(1, 1n as Lsn, null));
    writeFileSync(path, Buffer.concat([encodeSegmentHeader(header(1n, pageSize)), ...parts.map(encodePart)]));
    return path;
  };

  test.each([
    ['an LSN out of order', [good, { ...good, lsn: 3n as Lsn }], /holds LSN 3 where LSN 2 belongs/, 2n],
    ['a repeated LSN', [good, good], /holds LSN 1 where LSN 2 belongs/, 2n],
    ['a part number out of order', [{ ...good, last: false }, { ...good, part: 2 }], /part 2 of LSN 1 where part 1 belongs/, 1n],
    ['a page beyond the database size', [{ ...good, sizePages: 2 }], /page numbers/, 1n],
    ['pages not ascending', [{ ...good, pgnos: Uint32Array.from([3, 1]) }], /page numbers/, 1n],
    ['page data of the wrong length', [{ ...good, pageData: Buffer.alloc(pageSize) }], /page data is 512 bytes for 2 pages/, 1n],
    ['a record without its last part', [good, { ...good, lsn: 2n as Lsn, last: false }], /incomplete/, 2n],
  ] as const)('%s is damage, not a record', (_name, parts, reason, lsn) => {
    const path = file(...(parts as readonly RecordPart[]));
    const { records, reader } = readAll(path, pageSize);
    expect(reader.damage?.reason).toMatch(reason);
    expect(reader.damage?.lsn).toBe(lsn);
    expect(records.map((r) => r.lsn)).toEqual(lsn === 2n ? [1n] : []);
    expect(reader.validEnd).toBe(lsn === 2n ? SEGMENT_HEADER_BYTES + encodePart(good).length : SEGMENT_HEADER_BYTES);
  });

  test('decodePartBody never throws on arbitrary bodies (seeded)', () => {
    const rng = prng(77);
    const body = encodePart({ ...good, wal: { salt1: 1, salt2: 2, commitFrame: 3, s0: 4, s1: 5 }, note: 'n' }).subarray(PART_HEADER_BYTES);
    let valid = 0;
    for (let i = 0; i < 3000; i++) {
      const b = Buffer.from(body);
      const flips = 1 + rng.int(4);
      for (let f = 0; f < flips; f++) b[rng.int(b.length)] = rng.int(256);
      const cut = rng.next() < 0.2 ? b.subarray(0, rng.int(b.length)) : b;
      const r = decodePartBody(cut, pageSize);
      if (typeof r !== 'string') {
        valid++;
        expect(r.pgnos.length * pageSize).toBe(r.pageData.length);
      }
    }
    for (let i = 0; i < 500; i++) expect(typeof decodePartBody(rng.bytes(rng.int(64)), pageSize)).toBe('string');
    expect(valid).toBeGreaterThan(0); // flips inside page data decode fine: that is what the CRC is for
  });
});

describe('seeded fuzz: truncations, bit flips, garbage', () => {
  const SEEDS = [11, 12, 13, 14];
  const BASES_PER_SEED = 6;
  const MUTATIONS_PER_BASE = 60;

  type Mutation = { what: string; bytes: Buffer };

  function mutate(rng: Rng, o: Buffer, ends: number[]): Mutation {
    const len = o.length;
    const flip = (b: Buffer, n: number, from = 0): string[] => {
      const done = new Set<number>();
      while (done.size < n) done.add(from * 8 + rng.int((b.length - from) * 8));
      for (const bit of done) b[bit >> 3]! ^= 1 << (bit & 7);
      return [...done].map((bit) => `${bit >> 3}.${bit & 7}`);
    };
    switch (rng.int(8)) {
      case 0: {
        const l = rng.int(len + 1);
        return { what: `truncate to ${l}`, bytes: Buffer.from(o.subarray(0, l)) };
      }
      case 1: {
        // a truncation at a record boundary, or one byte either side of it
        const l = Math.min(len, Math.max(0, rng.pick([SEGMENT_HEADER_BYTES, ...ends]) + rng.pick([-1, 0, 0, 1])));
        return { what: `truncate to ${l} (near a boundary)`, bytes: Buffer.from(o.subarray(0, l)) };
      }
      case 2:
      case 3: {
        const b = Buffer.from(o);
        // mostly past the header: header damage is covered by its own test
        const at = flip(b, 1 + rng.int(3), rng.next() < 0.9 ? SEGMENT_HEADER_BYTES : 0);
        return { what: `flip bits ${at.join(',')}`, bytes: b };
      }
      case 4: {
        const b = Buffer.from(o);
        const at = flip(b, 1 + rng.int(3), SEGMENT_HEADER_BYTES);
        const l = SEGMENT_HEADER_BYTES + rng.int(len - SEGMENT_HEADER_BYTES + 1);
        return { what: `flip bits ${at.join(',')} and truncate to ${l}`, bytes: b.subarray(0, l) };
      }
      case 5: {
        const g = rng.pick([rng.bytes(1 + rng.int(200)), Buffer.alloc(1 + rng.int(5000)), Buffer.alloc(3, 0xff)]);
        return { what: `append ${g.length} bytes of garbage`, bytes: Buffer.concat([o, g]) };
      }
      case 6: {
        // a torn write: the tail of the file zero-filled from some point on (what a file system may leave)
        const from = SEGMENT_HEADER_BYTES + rng.int(len - SEGMENT_HEADER_BYTES);
        const b = Buffer.from(o);
        b.fill(0, from);
        return { what: `zero from ${from}`, bytes: b };
      }
      default: {
        const at = SEGMENT_HEADER_BYTES + rng.int(len - SEGMENT_HEADER_BYTES);
        const b = Buffer.from(o);
        const n = 1 + rng.int(64);
        rng.bytes(n).copy(b, at);
        return { what: `overwrite ${n} bytes at ${at}`, bytes: b };
      }
    }
  }

  /** The first offset where m differs from o (or where one ends); null when they are equal. */
  function firstDifference(o: Buffer, m: Buffer): number | null {
    const n = Math.min(o.length, m.length);
    for (let i = 0; i < n; i++) if (o[i] !== m[i]) return i;
    return o.length === m.length ? null : n;
  }

  test.each(SEEDS)('seed %i', (seed) => {
    const rng = prng(seed);
    let cases = 0;
    let thrown = 0;
    let torn = 0;
    let middle = 0;
    for (let b = 0; b < BASES_PER_SEED; b++) {
      const pageSize = rng.pick([512, 1024]);
      const first = BigInt(1 + rng.int(1_000_000));
      const records = Array.from({ length: 1 + rng.int(8) }, (_, i) => randomRecord(rng, first + BigInt(i), pageSize));
      const dir = freshDir();
      const path = writeSegment(dir, header(first, pageSize), records, 1 + rng.int(3));
      const clean = readAll(path, pageSize);
      expect(clean.records.map(plain)).toEqual(records.map(plain));
      expect(clean.reader.damage).toBeNull();
      const o = readFileSync(path);
      const ends = recordEnds(path, pageSize);
      expect(ends.length).toBe(records.length);
      expect(ends[ends.length - 1]).toBe(o.length);

      for (let k = 0; k < MUTATIONS_PER_BASE; k++) {
        const m = mutate(rng, o, ends);
        const ctx = `seed ${seed}, base ${b}, mutation ${k}: ${m.what} (file of ${o.length} bytes, records end at ${ends.join(',')})`;
        const mpath = join(dir, `m${k}.open`);
        writeFileSync(mpath, m.bytes);
        const diff = firstDifference(o, m.bytes);
        let reader: SegmentReader;
        try {
          reader = new SegmentReader(mpath, { databaseId: DB_ID, pageSize });
        } catch (e) {
          thrown++;
          expect(e, ctx).toBeInstanceOf(RedoshipError);
          expect((e as RedoshipError).code, ctx).toBe('ARCHIVE_CORRUPT');
          expect(diff, `${ctx}: refused a header that is intact`).not.toBeNull();
          expect(diff!, `${ctx}: refused a header that is intact`).toBeLessThan(SEGMENT_HEADER_BYTES);
          continue;
        }
        cases++;
        expect(diff === null || diff >= SEGMENT_HEADER_BYTES, `${ctx}: accepted a damaged header`).toBe(true);
        const got: RedoRecord[] = [];
        try {
          for (const r of reader.records()) got.push(r);
        } catch (e) {
          throw new Error(`${ctx}: reading threw ${(e as Error).stack}`);
        } finally {
          reader.close();
        }
        // exactly the records wholly before the first damaged byte, each exactly as written
        const intact = diff === null ? records.length : ends.filter((e) => e <= diff).length;
        expect(got.length, ctx).toBe(intact);
        got.forEach((r, i) => expect(plain(r), `${ctx}: record ${i}`).toEqual(plain(records[i]!)));
        // validEnd, lastLsn and damage agree
        expect(reader.validEnd, ctx).toBe(intact === 0 ? SEGMENT_HEADER_BYTES : ends[intact - 1]);
        expect(reader.lastLsn, ctx).toBe(first + BigInt(intact) - 1n);
        expect(m.bytes.subarray(0, reader.validEnd).equals(o.subarray(0, reader.validEnd)), ctx).toBe(true);
        // A prefix cut at a record boundary, or one followed by nothing but zeros (preallocated room,
        // segment-format.ts (6): a zero part header there, and zeros to the end of the file).
        const zeroRoom = m.bytes.length >= reader.validEnd + PART_HEADER_BYTES && m.bytes.subarray(reader.validEnd).every((x) => x === 0);
        const cleanCut = m.bytes.length === reader.validEnd || zeroRoom;
        if (cleanCut) expect(reader.damage, ctx).toBeNull();
        else {
          expect(reader.damage, ctx).not.toBeNull();
          expect(reader.damage!.offset, ctx).toBeGreaterThanOrEqual(reader.validEnd);
          expect(reader.damage!.offset, ctx).toBeLessThanOrEqual(m.bytes.length);
          expect(reader.damage!.lsn, ctx).toBe(reader.lastLsn + 1n);
          // torn tail or damage in the middle, as the archive decides for an open segment
          const after = hasValidPartAfter(mpath, reader.damage!.offset, m.bytes.length, pageSize);
          const tailOnly = /^(truncate to|append|zero)/.test(m.what);
          if (tailOnly) {
            expect(after, `${ctx}: a torn tail taken for damage in the middle`).toBe(false);
            torn++;
          }
          // a record after the damaged one is wholly intact and in place: the damage is in the middle
          const damagedRecord = ends.findIndex((e) => e > diff!);
          const lastTouched = m.what.startsWith('flip') && !m.what.includes('truncate') ? lastDifference(o, m.bytes) : null;
          if (lastTouched !== null && damagedRecord >= 0 && ends.some((e, i) => i > damagedRecord && (ends[i - 1] ?? 0) > lastTouched)) {
            expect(after, `${ctx}: damage in the middle taken for a torn tail`).toBe(true);
            middle++;
          }
        }
      }
    }
    // the fuzz exercised what it is meant to
    expect(cases).toBeGreaterThan(BASES_PER_SEED * MUTATIONS_PER_BASE * 0.8);
    expect(torn).toBeGreaterThan(10);
    expect(middle).toBeGreaterThan(5);
    expect(thrown).toBeGreaterThan(0);
  });

  function lastDifference(o: Buffer, m: Buffer): number | null {
    for (let i = Math.min(o.length, m.length) - 1; i >= 0; i--) if (o[i] !== m[i]) return i;
    return null;
  }
});
