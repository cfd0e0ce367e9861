/**
 * Reinstate (DESIGN.md Roles): makes an old primary that diverged after a failover (or was demoted) a
 * standby of the new primary, copying only the pages that differ rather than the whole file:
 *
 *   1. Ask the new primary for its database id and history; find where our line left its line (fork F).
 *      Switch our file to rollback-journal mode (SQLite checkpoints its WAL; refused while applications
 *      still have it open, before anything else is touched).
 *   2. Set aside our archived records after F (diverged/, with records.json listing LSN and time), and list
 *      them: these transactions never reached the new primary and are discarded from the database.
 *   3. Send the new primary a hash of every page; it answers (role-requests.ts, rewind) with the pages that
 *      differ in one consistent snapshot at its LSN N.
 *   4. Write them (and cut or extend the file to N's size), sync, and record the file as this archive's
 *      standby database at N. A crash before that record leaves nothing that a standby would use: run
 *      reinstate again (it compares afresh).
 * The caller then runs it as the new primary's standby (`redoship reinstate` does, unless --no-serve).
 *
 * Limitation, said in the output: commits that the old primary made but never archived (it was killed before
 * capture read them) are in the file only; they are overwritten without being listed.
 */
import Database from 'better-sqlite3';
import { closeSync, fstatSync, fsyncSync, ftruncateSync, openSync, readSync, realpathSync, writeSync } from 'node:fs';
import { resolve } from 'node:path';
import { RedoshipError, ioError } from '../error/index.js';
import { Archive, acquirePidLock, compareHistories, historyFromJson, removeFence, type Lsn } from '../redo/index.js';
import { DB_HEADER_BYTES, PAGE_HASH_ALGORITHM, PAGE_HASH_BYTES, pageHash, parseDbHeader } from '../sqlite/index.js';
import { Applier } from '../standby/index.js';
import { controlRequest, type TlsClientOptions } from '../transport/index.js';

export interface ReinstateOptions {
  /** The old primary's database and archive. */
  readonly db: string;
  readonly archive: string;
  /** The new primary (ws:// or wss://). */
  readonly from: string;
  readonly secret: Buffer;
  readonly tls?: TlsClientOptions;
  /** Progress, one line per step (and one per discarded transaction, up to 50). */
  readonly onStep?: (message: string) => void;
}

export interface ReinstateResult {
  readonly from: string;
  /** Where the two lines parted: our records after it were set aside. */
  readonly forkLsn: string;
  /** The new primary's LSN the file now holds. */
  readonly lsn: string;
  readonly discarded: ReadonlyArray<{ readonly lsn: string; readonly commitTime: string; readonly kind: string }>;
  readonly discardedKeptIn: string | null;
  readonly pagesCopied: number;
  readonly pagesCompared: number;
  readonly databasePages: number;
  readonly ms: number;
}

