#!/usr/bin/env node
/*
 * Writes the golden SQLite files under test/golden/ with real SQLite (the one better-sqlite3 bundles).
 *
 *     node test/golden/make.mjs
 *
 * The files are checked in; tests read them and never regenerate. Running this again produces equivalent
 * files, not identical ones (salt-2 is random at every WAL restart), and rewrites VERSION and manifest.json.
 *
 * Every WAL golden is a snapshot of a LIVE database: the writing connection is still open (so the -wal and
 * -shm exist and nothing was checkpointed on close, wal_autocheckpoint=0) when the three files are copied.
 * manifest.json records, for each WAL golden, the table state after every transaction committed in that WAL,
 * read by SQLite itself on the writing connection, so a test that applies the first k transactions can check
 * that it gets the database SQLite had after the k-th commit.
 *
 *   wal/basic         page size 4096; CREATE TABLE, single-row inserts, one multi-statement transaction,
 *                     an update and a delete
 *   wal/restart       page size 1024; 12 transactions, a full checkpoint, then 2 more: the WAL restarted
 *                     (salt-1 + 1, new salt-2) and frames of the previous generation remain past the new ones
 *   wal/page64k       page size 65536 (stored as 1 in the db header and the wal-index)
 *   wal/page512       page size 512
 *   wal/shrink        page size 1024; a big table, a delete, then VACUUM: a later commit frame has a smaller
 *                     database size than earlier ones
 *   wal/uncommitted   page size 1024; committed transactions, then an open transaction whose dirty pages
 *                     spilled into the WAL as valid frames past mxFrame, with no commit frame
 *   rollback.db       a rollback-journal (DELETE mode) database, no WAL
 */
import Database from 'better-sqlite3';
import { createHash } from 'node:crypto';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const OUT = dirname(fileURLToPath(import.meta.url));
const WORK = mkdtempSync(join(tmpdir(), 'redoship-golden-'));
const manifest = { wal: {} };

/** The table state the tests compare against; test/golden/golden.ts computes the same thing. */
function tableState(db) {
  const has = db.prepare("SELECT count(*) AS n FROM sqlite_schema WHERE type = 'table' AND name = 't'").get().n;
  if (!has) return { rows: null, digest: null };
  const schema = db.prepare('SELECT type, name, sql FROM sqlite_schema ORDER BY name').all();
  const rows = db.prepare('SELECT id, v FROM t ORDER BY id').all();
  const digest = createHash('sha256').update(JSON.stringify([schema, rows])).digest('hex').slice(0, 32);
  return { rows: rows.length, digest };
}

function open(name, pageSize) {
  const path = join(WORK, `${name}.db`);
  const db = new Database(path);
  db.pragma(`page_size = ${pageSize}`);
  db.pragma('journal_mode = WAL');
  db.pragma('wal_autocheckpoint = 0');
  return { db, path };
}

/** Copies name.db, name.db-wal, name.db-shm into test/golden/wal/ while db is still open. */
function snapshot(name, path) {
  mkdirSync(join(OUT, 'wal'), { recursive: true });
  for (const suffix of ['', '-wal', '-shm']) copyFileSync(path + suffix, join(OUT, 'wal', `${name}.db${suffix}`));
}

function walFrames(path, pageSize) {
  return (statSync(`${path}-wal`).size - 32) / (24 + pageSize);
}

/** Native-endian mxFrame and the WAL header salt-1 as read by hand, to check what a golden claims. */
function shmMxFrame(path) {
  return readFileSync(`${path}-shm`).readUInt32LE(16);
}
function walSalt1(path) {
  return readFileSync(`${path}-wal`).readUInt32BE(16);
}

function check(cond, what) {
  if (!cond) throw new Error(`golden generator: ${what}`);
}

/** Runs each step as one transaction and records the state after it. */
function run(db, steps) {
  const states = [];
  for (const step of steps) {
    if (typeof step === 'string') db.exec(step);
    else db.transaction(step)();
    states.push(tableState(db));
  }
  return states;
}

const filler = (i, n) => `row ${i} `.padEnd(n, String.fromCharCode(97 + (i % 26)));

// ---- wal/basic -------------------------------------------------------------------------------------------
{
  const { db, path } = open('basic', 4096);
  const ins = (i) => `INSERT INTO t (id, v) VALUES (${i}, '${filler(i, 120)}')`;
  const states = run(db, [
    'CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)',
    ins(1),
    ins(2),
    ins(3),
    () => {
      for (let i = 4; i <= 40; i++) db.exec(ins(i));
    },
    "UPDATE t SET v = 'updated' WHERE id = 2",
    'DELETE FROM t WHERE id BETWEEN 10 AND 20',
    'CREATE INDEX t_v ON t (v)',
    ins(41),
  ]);
  check(walFrames(path, 4096) >= shmMxFrame(path), 'basic: WAL shorter than mxFrame');
  snapshot('basic', path);
  manifest.wal.basic = { pageSize: 4096, transactions: states };
  db.close();
}

