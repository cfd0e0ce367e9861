/**
 * The primary's service: attaches to a live database, starts capture, wakes it on WAL activity or a short
 * timer, runs checkpoint cycles, seals segments by age, publishes a status file, and stops cleanly.
 *
 * Waking up (DESIGN.md Capture 8): fs.watch on the -wal file wakes capture early, but it misses events, so
 * correctness never depends on it: a timer wakes capture every pollMs as well, and every wake-up reads up to
 * the wal-index mxFrame.
 */
import { watch, writeFileSync, renameSync, type FSWatcher } from 'node:fs';
import { join, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import { realpathSync } from 'node:fs';
import { RedoshipError, isRedoshipError } from '../error/index.js';
import { Archive, acquirePidLock, currentIncarnation, readFence, removeConfirmed, writeFence, type ArchiveWriter, type PidLock } from '../redo/index.js';
import { startMetricsServer, type Metric } from '../log/index.js';
import { RecentRedo, RedoServer, archiveSource, checkListenable, type StandbyInfo, type TlsServerOptions } from '../transport/index.js';
import { Capturer, DEFAULT_CAPTURE_OPTIONS, captureError, type CaptureEvent, type CaptureOptions, type CaptureStats } from './capture.js';
import { LiveDatabase } from './live-db.js';
import { takeSnapshot } from './snapshot.js';
import type { Lsn } from '../redo/index.js';

export interface PrimaryOptions extends Partial<CaptureOptions> {
  /** The live database. */
  readonly db: string;
  /** The archive directory (created on first start). */
  readonly archive: string;
  /** Seal the open segment at this size. Default 64 MiB. */
  readonly segmentBytes?: number;
  /** Seal the open segment when its first record is this old. Default 60 s. */
  readonly segmentAgeMs?: number;
  /** Timer wake-up interval. Default 2 ms. */
  readonly pollMs?: number;
  /** Accept an archive created for a database at another path (after moving the database). Default false. */
  readonly adopt?: boolean;
  readonly onEvent?: (e: CaptureEvent) => void;
  /** Serve redo to standbys on this address (DESIGN.md Transport). Needs secret. */
  readonly listen?: { host: string; port: number; tls?: TlsServerOptions };
  /** The shared secret standbys prove (HMAC challenge; never sent). */
  readonly secret?: Uint8Array;
  /** Serve Prometheus metrics on this address. */
  readonly metrics?: { host: string; port: number };
  /** Called with each archive segment once sealed (remote archiving copies it). */
  readonly onSealed?: (path: string) => void;
}

export interface PrimaryStatus {
  readonly pid: number;
  readonly db: string;
  readonly archive: string;
  readonly startedAt: string;
  readonly updatedAt: string;
  readonly lastLsn: string;
  readonly walBytes: number;
  readonly stats: CaptureStats;
  readonly sqliteVersion: string;
  readonly listen: string | null;
  readonly standbys: StandbyInfo[];
  /** The archive's current incarnation (1 until a promotion). */
  readonly incarnation: number;
}

export const STATUS_FILE = 'primary.status.json';

export interface PrimaryHandle {
  readonly capturer: Capturer;
  readonly archive: Archive;
  readonly writer: ArchiveWriter;
  status(): PrimaryStatus;
  /** Captures what is committed, seals, releases the locks. */
  stop(): Promise<void>;
  /** Resolves when the service stops by itself with an error. */
  readonly failed: Promise<Error>;
  /** The redo server, when listening. */
  readonly server: RedoServer | null;
  /**
   * Synchronous commit for applications that embed redoship: captures what is committed now and resolves
   * once at least n standbys hold it durably (rejects after timeoutMs). Returns the LSN waited for.
   */
  waitForStandbys(n: number, timeoutMs?: number): Promise<bigint>;
  readonly metricsPort: number | null;
  /**
   * A consistent snapshot for a backup: every page of the database at an LSN that is durable in the archive,
   * pinned on its own connection (capture goes on meanwhile). Call release() when done.
   */
  backupSnapshot(): BackupSnapshot;
  /**
   * Switchover, step 1: takes the application's write lock (applications see SQLITE_BUSY and retry) and
   * captures everything committed. The lock is released by thaw(), by demote(), or after autoThawMs (so a
   * switchover that dies half-way cannot leave the primary frozen).
   */
  freeze(autoThawMs: number): { lastLsn: bigint; commitTimeUs: bigint };
  thaw(): void;
  /**
   * Switchover, last step on the old primary (after the target promoted): stops serving and capturing,
   * fences the archive (a restart refuses to run as primary), and turns the file into a rollback-journal
   * database equal to the archive's last LSN, ready to be kept as a standby. Waits for the application to
   * close its connections (see LiveDatabase.convertToRollbackMode).
   */
  demote(newPrimary: string, onWait: (ms: number) => void): Promise<{ lsn: bigint; commitTimeUs: bigint }>;
}

export interface BackupSnapshot {
  readonly lsn: Lsn;
  readonly commitTimeUs: bigint;
  readonly sizePages: number;
  readonly pageSize: number;
  /** Pages 1..sizePages; a buffer may be reused after the next page is asked for: copy what you keep. */
  pages(): Generator<readonly [number, Uint8Array]>;
  /** The image of some pages (ascending), from the same snapshot; only those pages are read. */
  pagesAt(pgnos: readonly number[]): Generator<readonly [number, Uint8Array]>;
  /** Pages first..first+count-1 into `into` (count * pageSize bytes), from the same snapshot. */
  readPages(first: number, count: number, into: Buffer): void;
  release(): void;
}

export async function startPrimary(o: PrimaryOptions): Promise<PrimaryHandle> {
  const opts: CaptureOptions = {
    checkpointFrames: o.checkpointFrames ?? DEFAULT_CAPTURE_OPTIONS.checkpointFrames,
    checkpointLockTimeoutMs: o.checkpointLockTimeoutMs ?? DEFAULT_CAPTURE_OPTIONS.checkpointLockTimeoutMs,
    snapshotLockTimeoutMs: o.snapshotLockTimeoutMs ?? DEFAULT_CAPTURE_OPTIONS.snapshotLockTimeoutMs,
    maxBatchBytes: o.maxBatchBytes ?? DEFAULT_CAPTURE_OPTIONS.maxBatchBytes,
  };
  const listeners = new Set<() => void>();
  /** The records just archived, so that standbys close behind are served from memory (when listening). */
  let recent: RecentRedo | null = null;
  /**
   * Last LSN written to the archive, durable or not yet: standbys are sent records once they are written, and
   * told separately when they are durable (the writer's lastLsn), so that their syncs overlap the primary's
   * (transport/protocol.ts, confirmation).
   */
  let writtenLsn = 0n;
  // eslint-disable-next-line prefer-const -- set once the server exists
  let server: RedoServer | null = null;
  const emit = (e: CaptureEvent) => {
    if (e.type === 'written') {
      recent?.push(e.records);
      writtenLsn = e.records[e.records.length - 1]!.lsn;
      for (const l of listeners) l();
      return;
    }
    if (e.type === 'unwritten') {
      // Sent but never made durable: the ring forgets them, and standbys sent them reconnect and set them aside.
      writtenLsn = e.lastLsn;
      recent?.clear();
      server?.dropUnconfirmed();
      return;
    }
    if (e.type === 'archived') {
      if (e.records.length === 0) recent?.push(e.records); // a base or resync: the ring cannot serve past it
      for (const l of listeners) l(); // pumps, and confirms what was sent written
    }
    o.onEvent?.(e);
  };
  if (o.listen && !o.secret)
    throw new RedoshipError('USAGE', 'serving redo needs a shared secret', 'give --token-file with --listen');
  const dbPath = resolve(o.db);
  const live = new LiveDatabase(dbPath); // checks the file before anything is created
  if (o.listen) await checkListenable(o.listen.host, o.listen.port, '--listen');
  const realDb = realpathSync(dbPath);
  // The lock names the archive, so that tools given only the database (repair) find it.
  const dbLock: PidLock = acquirePidLock(`${dbPath}-redoship.lock`, `the database ${dbPath}`, resolve(o.archive));
  let writer: ArchiveWriter | undefined;
  try {
    // Every check that can refuse the start comes before anything is created or changed.
    let archive: Archive | null = null;
    if (Archive.exists(o.archive)) {
      archive = Archive.open(o.archive);
      const fence = readFence(archive.dir);
      if (fence)
        throw new RedoshipError(
          'FENCED',
          `${realDb} is no longer a primary: ${fence.why}${fence.at ? ` (${fence.at})` : ''}`,
          `make it a standby of the new primary with \`redoship reinstate --db ${o.db} --archive ${o.archive} --from ${fence.newPrimary ?? 'ws://NEW-PRIMARY:PORT'} --token-file FILE\``,
        );
      // A promoted standby's archive was created for the old primary's path; its incarnation names this one.
      const promotedDb = currentIncarnation(archive.history()).db;
      if (archive.identity.databasePath !== realDb && promotedDb !== realDb && !o.adopt)
        throw new RedoshipError(
          'WRONG_DATABASE',
          `the archive ${archive.dir} belongs to the database ${archive.identity.databasePath}, not ${realDb}`,
          'give each database its own archive directory; if the database was moved, start with --adopt',
        );
      if (archive.identity.pageSize !== live.pageSize)
        throw new RedoshipError(
          'WRONG_DATABASE',
          `the archive ${archive.dir} holds pages of ${archive.identity.pageSize} bytes; ${realDb} has ${live.pageSize}`,
          'give this database its own, empty archive directory',
        );
    }
    live.connect();
    live.ensureWalMode();
    archive ??= Archive.create(o.archive, { databaseId: randomBytes(16).toString('hex'), pageSize: live.pageSize, databasePath: realDb });
    live.start();
    writer = archive.openWriter({
      segmentBytes: o.segmentBytes ?? 64 * 1024 * 1024,
      segmentAgeMs: o.segmentAgeMs ?? 60_000,
      incarnation: 1,
      ...(o.onSealed ? { onSealed: o.onSealed } : {}),
    });
    if (writer.recovered) emit({ type: 'warning', message: writer.recovered });
    removeConfirmed(archive.dir); // a standby's, before a promotion: its records are this primary's own now
    const capturer = new Capturer(live, writer, opts, emit);
    capturer.start();
    const w = writer;
    server = o.listen
      ? await RedoServer.start(
          archiveSource({
            archive,
            incarnation: 1,
            history: () => w.history,
            lastLsn: () => (writtenLsn > w.lastLsn ? writtenLsn : w.lastLsn),
            confirmedLsn: () => w.lastLsn,
            subscribe: (fn) => (listeners.add(fn), () => listeners.delete(fn)),
            recent: (recent = new RecentRedo(archive.identity.pageSize)),
          }),
          {
            host: o.listen.host,
            port: o.listen.port,
            secret: o.secret!,
            ...(o.listen.tls ? { tls: o.listen.tls } : {}),
            onEvent: (e) => emit(e),
            // Proved superseded by a standby of a newer incarnation: fence durably, so a restart refuses too.
            onFenced: (why) => {
              try {
                writeFence(archive!.dir, { why, at: new Date().toISOString(), newPrimary: null });
              } catch (e) {
                emit({ type: 'warning', message: (e as Error).message });
              }
              server?.fence(why);
              emit({ type: 'warning', message: `FENCED: ${why}; this primary no longer ships redo. Make it a standby with \`redoship reinstate\`.` });
            },
          },
        )
      : null;
    // Records captured from here on are framed in the ring's arena, and handed back to it as the ring drops them.
    if (recent) writer.framedAlloc = recent.alloc;
    return await run(o, live, archive, writer, capturer, dbLock, emit, server);
  } catch (e) {
    writer?.close({ seal: false });
    live.release();
    dbLock.release();
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && code.startsWith('SQLITE_BUSY'))
      throw new RedoshipError('DATABASE_BUSY', `${dbPath} stayed locked while redoship was starting (${code})`, 'an application holds an exclusive lock (locking_mode=EXCLUSIVE, or a long RESTART/TRUNCATE checkpoint); try again', { cause: e });
    throw e;
  }
}

