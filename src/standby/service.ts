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
import { Archive, ArchiveRecordReader, splitFramedParts, type ArchiveWriter, type Lsn, type RedoRecord } from '../redo/index.js';
import { RedoClient, RedoServer, archiveSource, type TlsClientOptions, type TlsServerOptions, type Welcome } from '../transport/index.js';
import { Applier } from './applier.js';
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

export async function startStandby(o: StandbyOptions): Promise<StandbyHandle> {
  const dir = resolve(o.archive);
  const db = o.db ? resolve(o.db) : null;
  const delayUs = BigInt(Math.round((o.delayMs ?? 0) * 1000));
  const emit = o.onEvent ?? (() => {});
  const writerOpts = { segmentBytes: o.segmentBytes ?? 64 * 1024 * 1024, segmentAgeMs: o.segmentAgeMs ?? 60_000, incarnation: 1 };
  let archive: Archive | null = Archive.exists(dir) ? Archive.open(dir) : null;
  let writer: ArchiveWriter | null = archive ? archive.openWriter(writerOpts) : null;
  let applier: Applier | null = null;
  if (db && archive) applier = Applier.open(db, archive);
  let next: { lsn: Lsn; part: number } = { lsn: ((writer?.lastLsn ?? 0n) + 1n) as Lsn, part: 0 };
  const listeners = new Set<() => void>();
  let failWith!: (e: Error) => void;
  const failed = new Promise<Error>((r) => (failWith = r));
  let stopped = false;
  let control: StandbyControl = archive ? readControl(dir) : readControl(dir);
  let nextApply: RedoRecord | null = null;
  let reader: ArchiveRecordReader | null = null;
  let applyTimer: NodeJS.Timeout | null = null;
  let server: RedoServer | null = null;

  const onWelcome = (w: Welcome) => {
    if (!archive) {
      archive = Archive.create(dir, { databaseId: w.databaseId, pageSize: w.pageSize, databasePath: w.databasePath });
      writer = archive.openWriter(writerOpts);
      emit({ type: 'info', message: `created the standby archive ${dir} for database ${w.databaseId}` });
    }
    writer!.dropIncomplete();
    // Nothing whole held yet (a first base cut short): start again wherever the primary starts now.
    if (writer!.lastLsn === 0n) writer!.discardEmptyOpen();
    if (writer!.lastLsn !== 0n && w.startLsn !== writer!.lastLsn + 1n)
      throw new RedoshipError('ARCHIVE_GAP', `the primary starts at LSN ${w.startLsn}; this archive ends at ${writer!.lastLsn}`, 'seed this standby again (empty archive directory)');
    next = { lsn: w.startLsn as Lsn, part: 0 };
  };

  const onRedo = (buf: Uint8Array): bigint => {
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
    if (lastComplete) o.onProgress?.({ type: 'durable', lastLsn: writer!.lastLsn, atUs: nowUs() });
    // A couple of milliseconds lets one apply batch (six syncs) cover several received messages.
    scheduleApply(2);
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
      incarnation: 1,
      lastLsn: writer?.lastLsn ?? 0n,
      lastCommitTimeUs: writer?.tail?.commitTimeUs ?? 0n,
    }),
    onWelcome,
    onRedo,
    applied: () => applier?.appliedLsn ?? 0n,
    onEvent: emit,
    onFatal: (e) => {
      stopped = true;
      failWith(e);
    },
  });

  /** Applies what is eligible; reschedules itself for the next record's due time. */
  let retryAtMs = 0;
  const applyStep = () => {
    applyTimer = null;
    if (stopped || !db || !archive || !writer || Date.now() < retryAtMs) return;
    try {
      control = readControl(dir);
      if (!applier) {
        const base = writer.lastLsn > 0n ? archive.latestBaseAtOrBefore(writer.lastLsn) : null;
        if (base === null) return;
        const t = archive.commitTimeOf(base);
        if (t === null) return;
        if (t + delayUs > nowUs() && control.untilLsn === null) return scheduleApply(Number((t + delayUs - nowUs()) / 1000n) + 1);
        applier = Applier.seed(db, archive, base);
        emit({ type: 'info', message: `seeded ${db} from the base at LSN ${base}` });
      }
      if (control.paused) return;
      if (!reader) reader = new ArchiveRecordReader(archive, (applier.appliedLsn + 1n) as Lsn);
      const batch: RedoRecord[] = [];
      let pages = 0;
      let waitMs = -1;
      const max = o.maxBatchRecords ?? 10_000;
      for (;;) {
        const r = reader.peek();
        nextApply = r;
        if (!r) break;
        const forced = (control.untilLsn !== null && r.lsn <= control.untilLsn) || (control.untilTimeUs !== null && r.commitTimeUs <= control.untilTimeUs);
        const pastUntil = (control.untilLsn !== null && r.lsn > control.untilLsn) || (control.untilTimeUs !== null && r.commitTimeUs > control.untilTimeUs);
        if (pastUntil) break;
        if (!forced && r.commitTimeUs + delayUs > nowUs()) {
          waitMs = Number((r.commitTimeUs + delayUs - nowUs()) / 1000n) + 1;
          break;
        }
        batch.push(reader.take()!);
        pages += r.pages.length;
        if (batch.length >= max || pages >= 50_000) {
          waitMs = 0;
          break;
        }
      }
      if (batch.length > 0) {
        applier.apply(batch);
        o.onProgress?.({ type: 'applied', lastLsn: applier.appliedLsn, atUs: nowUs() });
        if (TRACE) emit({ type: 'info', message: `trace: applied LSN ${batch[0]!.lsn}..${batch[batch.length - 1]!.lsn} in ${applier.lastBatchMs.toFixed(1)} ms (${applier.lastBatchPages} pages); next due in ${waitMs} ms` });
        nextApply = reader.peek();
        for (const l of listeners) l();
      }
      if (waitMs >= 0) scheduleApply(Math.max(0, waitMs));
    } catch (e) {
      reader = null;
      if (e instanceof RedoshipError && (e.code === 'WRONG_DATABASE' || e.code === 'TARGET_EXISTS' || e.code === 'NOT_A_DATABASE')) {
        stopped = true;
        failWith(e);
        return;
      }
      emit({ type: 'warning', message: `apply failed: ${(e as Error).message}; retrying in 1 s` });
      retryAtMs = Date.now() + 1000;
      scheduleApply(1000);
    }
  };
  let applyDueMs = 0;
  /** Wakes the applier in ms, unless a wake-up is already due sooner. */
  const scheduleApply = (ms: number) => {
    if (stopped) return;
    const due = Date.now() + ms;
    if (applyTimer) {
      if (applyDueMs <= due) return;
      clearTimeout(applyTimer);
    }
    applyDueMs = due;
    applyTimer = setTimeout(applyStep, ms);
  };
  // Control changes (pause, resume, apply --until) and delays that pass are seen by this tick too.
  const controlTimer = setInterval(() => scheduleApply(0), 200);

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
  const sealTimer = setInterval(() => writer?.sealIfOld(), 1000);

  if (o.listen) {
    // Cascade: serve this archive onward. It needs the archive's identity, known once seeded.
    const startServer = async () => {
      if (server || !archive || !writer) return;
      const w = writer;
      server = await RedoServer.start(
        archiveSource({ archive, incarnation: 1, lastLsn: () => w.lastLsn, subscribe: (fn) => (listeners.add(fn), () => listeners.delete(fn)) }),
        { host: o.listen!.host, port: o.listen!.port, secret: o.secret, ...(o.listen!.tls ? { tls: o.listen!.tls } : {}), onEvent: emit },
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
  scheduleApply(0);
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
      if (applyTimer) clearTimeout(applyTimer);
      await server?.close();
      writeStatus();
      writer?.close({ seal: true });
    },
  };
}
