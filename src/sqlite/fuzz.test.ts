/*
 * Seeded, deterministic fuzzing of the SQLite format parsers over the golden files (test/golden/make.mjs).
 * Each test names its seed; a failure message names the iteration and the damage, so it can be replayed.
 *
 * What a single damaged bit or byte must do: SQLite's WAL checksum detects any change confined to one 32-bit
 * word (its coefficients for a word are consecutive Fibonacci-like numbers, never both even), so a frame with
 * one flipped bit or one replaced byte is always invalid, and so is a header. Several damaged bits CAN escape
 * it (two flipped top bits whose coefficients are both even cancel out); for those only structural properties
 * are asserted: no throw, nothing past maxFrame, well-formed transactions.
 */
import { describe, expect, test } from 'vitest';
import { walGolden, WAL_GOLDENS, type WalGolden } from '../../test/golden/golden.js';
import { parseDbHeader } from './db-header.js';
import {
  checkWalFrame,
  parseWalHeader,
  scanWalFrames,
  walChecksum,
  walFrameOffset,
  WAL_HEADER_BYTES,
  type WalChecksum,
  type WalScan,
} from './wal.js';
import { parseWalIndexHeader } from './wal-index.js';

/** mulberry32: a tiny 32-bit PRNG, good enough to pick positions. */
function prng(seed: number): { next: () => number; int: (n: number) => number; pick: <T>(xs: readonly T[]) => T } {
  let a = seed >>> 0;
  const next = (): number => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number): number => Math.floor(next() * n);
  return { next, int, pick: (xs) => xs[int(xs.length)]! };
}

interface Reference {
  readonly g: WalGolden;
  readonly frameBytes: number;
  readonly scan: WalScan;
  /** Cumulative checksum after frame k (index k), from the header's (index 0), for k in 0..mxFrame. */
  readonly chain: WalChecksum[];
}

const REFS: Reference[] = WAL_GOLDENS.map((name) => {
  const g = walGolden(name);
  const scan = scanWalFrames(g.hdr, g.frames, 1, g.idx.mxFrame, g.hdr.checksum);
  const chain: WalChecksum[] = [g.hdr.checksum];
  for (let k = 1; k <= g.idx.mxFrame; k++) {
    chain.push(checkWalFrame(g.hdr, g.wal, walFrameOffset(k, g.hdr.pageSize), k, chain[k - 1]!)!.checksum);
  }
  return { g, frameBytes: 24 + g.hdr.pageSize, scan, chain };
});
// page64k frames are 64 KiB: fuzz the small-page goldens more often
const WEIGHTED = REFS.flatMap((r) => (r.g.hdr.pageSize > 4096 ? [r] : [r, r, r]));

/** Scans the (possibly damaged) WAL bytes with the ORIGINAL header, as a reader that read the header before. */
const scanDamaged = (r: Reference, wal: Uint8Array, maxFrame = r.g.idx.mxFrame): WalScan =>
  scanWalFrames(r.g.hdr, wal.subarray(WAL_HEADER_BYTES), 1, maxFrame, r.g.hdr.checksum);

const commits = (s: WalScan): number[] => s.transactions.map((t) => t.commitFrame);

/** Structural properties every scan must have, whatever the input. */
function expectWellFormed(s: WalScan, firstFrame: number, maxFrame: number, pageSize: number, what: string): void {
  let next = firstFrame;
  for (const t of s.transactions) {
    if (t.firstFrame !== next || t.commitFrame < t.firstFrame || t.commitFrame > maxFrame) {
      throw new Error(`${what}: transaction ${t.firstFrame}..${t.commitFrame} (expected from ${next}, max ${maxFrame})`);
    }
    let prev = 0;
    for (const [p, page] of t.pages) {
      if (p <= prev || p > t.sizePages || page.length !== pageSize) throw new Error(`${what}: bad page ${p}`);
      prev = p;
    }
    next = t.commitFrame + 1;
  }
  const end = s.transactions.at(-1)?.commitFrame ?? firstFrame - 1;
  if (s.endFrame !== end) throw new Error(`${what}: endFrame ${s.endFrame}, last commit ${end}`);
  if (s.stoppedAt && (s.stoppedAt.frameNo < firstFrame || s.stoppedAt.frameNo > maxFrame)) {
    throw new Error(`${what}: stoppedAt ${s.stoppedAt.frameNo} outside ${firstFrame}..${maxFrame}`);
  }
}