async function run(
  o: PrimaryOptions,
  live: LiveDatabase,
  archive: Archive,
  writer: ArchiveWriter,
  capturer: Capturer,
  dbLock: PidLock,
  emit: (e: CaptureEvent) => void,
  server: RedoServer | null,
): Promise<PrimaryHandle> {
  const startedAt = new Date().toISOString();
  const sqliteVersion = live.sqliteVersion;
  let stopped = false;
  let scheduled = false;
  let backoffUntil = 0;
  let failWith!: (e: Error) => void;
  const failed = new Promise<Error>((r) => (failWith = r));

  const status = (): PrimaryStatus => ({
    pid: process.pid,
    db: live.path,
    archive: archive.dir,
    startedAt,
    updatedAt: new Date().toISOString(),
    lastLsn: String(capturer.lastLsn),
    walBytes: live.walBytes(),
    // The lag as of now (the stats are only updated when capture runs).
    stats: { ...capturer.stats, lastMxFrame: capturer.stats.capturedFrame + capturer.lagFrames() },
    sqliteVersion,
    listen: server ? `${server.address.host}:${server.address.port}` : null,
    standbys: server?.standbys() ?? [],
    incarnation: currentIncarnation(writer.history).incarnation,
  });
  const metrics = o.metrics ? await startMetricsServer(o.metrics.host, o.metrics.port, () => primaryMetrics(status())) : null;
  const writeStatus = () => {
    const p = join(archive.dir, STATUS_FILE);
    try {
      writeFileSync(`${p}.tmp`, JSON.stringify(status(), null, 2));
      renameSync(`${p}.tmp`, p);
    } catch {
      /* status is informational; the archive itself reports full disks */
    }
  };

  let frozen: { timer: NodeJS.Timeout } | null = null;
  const thaw = () => {
    if (!frozen) return;
    clearTimeout(frozen.timer);
    frozen = null;
    live.releaseWriteLock();
    emit({ type: 'info', message: 'thawed: accepting writes again' });
  };
  const step = () => {
    scheduled = false;
    if (stopped || Date.now() < backoffUntil) return;
    try {
      // A bounded amount per turn of the event loop: the redo server, acks and timers run in between.
      capturer.poll(true, 4);
      if (!frozen) capturer.maybeCheckpoint();
      writer.sealIfOld();
      if (!capturer.caughtUp()) wake();
    } catch (e) {
      if (captureError(e)) {
        emit({ type: 'warning', message: `${e.message}; recording a break and resynchronising` });
        try {
          capturer.resync(e.message);
        } catch (e2) {
          emit({ type: 'warning', message: `resync failed: ${(e2 as Error).message}; retrying in 1 s` });
          backoffUntil = Date.now() + 1000;
        }
      } else if (isRedoshipError(e) && e.code === 'IO') {
        // Keep the read transaction (nothing in the WAL can be lost while we hold it) and retry.
        emit({ type: 'warning', message: `${e.message}: ${e.hint}; retrying in 1 s` });
        backoffUntil = Date.now() + 1000;
      } else {
        stopped = true;
        failWith(e as Error);
      }
    }
  };
  const wake = () => {
    if (!scheduled && !stopped) {
      scheduled = true;
      setImmediate(step);
    }
  };
  let watcher: FSWatcher | null = null;
  try {
    watcher = watch(`${live.path}-wal`, { persistent: false }, wake);
    watcher.on('error', () => {});
  } catch {
    /* the timer alone wakes capture */
  }
  const timer = setInterval(wake, o.pollMs ?? 2);
  const statusTimer = setInterval(writeStatus, 1000);
  writeStatus();
  wake();

  return {
    capturer,
    archive,
    writer,
    status,
    failed,
    server,
    metricsPort: metrics?.port ?? null,
    backupSnapshot(): BackupSnapshot {
      if (stopped) throw new RedoshipError('USAGE', 'the primary is stopping', 'try again');
      let lsn = capturer.lastLsn;
      const snap = takeSnapshot(live, DEFAULT_CAPTURE_OPTIONS.snapshotLockTimeoutMs, {
        pin: 'backup',
        underLock: (pos) => {
          // No commit can happen now: capture everything up to the snapshot, so its LSN is in the archive.
          capturer.poll(false);
          if (!capturer.isAt(pos))
            throw new RedoshipError('DATABASE_BUSY', 'the WAL is being restarted right now', 'run the backup again');
          lsn = capturer.lastLsn;
          return capturer.hasVerified(pos);
        },
      });
      return {
        lsn,
        commitTimeUs: writer.tail?.commitTimeUs ?? 0n,
        sizePages: snap.sizePages,
        pageSize: live.pageSize,
        pages: () => snap.pages(),
        pagesAt: (pgnos) => snap.pagesAt(pgnos),
        readPages: (first, count, into) => snap.readPages(first, count, into),
        release: () => live.unpin(),
      };
    },
    freeze(autoThawMs: number) {
      if (stopped) throw new RedoshipError('ROLE', 'the primary is stopping', 'try again');
      if (frozen) throw new RedoshipError('ROLE', 'the primary is already frozen for a switchover', 'wait for that switchover to end (or for its timeout)');
      if (!live.tryWriteLock(5_000))
        throw new RedoshipError('DATABASE_BUSY', `could not take the write lock of ${live.path} within 5 s`, 'an application transaction held it; try the switchover again');
      try {
        capturer.poll(false);
      } catch (e) {
        live.releaseWriteLock();
        throw e;
      }
      const timer = setTimeout(() => {
        emit({ type: 'warning', message: `switchover did not finish within ${autoThawMs} ms: accepting writes again` });
        thaw();
      }, autoThawMs);
      frozen = { timer };
      emit({ type: 'info', message: `frozen for a switchover at LSN ${capturer.lastLsn}: applications wait (SQLITE_BUSY)` });
      return { lastLsn: capturer.lastLsn, commitTimeUs: writer.tail?.commitTimeUs ?? 0n };
    },
    thaw,
    async demote(newPrimary: string, onWait: (ms: number) => void) {
      if (!frozen) throw new RedoshipError('ROLE', 'demotion needs a frozen primary', 'this is a bug in the switchover; please report it');
      clearTimeout(frozen.timer);
      stopped = true;
      clearInterval(timer);
      clearInterval(statusTimer);
      watcher?.close();
      const lsn = capturer.lastLsn;
      const commitTimeUs = writer.tail?.commitTimeUs ?? 0n;
      const why = `switched over to ${newPrimary} at LSN ${lsn}`;
      // Not fence(): connected standbys just lose the link, reconnect, and find this process serving them
      // onward as a standby of the new primary. Restarts are refused by the fence file below.
      await server?.close();
      await metrics?.close();
      try {
        writeFence(archive.dir, { why: `this database was demoted: ${why}`, at: new Date().toISOString(), newPrimary });
        writer.close({ seal: true });
        await live.convertToRollbackMode(onWait, 10 * 60_000);
      } finally {
        live.release();
        dbLock.release();
      }
      return { lsn, commitTimeUs };
    },
    async waitForStandbys(n: number, timeoutMs = 10_000) {
      if (!server) throw new RedoshipError('USAGE', 'waitForStandbys needs a primary that serves redo', 'start the primary with listen and secret');
      capturer.poll();
      const lsn = capturer.lastLsn;
      await server.waitForDurable(lsn, n, timeoutMs);
      return lsn;
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      if (frozen) {
        clearTimeout(frozen.timer);
        frozen = null;
        live.releaseWriteLock();
      }
      await server?.close();
      await metrics?.close();
      clearInterval(timer);
      clearInterval(statusTimer);
      watcher?.close();
      try {
        capturer.drain();
        writer.close({ seal: true });
        writeStatus();
      } finally {
        live.release();
        dbLock.release();
      }
    },
  };
}

