import { describe, expect, test } from 'vitest';
import {
  applyTransactions,
  golden,
  manifest,
  sqliteCheckpointed,
  walGolden,
  withSqlite,
} from '../../test/golden/golden.js';
import { DB_HEADER_BYTES, isValidPageSize, maskPage1, parseDbHeader, STANDBY_HEADER_RANGES } from './db-header.js';
import { scanWalFrames } from './wal.js';

/** SQLITE_VERSION_NUMBER of the library that wrote the golden files, e.g. 3.53.2 -> 3053002. */
const versionNumber = (v: string): number => {
  const [a = 0, b = 0, c = 0] = v.split('.').map(Number);
  return a * 1_000_000 + b * 1000 + c;
};

interface Pragmas {
  pageSize: number;
  pageCount: number;
  freelist: number;
  schemaCookie: number;
}

const pragmas = (image: Uint8Array): Pragmas =>
  withSqlite({ '': image }, (db) => ({
    pageSize: db.pragma('page_size', { simple: true }) as number,
    pageCount: db.pragma('page_count', { simple: true }) as number,
    freelist: db.pragma('freelist_count', { simple: true }) as number,
    schemaCookie: db.pragma('schema_version', { simple: true }) as number,
  }));

describe('parseDbHeader on golden databases', () => {
  test('a rollback-journal database: legacy versions, a vouched-for size, what SQLite reports', () => {
    const file = golden('rollback.db');
    const h = parseDbHeader(file);
    expect(h).not.toBeNull();
    expect(h!.pageSize).toBe(manifest.rollback.pageSize);
    expect([h!.writeVersion, h!.readVersion]).toEqual([1, 1]);
    expect(h!.reservedBytes).toBe(0);
    expect(h!.versionValidFor).toBe(h!.changeCounter);
    expect(h!.sizePages).toBe(file.length / h!.pageSize);
    expect(h!.sqliteVersion).toBe(versionNumber(manifest.sqliteVersion));
    const p = pragmas(file);
    expect([h!.pageSize, h!.sizePages, h!.freelistCount, h!.schemaCookie]).toEqual([
      p.pageSize,
      p.pageCount,
      p.freelist,
      p.schemaCookie,
    ]);
  });

  test.each([
    ['basic', 4096],
    ['page64k', 65536],
    ['page512', 512],
    ['restart', 1024],
    ['shrink', 1024],
  ] as const)('the db file of wal/%s: WAL versions, page size %i', (name, pageSize) => {
    const file = golden(`wal/${name}.db`);
    const h = parseDbHeader(file);
    expect(h).not.toBeNull();
    expect(h!.pageSize).toBe(pageSize);
    expect([h!.writeVersion, h!.readVersion]).toEqual([2, 2]);
    if (h!.sizePages !== null) expect(h!.sizePages).toBe(file.length / pageSize);
  });

  test('page size 65536 is stored as 1', () => {
    const file = golden('wal/page64k.db');
    expect(file.readUInt16BE(16)).toBe(1);
    expect(parseDbHeader(file)!.pageSize).toBe(65536);
  });

  test('after every transaction of wal/shrink, the header says what SQLite says (size, freelist, schema)', () => {
    const g = walGolden('shrink');
    const txns = scanWalFrames(g.hdr, g.frames, 1, g.idx.mxFrame, g.hdr.checksum).transactions;
    const freelists: number[] = [];
    for (let k = 1; k <= txns.length; k++) {
      const image = applyTransactions(g.db, g.hdr.pageSize, txns.slice(0, k));
      const h = parseDbHeader(image)!;
      const p = pragmas(image);
      expect([h.sizePages, h.freelistCount, h.schemaCookie], `after transaction ${k}`).toEqual([
        p.pageCount,
        p.freelist,
        p.schemaCookie,
      ]);
      expect(h.sizePages).toBe(txns[k - 1]!.sizePages);
      freelists.push(h.freelistCount);
    }
    // the DELETE left free pages, the VACUUM removed them
    expect(Math.max(...freelists)).toBeGreaterThan(0);
    expect(freelists.at(-1)).toBe(0);
  });

  test('a checkpointed database header vouches for its size', () => {
    const file = sqliteCheckpointed('basic');
    const h = parseDbHeader(file)!;
    expect(h.sizePages).toBe(file.length / h.pageSize);
    expect([h.writeVersion, h.readVersion]).toEqual([2, 2]);
  });

  test('reads only the first 100 bytes, also from a view with a non-zero byteOffset', () => {
    const file = golden('rollback.db');
    expect(DB_HEADER_BYTES).toBe(100);
    expect(parseDbHeader(file.subarray(0, 100))).toEqual(parseDbHeader(file));
    const padded = Buffer.concat([Buffer.alloc(3, 0x53), file.subarray(0, 100)]);
    expect(parseDbHeader(padded.subarray(3))).toEqual(parseDbHeader(file));
  });
});

