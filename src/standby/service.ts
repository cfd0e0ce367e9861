/**
 * The standby: a receiver that makes redo durable in its own archive before acknowledging it, an applier
 * that keeps a readable copy of the database behind the primary by a delay, and optionally a redo server
 * for standbys cascading from this one.
 *
 * Receiving never waits for applying: a paused or delayed standby keeps receiving and archiving, so the
 * DR site always holds a complete archive (`redoship restore --archive` works from it alone).
 */
import { join, resolve } from 'node:path';
import { renameSync, writeFileSync } from 'node:fs';
import { RedoshipError } from '../error/index.js';
import { Archive, CONFIRMED_WRITE_MS, FIRST_INCARNATION, currentIncarnation, readConfirmed, splitFramedParts, writeConfirmed, writeConfirmedAsync, type ArchiveWriter, type Lsn, type RedoRecord } from '../redo/index.js';
import { RedoClient, RedoServer, archiveSource, type TlsClientOptions, type TlsServerOptions, type Welcome } from '../transport/index.js';
import { ApplyThread, type AppliedState } from './apply-thread.js';
import { readControl, type StandbyControl } from './control.js';

export interface StandbyOptions {
  /** The standby database to keep; omit for an archive-only destination. */
  readonly db?: string;
  readonly archive: string;
  /** ws:// or wss:// URL of the primary (or of a cascading standby). */
  readonly from: string;
  readonly secret: Uint8Array;
  readonly name?: string;
  /** Apply a record once now >= its commit time + delayMs. Default 0. */
  readonly delayMs?: number;
  /** Least time between the starts of two apply batches. Default DEFAULT_APPLY_INTERVAL_MS. */
  readonly applyIntervalMs?: number;
  readonly tls?: TlsClientOptions;
  /** Serve redo onward (cascade) on this address. */
  readonly listen?: { host: string; port: number; tls?: TlsServerOptions };
  readonly segmentBytes?: number;
  readonly segmentAgeMs?: number;
  /** Most records applied in one batch. Default 10,000. */
  readonly maxBatchRecords?: number;
  readonly onEvent?: (e: { type: 'info' | 'warning'; message: string }) => void;
  /** Called when records become durable in the standby archive (and after each applied batch). */
  readonly onProgress?: (e: { type: 'durable' | 'applied'; lastLsn: bigint; atUs: bigint }) => void;
}

export const STANDBY_STATUS_FILE = 'standby.status.json';

export interface StandbyStatus {
  readonly pid: number;
  readonly role: 'standby';
  readonly db: string | null;
  readonly archive: string;
  readonly from: string;
  readonly connected: boolean;
  readonly lastError: string | null;
  readonly receivedLsn: string;
  /** Last received LSN the primary confirmed durable: what may be applied and served onward. */
  readonly confirmedLsn: string;
  readonly appliedLsn: string | null;
  readonly appliedCommitTime: string | null;
  readonly primaryLastLsn: string;
  readonly delayMs: number;
  readonly paused: boolean;
  readonly untilLsn: string | null;
  readonly untilTime: string | null;
  readonly nextApplyLsn: string | null;
  readonly nextApplyAt: string | null;
  /** Records received but not applied. */
  readonly applyLagRecords: string | null;
  /** Now minus the commit time of the last applied record (includes the delay). */
  readonly applyLagMs: number | null;
  /** Primary LSN minus received LSN. */
  readonly receiveLagRecords: string;
  /** Primary clock minus ours, as seen in the last message (includes one-way network delay). */
  readonly clockSkewMs: number;
  readonly updatedAt: string;
  readonly apply: { batches: number; pages: number; lastBatchMs: number; maxBatchMs: number; lastBatchPages: number } | null;
  readonly standbys?: ReturnType<RedoServer['standbys']>;
}

export interface StandbyHandle {
  status(): StandbyStatus;
  readonly server: RedoServer | null;
  readonly failed: Promise<Error>;
  stop(): Promise<void>;
}

