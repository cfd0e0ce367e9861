/**
 * The live database as the shipper sees it: raw file descriptors for reading pages and the wal-index, and two
 * SQLite connections used only to hold read transactions (hand over hand) and, briefly, the write lock.
 *
 * Rules this file exists to keep (DESIGN.md Capture 1 and 3):
 *  - The raw fds of the database and of its -shm are opened once and NEVER closed while the process lives:
 *    POSIX locks belong to the process, and closing any fd of a file drops every lock SQLite holds on it.
 *    (The -wal file carries no lock; its fd is ordinary.)
 *  - At every moment after start() one of the two connections holds a read transaction. A reader holding a
 *    wal-index read mark >= 1 keeps every WAL frame from being overwritten (no WAL restart) and caps backfill
 *    at its mark; moving to a newer read transaction is done by opening it before closing the older one.
 */
import Database from 'better-sqlite3';
import { fstatSync, openSync, readSync, existsSync, readdirSync, readlinkSync, realpathSync } from 'node:fs';
import { RedoshipError, ioError } from '../error/index.js';
import {
  DB_HEADER_BYTES,
  WAL_FRAME_HEADER_BYTES,
  WAL_HEADER_BYTES,
  WAL_INDEX_HEADER_BYTES,
  parseDbHeader,
  parseWalHeader,
  parseWalIndexHeader,
  walFrameOffset,
  type WalHeader,
  type WalIndexHeader,
} from '../sqlite/index.js';

/** SQLite 3.51.3 fixed a WAL-reset race that this very topology (a long-lived reader beside writers) hits. */
const MIN_SQLITE = [3, 51, 3] as const;

type Conn = Database.Database;

/** How long opening a read transaction may wait on SQLITE_BUSY (wal-index recovery by another process). */
const READ_BUSY_TIMEOUT_MS = 5000;

/**
 * The other processes that have any of these files open, from /proc/<pid>/fd (Linux); [] where there is no
 * /proc, or a process's fds cannot be read (another user's: then it cannot have opened our files for
 * writing either, unless they are shared, which the wal-index check after the attempt still covers).
 */
export function processesHolding(files: readonly string[]): number[] {
  let pids: string[];
  try {
    pids = readdirSync('/proc').filter((n) => /^\d+$/.test(n) && Number(n) !== process.pid);
  } catch {
    return [];
  }
  const wanted = new Set<string>();
  for (const f of files) {
    try {
      wanted.add(realpathSync(f));
    } catch {
      /* not there: nobody holds it */
    }
  }
  if (wanted.size === 0) return [];
  const out: number[] = [];
  for (const pid of pids) {
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      let target: string;
      try {
        target = readlinkSync(`/proc/${pid}/fd/${fd}`);
      } catch {
        continue;
      }
      if (wanted.has(target)) {
        out.push(Number(pid));
        break;
      }
    }
  }
  return out;
}

/** Largest WAL read done into the reused buffer (capture's batches are 4 MiB by default). */
const SCRATCH_MAX_BYTES = 8 * 1024 * 1024;

export class LiveDatabase {
  readonly dbFd: number;
  private shmFd = -1;
  private walFd = -1;
  readonly pageSize: number;
  private conns!: [Conn, Conn];
  /**
   * A third connection, for backups: its read transaction pins a backup's snapshot while capture moves its
   * own read transaction on (hand over hand would otherwise let backfill overwrite pages the backup reads).
   */
  private pinConn: Conn | null = null;
  /** Index of the connection holding the current read transaction, or -1 before start(). */
  private reader = -1;
  private writeLocked: Conn | null = null;

  constructor(readonly path: string) {
    // Opened first and never closed (see above). Also used to check the file before SQLite touches it.
    try {
      this.dbFd = openSync(path, 'r');
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT')
        throw new RedoshipError('NOT_A_DATABASE', `${path} does not exist`, 'give the path of an existing SQLite database file');
      throw ioError('open database', path, e);
    }
    if (fstatSync(this.dbFd).isDirectory())
      throw new RedoshipError('NOT_A_DATABASE', `${path} is a directory`, 'give the path of a SQLite database file');
    const head = Buffer.alloc(DB_HEADER_BYTES);
    const n = readSync(this.dbFd, head, 0, DB_HEADER_BYTES, 0);
    if (n === 0)
      throw new RedoshipError('NOT_A_DATABASE', `${path} is empty (0 bytes)`, 'let the application create its schema first, then start redoship');
    const hdr = parseDbHeader(head.subarray(0, n));
    if (!hdr)
      throw new RedoshipError('NOT_A_DATABASE', `${path} is not a SQLite database (its header is not "SQLite format 3")`, 'check the --db path');
    this.pageSize = hdr.pageSize;
  }

