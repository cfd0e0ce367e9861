import { describe, expect, test } from 'vitest';
import {
  buildWalIndexHeader,
  golden,
  manifest,
  resealWalIndexHeader,
  walGolden,
  WAL_GOLDENS,
} from '../../test/golden/golden.js';
import { parseWalHeader } from './wal.js';
import { parseWalIndexHeader, WAL_INDEX_HEADER_BYTES } from './wal-index.js';

const NOT_USED = 0xffffffff;

describe('parseWalIndexHeader on the golden -shm files', () => {
  test.each(WAL_GOLDENS)('%s: agrees with the WAL header and the file bytes', (name) => {
    const shm = golden(`wal/${name}.db-shm`);
    const wal = parseWalHeader(golden(`wal/${name}.db-wal`))!;
    const h = parseWalIndexHeader(shm);
    expect(h).not.toBeNull();
    expect(h!.pageSize).toBe(manifest.wal[name].pageSize);
    expect(h!.bigEndianChecksum).toBe(false);
    expect([h!.salt1, h!.salt2]).toEqual([wal.salt1, wal.salt2]);
    expect(h!.mxFrame).toBe(shm.readUInt32LE(16));
    expect(h!.sizePages).toBe(shm.readUInt32LE(20));
    expect(h!.frameChecksum).toEqual({ s0: shm.readUInt32LE(24), s1: shm.readUInt32LE(28) });
    expect(h!.change).toBe(shm.readUInt32LE(8));
    // the writer was still connected and nothing was checkpointed since the last restart
    expect(h!.nBackfill).toBe(0);
    expect(h!.readMarks).toHaveLength(5);
    expect(h!.readMarks[0]).toBe(0);
  });

  test('the -shm and the WAL agree on the end of the log', () => {
    for (const name of WAL_GOLDENS) {
      const g = walGolden(name);
      expect(g.idx.mxFrame, name).toBeGreaterThan(0);
      expect(g.wal.length, name).toBeGreaterThanOrEqual(32 + g.idx.mxFrame * (24 + g.idx.pageSize));
    }
  });

  test('a 65536-byte page size is stored as 1 and decoded as 65536', () => {
    const shm = golden('wal/page64k.db-shm');
    expect(shm.readUInt16LE(14)).toBe(1);
    expect(parseWalIndexHeader(shm)!.pageSize).toBe(65536);
    expect(golden('wal/page512.db-shm').readUInt16LE(14)).toBe(512);
    expect(parseWalIndexHeader(golden('wal/page512.db-shm'))!.pageSize).toBe(512);
  });

  test('reads only the first 136 bytes, also from a view with a non-zero byteOffset', () => {
    const shm = golden('wal/basic.db-shm');
    expect(WAL_INDEX_HEADER_BYTES).toBe(136);
    expect(parseWalIndexHeader(shm.subarray(0, 136))).toEqual(parseWalIndexHeader(shm));
    const padded = Buffer.concat([Buffer.alloc(5, 0xee), shm.subarray(0, 136)]);
    expect(parseWalIndexHeader(padded.subarray(5))).toEqual(parseWalIndexHeader(shm));
    expect(parseWalIndexHeader(shm.subarray(0, 135))).toBeNull();
  });
});

describe('parseWalIndexHeader on built headers', () => {
  test('decodes every field', () => {
    const h = parseWalIndexHeader(
      buildWalIndexHeader({
        change: 77,
        bigEndCksum: 1,
        szPage: 8192,
        mxFrame: 1234,
        nPage: 99,
        frameCksum: [0xdeadbeef, 0x01020304],
        salt1: 0xcafebabe,
        salt2: 0x00000001,
        nBackfill: 1000,
        readMarks: [0, 1234, 1000, NOT_USED, 5],
      }),
    );
    expect(h).toEqual({
      change: 77,
      bigEndianChecksum: true,
      pageSize: 8192,
      mxFrame: 1234,
      sizePages: 99,
      frameChecksum: { s0: 0xdeadbeef, s1: 0x01020304 },
      salt1: 0xcafebabe,
      salt2: 1,
      nBackfill: 1000,
      readMarks: [0, 1234, 1000, NOT_USED, 5],
    });
  });

  test.each([512, 1024, 2048, 4096, 8192, 16384, 32768])('szPage %i', (ps) => {
    expect(parseWalIndexHeader(buildWalIndexHeader({ szPage: ps, mxFrame: 1, nPage: 1 }))!.pageSize).toBe(ps);
  });

  test('szPage 1 is 65536', () => {
    expect(parseWalIndexHeader(buildWalIndexHeader({ szPage: 1, mxFrame: 1, nPage: 1 }))!.pageSize).toBe(65536);
  });

  test('an empty WAL: mxFrame 0', () => {
    expect(parseWalIndexHeader(buildWalIndexHeader({ szPage: 4096, mxFrame: 0, nPage: 3 }))!.mxFrame).toBe(0);
  });
});

describe('parseWalIndexHeader rejects an inconsistent snapshot', () => {
  const good = golden('wal/basic.db-shm').subarray(0, 136);

  test('copies that differ (a writer between its two writes)', () => {
    const torn = Buffer.from(good);
    torn.writeUInt32LE(torn.readUInt32LE(48 + 16) + 1, 48 + 16);
    expect(parseWalIndexHeader(torn)).toBeNull();
    // even when each copy is self-consistent
    const second = resealWalIndexHeader(Buffer.from(good));
    const first = Buffer.from(good);
    first.writeUInt32LE(good.readUInt32LE(8) + 1, 8);
    const resealed = resealWalIndexHeader(first);
    resealed.copy(torn, 0, 0, 48);
    second.copy(torn, 48, 48, 96);
    expect(parseWalIndexHeader(torn)).toBeNull();
  });

  test('isInit not set', () => {
    const b = Buffer.from(good);
    b[12] = 0;
    expect(parseWalIndexHeader(resealWalIndexHeader(b))).toBeNull();
  });

  test('a bad checksum, in both copies', () => {
    const b = Buffer.from(good);
    b.writeUInt32LE(b.readUInt32LE(16) + 1, 16);
    b.copy(b, 48, 0, 48);
    expect(parseWalIndexHeader(b)).toBeNull();
  });

  test('an iVersion other than 3007000, even resealed', () => {
    const b = Buffer.from(good);
    b.writeUInt32LE(3007001, 0);
    expect(parseWalIndexHeader(resealWalIndexHeader(b))).toBeNull();
  });

  test('all zeros (a -shm that was never initialised)', () => {
    expect(parseWalIndexHeader(new Uint8Array(136))).toBeNull();
    expect(parseWalIndexHeader(new Uint8Array(0))).toBeNull();
  });

  test('the checkpoint info at 96..135 is not checksummed: changing it keeps the header valid', () => {
    const b = Buffer.from(good);
    b.writeUInt32LE(7, 96);
    b.writeUInt32LE(NOT_USED, 104);
    const h = parseWalIndexHeader(b);
    expect(h).not.toBeNull();
    expect(h!.nBackfill).toBe(7);
    expect(h!.readMarks[1]).toBe(NOT_USED);
    expect({ ...h!, nBackfill: 0, readMarks: [] }).toEqual({ ...parseWalIndexHeader(good)!, nBackfill: 0, readMarks: [] });
  });
});