const nowUs = () => BigInt(Math.round((performance.timeOrigin + performance.now()) * 1000));
/** REDOSHIP_TRACE=1 logs every receive and apply batch with its timing (for diagnosing lag). */
const TRACE = process.env.REDOSHIP_TRACE === '1';
/**
 * Least time between the starts of two apply batches, by default. A batch costs six syncs whatever its size;
 * they share the disk with the receiver's, which are on the durable path, and its CPU shares the machine
 * with receiving. At 1,000 commits/s on the 2-core machine of bench/README.md, commit -> durable on the
 * standby p50 was 3.3 ms with batches 20 ms apart, 2.0 ms with 100 ms, 1.8 ms with 250 ms (an archive-only
 * standby: 1.4-2.0 ms in the same runs), while commit -> applied grew from 24 to 71 to 158 ms. 100 ms shows a
 * commit to readers within a blink and takes most of the cost off receiving; --apply-interval changes it.
 */
export const DEFAULT_APPLY_INTERVAL_MS = 100;

export async function startStandby(o: StandbyOptions): Promise<StandbyHandle> {
  const dir = resolve(o.archive);
  const db = o.db ? resolve(o.db) : null;
  const delayUs = BigInt(Math.round((o.delayMs ?? 0) * 1000));
  const emit = o.onEvent ?? (() => {});
  /**
   * Last LSN held that the primary confirmed durable (redo/confirmed.ts): apply, cascade and sealing stop
   * there. Records past it are durable here and acknowledged, but the primary may yet lose them
   * (transport/protocol.ts, confirmation). Set from confirmed.json below.
   */
  let confirmed = 0n;
  let confirmedWritten = 0n;
  const writerOpts = { segmentBytes: o.segmentBytes ?? 64 * 1024 * 1024, segmentAgeMs: o.segmentAgeMs ?? 60_000, incarnation: 1, sealableThrough: () => confirmed };
  let archive: Archive | null = Archive.exists(dir) ? Archive.open(dir) : null;
  let writer: ArchiveWriter | null = archive ? archive.openWriter(writerOpts) : null;
  /** What the apply thread last reported (null: no database, or not opened or seeded yet). */
  let applier: AppliedState | null = null;
  let next: { lsn: Lsn; part: number } = { lsn: ((writer?.lastLsn ?? 0n) + 1n) as Lsn, part: 0 };
  const listeners = new Set<() => void>();
  let failWith!: (e: Error) => void;
  const failed = new Promise<Error>((r) => (failWith = r));
  let stopped = false;
  let control: StandbyControl = archive ? readControl(dir) : readControl(dir);
  let nextApply: { readonly lsn: bigint; readonly commitTimeUs: bigint } | null = null;
  let server: RedoServer | null = null;

  // The applier runs in its own thread: its syncs never delay receiving and acknowledging.
  let applyThread: ApplyThread | null = null;
  try {
    const onFile = archive ? readConfirmed(dir) : null;
    if (db)
      applyThread = await ApplyThread.start(
        { db, archiveDir: dir, delayUs, maxBatchRecords: o.maxBatchRecords ?? 10_000, coalesceMs: o.applyIntervalMs ?? DEFAULT_APPLY_INTERVAL_MS, trace: TRACE },
        {
          onApplied: (state, atUs) => {
            applier = state;
            o.onProgress?.({ type: 'applied', lastLsn: state.appliedLsn, atUs });
            for (const l of listeners) l();
          },
          onSeeded: (state) => (applier = state),
          onNext: (n) => (nextApply = n),
          onEvent: emit,
          onFatal: (e) => {
            stopped = true;
            client.stop();
            failWith(e);
          },
        },
      );
    if (writer) {
      // What was applied was confirmed when it was (the file, synced every CONFIRMED_WRITE_MS, may be older);
      // an archive without the file predates confirmation, or was a primary's: all of it is confirmed.
      let c = onFile ?? writer.lastLsn;
      const appliedNow = applyThread?.state?.appliedLsn ?? 0n;
      if (c < appliedNow) c = appliedNow;
      if (c > writer.lastLsn) c = writer.lastLsn; // set aside since (reinstate)
      confirmed = confirmedWritten = c;
      // Written now whatever it was: records received from here on must not count as confirmed after a crash.
      if (onFile !== c) writeConfirmed(dir, c);
    }
  } catch (e) {
    await applyThread?.stop().catch(() => undefined);
    writer?.close({ seal: false });
    throw e;
  }
  applier = applyThread?.state ?? null;
  if (applyThread && writer) applyThread.durable(confirmed);

  /** The primary confirmed everything up to primaryConfirmed durable: what of it this standby holds may be applied. */
  const confirm = (primaryConfirmed: bigint) => {
    const held = writer?.lastLsn ?? 0n;
    const c = primaryConfirmed < held ? primaryConfirmed : held;
    if (c <= confirmed) return;
    confirmed = c;
    applyThread?.durable(c);
    if (server) for (const l of listeners) l();
    // A seal by size waits for confirmation (sealableThrough); it may come now.
    if (c === held) writer?.sealIfOld();
  };
  /** The write of confirmed.json under way (one at a time: a later one must not be renamed over by an earlier). */
  let savingConfirmed: Promise<void> | null = null;
  const saveConfirmedSoon = () => {
    if (savingConfirmed || confirmed === confirmedWritten || !archive) return;
    const c = confirmed;
    savingConfirmed = writeConfirmedAsync(dir, c)
      .then(
        () => void (confirmedWritten = c),
        (e: unknown) => emit({ type: 'warning', message: `cannot record the confirmed LSN: ${(e as Error).message}` }),
      )
      .finally(() => (savingConfirmed = null));
  };

  const onWelcome = (w: Welcome) => {
    if (!archive) {
      archive = Archive.create(dir, { databaseId: w.databaseId, pageSize: w.pageSize, databasePath: w.databasePath });
      writeConfirmed(dir, 0n);
      writer = archive.openWriter(writerOpts);
      emit({ type: 'info', message: `created the standby archive ${dir} for database ${w.databaseId}` });
    }
    // Fencing: refuses (FENCED / DIVERGED, fatal) a primary superseded by a fork this archive has seen, or
    // one whose line this archive left; otherwise follows the primary's line, recording any fork it made.
    writer!.adoptHistory(w.history, o.from);
    writer!.dropIncomplete();
    // Nothing whole held yet (a first base cut short): start again wherever the primary starts now.
    if (writer!.lastLsn === 0n) writer!.discardEmptyOpen();
    const held = writer!.lastLsn;
    if (held !== 0n && w.startLsn <= held) {
      // The primary lost records it sent before making them durable (protocol.ts, confirmation): set them
      // aside, never having applied or served them, and follow the primary from its last confirmed one.
      const at = w.startLsn - 1n;
      const applied = applier?.appliedLsn ?? 0n;
      if (at < confirmed || applied > at)
        throw new RedoshipError(
          'DIVERGED',
          `${o.from} continues this standby after LSN ${at}, but this standby holds LSN ${at + 1n}..${held}, ${applied > at ? `applied up to ${applied}` : `confirmed durable by its primary up to ${confirmed}`}`,
          'the primary lost redo it had confirmed (restored from an older copy?): seed this standby again into an empty directory, or promote it if the primary is the copy to give up',
        );
      const setAside = writer!.setAsideUnconfirmed(at as Lsn, `never confirmed durable by ${o.from}, which no longer holds them`);
      applyThread?.setAside();
      emit({ type: 'warning', message: `set aside LSN ${at + 1n}..${held}: ${o.from} never confirmed them durable and no longer holds them (kept in ${setAside.dir})` });
    }
    const heldNow = writer!.lastLsn;
    if (writer!.lastLsn !== 0n && w.startLsn !== writer!.lastLsn + 1n)
      throw new RedoshipError('ARCHIVE_GAP', `the primary starts at LSN ${w.startLsn}; this archive ends at ${writer!.lastLsn}`, 'seed this standby again (empty archive directory)');
    next = { lsn: w.startLsn as Lsn, part: 0 };
    confirm(w.lastLsn);
    return heldNow;
  };

  const onRedo = (buf: Uint8Array, primaryConfirmed: bigint): bigint => {
    const a = archive!;
    const parts = splitFramedParts(buf, a.identity.pageSize, next);
    if (typeof parts === 'string')
      throw new RedoshipError('ARCHIVE_CORRUPT', `damaged redo from ${o.from} in a message starting at LSN ${next.lsn}: ${parts}`, 'the link or the primary corrupted a message; the standby reconnects and asks again');
    let lastComplete: RedoRecord | null = null;
    for (const { part } of parts) if (part.last) lastComplete = { ...part, pages: [] };
    writer!.appendRaw(
      parts.map(({ part, raw }) => ({ lsn: part.lsn, part: part.part, last: part.last, raw })),
      lastComplete,
    );
    const lastPart = parts[parts.length - 1];
    if (lastPart) next = lastPart.part.last ? { lsn: (lastPart.part.lsn + 1n) as Lsn, part: 0 } : { lsn: lastPart.part.lsn, part: lastPart.part.part + 1 };
    for (const l of listeners) l();
    if (lastComplete) {
      o.onProgress?.({ type: 'durable', lastLsn: writer!.lastLsn, atUs: nowUs() });
      confirm(primaryConfirmed);
    }
    if (TRACE) emit({ type: 'info', message: `trace: received ${parts.length} parts to LSN ${writer!.lastLsn} (${buf.length} bytes)` });
    return writer!.lastLsn;
  };

  const client = new RedoClient({
    url: o.from,
    secret: o.secret,
    name: o.name ?? `standby ${dir}`,
    ...(o.tls ? { tls: o.tls } : {}),
    held: () => ({
      databaseId: archive?.identity.databaseId ?? null,
      incarnation: currentIncarnation(writer?.history ?? [FIRST_INCARNATION]).incarnation,
      lastLsn: writer?.lastLsn ?? 0n,
      lastCommitTimeUs: writer?.tail?.commitTimeUs ?? 0n,
      confirmedLsn: confirmed,
      confirmedCommitTimeUs: (confirmed > 0n && archive?.commitTimeOf(confirmed as Lsn)) || 0n,
      history: writer?.history ?? [FIRST_INCARNATION],
    }),
    onWelcome,
    onRedo,
    onHeartbeat: (primaryConfirmed) => confirm(primaryConfirmed),
    applied: () => applier?.appliedLsn ?? 0n,
    onEvent: emit,
    onFatal: (e) => {
      stopped = true;
      failWith(e);
    },
  });

  // Pause, resume, apply --until: the apply thread reads the control file itself; status shows it from here.
  const controlTimer = setInterval(() => {
    try {
      control = readControl(dir);
    } catch {
      /* the apply thread reports a bad control file */
    }
  }, 200);

  const status = (): StandbyStatus => {
    const received = writer?.lastLsn ?? 0n;
    const applied = applier?.appliedLsn ?? null;
    const nextAt = nextApply ? new Date(Number((nextApply.commitTimeUs + delayUs) / 1000n)).toISOString() : null;
    return {
      pid: process.pid,
      role: 'standby',
      db,
      archive: dir,
      from: o.from,
      connected: client.connected,
      lastError: client.lastError,
      receivedLsn: String(received),
      confirmedLsn: String(confirmed),
      appliedLsn: applied === null ? null : String(applied),
      appliedCommitTime: applier ? new Date(Number(applier.appliedCommitTimeUs / 1000n)).toISOString() : null,
      primaryLastLsn: String(client.primaryLastLsn),
      delayMs: o.delayMs ?? 0,
      paused: control.paused,
      untilLsn: control.untilLsn === null ? null : String(control.untilLsn),
      untilTime: control.untilTimeUs === null ? null : new Date(Number(control.untilTimeUs / 1000n)).toISOString(),
      nextApplyLsn: nextApply ? String(nextApply.lsn) : null,
      nextApplyAt: nextAt,
      applyLagRecords: applied === null ? null : String(received > applied ? received - applied : 0n),
      applyLagMs: applier ? Math.max(0, Date.now() - Number(applier.appliedCommitTimeUs / 1000n)) : null,
      receiveLagRecords: String(client.primaryLastLsn > received ? client.primaryLastLsn - received : 0n),
      clockSkewMs: Number(client.clockSkewUs) / 1000,
      updatedAt: new Date().toISOString(),
      apply: applier
        ? { batches: applier.batches, pages: applier.pagesWritten, lastBatchMs: Math.round(applier.lastBatchMs * 10) / 10, maxBatchMs: Math.round(applier.maxBatchMs * 10) / 10, lastBatchPages: applier.lastBatchPages }
        : null,
      ...(server ? { standbys: server.standbys() } : {}),
    };
  };
  const writeStatus = () => {
    const p = join(dir, STANDBY_STATUS_FILE);
    try {
      writeFileSync(`${p}.tmp`, JSON.stringify(status(), null, 2));
      renameSync(`${p}.tmp`, p);
    } catch {
      /* the archive directory appears at the first welcome */
    }
  };
  const statusTimer = setInterval(writeStatus, 500);
  const confirmedTimer = setInterval(saveConfirmedSoon, CONFIRMED_WRITE_MS);
  const sealTimer = setInterval(() => writer?.sealIfOld(), 1000);

  if (o.listen) {
    // Cascade: serve this archive onward. It needs the archive's identity, known once seeded.
    const startServer = async () => {
      if (server || !archive || !writer) return;
      const w = writer;
      server = await RedoServer.start(
        // Onward only what the primary confirmed: a record it may yet lose must not reach further standbys.
        archiveSource({ archive, incarnation: 1, history: () => w.history, lastLsn: () => confirmed, heldLsn: () => w.lastLsn, subscribe: (fn) => (listeners.add(fn), () => listeners.delete(fn)) }),
        { host: o.listen!.host, port: o.listen!.port, secret: o.secret, cascade: true, ...(o.listen!.tls ? { tls: o.listen!.tls } : {}), onEvent: emit },
      );
      emit({ type: 'info', message: `serving redo onward on ${o.listen!.host}:${server.address.port}` });
    };
    if (archive) await startServer();
    else {
      const once = () => {
        listeners.delete(once);
        void startServer().catch((e) => failWith(e as Error));
      };
      listeners.add(once);
    }
  }

  client.start();
  writeStatus();

  return {
    status,
    get server() {
      return server;
    },
    failed,
    async stop() {
      stopped = true;
      client.stop();
      clearInterval(controlTimer);
      clearInterval(statusTimer);
      clearInterval(sealTimer);
      clearInterval(confirmedTimer);
      await applyThread?.stop();
      await server?.close();
      await savingConfirmed;
      if (archive && confirmed !== confirmedWritten) writeConfirmed(dir, confirmed);
      writeStatus();
      // Sealed only when the primary confirmed all of it (ArchiveWriterOptions.sealableThrough).
      if (writer && writer.lastLsn > confirmed)
        emit({ type: 'info', message: `the open archive segment stays open: LSN ${confirmed + 1n}..${writer.lastLsn} are not confirmed by the primary yet (promote and restore --archive use them as they are)` });
      writer?.close({ seal: !!writer && writer.lastLsn <= confirmed });
    },
  };
}