  /**
   * Opens the SQLite connections. Kept apart from the constructor so that every check that can refuse the
   * start runs first: opening a WAL database creates its -wal and -shm files.
   */
  connect(): void {
    const path = this.path;
    const open = () => {
      // A read can meet SQLITE_BUSY for a moment (another connection recovering the wal-index after a crash,
      // or racing a WAL restart): wait it out rather than fail.
      const c = new Database(path, { fileMustExist: true, timeout: READ_BUSY_TIMEOUT_MS });
      c.pragma('wal_autocheckpoint = 0'); // this connection never writes; never checkpoint on close either
      return c;
    };
    this.conns = [open(), open()];
    const v = (this.conns[0].prepare('select sqlite_version() v').get() as { v: string }).v;
    const parts = v.split('.').map(Number);
    for (let i = 0; i < 3; i++) {
      if ((parts[i] ?? 0) > MIN_SQLITE[i]!) break;
      if ((parts[i] ?? 0) < MIN_SQLITE[i]!)
        throw new RedoshipError('SQLITE_TOO_OLD', `SQLite ${v} is older than ${MIN_SQLITE.join('.')}`, 'reinstall redoship so that better-sqlite3 bundles a newer SQLite');
    }
  }

  get sqliteVersion(): string {
    return (this.conns[0].prepare('select sqlite_version() v').get() as { v: string }).v;
  }

  /** Puts the database in WAL mode if it is not. Fails clearly when another process holds it. */
  ensureWalMode(): { switched: boolean } {
    const c = this.conns[0];
    const mode = String(c.pragma('journal_mode', { simple: true })).toLowerCase();
    if (mode === 'wal') return { switched: false };
    let now: string;
    try {
      c.pragma('busy_timeout = 2000');
      now = String(c.pragma('journal_mode = WAL', { simple: true })).toLowerCase();
    } catch (e) {
      throw new RedoshipError(
        'JOURNAL_MODE',
        `${this.path} is in ${mode} journal mode and could not be switched to WAL: ${(e as Error).message}`,
        'stop the application (or run `PRAGMA journal_mode=WAL` from it once), then start redoship again',
        { cause: e },
      );
    } finally {
      c.pragma(`busy_timeout = ${READ_BUSY_TIMEOUT_MS}`);
    }
    if (now !== 'wal')
      throw new RedoshipError(
        'JOURNAL_MODE',
        `${this.path} stays in ${now} journal mode; redoship needs WAL mode`,
        mode === 'memory' || mode === 'off' ? 'the application must not set journal_mode OFF or MEMORY' : 'run `PRAGMA journal_mode=WAL` on it once, then start redoship again',
      );
    return { switched: true };
  }

  /** Takes the first read transaction and opens the -shm and -wal files (which SQLite has created by then). */
  start(): void {
    this.beginRead(this.conns[0]);
    this.reader = 0;
    try {
      this.shmFd = openSync(`${this.path}-shm`, 'r');
      this.walFd = openSync(`${this.path}-wal`, 'r');
    } catch (e) {
      throw ioError('open the WAL files of', this.path, e);
    }
  }

  /**
   * The statement for sql on c, prepared once: capture advances its read transaction after every batch, and
   * preparing BEGIN, the first read and COMMIT each time was ~3% of a primary's CPU at 1,000 commits/s.
   */
  private stmt(c: Conn, sql: string): Database.Statement {
    let m = this.statements.get(c);
    if (!m) this.statements.set(c, (m = new Map()));
    let st = m.get(sql);
    if (!st) m.set(sql, (st = c.prepare(sql)));
    return st;
  }
  private readonly statements = new WeakMap<Conn, Map<string, Database.Statement>>();

