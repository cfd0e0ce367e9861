import { describe, expect, test } from 'vitest';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import {
  applyTransactions,
  buildWal,
  golden,
  manifest,
  rechecksumWal,
  resealWalHeader,
  sqliteCheckpointed,
  stateOfImage,
  tableState,
  walGolden,
  WAL_GOLDENS,
  withSqlite,
} from '../../test/golden/golden.js';
import { parseDbHeader } from './db-header.js';
import {
  checkWalFrame,
  parseWalHeader,
  scanWalFrames,
  walChecksum,
  walFrameOffset,
  WAL_FRAME_HEADER_BYTES,
  WAL_HEADER_BYTES,
  type WalChecksum,
  type WalTransaction,
} from './wal.js';
import { parseWalIndexHeader } from './wal-index.js';

const ZERO: WalChecksum = { s0: 0, s1: 0 };

/** A transaction with its page images hashed, for cheap deep comparison. */
const summary = (txns: readonly WalTransaction[]): unknown[] =>
  txns.map((t) => ({
    firstFrame: t.firstFrame,
    commitFrame: t.commitFrame,
    sizePages: t.sizePages,
    checksum: t.checksum,
    pages: t.pages.map(([p, img]) => [p, createHash('sha1').update(img).digest('hex')]),
  }));

describe('walChecksum', () => {
  const bytes = Buffer.from([1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4, 0, 0, 0]);

  test('little-endian words, by hand: s0 += x[i] + s1; s1 += x[i+1] + s0', () => {
    // (1, 0+2+1=3), then (1+3+3=7, 3+4+7=14)
    expect(walChecksum(false, bytes, 0, 16, ZERO)).toEqual({ s0: 7, s1: 14 });
  });

  test('big-endian words, by hand', () => {
    expect(walChecksum(true, bytes, 0, 16, ZERO)).toEqual({ s0: 0x07000000, s1: 0x0e000000 });
  });

  test('sums wrap modulo 2^32 and stay unsigned', () => {
    const ff = Buffer.alloc(16, 0xff);
    expect(walChecksum(false, ff, 0, 8, ZERO)).toEqual({ s0: 0xffffffff, s1: 0xfffffffe });
    expect(walChecksum(true, ff, 0, 16, ZERO)).toEqual({ s0: 0xfffffffc, s1: 0xfffffff9 });
  });

  test('continues from prev: checksum(a ++ b) = checksum(b, checksum(a))', () => {
    const buf = Buffer.from(Array.from({ length: 64 }, (_, i) => (i * 37 + 11) & 0xff));
    for (const be of [false, true]) {
      const whole = walChecksum(be, buf, 0, 64, { s0: 5, s1: 9 });
      const half = walChecksum(be, buf, 0, 24, { s0: 5, s1: 9 });
      expect(walChecksum(be, buf, 24, 40, half)).toEqual(whole);
    }
  });

  test('big-endian checksum of a buffer equals the little-endian one of its byte-swapped words', () => {
    const buf = Buffer.from(Array.from({ length: 48 }, (_, i) => (i * 73 + 5) & 0xff));
    const swapped = Buffer.from(buf).swap32();
    expect(walChecksum(true, buf, 0, 48, ZERO)).toEqual(walChecksum(false, swapped, 0, 48, ZERO));
  });

  test('reads at the given offset of a view with a non-zero byteOffset', () => {
    const base = Buffer.alloc(40);
    bytes.copy(base, 24);
    const view = base.subarray(8);
    expect(walChecksum(false, view, 16, 16, ZERO)).toEqual({ s0: 7, s1: 14 });
  });
});

