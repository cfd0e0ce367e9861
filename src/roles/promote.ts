/**
 * Promotion (failover): turns a standby's database and archive into a primary's, offline (no standby or
 * primary process may hold them meanwhile). In order, each step safe to crash after and to run again:
 *
 *   1. Apply the archive to the standby database up to the fork point (the last LSN held, or --until-lsn /
 *      --until-time), ignoring any apply delay.
 *   2. Fork: the archive starts a new incarnation after the fork point; records after it (received, not
 *      promoted through) are set aside in diverged/ (history.ts, ArchiveWriter.fork).
 *   3. Switch the file to WAL mode, and commit one transaction that changes nothing but page 1's change
 *      counter: it gives the new WAL a commit frame whose salts and checksum the archive can name.
 *   4. Archive that transaction as the new incarnation's first record (fork + 1), with its WAL position: a
 *      primary started on these files then proves continuity at once, instead of comparing every page.
 *
 * The database then equals the old primary at the fork point (page for page, header bytes aside), and the
 * history says where the line split, so standbys that follow this primary learn of the fork and refuse the
 * old one (fencing).
 */
import Database from 'better-sqlite3';
import { closeSync, existsSync, fstatSync, openSync, readFileSync, readSync, realpathSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { RedoshipError, ioError } from '../error/index.js';
import { Archive, ArchiveRecordReader, currentIncarnation, describeIncarnation, readFence, type ArchiveWriter, type Incarnation, type Lsn, type RedoRecord, type SetAside } from '../redo/index.js';
import { WAL_FRAME_HEADER_BYTES, WAL_HEADER_BYTES, parseWalHeader, scanWalFrames } from '../sqlite/index.js';
import { Applier, STANDBY_STATUS_FILE } from '../standby/index.js';

export interface PromoteOptions {
  readonly archive: string;
  /** The standby database; default: the one this archive's applier keeps. */
  readonly db?: string;
  readonly untilLsn?: bigint;
  readonly untilTimeUs?: bigint;
  readonly reason?: string;
  readonly onProgress?: (message: string) => void;
}

export interface PromoteResult {
  readonly db: string;
  readonly archive: string;
  readonly incarnation: Incarnation;
  readonly forkLsn: bigint;
  /** Records applied by this promotion (the standby's apply lag, plus its delay). */
  readonly applied: number;
  readonly setAside: SetAside;
  readonly ms: number;
  /**
   * Closes the connection that keeps the new WAL in place. Call it once a primary runs on the database:
   * SQLite's last close checkpoints and deletes the WAL, and capture would then have to compare every page
   * to prove where it stands instead of continuing from the WAL position archived at the fork.
   */
  release(): void;
}

const nowUs = () => BigInt(Math.round((performance.timeOrigin + performance.now()) * 1000));

export function promoteFiles(o: PromoteOptions): PromoteResult {
  const t0 = performance.now();
  const say = o.onProgress ?? (() => {});
  const archive = Archive.open(o.archive);
  const writer = archive.openWriter({ segmentBytes: 64 * 1024 * 1024, segmentAgeMs: 60_000 });
  try {
    const state = Applier.readState(archive);
    // A standby that has not seeded its database yet (its delay had not passed) names it in its status.
    const named = o.db ?? state?.db ?? statusDb(archive.dir);
    const db = resolve(named ?? '');
    if (!named)
      throw new RedoshipError('USAGE', `the archive ${archive.dir} keeps no standby database (archive-only destination)`, 'give --db PATH: promotion builds the database there from the archive');
    const cur = currentIncarnation(writer.history);
    if (cur.db && existsSync(db) && realpathSync(db) === cur.db && !readFence(archive.dir))
      throw new RedoshipError('ROLE', `${db} is already the primary of ${describeIncarnation(cur)}`, 'nothing to promote: start it with `redoship primary`');
    const target = forkPoint(archive, writer, o);
    say(`promoting ${db} at LSN ${target} (the archive holds up to ${writer.lastLsn})`);

    // 1. Apply up to the fork point.
    let applier = existsSync(db) ? Applier.open(db, archive) : null;
    let applied = 0;
    if (!applier) {
      say(`building ${db} from the archive up to LSN ${target}`);
      applier = Applier.seed(db, archive, target as Lsn);
    }
    if (applier.appliedLsn > target)
      throw new RedoshipError(
        'TARGET_UNREACHABLE',
        `${db} has already applied LSN ${applier.appliedLsn}, past the requested point ${target}; applied redo cannot be undone in place`,
        `restore to that point instead (\`redoship restore --archive ${o.archive} --to NEW.db --until-lsn ${target}\`) and start a primary on it`,
      );
    // Every check that can refuse is done: from here on files change.
    writer.dropIncomplete();
    let batch: RedoRecord[] = [];
    let bytes = 0;
    const flush = () => {
      applier.apply(batch);
      applied += batch.length;
      batch = [];
      bytes = 0;
    };
    // Records too large to hold (a base, a large resync) come without pages and are applied streamed.
    const reader = new ArchiveRecordReader(archive, (applier.appliedLsn + 1n) as Lsn);
    for (let rec = reader.take(); rec && rec.lsn <= target; rec = reader.take()) {
      if (rec.streamed) {
        flush();
        const lsn = rec.lsn;
        applier.applyStreamed(rec, () => archive.partsInRange(lsn, lsn));
        applied++;
        continue;
      }
      batch.push(rec);
      bytes += rec.pages.length * archive.identity.pageSize;
      if (batch.length >= 10_000 || bytes >= 64 * 1024 * 1024) flush();
    }
    flush();
    if (applier.appliedLsn !== target)
      throw new RedoshipError('ASSERT', `applied to LSN ${applier.appliedLsn}, expected ${target}`, 'this is a bug; please report it');

    // 2. Fork.
    const realDb = realpathSync(db);
    const { incarnation, setAside } = writer.fork(target as Lsn, o.reason ?? 'promoted', realDb);
    if (setAside.records.length > 0)
      say(`set aside ${setAside.records.length} received records after LSN ${target} in ${setAside.dir}`);

    // 3 and 4. WAL mode, and the first record of the new incarnation.
    const opened = openInWalMode(realDb, (target + 1n) as Lsn, incarnation);
    try {
      writer.append([opened.record]);
    } catch (e) {
      opened.conn.close();
      throw e;
    }
    say(`${realDb} is a primary: ${describeIncarnation(incarnation)}`);
    return {
      db: realDb,
      archive: archive.dir,
      incarnation,
      forkLsn: target,
      applied,
      setAside,
      ms: performance.now() - t0,
      release: () => opened.conn.close(),
    };
  } finally {
    writer.close({ seal: true });
  }
}

function statusDb(dir: string): string | null {
  try {
    const st = JSON.parse(readFileSync(join(dir, STANDBY_STATUS_FILE), 'utf8')) as { db?: unknown };
    return typeof st.db === 'string' ? st.db : null;
  } catch {
    return null;
  }
}

function forkPoint(archive: Archive, writer: ArchiveWriter, o: PromoteOptions): bigint {
  if (writer.lastLsn === 0n) throw new RedoshipError('ARCHIVE_EMPTY', `the archive ${archive.dir} holds no redo yet`, 'wait until the standby has been seeded');
  if (o.untilLsn !== undefined) {
    if (o.untilLsn > writer.lastLsn || o.untilLsn < 1n)
      throw new RedoshipError('TARGET_UNREACHABLE', `LSN ${o.untilLsn} is not in the archive ${archive.dir} (it ends at ${writer.lastLsn})`, 'give an LSN the standby holds (see `redoship status`)');
    return o.untilLsn;
  }
  if (o.untilTimeUs !== undefined) {
    const l = archive.lsnAtTime(o.untilTimeUs);
    if (l === null) throw new RedoshipError('TARGET_UNREACHABLE', 'no transaction in the archive committed at or before that time', 'give a later --until-time');
    return l;
  }
  // Everything held, including the last records the old primary sent and may not have confirmed durable
  // (transport/protocol.ts, confirmation): a synchronous commit may already have been acknowledged for them,
  // and the old primary, reinstated, sets aside whatever it holds past the fork.
  return writer.lastLsn;
}

/**
 * Switches the file to WAL mode and commits a transaction that rewrites page 1 unchanged (SQLite bumps its
 * change counter): the record returned is that transaction, with its WAL position, as LSN lsn.
 */
function openInWalMode(db: string, lsn: Lsn, inc: Incarnation): { record: RedoRecord; conn: Database.Database } {
  const conn = new Database(db, { timeout: 10_000 });
  let ok = false;
  try {
    const mode = conn.pragma('journal_mode = WAL', { simple: true });
    if (mode !== 'wal') throw new RedoshipError('JOURNAL_MODE', `${db} did not switch to WAL mode (it says ${String(mode)})`, 'close other connections to it and run promote again');
    const v = conn.pragma('user_version', { simple: true }) as number;
    // No checkpoint may move these frames out of the WAL before capture has archived them.
    conn.pragma('wal_autocheckpoint = 0');
    conn.pragma(`user_version = ${v}`);
    const wal = `${db}-wal`;
    const fd = openSync(wal, 'r');
    try {
      const size = fstatSync(fd).size;
      const buf = Buffer.alloc(size);
      readSync(fd, buf, 0, size, 0);
      const hdr = parseWalHeader(buf.subarray(0, WAL_HEADER_BYTES));
      if (!hdr) throw new RedoshipError('WAL_CORRUPT', `${wal} has no valid header right after promotion`, 'run promote again');
      const frames = Math.floor((size - WAL_HEADER_BYTES) / (WAL_FRAME_HEADER_BYTES + hdr.pageSize));
      const scan = scanWalFrames(hdr, buf.subarray(WAL_HEADER_BYTES), 1, frames, hdr.checksum);
      const t = scan.transactions[0];
      if (!t) throw new RedoshipError('WAL_CORRUPT', `${wal} holds no commit right after promotion`, 'run promote again');
      ok = true;
      return { conn, record: {
        kind: 'txn',
        lsn,
        commitTimeUs: nowUs(),
        sizePages: t.sizePages,
        pages: t.pages.map(([pgno, page]) => [pgno, Buffer.from(page)] as const),
        wal: { salt1: hdr.salt1, salt2: hdr.salt2, commitFrame: t.commitFrame, s0: t.checksum.s0, s1: t.checksum.s1 },
        note: `${describeIncarnation(inc)} begins: promoted after LSN ${inc.forkLsn}`,
      } };
    } catch (e) {
      if (e instanceof RedoshipError) throw e;
      throw ioError('read', wal, e);
    } finally {
      closeSync(fd);
    }
  } finally {
    if (!ok) conn.close();
  }
}