  private beginRead(c: Conn): void {
    this.stmt(c, 'BEGIN').run();
    // A read transaction starts at its first read; this one takes the wal-index read lock.
    this.stmt(c, 'SELECT 1 FROM sqlite_schema LIMIT 1').all();
  }

  /** Opens a fresh read transaction on the other connection, then ends the current one (hand over hand). */
  advanceRead(): void {
    const next = 1 - this.reader;
    const c = this.conns[next]!;
    if (c === this.writeLocked) throw new Error('assert: advanceRead while the other connection holds the write lock');
    this.beginRead(c);
    this.stmt(this.conns[this.reader]!, 'COMMIT').run();
    this.reader = next;
  }

  /**
   * Takes the database write lock (BEGIN IMMEDIATE) on the connection not holding the read transaction,
   * waiting at most timeoutMs. Returns false when the application holds it longer.
   */
  tryWriteLock(timeoutMs: number): boolean {
    const c = this.conns[1 - this.reader]!;
    // Prepared once per distinct timeout (a few: the options' values): a checkpoint cycle runs this several
    // times a second under load, and c.pragma() prepares its statement on every call.
    this.stmt(c, `PRAGMA busy_timeout = ${Math.max(0, Math.round(timeoutMs))}`).get();
    try {
      this.stmt(c, 'BEGIN IMMEDIATE').run();
      this.writeLocked = c;
      return true;
    } catch (e) {
      if ((e as { code?: string }).code?.startsWith('SQLITE_BUSY')) return false;
      throw e;
    } finally {
      this.stmt(c, `PRAGMA busy_timeout = ${READ_BUSY_TIMEOUT_MS}`).get();
    }
  }

  releaseWriteLock(): void {
    const c = this.writeLocked;
    if (!c) return;
    this.writeLocked = null;
    this.stmt(c, 'ROLLBACK').run();
  }

  /**
   * With the write lock held: ends the read transaction, runs a PASSIVE checkpoint from that connection
   * (a connection inside a transaction cannot checkpoint), and opens the next read transaction, which lands
   * on read slot 0 when everything was backfilled. Returns SQLite's (busy, log, checkpointed) triple.
   */
  checkpointUnderWriteLock(): { busy: number; log: number; checkpointed: number } {
    if (!this.writeLocked) throw new Error('assert: checkpoint without the write lock');
    const c = this.conns[this.reader]!;
    this.stmt(c, 'COMMIT').run();
    let row: { busy: number; log: number; checkpointed: number };
    try {
      row = this.stmt(c, 'PRAGMA wal_checkpoint(PASSIVE)').get() as typeof row;
    } finally {
      this.beginRead(c);
    }
    return row;
  }

  /*
   * Read buffers for the wal-index and WAL headers, reused by every read (capture reads the wal-index several
   * times per wake-up): parseWalIndexHeader and parseWalHeader return numbers only, never a view of the
   * buffer, so nothing read earlier changes when the next read overwrites it.
   */
  private readonly walIndexBuf = Buffer.alloc(WAL_INDEX_HEADER_BYTES);
  private readonly walHeaderBuf = Buffer.alloc(WAL_HEADER_BYTES);

  /** A consistent wal-index header, retried as SQLite's readers do; null if the -shm never settles. */
  readWalIndex(): WalIndexHeader | null {
    const buf = this.walIndexBuf;
    for (let i = 0; i < 100; i++) {
      const n = readSync(this.shmFd, buf, 0, WAL_INDEX_HEADER_BYTES, 0);
      const h = parseWalIndexHeader(buf.subarray(0, n));
      if (h) return h;
    }
    return null;
  }

  readWalHeader(): WalHeader | null {
    const buf = this.walHeaderBuf;
    const n = readSync(this.walFd, buf, 0, WAL_HEADER_BYTES, 0);
    return parseWalHeader(buf.subarray(0, n));
  }

  walBytes(): number {
    return fstatSync(this.walFd).size;
  }