describe('walChecksum against the plain reference loop', () => {
  /** The loop as wal.c writes it, through a DataView: what the word-at-a-time version must equal exactly. */
  const reference = (be: boolean, buf: Uint8Array, offset: number, length: number, prev: WalChecksum): WalChecksum => {
    const v = new DataView(buf.buffer, buf.byteOffset + offset, length);
    let s0 = prev.s0;
    let s1 = prev.s1;
    for (let i = 0; i < length; i += 8) {
      s0 = (s0 + v.getUint32(i, !be) + s1) >>> 0;
      s1 = (s1 + v.getUint32(i + 4, !be) + s0) >>> 0;
    }
    return { s0, s1 };
  };
  let seed = 0x9e3779b9;
  const rand = (): number => ((seed = (Math.imul(seed ^ (seed >>> 15), 0x2c1b3c6d) + 0x6d2b79f5) >>> 0), seed);

  test('every alignment, short and long runs, both byte orders, any starting sums', () => {
    const raw = Buffer.alloc(4096 + 64);
    for (let i = 0; i < raw.length; i++) raw[i] = rand() & 0xff;
    for (const be of [false, true])
      for (let shift = 0; shift < 8; shift++)
        for (const length of [0, 8, 16, 40, 56, 64, 72, 512, 4096]) {
          const view = raw.subarray(shift, shift + length + 16);
          for (const offset of [0, 8]) {
            const prev = { s0: rand(), s1: rand() };
            expect(walChecksum(be, view, offset, length, prev), `be=${be} shift=${shift} len=${length} off=${offset}`).toEqual(
              reference(be, view, offset, length, prev),
            );
          }
        }
  });

  test('words with the top bits set wrap exactly as unsigned C arithmetic', () => {
    for (const fill of [0xff, 0x80, 0x7f]) {
      const buf = Buffer.alloc(4096, fill);
      for (const be of [false, true]) {
        const prev = { s0: 0xffffffff, s1: 0x80000000 };
        expect(walChecksum(be, buf, 0, 4096, prev)).toEqual(reference(be, buf, 0, 4096, prev));
      }
    }
  });

  test('a range outside the buffer, or not whole word pairs, throws as the DataView loop did', () => {
    const buf = Buffer.alloc(128);
    expect(() => walChecksum(false, buf, 0, 136, ZERO)).toThrow(RangeError);
    expect(() => walChecksum(false, buf, 64, 72, ZERO)).toThrow(RangeError);
    expect(() => walChecksum(false, buf, 0, 12, ZERO)).toThrow(RangeError);
    expect(() => walChecksum(true, buf, 0, 68, ZERO)).toThrow(RangeError);
  });

  test.each(WAL_GOLDENS)('%s: scanning frames at every byte alignment gives the same result', (name) => {
    const g = walGolden(name);
    const want = scanWalFrames(g.hdr, g.frames, 1, g.idx.mxFrame, g.hdr.checksum);
    for (let shift = 1; shift < 4; shift++) {
      const copy = Buffer.alloc(g.frames.length + shift);
      g.frames.copy(copy, shift);
      const got = scanWalFrames(g.hdr, copy.subarray(shift), 1, g.idx.mxFrame, g.hdr.checksum);
      expect(summary(got.transactions)).toEqual(summary(want.transactions));
      expect([got.endFrame, got.endChecksum, got.stoppedAt]).toEqual([want.endFrame, want.endChecksum, want.stoppedAt]);
    }
  });
});

describe('walFrameOffset', () => {
  test('frame 1 follows the 32-byte header; frames are 24 + pageSize bytes', () => {
    expect(walFrameOffset(1, 4096)).toBe(32);
    expect(walFrameOffset(2, 4096)).toBe(32 + 24 + 4096);
    expect(walFrameOffset(10, 65536)).toBe(32 + 9 * (24 + 65536));
    expect(WAL_HEADER_BYTES).toBe(32);
    expect(WAL_FRAME_HEADER_BYTES).toBe(24);
  });
});