// ---- wal/restart -----------------------------------------------------------------------------------------
{
  const { db, path } = open('restart', 1024);
  const ins = (i) => `INSERT INTO t (id, v) VALUES (${i}, '${filler(i, 300)}')`;
  const before = ['CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)'];
  for (let i = 1; i <= 11; i++) before.push(ins(i));
  const statesBefore = run(db, before);
  const framesBefore = shmMxFrame(path);
  const salt1Before = walSalt1(path);
  const ck = db.pragma('wal_checkpoint(PASSIVE)')[0];
  check(ck.busy === 0 && ck.log === ck.checkpointed, `restart: checkpoint incomplete ${JSON.stringify(ck)}`);
  const states = run(db, [ins(12), "UPDATE t SET v = 'after restart' WHERE id = 1"]);
  const mx = shmMxFrame(path);
  check(walSalt1(path) === (salt1Before + 1) >>> 0, 'restart: salt-1 did not increment');
  check(mx < framesBefore && walFrames(path, 1024) === framesBefore, 'restart: no old frames past the new ones');
  snapshot('restart', path);
  manifest.wal.restart = {
    pageSize: 1024,
    transactions: states,
    previousGeneration: { salt1: salt1Before, frames: framesBefore, transactions: statesBefore.length },
  };
  db.close();
}

// ---- wal/page64k and wal/page512 -------------------------------------------------------------------------
for (const [name, pageSize, rows, width] of [
  ['page64k', 65536, 1, 200],
  ['page512', 512, 8, 150],
]) {
  const { db, path } = open(name, pageSize);
  const steps = ['CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)'];
  for (let i = 1; i <= rows; i++) steps.push(`INSERT INTO t (id, v) VALUES (${i}, '${filler(i, width)}')`);
  const states = run(db, steps);
  check(db.pragma('page_size', { simple: true }) === pageSize, `${name}: page size not applied`);
  snapshot(name, path);
  manifest.wal[name] = { pageSize, transactions: states };
  db.close();
}

// ---- wal/shrink ------------------------------------------------------------------------------------------
{
  const { db, path } = open('shrink', 1024);
  const states = run(db, [
    'CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)',
    () => {
      for (let i = 1; i <= 60; i++) db.exec(`INSERT INTO t (id, v) VALUES (${i}, '${filler(i, 400)}')`);
    },
    'DELETE FROM t WHERE id > 5',
    'VACUUM',
    "INSERT INTO t (id, v) VALUES (100, 'after vacuum')",
  ]);
  const pages = db.pragma('page_count', { simple: true });
  check(pages < 20, `shrink: VACUUM left ${pages} pages`);
  snapshot('shrink', path);
  manifest.wal.shrink = { pageSize: 1024, transactions: states };
  db.close();
}

// ---- wal/uncommitted -------------------------------------------------------------------------------------
{
  const { db, path } = open('uncommitted', 1024);
  const states = run(db, [
    'CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)',
    "INSERT INTO t (id, v) VALUES (1, 'one')",
    "INSERT INTO t (id, v) VALUES (2, 'two')",
  ]);
  const mx = shmMxFrame(path);
  db.pragma('cache_size = 10');
  db.exec('BEGIN');
  for (let i = 3; i <= 80; i++) db.exec(`INSERT INTO t (id, v) VALUES (${i}, '${filler(i, 400)}')`);
  check(shmMxFrame(path) === mx, 'uncommitted: mxFrame moved inside an open transaction');
  check(walFrames(path, 1024) > mx + 5, 'uncommitted: nothing spilled into the WAL');
  snapshot('uncommitted', path);
  db.exec('ROLLBACK');
  manifest.wal.uncommitted = { pageSize: 1024, transactions: states };
  db.close();
}

// ---- rollback.db -----------------------------------------------------------------------------------------
{
  const path = join(WORK, 'rollback.db');
  const db = new Database(path);
  db.pragma('page_size = 1024');
  db.pragma('journal_mode = DELETE');
  db.exec('CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)');
  db.transaction(() => {
    for (let i = 1; i <= 10; i++) db.exec(`INSERT INTO t (id, v) VALUES (${i}, '${filler(i, 300)}')`);
  })();
  manifest.rollback = { pageSize: 1024, state: tableState(db) };
  db.close();
  copyFileSync(path, join(OUT, 'rollback.db'));
}

const version = new Database(':memory:').prepare('SELECT sqlite_version() AS v').get().v;
const bsqlite = JSON.parse(
  readFileSync(join(dirname(fileURLToPath(import.meta.resolve('better-sqlite3'))), '..', 'package.json'), 'utf8'),
).version;
manifest.sqliteVersion = version;
writeFileSync(join(OUT, 'manifest.json'), `${JSON.stringify(manifest, null, 2)}\n`);
writeFileSync(
  join(OUT, 'VERSION'),
  [
    `sqlite_version() ${version}`,
    `better-sqlite3 ${bsqlite}`,
    `node ${process.version} ${process.platform}-${process.arch}`,
    'generator: node test/golden/make.mjs',
    '',
  ].join('\n'),
);
rmSync(WORK, { recursive: true, force: true });
console.log(`golden files written with SQLite ${version}`);
