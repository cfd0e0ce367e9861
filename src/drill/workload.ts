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
 *
 * Role changes: give --db more than once (the primary's file first, then the standbys' files). The workload
 * writes to one at a time, with a 200 ms busy timeout. When a commit is refused (SQLITE_BUSY for longer than
 * --switch-after-ms, default 200, or SQLITE_READONLY), it looks at the other files for one whose header says
 * WAL mode (bytes 18-19 = 2: a standby's file stays in rollback mode, = 1, until it is promoted), closes its
 * connection to the old file (a demoted primary waits for that before it converts its file) and writes there;
 * otherwise it retries every 5 ms. Then every counter-log line has a fourth field, the index of the --db it
 * committed to, and events are logged as lines starting with '#':
 *   # refused <us> <db index> <code>      the first refused attempt of an outage (us: when it began)
 *   # switch <us> <from index> <to index> the connection moved to another file
 * so the outage (first refused write to first accepted write) and the transactions lost in a role change
 * can be read from the log alone.
 */
import Database from 'better-sqlite3';
import { closeSync, openSync, readSync, writeSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { prng } from './prng.js';

function arg(name: string, dflt?: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : dflt;
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

/** Every value of a repeated flag. */
function args(name: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < process.argv.length - 1; i++) if (process.argv[i] === `--${name}`) out.push(process.argv[i + 1]!);
  return out;
}

/** Journal mode from the database header (bytes 18-19: 1 rollback, 2 WAL); null when unreadable. */
export function headerJournalMode(path: string): 'wal' | 'rollback' | null {
  let fd = -1;
  try {
    fd = openSync(path, 'r');
    const b = Buffer.alloc(20);
    if (readSync(fd, b, 0, 20, 0) < 20 || b.toString('latin1', 0, 15) !== 'SQLite format 3') return null;
    return b[18] === 2 && b[19] === 2 ? 'wal' : b[18] === 1 && b[19] === 1 ? 'rollback' : null;
  } catch {
    return null;
  } finally {
    if (fd >= 0) closeSync(fd);
  }
}

/** The statements of the workload on one connection. */
interface Conn {
  readonly db: Database.Database;
  readonly small: () => void;
  readonly big: () => void;
  readonly counterNow: Database.Statement;
}

function main(): void {
  const paths = args('db');
  if (paths.length === 0) {
    process.stderr.write('workload: --db is required\n');
    process.exit(2);
  }
  const multi = paths.length > 1;
  const switchAfterMs = Number(arg('switch-after-ms', '200'));
  const seed = Number(arg('seed', '1'));
  const rate = Number(arg('rate', '0'));
  const count = arg('count') !== undefined ? Number(arg('count')) : Infinity;
  const durationMs = arg('duration-ms') !== undefined ? Number(arg('duration-ms')) : Infinity;
  const mix = arg('mix', 'small');
  const rnd = prng(seed);
  const logPath = arg('commit-log');
  const logFd = logPath ? openSync(logPath, 'a') : -1;
  const counterLogPath = arg('counter-log');
  const counterFd = counterLogPath ? openSync(counterLogPath, 'a') : -1;
  const blob = (n: number) => {
    const b = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i += 4) b.writeUInt32LE((rnd() * 0xffffffff) >>> 0, Math.min(i, n - 4));
    return b;
  };

  const open = (path: string, first: boolean): Conn => {
    const db = new Database(path, { timeout: multi ? switchAfterMs : 10_000, fileMustExist: !first });
    if (first) {
      db.pragma('journal_mode = WAL');
      db.pragma(`synchronous = ${arg('synchronous', 'NORMAL')}`);
      createSchema(db);
    } else db.pragma(`synchronous = ${arg('synchronous', 'NORMAL')}`);
    const ins = db.prepare('INSERT INTO t (k, v) VALUES (?, ?)');
    const upd = db.prepare('UPDATE t SET v = ?, k = k + 1 WHERE id = (SELECT id FROM t WHERE id >= ? ORDER BY id LIMIT 1)');
    const del = db.prepare('DELETE FROM t WHERE id = (SELECT id FROM t WHERE id >= ? ORDER BY id LIMIT 1)');
    const bumpCounter = db.prepare('UPDATE counter SET n = n + 1 WHERE id = 1');
    const move = db.prepare('UPDATE ledger SET amount = amount + ? WHERE id = ?');
    const maxId = db.prepare('SELECT coalesce(max(id), 0) AS m FROM t').pluck();
    // Every transaction bumps the counter (so it changes at least one row) and moves an amount between two
    // ledger accounts far apart (so they sit on different pages when the table grows).
    const bump = () => {
      bumpCounter.run();
      const a = 1 + Math.floor(rnd() * LEDGER_ACCOUNTS);
      const b = 1 + ((a + LEDGER_ACCOUNTS / 2 - 1) % LEDGER_ACCOUNTS);
      const amt = 1 + Math.floor(rnd() * 50);
      move.run(-amt, a);
      move.run(amt, b);
    };
    const small = db.transaction(() => {
      bump(); // every transaction changes at least this row
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
      bump();
      const n = 200 + Math.floor(rnd() * 300);
      for (let i = 0; i < n; i++) ins.run(Math.floor(rnd() * 1e6), blob(1000 + Math.floor(rnd() * 3000)));
      const top = Number(maxId.get());
      for (let i = 0; i < n / 2; i++) del.run(1 + Math.floor(rnd() * top));
    });
    return { db, small: () => small(), big: () => big(), counterNow: db.prepare('SELECT n FROM counter WHERE id = 1').pluck() };
  };

  let current = 0;
  let conn = open(paths[0]!, true);
  let commits = 0;
  let vacuums = 0;
  let checkpoints = 0;
  let switches = 0;
  let refusedSinceUs: number | null = null; // the begin time of the first refused attempt of this outage
  const t0 = Date.now();
  let stop = false;
  process.on('SIGTERM', () => (stop = true));
  process.on('SIGINT', () => (stop = true));
  const finish = () => {
    process.stdout.write(JSON.stringify({ commits, vacuums, checkpoints, elapsedMs: Date.now() - t0, ...(multi ? { switches, db: paths[current] } : {}) }) + '\n');
    conn.db.close();
    process.exit(0);
  };
  const nowUs = () => Math.round((performance.timeOrigin + performance.now()) * 1000);
  const logEvent = (line: string) => counterFd >= 0 && writeSync(counterFd, `# ${line}\n`);
  let beginUs = 0;
  const logCommit = () => {
    const us = nowUs();
    if (logFd >= 0) writeSync(logFd, `${us}\n`);
    if (counterFd >= 0) writeSync(counterFd, `${beginUs} ${us} ${conn.counterNow.get() as number}${multi ? ` ${current}` : ''}\n`);
  };

  /** One transaction; false when it was refused (only with several --db: a role change is under way). */
  const one = (): boolean => {
    beginUs = nowUs();
    const r = rnd();
    try {
      if (mix === 'stress' && r < 0.004) {
        conn.db.exec('VACUUM');
        vacuums++;
      } else if (mix === 'stress' && r < 0.03) conn.big();
      else conn.small();
    } catch (e) {
      const code = (e as { code?: string }).code ?? '';
      if (!multi || !(code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_READONLY'))) throw e;
      if (refusedSinceUs === null) {
        refusedSinceUs = beginUs;
        logEvent(`refused ${beginUs} ${current} ${code}`);
      }
      if (code.startsWith('SQLITE_READONLY') || nowUs() - refusedSinceUs >= switchAfterMs * 1000) trySwitch();
      return false;
    }
    refusedSinceUs = null;
    commits++;
    logCommit();
    if (mix === 'stress' && rnd() < 0.01) {
      conn.db.pragma('wal_checkpoint(PASSIVE)');
      checkpoints++;
    }
    return true;
  };
  /** Moves to another file whose header says WAL mode (a promoted standby), if there is one. */
  const trySwitch = () => {
    for (let i = 0; i < paths.length; i++) {
      if (i === current || headerJournalMode(paths[i]!) !== 'wal') continue;
      let next: Conn;
      try {
        next = open(paths[i]!, false);
      } catch {
        continue; // being converted right now: try again on the next refusal
      }
      conn.db.close();
      logEvent(`switch ${nowUs()} ${current} ${i}`);
      conn = next;
      current = i;
      switches++;
      return;
    }
  };

  const done = () => stop || commits >= count || Date.now() - t0 >= durationMs;
  const intervalMs = rate > 0 ? 1000 / rate : 0;
  const turn = () => {
    // Full speed: yield to the event loop every 50 ms so SIGTERM is seen. With --rate: every commit due.
    const until = Date.now() + 50;
    while (!done() && Date.now() < until) {
      if (rate > 0 && commits >= Math.floor((Date.now() - t0) / intervalMs) + 1) break;
      if (!one()) return void setTimeout(turn, 5);
    }
    if (done()) finish();
    else if (rate <= 0) setImmediate(turn);
    else setTimeout(turn, Math.max(0, intervalMs - ((Date.now() - t0) % intervalMs)));
  };
  turn();
}

if (process.argv[1] && fileURLToPath(import.meta.url) === resolve(process.argv[1])) main();