describe('parseWalHeader on the golden WALs', () => {
  test.each(WAL_GOLDENS)('%s: page size, salts and checksum agree with the file and the -shm', (name) => {
    const g = walGolden(name);
    const h = parseWalHeader(g.wal);
    expect(h).not.toBeNull();
    expect(h!.bigEndianChecksum).toBe(false);
    expect(h!.pageSize).toBe(manifest.wal[name].pageSize);
    expect(h!.salt1).toBe(g.wal.readUInt32BE(16));
    expect(h!.salt2).toBe(g.wal.readUInt32BE(20));
    expect([h!.salt1, h!.salt2]).toEqual([g.idx.salt1, g.idx.salt2]);
    expect(h!.checksum).toEqual({ s0: g.wal.readUInt32BE(24), s1: g.wal.readUInt32BE(28) });
    expect(h!.checkpointSeq).toBe(g.wal.readUInt32BE(12));
  });

  test('a 65536-byte page size is written as 65536 in the WAL header', () => {
    expect(golden('wal/page64k.db-wal').readUInt32BE(8)).toBe(65536);
    expect(parseWalHeader(golden('wal/page64k.db-wal'))!.pageSize).toBe(65536);
  });

  test('restart: salt-1 is the previous generation plus one, and the checkpoint sequence moved', () => {
    const g = walGolden('restart');
    expect(g.hdr.salt1).toBe((manifest.wal.restart.previousGeneration.salt1 + 1) >>> 0);
    expect(g.hdr.checkpointSeq).toBeGreaterThan(0);
  });

  test('only the 32 header bytes are read', () => {
    const wal = golden('wal/basic.db-wal');
    expect(parseWalHeader(wal.subarray(0, 32))).toEqual(parseWalHeader(wal));
    expect(parseWalHeader(wal.subarray(0, 31))).toBeNull();
    expect(parseWalHeader(new Uint8Array(0))).toBeNull();
  });

  test('a header in a view with a non-zero byteOffset', () => {
    const wal = golden('wal/basic.db-wal');
    const padded = Buffer.concat([Buffer.alloc(13, 7), wal.subarray(0, 32)]);
    expect(parseWalHeader(padded.subarray(13))).toEqual(parseWalHeader(wal));
  });
});

describe('parseWalHeader rejects', () => {
  const wal = golden('wal/basic.db-wal').subarray(0, 32);
  const edit = (fn: (b: Buffer) => void, reseal = true): Buffer => {
    const b = Buffer.from(wal);
    fn(b);
    return reseal ? resealWalHeader(b) : b;
  };

  test('a wrong magic, even with a matching checksum', () => {
    expect(parseWalHeader(edit((b) => b.writeUInt32BE(0x377f0684, 0)))).toBeNull();
    expect(parseWalHeader(edit((b) => b.writeUInt32BE(0x377f0681, 0)))).toBeNull();
    expect(parseWalHeader(edit((b) => b.writeUInt32BE(0, 0)))).toBeNull();
  });

  test('a file format version other than 3007000', () => {
    expect(parseWalHeader(edit((b) => b.writeUInt32BE(3007001, 4)))).toBeNull();
  });

  test.each([0, 256, 511, 1000, 4097, 131072, 1])('a page size of %i', (ps) => {
    expect(parseWalHeader(edit((b) => b.writeUInt32BE(ps, 8)))).toBeNull();
  });

  test('every valid page size is accepted when the checksum matches', () => {
    for (let ps = 512; ps <= 65536; ps *= 2) expect(parseWalHeader(edit((b) => b.writeUInt32BE(ps, 8)))?.pageSize).toBe(ps);
  });

  test('a bad checksum', () => {
    expect(parseWalHeader(edit((b) => (b[27] = b[27]! ^ 1), false))).toBeNull();
    expect(parseWalHeader(edit((b) => (b[30] = b[30]! ^ 0x80), false))).toBeNull();
    expect(parseWalHeader(edit((b) => (b[17] = b[17]! ^ 4), false))).toBeNull();
  });

  test('the magic switched to big-endian without re-checksumming', () => {
    expect(parseWalHeader(edit((b) => b.writeUInt32BE(0x377f0683, 0), false))).toBeNull();
  });
});