  /**
   * Reads WAL frames first..last (headers and pages, back to back, as the -wal file holds them). scratch: into
   * a buffer this object keeps and reads into again at the next scratch call (no new buffer per capture batch:
   * each one is external memory to V8, and enough of it forces a full collection); the caller must be done
   * with it by then. A read larger than SCRATCH_MAX_BYTES (one huge transaction) gets a buffer of its own.
   */
  readFrames(pageSize: number, first: number, last: number, scratch = false): Buffer {
    const start = walFrameOffset(first, pageSize);
    const len = (last - first + 1) * (WAL_FRAME_HEADER_BYTES + pageSize);
    const reuse = scratch && len <= SCRATCH_MAX_BYTES;
    if (reuse && this.frameScratch.length < len) this.frameScratch = Buffer.allocUnsafe(Math.min(SCRATCH_MAX_BYTES, Math.max(len, 2 * this.frameScratch.length)));
    const buf = reuse ? this.frameScratch.subarray(0, len) : Buffer.allocUnsafe(len);
    let got = 0;
    while (got < len) {
      const n = readSync(this.walFd, buf, got, len - got, start + got);
      if (n === 0) break;
      got += n;
    }
    return got === len ? buf : buf.subarray(0, got);
  }

  /** Reads count pages starting at pgno from the database file, through the never-closed fd. */
  private frameScratch = Buffer.alloc(0);

  readDbPages(pgno: number, count: number, into?: Buffer): Buffer {
    const len = count * this.pageSize;
    const buf = into && into.length >= len ? into.subarray(0, len) : Buffer.alloc(len);
    let got = 0;
    while (got < len) {
      const n = readSync(this.dbFd, buf, got, len - got, (pgno - 1) * this.pageSize + got);
      if (n === 0) {
        buf.fill(0, got); // past the end of the file: SQLite reads zeros too
        break;
      }
      got += n;
    }
    return buf;
  }

  dbHeaderSizePages(): number {
    const head = this.readDbPages(1, 1).subarray(0, DB_HEADER_BYTES);
    const h = parseDbHeader(head);
    return h?.sizePages ?? Math.floor(fstatSync(this.dbFd).size / this.pageSize);
  }

  static walExists(path: string): boolean {
    return existsSync(`${path}-wal`);
  }

  /**
   * Ends our transactions. The connections are NOT closed: SQLite's last connection to close checkpoints and
   * deletes the WAL, and a shipper that stops must leave the WAL as it was, so that the next start can prove
   * continuity from it (DESIGN.md Capture 5). They go with the process. The raw db and -shm fds stay open
   * until then too (closing them would drop SQLite's locks).
   */
  release(): void {
    if (!this.conns) return; // never connected
    try {
      this.releaseWriteLock();
    } catch {
      /* stopping anyway */
    }
    for (const c of [...this.conns, ...(this.pinConn ? [this.pinConn] : [])]) {
      try {
        if (c.inTransaction) c.prepare('ROLLBACK').run();
      } catch {
        /* stopping anyway */
      }
    }
    this.reader = -1;
  }

  /** With the write lock held: opens the backup pin's read transaction (its snapshot is the current state). */
  pinUnderWriteLock(): void {
    if (!this.writeLocked) throw new Error('assert: pin without the write lock');
    if (!this.pinConn) {
      this.pinConn = new Database(this.path, { fileMustExist: true, timeout: READ_BUSY_TIMEOUT_MS });
      this.pinConn.pragma('wal_autocheckpoint = 0');
    }
    if (this.pinConn.inTransaction) throw new Error('assert: a backup snapshot is already pinned');
    this.beginRead(this.pinConn);
  }

  /** Ends the backup pin's read transaction (the connection stays open: see release()). */
  unpin(): void {
    if (this.pinConn?.inTransaction) this.pinConn.prepare('COMMIT').run();
  }

  /** With the write lock held: ends the read transaction and opens a new one on the same connection. */
  refreshReadUnderWriteLock(): void {
    if (!this.writeLocked) throw new Error('assert: refreshRead without the write lock');
    const c = this.conns[this.reader]!;
    c.prepare('COMMIT').run();
    this.beginRead(c);
  }

