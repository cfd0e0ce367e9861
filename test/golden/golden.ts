/*
 * Access to the golden files written by test/golden/make.mjs (real SQLite; see VERSION), for the tests in
 * src/sqlite/. Tests read these files; they never regenerate them.
 */
import Database from 'better-sqlite3';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  checkWalFrame,
  parseWalHeader,
  parseWalIndexHeader,
  walChecksum,
  walFrameOffset,
  WAL_HEADER_BYTES,
  type WalHeader,
  type WalIndexHeader,
  type WalTransaction,
} from '../../src/sqlite/index.js';

export const GOLDEN_DIR = dirname(fileURLToPath(import.meta.url));

export interface TableState {
  readonly rows: number | null;
  readonly digest: string | null;
}

export interface Manifest {
  readonly sqliteVersion: string;
  readonly wal: Record<WalGoldenName, { readonly pageSize: number; readonly transactions: TableState[] }> & {
    readonly restart: { readonly previousGeneration: { salt1: number; frames: number; transactions: number } };
  };
  readonly rollback: { readonly pageSize: number; readonly state: TableState };
}

export const WAL_GOLDENS = ['basic', 'restart', 'page64k', 'page512', 'shrink', 'uncommitted'] as const;
export type WalGoldenName = (typeof WAL_GOLDENS)[number];

export const manifest = JSON.parse(readFileSync(join(GOLDEN_DIR, 'manifest.json'), 'utf8')) as Manifest;

export function golden(rel: string): Buffer {
  return readFileSync(join(GOLDEN_DIR, rel));
}

export interface WalGolden {
  readonly name: WalGoldenName;
  readonly db: Buffer;
  readonly wal: Buffer;
  readonly shm: Buffer;
  readonly hdr: WalHeader;
  readonly idx: WalIndexHeader;
  /** The WAL without its header: frame 1 at offset 0. */
  readonly frames: Buffer;
}

export function walGolden(name: WalGoldenName): WalGolden {
  const db = golden(`wal/${name}.db`);
  const wal = golden(`wal/${name}.db-wal`);
  const shm = golden(`wal/${name}.db-shm`);
  const hdr = parseWalHeader(wal);
  const idx = parseWalIndexHeader(shm);
  if (!hdr || !idx) throw new Error(`golden ${name}: unreadable WAL or -shm header`);
  return { name, db, wal, shm, hdr, idx, frames: wal.subarray(WAL_HEADER_BYTES) };
}

/** Same state as make.mjs records: the schema and every row of table t, hashed. */
export function tableState(db: Database.Database): TableState {
  const has = (
    db.prepare("SELECT count(*) AS n FROM sqlite_schema WHERE type = 'table' AND name = 't'").get() as { n: number }
  ).n;
  if (!has) return { rows: null, digest: null };
  const schema = db.prepare('SELECT type, name, sql FROM sqlite_schema ORDER BY name').all();
  const rows = db.prepare('SELECT id, v FROM t ORDER BY id').all();
  const digest = createHash('sha256').update(JSON.stringify([schema, rows])).digest('hex').slice(0, 32);
  return { rows: rows.length, digest };
}