describe('checkWalFrame', () => {
  const g = walGolden('basic');
  const ps = g.hdr.pageSize;

  test('frame 1 continues the header checksum', () => {
    const f = checkWalFrame(g.hdr, g.wal, walFrameOffset(1, ps), 1, g.hdr.checksum);
    expect(f).not.toBeNull();
    expect(f!.frameNo).toBe(1);
    expect(f!.pgno).toBe(g.wal.readUInt32BE(32));
    expect(f!.commitSizePages).toBe(g.wal.readUInt32BE(36));
    expect(f!.checksum).toEqual({ s0: g.wal.readUInt32BE(48), s1: g.wal.readUInt32BE(52) });
    expect(f!.page.length).toBe(ps);
    expect(Buffer.from(f!.page).equals(g.wal.subarray(56, 56 + ps))).toBe(true);
    // a view, not a copy
    expect(f!.page.buffer).toBe(g.wal.buffer);
  });

  test('a wrong previous checksum makes a frame invalid', () => {
    expect(checkWalFrame(g.hdr, g.wal, walFrameOffset(1, ps), 1, ZERO)).toBeNull();
    expect(checkWalFrame(g.hdr, g.wal, walFrameOffset(2, ps), 2, g.hdr.checksum)).toBeNull();
  });

  test('a frame that does not fit in the buffer is invalid', () => {
    const cut = g.wal.subarray(0, walFrameOffset(2, ps) - 1);
    expect(checkWalFrame(g.hdr, cut, walFrameOffset(1, ps), 1, g.hdr.checksum)).toBeNull();
  });

  test('salts other than the header salts make a frame invalid', () => {
    expect(checkWalFrame({ ...g.hdr, salt1: g.hdr.salt1 ^ 1 }, g.wal, 32, 1, g.hdr.checksum)).toBeNull();
    expect(checkWalFrame({ ...g.hdr, salt2: g.hdr.salt2 ^ 1 }, g.wal, 32, 1, g.hdr.checksum)).toBeNull();
  });

  test('page number 0 is invalid even with a good checksum', () => {
    const wal = buildWal({ pageSize: 512, frames: [{ pgno: 0, commit: 1 }] });
    const hdr = parseWalHeader(wal)!;
    expect(checkWalFrame(hdr, wal, 32, 1, hdr.checksum)).toBeNull();
  });
});