  /**
   * Makes sure the WAL has a header, by committing a transaction that rewrites page 1 unchanged (SQLite bumps
   * its change counter) when it has none: a fresh database, or one whose WAL the application's last close
   * deleted. A base or resync taken next then names a WAL position (salts, frame, checksum), and a restart
   * of an idle database proves continuity from it instead of recording a break each time. Best effort: an
   * application holding the write lock (or an exclusive locking mode) just leaves things as they were.
   */
  ensureWalHeader(timeoutMs: number): void {
    if (this.readWalHeader()) return;
    const c = this.conns[1 - this.reader]!;
    c.pragma(`busy_timeout = ${Math.max(0, Math.round(timeoutMs))}`);
    try {
      const v = c.pragma('user_version', { simple: true }) as number;
      c.pragma(`user_version = ${v}`);
    } catch (e) {
      if (!(e as { code?: string }).code?.startsWith('SQLITE_BUSY')) throw e;
    } finally {
      c.pragma(`busy_timeout = ${READ_BUSY_TIMEOUT_MS}`);
    }
  }

  /**
   * Demotion (switchover): with the write lock held and everything captured, turns the file back into a
   * rollback-journal database, so that it can be kept as a standby. SQLite changes the journal mode only for
   * a connection that is alone on the file, so this waits, holding the write lock between attempts, until the
   * application has closed its connections (it sees SQLITE_BUSY meanwhile and should move to the new
   * primary). An attempt must free the lock for an instant, and an application still connected and retrying
   * its commit could take it then: its transaction would be on no standby, after the application was told
   * it committed. So where the system lists open files (/proc), an attempt is made only once no other process
   * has the database or its -wal/-shm open; the lock is held until then. A commit that slips in all the same
   * (a process that opens the file in that instant, or a connection inside this process) is detected from
   * the wal-index and refused (DIVERGED), never silently kept or lost. Our other connections are closed
   * first (the raw fds stay open: see release()).
   */
  async convertToRollbackMode(onWait: (waitedMs: number) => void, timeoutMs: number): Promise<void> {
    const c = this.writeLocked;
    if (!c) throw new Error('assert: demotion without the write lock');
    const frozen = this.readWalIndex();
    for (const o of [...this.conns, ...(this.pinConn ? [this.pinConn] : [])]) {
      if (o === c) continue;
      try {
        if (o.inTransaction) o.prepare('ROLLBACK').run();
        o.close();
      } catch {
        /* closing anyway */
      }
    }
    this.pinConn = null;
    this.reader = -1;
    const t0 = Date.now();
    let lastSaid = 0;
    const files = [this.path, `${this.path}-wal`, `${this.path}-shm`];
    /** One wait between attempts: the timeout, a word to the caller every 2 s. */
    const waitAWhile = async (holders: readonly number[]): Promise<void> => {
      const waited = Date.now() - t0;
      if (waited > timeoutMs)
        throw new RedoshipError(
          'DATABASE_BUSY',
          `applications${holders.length ? ` (pid ${holders.slice(0, 5).join(', ')})` : ''} still have ${this.path} open after ${Math.round(waited / 1000)} s`,
          'close them (they belong on the new primary), then run `redoship reinstate` to make this database a standby',
        );
      if (waited - lastSaid >= 2000) {
        lastSaid = waited;
        onWait(waited);
      }
      await new Promise((r) => setTimeout(r, 50)); // a scan of /proc costs ~15 ms here
    };
    for (;;) {
      const holders = processesHolding(files);
      if (holders.length > 0) {
        await waitAWhile(holders);
        continue;
      }
      c.prepare('ROLLBACK').run();
      this.writeLocked = null;
      c.pragma('busy_timeout = 0');
      let mode = '';
      try {
        mode = String(c.pragma('journal_mode = DELETE', { simple: true })).toLowerCase();
      } catch (e) {
        if (!String((e as { code?: string }).code).startsWith('SQLITE_BUSY')) throw e;
      }
      if (mode === 'delete') {
        c.close();
        return;
      }
      c.pragma(`busy_timeout = ${READ_BUSY_TIMEOUT_MS}`);
      c.prepare('BEGIN IMMEDIATE').run();
      this.writeLocked = c;
      const now = this.readWalIndex();
      if (frozen && now && (now.mxFrame !== frozen.mxFrame || now.salt1 !== frozen.salt1 || now.salt2 !== frozen.salt2))
        throw new RedoshipError(
          'DIVERGED',
          `an application committed to ${this.path} after the switchover froze it; that transaction is on no standby`,
          `keep the file aside if you need that transaction, then make it a standby with \`redoship reinstate\``,
        );
      await waitAWhile([]);
    }
  }
}