/** A copy of a WAL header with the given checksum order and salts, and a checksum that matches. */
function resealWalHeader(hdr: Buffer, bigEndian: boolean, salt1: number, salt2: number): Buffer {
  const out = Buffer.from(hdr);
  out.writeUInt32BE(bigEndian ? 0x377f0683 : 0x377f0682, 0);
  out.writeUInt32BE(salt1 >>> 0, 16);
  out.writeUInt32BE(salt2 >>> 0, 20);
  const c = walChecksum(bigEndian, out, 0, 24, { s0: 0, s1: 0 });
  out.writeUInt32BE(c.s0, 24);
  out.writeUInt32BE(c.s1, 28);
  return out;
}

/** A position in the WAL: mostly inside the committed log, sometimes anywhere in the file. */
function position(rnd: ReturnType<typeof prng>, r: Reference): number {
  const committedEnd = walFrameOffset(r.g.idx.mxFrame + 1, r.g.hdr.pageSize);
  const x = rnd.int(10);
  if (x === 0) return rnd.int(WAL_HEADER_BYTES);
  if (x === 1) return rnd.int(r.g.wal.length);
  if (x === 2) {
    // a frame header
    const k = 1 + rnd.int(r.g.idx.mxFrame);
    return walFrameOffset(k, r.g.hdr.pageSize) + rnd.int(24);
  }
  return WAL_HEADER_BYTES + rnd.int(committedEnd - WAL_HEADER_BYTES);
}

const frameOf = (r: Reference, pos: number): number => Math.floor((pos - WAL_HEADER_BYTES) / r.frameBytes) + 1;

/** The properties of a WAL with damage confined to one byte at pos (which the checksum always detects). */
function expectSingleDamage(r: Reference, wal: Buffer, pos: number, what: string): void {
  if (pos < WAL_HEADER_BYTES) {
    expect(parseWalHeader(wal), what).toBeNull();
    return;
  }
  expect(parseWalHeader(wal), what).toEqual(r.g.hdr);
  const k = frameOf(r, pos);
  const s = scanDamaged(r, wal);
  expectWellFormed(s, 1, r.g.idx.mxFrame, r.g.hdr.pageSize, what);
  const want = r.scan.transactions.filter((t) => t.commitFrame < k);
  expect(commits(s), what).toEqual(want.map((t) => t.commitFrame));
  if (k <= r.g.idx.mxFrame) {
    expect(s.stoppedAt, what).toEqual({ frameNo: k, reason: 'invalid' });
    expect(s.endChecksum, what).toEqual(want.at(-1)?.checksum ?? r.g.hdr.checksum);
  } else {
    expect(s.stoppedAt, what).toBeNull();
    expect(s.endChecksum, what).toEqual(r.g.idx.frameChecksum);
  }
  // the damaged frame itself never checks, whatever the previous checksum it is given
  if (k <= r.g.idx.mxFrame) {
    expect(checkWalFrame(r.g.hdr, wal, walFrameOffset(k, r.g.hdr.pageSize), k, r.chain[k - 1]!), what).toBeNull();
  }
}