describe('scanWalFrames on the golden WALs', () => {
  describe.each(WAL_GOLDENS)('%s', (name) => {
    const g = walGolden(name);
    const ps = g.hdr.pageSize;
    const expected = manifest.wal[name].transactions;
    const scan = scanWalFrames(g.hdr, g.frames, 1, g.idx.mxFrame, g.hdr.checksum);

    test('finds every committed transaction and ends where the -shm says', () => {
      expect(scan.transactions).toHaveLength(expected.length);
      expect(scan.stoppedAt).toBeNull();
      expect(scan.endFrame).toBe(g.idx.mxFrame);
      expect(scan.endChecksum).toEqual(g.idx.frameChecksum);
      expect(scan.transactions.at(-1)!.commitFrame).toBe(g.idx.mxFrame);
      expect(scan.transactions.at(-1)!.sizePages).toBe(g.idx.sizePages);
      expect(scan.transactions.at(-1)!.checksum).toEqual(g.idx.frameChecksum);
    });

    test('transactions are contiguous and each matches its commit frame header', () => {
      let next = 1;
      for (const t of scan.transactions) {
        expect(t.firstFrame).toBe(next);
        expect(t.commitFrame).toBeGreaterThanOrEqual(t.firstFrame);
        const off = walFrameOffset(t.commitFrame, ps);
        expect(t.sizePages).toBe(g.wal.readUInt32BE(off + 4));
        expect(t.checksum).toEqual({ s0: g.wal.readUInt32BE(off + 16), s1: g.wal.readUInt32BE(off + 20) });
        const pgnos = t.pages.map(([p]) => p);
        expect(pgnos).toEqual([...new Set(pgnos)].sort((a, b) => a - b));
        for (const [p, page] of t.pages) {
          expect(p).toBeGreaterThanOrEqual(1);
          expect(p).toBeLessThanOrEqual(t.sizePages);
          expect(page.length).toBe(ps);
        }
        // the image of each page is its LAST frame in the transaction
        for (const [p, page] of t.pages) {
          let last = -1;
          for (let k = t.firstFrame; k <= t.commitFrame; k++) if (g.wal.readUInt32BE(walFrameOffset(k, ps)) === p) last = k;
          const at = walFrameOffset(last, ps) + WAL_FRAME_HEADER_BYTES;
          expect(Buffer.from(page).equals(g.wal.subarray(at, at + ps))).toBe(true);
        }
        next = t.commitFrame + 1;
      }
    });

    test('applying every transaction over the db file gives the file SQLite checkpoints', () => {
      const applied = applyTransactions(g.db, ps, scan.transactions);
      const checkpointed = sqliteCheckpointed(name);
      expect(applied.length).toBe(checkpointed.length);
      expect(applied.equals(checkpointed)).toBe(true);
      expect(parseDbHeader(checkpointed)!.sizePages).toBe(g.idx.sizePages);
    });

    test('applying the first k transactions gives the database SQLite had after the k-th commit', () => {
      for (let k = 1; k <= scan.transactions.length; k++) {
        const image = applyTransactions(g.db, ps, scan.transactions.slice(0, k));
        expect(stateOfImage(image), `after transaction ${k}`).toEqual(expected[k - 1]);
      }
    });

    test('resuming after any commit returns the remaining transactions', () => {
      for (const [j, t] of scan.transactions.entries()) {
        const rest = scanWalFrames(g.hdr, g.frames.subarray(t.commitFrame * (24 + ps)), t.commitFrame + 1, g.idx.mxFrame, t.checksum);
        expect(rest.transactions.map((x) => [x.firstFrame, x.commitFrame, x.checksum])).toEqual(
          scan.transactions.slice(j + 1).map((x) => [x.firstFrame, x.commitFrame, x.checksum]),
        );
        expect(rest.endFrame).toBe(g.idx.mxFrame);
        expect(rest.endChecksum).toEqual(g.idx.frameChecksum);
      }
    });

    test('never looks past maxFrame', () => {
      for (let max = 0; max <= g.idx.mxFrame; max++) {
        const s = scanWalFrames(g.hdr, g.frames, 1, max, g.hdr.checksum);
        expect(s.stoppedAt).toBeNull();
        expect(summary(s.transactions)).toEqual(summary(scan.transactions.filter((t) => t.commitFrame <= max)));
        expect(s.endFrame).toBe(s.transactions.at(-1)?.commitFrame ?? 0);
        // and the frames past max need not even be in the buffer
        const cut = g.frames.subarray(0, max * (24 + ps));
        const c = scanWalFrames(g.hdr, cut, 1, max, g.hdr.checksum);
        expect([summary(c.transactions), c.endFrame, c.endChecksum, c.stoppedAt]).toEqual([
          summary(s.transactions),
          s.endFrame,
          s.endChecksum,
          s.stoppedAt,
        ]);
      }
    });

    test('a buffer that ends before maxFrame stops as incomplete', () => {
      const cut = g.frames.subarray(0, g.idx.mxFrame * (24 + ps) - 1);
      const s = scanWalFrames(g.hdr, cut, 1, g.idx.mxFrame, g.hdr.checksum);
      expect(s.stoppedAt).toEqual({ frameNo: g.idx.mxFrame, reason: 'incomplete' });
      expect(s.transactions.every((t) => t.commitFrame < g.idx.mxFrame)).toBe(true);
    });
  });

  test('restart: the frames of the previous generation past mxFrame are invalid and never returned', () => {
    const g = walGolden('restart');
    const prev = manifest.wal.restart.previousGeneration;
    const inFile = (g.wal.length - WAL_HEADER_BYTES) / (24 + g.hdr.pageSize);
    expect(inFile).toBe(prev.frames);
    expect(inFile).toBeGreaterThan(g.idx.mxFrame);
    // the old frames still carry the old salt-1
    const old = walFrameOffset(g.idx.mxFrame + 1, g.hdr.pageSize);
    expect(g.wal.readUInt32BE(old + 8)).toBe(prev.salt1);
    const s = scanWalFrames(g.hdr, g.frames, 1, inFile, g.hdr.checksum);
    expect(s.stoppedAt).toEqual({ frameNo: g.idx.mxFrame + 1, reason: 'invalid' });
    expect(s.endFrame).toBe(g.idx.mxFrame);
    expect(s.transactions).toHaveLength(manifest.wal.restart.transactions.length);
  });

  test('uncommitted: valid frames past mxFrame (a spilled open transaction) are never returned', () => {
    const g = walGolden('uncommitted');
    const ps = g.hdr.pageSize;
    const inFile = (g.wal.length - WAL_HEADER_BYTES) / (24 + ps);
    const bounded = scanWalFrames(g.hdr, g.frames, 1, g.idx.mxFrame, g.hdr.checksum);
    // frame mxFrame+1 is a valid continuation of the log...
    const next = checkWalFrame(g.hdr, g.wal, walFrameOffset(g.idx.mxFrame + 1, ps), g.idx.mxFrame + 1, bounded.endChecksum);
    expect(next).not.toBeNull();
    expect(next!.commitSizePages).toBe(0);
    // ...but it was never committed: even an unbounded scan returns nothing past mxFrame
    const all = scanWalFrames(g.hdr, g.frames, 1, inFile, g.hdr.checksum);
    expect(summary(all.transactions)).toEqual(summary(bounded.transactions));
    expect(all.endFrame).toBe(g.idx.mxFrame);
    expect(all.endChecksum).toEqual(g.idx.frameChecksum);
  });

  test('shrink: VACUUM commits a smaller database; applying it truncates the file as SQLite does', () => {
    const g = walGolden('shrink');
    const scan = scanWalFrames(g.hdr, g.frames, 1, g.idx.mxFrame, g.hdr.checksum);
    const sizes = scan.transactions.map((t) => t.sizePages);
    const vacuum = sizes.findIndex((s, i) => i > 0 && s < Math.max(...sizes.slice(0, i)));
    expect(vacuum).toBeGreaterThan(0);
    const t = scan.transactions[vacuum]!;
    expect(t.pages.every(([p]) => p <= t.sizePages)).toBe(true);
    const applied = applyTransactions(g.db, g.hdr.pageSize, scan.transactions.slice(0, vacuum + 1));
    expect(applied.length).toBe(t.sizePages * g.hdr.pageSize);
    expect(stateOfImage(applied)).toEqual(manifest.wal.shrink.transactions[vacuum]);
  });

  test('an empty range returns nothing and stops nowhere', () => {
    const g = walGolden('basic');
    const s = scanWalFrames(g.hdr, g.frames, 1, 0, g.hdr.checksum);
    expect(s).toEqual({ transactions: [], endFrame: 0, endChecksum: g.hdr.checksum, stoppedAt: null });
    const empty = scanWalFrames(g.hdr, new Uint8Array(0), 5, 4, { s0: 1, s1: 2 });
    expect(empty).toEqual({ transactions: [], endFrame: 4, endChecksum: { s0: 1, s1: 2 }, stoppedAt: null });
  });
});

