/**
 * What the drill's checks read from databases: the logical image of a live file (db + committed WAL, as
 * SQLite sees it), page-for-page comparison with the header fields that legitimately differ between copies
 * of one state masked (DESIGN.md Apply: 18-19 journal mode, 24-27 change counter, 92-95 version-valid-for),
 * integrity_check, a content hash of every row, and a table's hash. Connections are read-only and closed at
 * once; the runner's process never holds a lock a daemon needs.
 */
import Database from 'better-sqlite3';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';

const MASK: Array<[number, number]> = [
  [18, 20],
  [24, 28],
  [92, 96],
];

function withDb<T>(path: string, f: (db: Database.Database) => T): T {
  const db = new Database(path, { readonly: true, fileMustExist: true, timeout: 5000 });
  try {
    return f(db);
  } finally {
    db.close();
  }
}

/** The database as SQLite sees it now (through a WAL if there is one). */
export function logicalImage(path: string): Buffer {
  return withDb(path, (db) => db.serialize());
}

export function pageSizeOf(image: Buffer): number {
  const p = image.readUInt16BE(16);
  return p === 1 ? 65536 : p;
}

/** Page numbers that differ (1-based); a size difference counts as every page past the shorter one. */
export function differingPages(a: Buffer, b: Buffer): number[] {
  const size = pageSizeOf(a);
  const out: number[] = [];
  const n = Math.ceil(Math.max(a.length, b.length) / size);
  for (let i = 0; i < n; i++) {
    const pa = Buffer.from(a.subarray(i * size, (i + 1) * size));
    const pb = Buffer.from(b.subarray(i * size, (i + 1) * size));
    if (i === 0)
      for (const [s, e] of MASK) {
        pa.fill(0, s, e);
        pb.fill(0, s, e);
      }
    if (!pa.equals(pb)) out.push(i + 1);
  }
  return out;
}

export function integrityCheck(path: string): string {
  return withDb(path, (db) => (db.prepare('PRAGMA integrity_check').pluck().all() as string[]).join('; '));
}

function hashRows(db: Database.Database, table: string, h: ReturnType<typeof createHash>): void {
  for (const row of db.prepare(`SELECT * FROM "${table.replace(/"/g, '""')}" ORDER BY rowid`).raw().iterate() as Iterable<unknown[]>)
    for (const v of row) h.update(Buffer.isBuffer(v) ? v : `${typeof v}:${String(v)};`);
}

/** A hash of the schema and every row of every table, in rowid order. */
export function contentHash(path: string): string {
  return withDb(path, (db) => {
    const h = createHash('sha256');
    const tables = db.prepare("SELECT name, sql FROM sqlite_schema WHERE type = 'table' ORDER BY name").all() as Array<{ name: string; sql: string }>;
    for (const t of tables) {
      h.update(`table ${t.name} ${t.sql}\n`);
      hashRows(db, t.name, h);
    }
    return h.digest('hex').slice(0, 16);
  });
}

/** A hash of one table's rows, or null when the table does not exist. */
export function tableHash(path: string, table: string): { hash: string; rows: number } | null {
  return withDb(path, (db) => {
    if (!db.prepare("SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = ?").get(table)) return null;
    const h = createHash('sha256');
    hashRows(db, table, h);
    const rows = db.prepare(`SELECT count(*) FROM "${table.replace(/"/g, '""')}"`).pluck().get() as number;
    return { hash: h.digest('hex').slice(0, 16), rows };
  });
}

export function queryValue(path: string, sql: string): string {
  return withDb(path, (db) => {
    const v = db.prepare(sql).pluck().get();
    return v === undefined ? '(no row)' : String(v);
  });
}

/** The workload's counter, or null when the schema is not there. */
export function counterOf(path: string): number | null {
  try {
    return withDb(path, (db) => (db.prepare('SELECT n FROM counter WHERE id = 1').pluck().get() as number | undefined) ?? null);
  } catch {
    return null;
  }
}

/** Pages in a database file (by its size). */
export function filePages(path: string): number {
  const b = readFileSync(path);
  return b.length / pageSizeOf(b);
}
