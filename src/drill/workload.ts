/**
 * A writer workload, run as its own process (it is the "application" in demos, tests and benchmarks):
 *
 *   node dist/src/drill/workload.js --db app.db [--seed 1] [--rate 0] [--count N | --duration-ms N]
 *                                   [--mix small|stress] [--synchronous NORMAL] [--commit-log FILE]
 *
 * Every transaction changes at least one row, so every transaction is exactly one WAL commit (one LSN).
 * --mix small:  1-3 small inserts/updates/deletes per transaction.
 * --mix stress: also transactions of hundreds of pages, VACUUM now and then, and the application's own
 *               wal_checkpoint(PASSIVE) now and then.
 * --rate 0 runs at full speed. On exit (count or duration reached, or SIGTERM) it prints one JSON line:
 * {"commits": N, "vacuums": N, "checkpoints": N, "elapsedMs": N}. With --commit-log, it appends the commit
 * time (µs since the epoch) of every transaction, one per line, as it commits. With --counter-log, it
 * appends "beginUs commitUs counter" lines: when the transaction began (a lower bound of its commit time),
 * when the commit returned (an upper bound), and the counter row's value after it (a VACUUM does not move
 * it), so a reader's view of the counter can be matched with commits.
 */
import Database from 'better-sqlite3';
import { openSync, writeSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

function arg(name: string, dflt?: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : dflt;
}

/** Small deterministic PRNG (mulberry32) so that a seed replays the same workload. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function createSchema(db: Database.Database): void {
  db.exec(`CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, k INTEGER NOT NULL, v BLOB NOT NULL);
           CREATE INDEX IF NOT EXISTS t_k ON t(k);
           CREATE TABLE IF NOT EXISTS counter (id INTEGER PRIMARY KEY CHECK (id = 1), n INTEGER NOT NULL);
           INSERT OR IGNORE INTO counter VALUES (1, 0);
           CREATE TABLE IF NOT EXISTS ledger (id INTEGER PRIMARY KEY, amount INTEGER NOT NULL);`);
  // The ledger's invariant: its amounts always sum to LEDGER_TOTAL. Every transaction moves some amount
  // between two accounts, so a reader that ever sees another sum saw a transaction half applied.
  const n = db.prepare('SELECT count(*) FROM ledger').pluck().get() as number;
  if (n === 0) {
    const ins = db.prepare('INSERT INTO ledger (id, amount) VALUES (?, ?)');
    db.transaction(() => {
      for (let i = 1; i <= LEDGER_ACCOUNTS; i++) ins.run(i, LEDGER_TOTAL / LEDGER_ACCOUNTS);
    })();
  }
}

export const LEDGER_ACCOUNTS = 50;
export const LEDGER_TOTAL = 50_000;

function main(): void {
  const path = arg('db');
  if (!path) {
    process.stderr.write('workload: --db is required\n');
    process.exit(2);
  }
  const seed = Number(arg('seed', '1'));
  const rate = Number(arg('rate', '0'));
  const count = arg('count') !== undefined ? Number(arg('count')) : Infinity;
  const durationMs = arg('duration-ms') !== undefined ? Number(arg('duration-ms')) : Infinity;
  const mix = arg('mix', 'small');
  const rnd = prng(seed);
  const db = new Database(path, { timeout: 10_000 });
  db.pragma('journal_mode = WAL');
  db.pragma(`synchronous = ${arg('synchronous', 'NORMAL')}`);
  createSchema(db);
  const logPath = arg('commit-log');
  const logFd = logPath ? openSync(logPath, 'a') : -1;
  const counterLogPath = arg('counter-log');
  const counterFd = counterLogPath ? openSync(counterLogPath, 'a') : -1;
  const counterNow = db.prepare('SELECT n FROM counter WHERE id = 1').pluck();

  const ins = db.prepare('INSERT INTO t (k, v) VALUES (?, ?)');
  const upd = db.prepare('UPDATE t SET v = ?, k = k + 1 WHERE id = (SELECT id FROM t WHERE id >= ? ORDER BY id LIMIT 1)');
  const del = db.prepare('DELETE FROM t WHERE id = (SELECT id FROM t WHERE id >= ? ORDER BY id LIMIT 1)');
  const bumpCounter = db.prepare('UPDATE counter SET n = n + 1 WHERE id = 1');
  const move = db.prepare('UPDATE ledger SET amount = amount + ? WHERE id = ?');
  // Every transaction bumps the counter (so it changes at least one row) and moves an amount between two
  // ledger accounts far apart (so they sit on different pages when the table grows).
  const bump = {
    run() {
      bumpCounter.run();
      const a = 1 + Math.floor(rnd() * LEDGER_ACCOUNTS);
      const b = 1 + ((a + LEDGER_ACCOUNTS / 2 - 1) % LEDGER_ACCOUNTS);
      const amt = 1 + Math.floor(rnd() * 50);
      move.run(-amt, a);
      move.run(amt, b);
    },
  };
  const maxId = db.prepare('SELECT coalesce(max(id), 0) AS m FROM t').pluck();
  const blob = (n: number) => {
    const b = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i += 4) b.writeUInt32LE((rnd() * 0xffffffff) >>> 0, Math.min(i, n - 4));
    return b;
  };

  const small = db.transaction(() => {
    bump.run(); // every transaction changes at least this row
    const ops = 1 + Math.floor(rnd() * 3);
    for (let i = 0; i < ops; i++) {
      const r = rnd();
      const top = Number(maxId.get());
      if (r < 0.6 || top === 0) ins.run(Math.floor(rnd() * 1e6), blob(20 + Math.floor(rnd() * 200)));
      else if (r < 0.85) upd.run(blob(20 + Math.floor(rnd() * 200)), 1 + Math.floor(rnd() * top));
      else del.run(1 + Math.floor(rnd() * top));
    }
  });
  const big = db.transaction(() => {
    bump.run();
    const n = 200 + Math.floor(rnd() * 300);
    for (let i = 0; i < n; i++) ins.run(Math.floor(rnd() * 1e6), blob(1000 + Math.floor(rnd() * 3000)));
    const top = Number(maxId.get());
    for (let i = 0; i < n / 2; i++) del.run(1 + Math.floor(rnd() * top));
  });

  let commits = 0;
  let vacuums = 0;
  let checkpoints = 0;
  const t0 = Date.now();
  let stop = false;
  process.on('SIGTERM', () => (stop = true));
  process.on('SIGINT', () => (stop = true));
  const finish = () => {
    process.stdout.write(JSON.stringify({ commits, vacuums, checkpoints, elapsedMs: Date.now() - t0 }) + '\n');
    db.close();
    process.exit(0);
  };
  const nowUs = () => Math.round((performance.timeOrigin + performance.now()) * 1000);
  let beginUs = 0;
  const logCommit = () => {
    const us = nowUs();
    if (logFd >= 0) writeSync(logFd, `${us}\n`);
    if (counterFd >= 0) writeSync(counterFd, `${beginUs} ${us} ${counterNow.get() as number}\n`);
  };

  const one = () => {
    beginUs = nowUs();
    const r = rnd();
    if (mix === 'stress' && r < 0.004) {
      db.exec('VACUUM');
      vacuums++;
    } else if (mix === 'stress' && r < 0.03) big();
    else small();
    commits++;
    logCommit();
    if (mix === 'stress' && rnd() < 0.01) {
      db.pragma('wal_checkpoint(PASSIVE)');
      checkpoints++;
    }
  };

  if (rate <= 0) {
    // Full speed, but yield to the event loop now and then so SIGTERM is seen.
    const burst = () => {
      const until = Date.now() + 50;
      while (!stop && commits < count && Date.now() - t0 < durationMs && Date.now() < until) one();
      if (stop || commits >= count || Date.now() - t0 >= durationMs) finish();
      else setImmediate(burst);
    };
    burst();
  } else {
    const intervalMs = 1000 / rate;
    const tick = () => {
      const due = Math.floor((Date.now() - t0) / intervalMs) + 1;
      while (!stop && commits < due && commits < count) one();
      if (stop || commits >= count || Date.now() - t0 >= durationMs) finish();
      else setTimeout(tick, Math.max(0, intervalMs - ((Date.now() - t0) % intervalMs)));
    };
    tick();
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === resolve(process.argv[1])) main();