describe('fuzz: the WAL', () => {
  test('truncated anywhere (seed 1)', () => {
    const rnd = prng(1);
    for (let i = 0; i < 1500; i++) {
      const r = rnd.pick(WEIGHTED);
      const wal = r.g.wal;
      // near a frame boundary half of the time
      const len =
        rnd.int(2) === 0
          ? rnd.int(wal.length + 1)
          : Math.max(0, Math.min(wal.length, walFrameOffset(1 + rnd.int(r.g.idx.mxFrame + 1), r.g.hdr.pageSize) + rnd.int(5) - 2));
      const what = `#${i} ${r.g.name} cut at ${len}`;
      const cut = wal.subarray(0, len);
      const h = parseWalHeader(cut);
      if (len < WAL_HEADER_BYTES) {
        expect(h, what).toBeNull();
        continue;
      }
      expect(h, what).toEqual(r.g.hdr);
      const s = scanDamaged(r, cut);
      expectWellFormed(s, 1, r.g.idx.mxFrame, r.g.hdr.pageSize, what);
      const complete = Math.floor((len - WAL_HEADER_BYTES) / r.frameBytes);
      expect(commits(s), what).toEqual(commits(r.scan).filter((c) => c <= complete));
      expect(s.stoppedAt, what).toEqual(complete < r.g.idx.mxFrame ? { frameNo: complete + 1, reason: 'incomplete' } : null);
    }
  });

  test('one bit flipped (seed 2)', () => {
    const rnd = prng(2);
    for (let i = 0; i < 2500; i++) {
      const r = rnd.pick(WEIGHTED);
      const pos = position(rnd, r);
      const bit = rnd.int(8);
      const wal = Buffer.from(r.g.wal);
      wal[pos] = wal[pos]! ^ (1 << bit);
      expectSingleDamage(r, wal, pos, `#${i} ${r.g.name} bit ${bit} of byte ${pos}`);
    }
  });

  test('one byte replaced (seed 3)', () => {
    const rnd = prng(3);
    for (let i = 0; i < 1500; i++) {
      const r = rnd.pick(WEIGHTED);
      const pos = position(rnd, r);
      const wal = Buffer.from(r.g.wal);
      const old = wal[pos]!;
      wal[pos] = (old + 1 + rnd.int(255)) & 0xff;
      expectSingleDamage(r, wal, pos, `#${i} ${r.g.name} byte ${pos}: ${old} -> ${wal[pos]}`);
    }
  });

  test('several bits and bytes damaged: never throws, never past maxFrame, nothing before the damage lost (seed 4)', () => {
    const rnd = prng(4);
    for (let i = 0; i < 800; i++) {
      const r = rnd.pick(WEIGHTED);
      const wal = Buffer.from(r.g.wal);
      const n = 2 + rnd.int(20);
      let first = Infinity;
      for (let j = 0; j < n; j++) {
        const pos = WAL_HEADER_BYTES + rnd.int(wal.length - WAL_HEADER_BYTES);
        if (rnd.int(2) === 0) wal[pos] = wal[pos]! ^ (1 << rnd.int(8));
        else wal[pos] = rnd.int(256);
        if (wal[pos] !== r.g.wal[pos]) first = Math.min(first, frameOf(r, pos));
      }
      const what = `#${i} ${r.g.name} ${n} damages, first in frame ${first}`;
      const maxFrame = rnd.int(3) === 0 ? (wal.length - WAL_HEADER_BYTES) / r.frameBytes : r.g.idx.mxFrame;
      const s = scanDamaged(r, wal, maxFrame);
      expectWellFormed(s, 1, maxFrame, r.g.hdr.pageSize, what);
      // every transaction that ends before the first damaged frame is still found
      const intact = commits(r.scan).filter((c) => c < first && c <= maxFrame);
      expect(commits(s).slice(0, intact.length), what).toEqual(intact);
    }
  });

  test('a scan started at any frame with the right checksum, up to any maxFrame, finds the same commits (seed 5)', () => {
    const rnd = prng(5);
    for (let i = 0; i < 1000; i++) {
      const r = rnd.pick(WEIGHTED);
      const mx = r.g.idx.mxFrame;
      const first = 1 + rnd.int(mx);
      const max = rnd.int(mx + 3);
      const buf = r.g.frames.subarray((first - 1) * r.frameBytes);
      const what = `#${i} ${r.g.name} frames ${first}..${max}`;
      const s = scanWalFrames(r.g.hdr, buf, first, max, r.chain[first - 1]!);
      expectWellFormed(s, first, Math.max(max, first - 1), r.g.hdr.pageSize, what);
      expect(commits(s), what).toEqual(commits(r.scan).filter((c) => c >= first && c <= max));
      if (max <= mx) expect(s.stoppedAt, what).toBeNull();
      else if (r.g.name !== 'uncommitted') expect(s.stoppedAt?.frameNo, what).toBe(mx + 1);
    }
  });

  test('random garbage frames behind a good header (seed 6)', () => {
    const rnd = prng(6);
    for (let i = 0; i < 600; i++) {
      const r = rnd.pick(WEIGHTED);
      const n = rnd.int(4) * r.frameBytes + rnd.int(r.frameBytes);
      const garbage = Buffer.alloc(n);
      for (let j = 0; j < n; j++) garbage[j] = rnd.int(256);
      // half of the time with the right salts in every frame header, so only the checksum can reject them
      if (rnd.int(2) === 0) {
        for (let off = 0; off + 24 <= n; off += r.frameBytes) r.g.wal.copy(garbage, off + 8, 16, 24);
      }
      const first = 1 + rnd.int(50);
      const max = first - 1 + rnd.int(6);
      const prev = { s0: rnd.int(2 ** 32), s1: rnd.int(2 ** 32) };
      const what = `#${i} ${r.g.name} ${n} bytes, frames ${first}..${max}`;
      const s = scanWalFrames(r.g.hdr, garbage, first, max, prev);
      expectWellFormed(s, first, Math.max(max, first - 1), r.g.hdr.pageSize, what);
      expect(s.transactions, what).toEqual([]);
      expect(s.endChecksum, what).toEqual(prev);
      if (max >= first) expect(s.stoppedAt?.frameNo, what).toBe(first);
    }
  });
});