/** Runs fn on a fresh temporary directory and removes it afterwards. */
export function withTempDir<T>(fn: (dir: string) => T): T {
  const dir = mkdtempSync(join(tmpdir(), 'redoship-sqlite-test-'));
  try {
    return fn(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Writes the given files (suffix -> bytes, '' for the database) into a temp dir as x.db, x.db-wal, ..., opens
 * x.db with real SQLite and passes the connection to fn; the connection is closed afterwards.
 */
export function withSqlite<T>(files: Record<string, Uint8Array>, fn: (db: Database.Database, path: string) => T): T {
  return withTempDir((dir) => {
    const path = join(dir, 'x.db');
    for (const [suffix, bytes] of Object.entries(files)) writeFileSync(path + suffix, bytes);
    const db = new Database(path);
    try {
      return fn(db, path);
    } finally {
      db.close();
    }
  });
}

/** The database file SQLite makes from a golden's three files with wal_checkpoint(TRUNCATE). */
export function sqliteCheckpointed(name: WalGoldenName): Buffer {
  return withTempDir((dir) => {
    const path = join(dir, 'x.db');
    for (const suffix of ['', '-wal', '-shm']) copyFileSync(join(GOLDEN_DIR, 'wal', `${name}.db${suffix}`), path + suffix);
    const db = new Database(path);
    try {
      const [r] = db.pragma('wal_checkpoint(TRUNCATE)') as { busy: number; log: number; checkpointed: number }[];
      if (!r || r.busy !== 0) throw new Error(`checkpoint of ${name} was busy`);
    } finally {
      db.close();
    }
    if (existsSync(`${path}-wal`) && readFileSync(`${path}-wal`).length > 0) throw new Error('WAL left after close');
    return readFileSync(path);
  });
}

/** The table state SQLite reads from a database image (opened as a copy in a temp dir). */
export function stateOfImage(image: Uint8Array): TableState {
  return withSqlite({ '': image }, (db) => tableState(db));
}

/** Applies the transactions' page images over a copy of the database file and sets its size to the last one's. */
export function applyTransactions(db: Uint8Array, pageSize: number, txns: readonly WalTransaction[]): Buffer {
  let out = Buffer.from(db);
  for (const t of txns) {
    const size = t.sizePages * pageSize;
    if (out.length !== size) {
      const next = Buffer.alloc(size);
      out.copy(next, 0, 0, Math.min(size, out.length));
      out = next;
    }
    for (const [pgno, page] of t.pages) out.set(page, (pgno - 1) * pageSize);
  }
  return out;
}

/*
 * BUILDERS FOR EXACT BYTES. Independent of the parsers under test except for walChecksum, whose own tests
 * pin it to hand-computed values and to what real SQLite accepts (the big-endian WAL that SQLite recovers).
 */

export interface FrameSpec {
  readonly pgno: number;
  /** Database size after the commit, for a commit frame; 0 or absent otherwise. */
  readonly commit?: number;
  /** The page image, or a byte to fill it with. */
  readonly page?: Uint8Array;
  readonly fill?: number;
}

export interface WalSpec {
  readonly pageSize: number;
  readonly bigEndian?: boolean;
  readonly checkpointSeq?: number;
  readonly salt1?: number;
  readonly salt2?: number;
  readonly frames: readonly FrameSpec[];
}

/** A WAL file with a correct header and correctly chained frame checksums. */
export function buildWal(spec: WalSpec): Buffer {
  const { pageSize, frames } = spec;
  const be = spec.bigEndian ?? false;
  const out = Buffer.alloc(WAL_HEADER_BYTES + frames.length * (24 + pageSize));
  out.writeUInt32BE(be ? 0x377f0683 : 0x377f0682, 0);
  out.writeUInt32BE(3007000, 4);
  out.writeUInt32BE(pageSize, 8);
  out.writeUInt32BE(spec.checkpointSeq ?? 0, 12);
  out.writeUInt32BE(spec.salt1 ?? 0x01020304, 16);
  out.writeUInt32BE(spec.salt2 ?? 0xa0b0c0d0, 20);
  let c = walChecksum(be, out, 0, 24, { s0: 0, s1: 0 });
  out.writeUInt32BE(c.s0, 24);
  out.writeUInt32BE(c.s1, 28);
  frames.forEach((f, i) => {
    const off = WAL_HEADER_BYTES + i * (24 + pageSize);
    out.writeUInt32BE(f.pgno, off);
    out.writeUInt32BE(f.commit ?? 0, off + 4);
    out.copy(out, off + 8, 16, 24);
    if (f.page) out.set(f.page.subarray(0, pageSize), off + 24);
    else out.fill(f.fill ?? f.pgno, off + 24, off + 24 + pageSize);
    c = walChecksum(be, out, off, 8, c);
    c = walChecksum(be, out, off + 24, pageSize, c);
    out.writeUInt32BE(c.s0, off + 16);
    out.writeUInt32BE(c.s1, off + 20);
  });
  return out;
}

/**
 * A copy of a WAL rewritten for the given checksum byte order: magic, header checksum and the checksum of
 * every frame of the valid chain (frames after the first invalid one are left alone, so they stay invalid).
 * Returns the copy and the number of frames re-checksummed.
 */
export function rechecksumWal(wal: Uint8Array, bigEndian: boolean): { wal: Buffer; frames: number } {
  const hdr = parseWalHeader(wal);
  if (!hdr) throw new Error('rechecksumWal: not a valid WAL');
  const out = Buffer.from(wal);
  out.writeUInt32BE(bigEndian ? 0x377f0683 : 0x377f0682, 0);
  let c = walChecksum(bigEndian, out, 0, 24, { s0: 0, s1: 0 });
  out.writeUInt32BE(c.s0, 24);
  out.writeUInt32BE(c.s1, 28);
  let old = hdr.checksum;
  let n = 0;
  for (let k = 1; ; k++) {
    const off = walFrameOffset(k, hdr.pageSize);
    const f = checkWalFrame(hdr, wal, off, k, old);
    if (!f) break;
    old = f.checksum;
    c = walChecksum(bigEndian, out, off, 8, c);
    c = walChecksum(bigEndian, out, off + 24, hdr.pageSize, c);
    out.writeUInt32BE(c.s0, off + 16);
    out.writeUInt32BE(c.s1, off + 20);
    n = k;
  }
  return { wal: out, frames: n };
}

export interface WalIndexSpec {
  readonly change?: number;
  readonly isInit?: number;
  readonly bigEndCksum?: number;
  /** Raw szPage field (65536 is stored as 1). */
  readonly szPage: number;
  readonly mxFrame: number;
  readonly nPage: number;
  readonly frameCksum?: readonly [number, number];
  readonly salt1?: number;
  readonly salt2?: number;
  readonly nBackfill?: number;
  readonly readMarks?: readonly number[];
}

/** A 136-byte wal-index header (little-endian, as on every platform redoship runs on), both copies equal. */
export function buildWalIndexHeader(spec: WalIndexSpec): Buffer {
  const out = Buffer.alloc(136);
  out.writeUInt32LE(3007000, 0);
  out.writeUInt32LE(spec.change ?? 1, 8);
  out[12] = spec.isInit ?? 1;
  out[13] = spec.bigEndCksum ?? 0;
  out.writeUInt16LE(spec.szPage, 14);
  out.writeUInt32LE(spec.mxFrame, 16);
  out.writeUInt32LE(spec.nPage, 20);
  out.writeUInt32LE(spec.frameCksum?.[0] ?? 0, 24);
  out.writeUInt32LE(spec.frameCksum?.[1] ?? 0, 28);
  out.writeUInt32BE(spec.salt1 ?? 0, 32);
  out.writeUInt32BE(spec.salt2 ?? 0, 36);
  const c = walChecksum(false, out, 0, 40, { s0: 0, s1: 0 });
  out.writeUInt32LE(c.s0, 40);
  out.writeUInt32LE(c.s1, 44);
  out.copy(out, 48, 0, 48);
  out.writeUInt32LE(spec.nBackfill ?? 0, 96);
  (spec.readMarks ?? [0, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff]).forEach((m, i) =>
    out.writeUInt32LE(m, 100 + 4 * i),
  );
  return out;
}

/** Recomputes a wal-index header's checksum after an edit of its first copy, and copies it to the second. */
export function resealWalIndexHeader(buf: Buffer): Buffer {
  const out = Buffer.from(buf);
  const c = walChecksum(false, out, 0, 40, { s0: 0, s1: 0 });
  out.writeUInt32LE(c.s0, 40);
  out.writeUInt32LE(c.s1, 44);
  out.copy(out, 48, 0, 48);
  return out;
}

/** Recomputes a WAL header's checksum after an edit (in the byte order its magic names). */
export function resealWalHeader(buf: Buffer): Buffer {
  const out = Buffer.from(buf);
  const c = walChecksum((out.readUInt32BE(0) & 1) === 1, out, 0, 24, { s0: 0, s1: 0 });
  out.writeUInt32BE(c.s0, 24);
  out.writeUInt32BE(c.s1, 28);
  return out;
}