describe('scanWalFrames on built WALs', () => {
  const pageSize = 512;
  const scanAll = (wal: Buffer): ReturnType<typeof scanWalFrames> => {
    const hdr = parseWalHeader(wal)!;
    return scanWalFrames(hdr, wal.subarray(WAL_HEADER_BYTES), 1, (wal.length - 32) / (24 + pageSize), hdr.checksum);
  };

  test('the last image of a page in a transaction wins; pages come out in ascending order', () => {
    const s = scanAll(
      buildWal({
        pageSize,
        frames: [{ pgno: 3, fill: 0x31 }, { pgno: 1, fill: 0x11 }, { pgno: 3, fill: 0x32 }, { pgno: 2, commit: 3, fill: 0x21 }],
      }),
    );
    expect(s.transactions).toHaveLength(1);
    const t = s.transactions[0]!;
    expect(t.pages.map(([p, img]) => [p, img[0], img[pageSize - 1]])).toEqual([
      [1, 0x11, 0x11],
      [2, 0x21, 0x21],
      [3, 0x32, 0x32],
    ]);
  });

  test('pages past the size a commit sets are dropped from that transaction', () => {
    const s = scanAll(
      buildWal({ pageSize, frames: [{ pgno: 9 }, { pgno: 4 }, { pgno: 2 }, { pgno: 1, commit: 4 }, { pgno: 7, commit: 7 }] }),
    );
    expect(s.transactions.map((t) => [t.sizePages, t.pages.map(([p]) => p)])).toEqual([
      [4, [1, 2, 4]],
      [7, [7]],
    ]);
  });

  test('frames after the last commit frame belong to no transaction', () => {
    const s = scanAll(buildWal({ pageSize, frames: [{ pgno: 1, commit: 1 }, { pgno: 2 }, { pgno: 3 }] }));
    expect(s.transactions.map((t) => t.commitFrame)).toEqual([1]);
    expect(s.endFrame).toBe(1);
    expect(s.stoppedAt).toBeNull();
  });

  test('a frame with pgno 0 ends the log', () => {
    const s = scanAll(buildWal({ pageSize, frames: [{ pgno: 1, commit: 1 }, { pgno: 0, commit: 1 }, { pgno: 1, commit: 1 }] }));
    expect(s.transactions.map((t) => t.commitFrame)).toEqual([1]);
    expect(s.stoppedAt).toEqual({ frameNo: 2, reason: 'invalid' });
  });

  test('built WALs in both byte orders give the same transactions and different checksums', () => {
    const frames = [{ pgno: 1 }, { pgno: 2, commit: 2 }, { pgno: 2, fill: 9, commit: 2 }];
    const le = scanAll(buildWal({ pageSize, frames }));
    const be = scanAll(buildWal({ pageSize, frames, bigEndian: true }));
    expect(be.transactions.map((t) => [t.commitFrame, t.sizePages, t.pages])).toEqual(
      le.transactions.map((t) => [t.commitFrame, t.sizePages, t.pages]),
    );
    expect(be.endChecksum).not.toEqual(le.endChecksum);
  });
});