describe('exhaustive single-bit flips', () => {
  test('every bit of every WAL header and of both copies of every -shm header', () => {
    for (const r of REFS) {
      for (let bit = 0; bit < 32 * 8; bit++) {
        const wal = Buffer.from(r.g.wal.subarray(0, 32));
        wal[bit >> 3] = wal[bit >> 3]! ^ (1 << (bit & 7));
        expect(parseWalHeader(wal), `${r.g.name} WAL header bit ${bit}`).toBeNull();
      }
      for (let bit = 0; bit < 96 * 8; bit++) {
        const shm = Buffer.from(r.g.shm.subarray(0, 136));
        shm[bit >> 3] = shm[bit >> 3]! ^ (1 << (bit & 7));
        expect(parseWalIndexHeader(shm), `${r.g.name} -shm bit ${bit}`).toBeNull();
      }
    }
  });

  test('every bit of the first, a middle and the last committed frame of wal/page512', () => {
    const r = REFS.find((x) => x.g.name === 'page512')!;
    const mx = r.g.idx.mxFrame;
    for (const k of [1, Math.ceil(mx / 2), mx]) {
      const start = walFrameOffset(k, r.g.hdr.pageSize);
      for (let bit = 0; bit < r.frameBytes * 8; bit++) {
        const pos = start + (bit >> 3);
        const wal = Buffer.from(r.g.wal);
        wal[pos] = wal[pos]! ^ (1 << (bit & 7));
        expectSingleDamage(r, wal, pos, `frame ${k} bit ${bit}`);
      }
    }
  });
});