function primaryMetrics(s: PrimaryStatus): Metric[] {
  const g = (name: string, help: string, value: number, type: 'gauge' | 'counter' = 'gauge'): Metric => ({ name, help, type, samples: [{ value }] });
  const per = (name: string, help: string, f: (x: StandbyInfo) => number): Metric => ({
    name,
    help,
    type: 'gauge',
    samples: s.standbys.map((x) => ({ labels: { standby: x.name, remote: x.remote }, value: f(x) })),
  });
  return [
    g('redoship_primary_last_lsn', 'Last LSN durable in the primary archive', Number(s.lastLsn)),
    g('redoship_incarnation', 'The incarnation this primary serves (one more at each promotion)', s.incarnation),
    g('redoship_primary_wal_bytes', 'Size of the live -wal file', s.walBytes),
    g('redoship_primary_wal_frames', 'Frames published in the live WAL (mxFrame)', s.stats.lastMxFrame),
    g('redoship_primary_capture_lag_frames', 'Published WAL frames not yet archived', Math.max(0, s.stats.lastMxFrame - s.stats.capturedFrame)),
    g('redoship_primary_transactions_total', 'Transactions captured since start', s.stats.transactions, 'counter'),
    g('redoship_primary_checkpoints_total', 'Checkpoint cycles run since start', s.stats.checkpoints, 'counter'),
    g('redoship_primary_checkpoints_busy_total', 'Checkpoint cycles that found the write lock busy', s.stats.checkpointsBusy, 'counter'),
    g('redoship_primary_standbys', 'Standbys connected', s.standbys.length),
    per('redoship_standby_durable_lsn', 'LSN the standby holds durably', (x) => Number(x.durableLsn)),
    per('redoship_standby_applied_lsn', 'LSN the standby has applied', (x) => Number(x.appliedLsn)),
    per('redoship_standby_lag_records', 'Primary last LSN minus the standby durable LSN', (x) => Number(x.lagRecords)),
  ];
}