describe('parseDbHeader rejects or distrusts', () => {
  const good = golden('rollback.db').subarray(0, 100);
  const edit = (fn: (b: Buffer) => void): Buffer => {
    const b = Buffer.from(good);
    fn(b);
    return b;
  };

  test('fewer than 100 bytes', () => {
    expect(parseDbHeader(good.subarray(0, 99))).toBeNull();
    expect(parseDbHeader(new Uint8Array(0))).toBeNull();
  });

  test('a wrong magic string', () => {
    expect(parseDbHeader(edit((b) => (b[0] = 0x73)))).toBeNull(); // "sQLite"
    expect(parseDbHeader(edit((b) => (b[15] = 0x20)))).toBeNull(); // no NUL terminator
    expect(parseDbHeader(new Uint8Array(100))).toBeNull();
  });

  test.each([0, 2, 256, 511, 513, 1000, 3000, 32769, 65535])('raw page size %i', (raw) => {
    expect(parseDbHeader(edit((b) => b.writeUInt16BE(raw, 16)))).toBeNull();
  });

  test.each([512, 1024, 2048, 4096, 8192, 16384, 32768])('raw page size %i is accepted', (raw) => {
    expect(parseDbHeader(edit((b) => b.writeUInt16BE(raw, 16)))!.pageSize).toBe(raw);
  });

  test('the in-header size is null when version-valid-for differs from the change counter', () => {
    const h = parseDbHeader(edit((b) => b.writeUInt32BE(b.readUInt32BE(24) + 1, 24)))!;
    expect(h).not.toBeNull();
    expect(h.sizePages).toBeNull();
  });

  test('the in-header size is null when it is 0', () => {
    expect(parseDbHeader(edit((b) => b.writeUInt32BE(0, 28)))!.sizePages).toBeNull();
  });

  test('unsigned 32-bit fields stay unsigned', () => {
    const h = parseDbHeader(
      edit((b) => {
        b.writeUInt32BE(0xfffffffe, 24);
        b.writeUInt32BE(0xfffffffe, 92);
        b.writeUInt32BE(0x80000001, 28);
        b.writeUInt32BE(0xffffffff, 40);
      }),
    )!;
    expect([h.changeCounter, h.versionValidFor, h.sizePages, h.schemaCookie]).toEqual([
      0xfffffffe, 0xfffffffe, 0x80000001, 0xffffffff,
    ]);
  });
});

describe('isValidPageSize', () => {
  test('powers of two from 512 to 65536', () => {
    const valid = [512, 1024, 2048, 4096, 8192, 16384, 32768, 65536];
    for (const n of valid) expect(isValidPageSize(n), String(n)).toBe(true);
    for (const n of [0, 1, 2, 256, 511, 513, 768, 3000, 4095, 65535, 131072, -512, NaN]) {
      expect(isValidPageSize(n), String(n)).toBe(false);
    }
  });
});

describe('maskPage1', () => {
  test('the masked ranges are 18..19, 24..27 and 92..95', () => {
    expect(STANDBY_HEADER_RANGES).toEqual([
      [18, 20],
      [24, 28],
      [92, 96],
    ]);
  });

  test('zeroes exactly those bytes, in a copy', () => {
    const page = Buffer.alloc(512, 0xab);
    const masked = maskPage1(page);
    expect(page.every((x) => x === 0xab)).toBe(true);
    expect(masked.length).toBe(512);
    const zeroed = [...masked.keys()].filter((i) => masked[i] === 0);
    expect(zeroed).toEqual([18, 19, 24, 25, 26, 27, 92, 93, 94, 95]);
  });

  test('takes a view with a non-zero byteOffset', () => {
    const big = Buffer.alloc(1024 + 7, 0x11);
    const view = new Uint8Array(big.buffer, big.byteOffset + 7, 1024);
    const masked = maskPage1(view);
    expect(masked.length).toBe(1024);
    expect(masked[17]).toBe(0x11);
    expect(masked[18]).toBe(0);
    expect(big.every((x) => x === 0x11)).toBe(true);
  });
});