describe('fuzz: headers', () => {
  test('random buffers are never a WAL header, a wal-index header or a database header (seed 7)', () => {
    const rnd = prng(7);
    for (let i = 0; i < 2000; i++) {
      const n = rnd.int(3) === 0 ? rnd.int(200) : rnd.int(40) + 100;
      const buf = new Uint8Array(n);
      for (let j = 0; j < n; j++) buf[j] = rnd.int(256);
      // sometimes with a plausible start, so the later checks are reached
      if (n >= 32 && rnd.int(2) === 0) {
        const r = rnd.pick(REFS);
        buf.set(r.g.wal.subarray(0, 12 + rnd.int(12)));
      }
      const what = `#${i} ${n} bytes`;
      expect(parseWalHeader(buf), what).toBeNull();
      expect(parseWalIndexHeader(buf), what).toBeNull();
      expect(parseDbHeader(buf), what).toBeNull();
    }
  });

  test('a -shm header: a bit flipped in either copy is rejected, in the checkpoint info it is not (seed 8)', () => {
    const rnd = prng(8);
    for (let i = 0; i < 2000; i++) {
      const r = rnd.pick(REFS);
      const shm = Buffer.from(r.g.shm.subarray(0, 136));
      const pos = rnd.int(136);
      const bit = rnd.int(8);
      const both = pos < 48 && rnd.int(2) === 0; // the same damage in both copies: only the checksum can tell
      shm[pos] = shm[pos]! ^ (1 << bit);
      if (both) shm[pos + 48] = shm[pos + 48]! ^ (1 << bit);
      const what = `#${i} ${r.g.name} bit ${bit} of byte ${pos}${both ? ' in both copies' : ''}`;
      const h = parseWalIndexHeader(shm);
      if (pos < 96) expect(h, what).toBeNull();
      else {
        expect(h, what).not.toBeNull();
        expect({ ...h!, nBackfill: 0, readMarks: [] }, what).toEqual({ ...r.g.idx, nBackfill: 0, readMarks: [] });
      }
    }
  });

  test('a -shm header truncated or with a byte replaced (seed 9)', () => {
    const rnd = prng(9);
    for (let i = 0; i < 1000; i++) {
      const r = rnd.pick(REFS);
      const what = `#${i} ${r.g.name}`;
      expect(parseWalIndexHeader(r.g.shm.subarray(0, rnd.int(136))), what).toBeNull();
      const shm = Buffer.from(r.g.shm.subarray(0, 136 + rnd.int(64)));
      const pos = rnd.int(96);
      shm[pos] = (shm[pos]! + 1 + rnd.int(255)) & 0xff;
      expect(parseWalIndexHeader(shm), `${what} byte ${pos}`).toBeNull();
    }
  });

  test('a WAL header with one bit flipped; a resealed header with random salts (seed 10)', () => {
    const rnd = prng(10);
    for (let i = 0; i < 1500; i++) {
      const r = rnd.pick(REFS);
      const hdr = Buffer.from(r.g.wal.subarray(0, 32));
      const pos = rnd.int(32);
      hdr[pos] = hdr[pos]! ^ (1 << rnd.int(8));
      expect(parseWalHeader(hdr), `#${i} ${r.g.name} byte ${pos}`).toBeNull();

      // a well-formed header with other salts: it parses, and no frame of the golden log belongs to it
      const other = resealWalHeader(
        Buffer.from(r.g.wal.subarray(0, 32)).fill(0, 12, 24),
        rnd.int(2) === 1,
        rnd.int(2 ** 32),
        rnd.int(2 ** 32),
      );
      if (other.readUInt32BE(16) === r.g.hdr.salt1 && other.readUInt32BE(20) === r.g.hdr.salt2) continue;
      const h = parseWalHeader(other);
      expect(h, `#${i} resealed`).not.toBeNull();
      const s = scanWalFrames(h!, r.g.frames, 1, r.g.idx.mxFrame, h!.checksum);
      expect(s.transactions, `#${i} resealed`).toEqual([]);
      expect(s.stoppedAt, `#${i} resealed`).toEqual({ frameNo: 1, reason: 'invalid' });
    }
  });

  test('a database header: truncated, damaged magic, damaged anything else (seed 11)', () => {
    const rnd = prng(11);
    const dbs = REFS.map((r) => r.g.db);
    for (let i = 0; i < 1500; i++) {
      const db = rnd.pick(dbs);
      expect(parseDbHeader(db.subarray(0, rnd.int(100))), `#${i} truncated`).toBeNull();
      const b = Buffer.from(db.subarray(0, 100));
      const pos = rnd.int(100);
      b[pos] = b[pos]! ^ (1 << rnd.int(8));
      const h = parseDbHeader(b);
      const what = `#${i} byte ${pos}`;
      if (pos < 16) expect(h, what).toBeNull();
      else if (pos === 16 || pos === 17) {
        if (h) expect([512, 1024, 2048, 4096, 8192, 16384, 32768, 65536], what).toContain(h.pageSize);
      } else {
        expect(h, what).not.toBeNull();
        expect(h!.pageSize, what).toBe(parseDbHeader(db)!.pageSize);
      }
    }
  });
});