export async function reinstate(o: ReinstateOptions): Promise<ReinstateResult> {
  const say = (m: string) => o.onStep?.(m);
  const tls = o.tls;
  const secret = o.secret;
  const t0 = performance.now();
  const db = resolve(o.db);
  const archive = Archive.open(o.archive);
  const desc = (await controlRequest({ url: o.from, secret, ...(tls ? { tls } : {}), op: 'describe' })) as Record<string, unknown>;
  if (desc.role !== 'primary') throw new RedoshipError('ROLE', `${o.from} is a ${String(desc.role)}, not a primary`, 'give --from the URL of the new primary');
  if (desc.databaseId !== archive.identity.databaseId)
    throw new RedoshipError('WRONG_DATABASE', `${o.from} serves database ${String(desc.databaseId)}; ${archive.dir} belongs to ${archive.identity.databaseId}`, 'give --from the primary that took over this database');
  const theirs = historyFromJson(desc.history, `the history of ${o.from}`);

  const dbLock = acquirePidLock(`${db}-redoship.lock`, `the database ${db}`);
  const writer = archive.openWriter({ segmentBytes: 64 * 1024 * 1024, segmentAgeMs: 60_000 });
  let report: ReinstateResult;
  try {
    const rel = compareHistories(writer.history, theirs);
    if (rel.relation === 'ahead' || rel.relation === 'diverged')
      throw new RedoshipError('DIVERGED', `${o.from} follows a line of history that ${archive.dir} does not lead to (${rel.relation} after LSN ${rel.forkLsn})`, 'reinstate follows a primary whose line forked from this one; seed a new standby into an empty directory instead');
    const forkLsn = rel.relation === 'behind' ? rel.forkLsn : writer.lastLsn;
    // First what can be refused (applications still on the file): SQLite checkpoints the WAL into the file
    // and leaves WAL mode, which changes no page's content; nothing else has been touched yet.
    toRollbackMode(db);

    // 2. Set aside what the new primary's line never had.
    const { setAside } = writer.rewindTo(forkLsn as Lsn, theirs, `discarded by reinstate: the new primary ${o.from} forked after LSN ${forkLsn}`);
    if (setAside.records.length > 0) {
      say(`${setAside.records.length} transactions after LSN ${forkLsn} never reached the new primary; they are discarded and kept in ${setAside.dir}:`);
      for (const r of setAside.records.slice(0, 50)) say(`  LSN ${r.lsn}  committed ${new Date(Number(r.commitTimeUs / 1000n)).toISOString()}  (${r.kind})`);
      if (setAside.records.length > 50) say(`  ... and ${setAside.records.length - 50} more (see records.json there)`);
    } else say(`no archived transaction after the fork point (LSN ${forkLsn}) to discard`);

    // 3. Our page hashes.
    const fd = openSync(db, 'r+');
    let copied = 0;
    let sizePages = 0;
    let done: Record<string, unknown>;
    try {
      const head = Buffer.alloc(DB_HEADER_BYTES);
      readSync(fd, head, 0, DB_HEADER_BYTES, 0);
      const h = parseDbHeader(head);
      if (!h) throw new RedoshipError('NOT_A_DATABASE', `${db} is not a SQLite database`, 'check --db');
      if (h.pageSize !== archive.identity.pageSize) throw new RedoshipError('WRONG_DATABASE', `${db} has pages of ${h.pageSize} bytes; its archive ${h.pageSize}`, 'check --db and --archive');
      const ourPages = Math.floor(fstatSync(fd).size / h.pageSize);
      const hashes = Buffer.alloc(ourPages * PAGE_HASH_BYTES);
      const page = Buffer.alloc(h.pageSize);
      for (let p = 1; p <= ourPages; p++) {
        readSync(fd, page, 0, h.pageSize, (p - 1) * h.pageSize);
        pageHash(p, page).copy(hashes, (p - 1) * PAGE_HASH_BYTES);
      }
      say(`comparing ${ourPages} pages with ${o.from}`);
      done = (await controlRequest({
        url: o.from,
        secret,
        ...(tls ? { tls } : {}),
        op: 'rewind',
        args: { hashes: hashes.toString('base64'), hashAlgorithm: PAGE_HASH_ALGORITHM },
        timeoutMs: 10 * 60_000,
        onPartial: (body) => {
          for (const [pgno, b64] of (body as { pages: Array<[number, string]> }).pages) {
            const img = Buffer.from(b64, 'base64');
            if (img.length !== h.pageSize || !Number.isInteger(pgno) || pgno < 1) throw new RedoshipError('PEER_REFUSED', `${o.from} sent a bad page`, 'run reinstate again');
            if (pgno === 1) img[18] = img[19] = 1; // rollback-journal mode, as a standby file must be
            writeSync(fd, img, 0, img.length, (pgno - 1) * h.pageSize);
            copied++;
          }
        },
      })) as Record<string, unknown>;
      sizePages = Number(done.sizePages);
      // 4. The new primary's size, then durable.
      ftruncateSync(fd, sizePages * h.pageSize);
      fsyncSync(fd);
      report = {
        from: o.from,
        forkLsn: String(forkLsn),
        lsn: String(done.lsn),
        discarded: setAside.records.map((r) => ({ lsn: String(r.lsn), commitTime: new Date(Number(r.commitTimeUs / 1000n)).toISOString(), kind: String(r.kind) })),
        discardedKeptIn: setAside.dir,
        pagesCopied: copied,
        pagesCompared: ourPages,
        databasePages: sizePages,
        ms: Math.round(performance.now() - t0),
      };
    } catch (e) {
      throw e instanceof RedoshipError ? e : ioError('rewrite', db, e);
    } finally {
      closeSync(fd);
    }
    Applier.adopt(db, archive, BigInt(String(done.lsn)) as Lsn, BigInt(String(done.commitTimeUs)));
    removeFence(archive.dir);
  } finally {
    writer.close({ seal: true });
    dbLock.release();
  }
  return report;
}

/** SQLite checkpoints the WAL into the file and leaves WAL mode; it needs to be alone on the file. */
function toRollbackMode(db: string): void {
  realpathSync(db);
  const c = new Database(db, { fileMustExist: true, timeout: 5_000 });
  try {
    const mode = String(c.pragma('journal_mode = DELETE', { simple: true })).toLowerCase();
    if (mode !== 'delete') throw new RedoshipError('JOURNAL_MODE', `${db} stays in ${mode} mode`, 'close every application connection to it, then run reinstate again');
  } catch (e) {
    if (e instanceof RedoshipError) throw e;
    throw new RedoshipError('DATABASE_BUSY', `${db} is in use (${(e as Error).message})`, 'close every application connection to the old primary, then run reinstate again', { cause: e });
  } finally {
    c.close();
  }
}