describe('big-endian checksums (magic 0x377f0683)', () => {
  describe.each(WAL_GOLDENS)('%s re-checksummed', (name) => {
    const g = walGolden(name);
    const ps = g.hdr.pageSize;
    const { wal: beWal } = rechecksumWal(g.wal, true);
    const be = parseWalHeader(beWal);
    const le = scanWalFrames(g.hdr, g.frames, 1, g.idx.mxFrame, g.hdr.checksum);

    test('parses as big-endian with the same page size and salts', () => {
      expect(beWal.readUInt32BE(0)).toBe(0x377f0683);
      expect(be).not.toBeNull();
      expect(be!.bigEndianChecksum).toBe(true);
      expect([be!.pageSize, be!.salt1, be!.salt2, be!.checkpointSeq]).toEqual([ps, g.hdr.salt1, g.hdr.salt2, g.hdr.checkpointSeq]);
      expect(be!.checksum).not.toEqual(g.hdr.checksum);
    });

    test('gives the same transactions, with big-endian checksums', () => {
      const s = scanWalFrames(be!, beWal.subarray(WAL_HEADER_BYTES), 1, g.idx.mxFrame, be!.checksum);
      expect(s.stoppedAt).toBeNull();
      expect(s.endFrame).toBe(le.endFrame);
      expect(s.endChecksum).not.toEqual(le.endChecksum);
      const strip = (x: unknown[]): unknown[] => x.map((t) => ({ ...(t as object), checksum: null }));
      expect(strip(summary(s.transactions))).toEqual(strip(summary(le.transactions)));
      // the little-endian chain does not validate a big-endian log, nor the other way round
      expect(scanWalFrames({ ...be!, bigEndianChecksum: false }, beWal.subarray(32), 1, g.idx.mxFrame, be!.checksum).stoppedAt).toEqual({
        frameNo: 1,
        reason: 'invalid',
      });
      // re-checksumming back to little-endian restores the original bytes of the valid chain
      const back = rechecksumWal(beWal, false).wal;
      const validEnd = walFrameOffset(rechecksumWal(g.wal, false).frames + 1, ps);
      expect(back.subarray(0, validEnd).equals(g.wal.subarray(0, validEnd))).toBe(true);
    });

    test('real SQLite recovers the big-endian WAL to the same database, with the same end checksum', () => {
      const s = scanWalFrames(be!, beWal.subarray(WAL_HEADER_BYTES), 1, g.idx.mxFrame, be!.checksum);
      withSqlite({ '': g.db, '-wal': beWal }, (db, path) => {
        expect(tableState(db)).toEqual(manifest.wal[name].transactions.at(-1));
        const idx = parseWalIndexHeader(readFileSync(`${path}-shm`));
        expect(idx).not.toBeNull();
        expect(idx!.bigEndianChecksum).toBe(true);
        expect(idx!.mxFrame).toBe(s.endFrame);
        expect(idx!.frameChecksum).toEqual(s.endChecksum);
        expect(idx!.sizePages).toBe(s.transactions.at(-1)!.sizePages);
        expect([idx!.salt1, idx!.salt2]).toEqual([be!.salt1, be!.salt2]);
      });
    });
  });

  test('real SQLite recovering the little-endian golden (no -shm) agrees with the golden -shm', () => {
    for (const name of WAL_GOLDENS) {
      const g = walGolden(name);
      withSqlite({ '': g.db, '-wal': g.wal }, (db, path) => {
        expect(tableState(db)).toEqual(manifest.wal[name].transactions.at(-1));
        const idx = parseWalIndexHeader(readFileSync(`${path}-shm`))!;
        expect([idx.mxFrame, idx.frameChecksum, idx.sizePages, idx.bigEndianChecksum]).toEqual([
          g.idx.mxFrame,
          g.idx.frameChecksum,
          g.idx.sizePages,
          false,
        ]);
      });
    }
  });
});
