/**
 * The apply loop, in its own thread: the applier's syncs (six per batch, DESIGN.md Apply) never delay
 * receiving, archiving and acknowledging redo on the standby's event loop. apply-thread.ts starts it and is
 * its only peer; they talk by the messages below, and shared words: the durable LSN (durable in the standby
 * archive and confirmed by the primary: transport/protocol.ts, confirmation), which the receiver stores as it
 * moves and the loop reads when a batch starts (a durable message wakes the loop at
 * most once per coalesceMs, not once per received batch: at 1,000 commits/s that was 1,000 wake-ups a second).
 *
 *   to the loop:    durable { lsn }   records up to lsn are durable in the standby archive and confirmed: they may be applied
 *                   poke              look again now (control file changed, a delay may have passed)
 *                   stop              finish the batch under way, apply nothing more, answer stopped
 *   from the loop:  opened  { state } the applier opened the database (state null: not seeded yet)
 *                   applied { state, firstLsn, atUs }   one batch committed (atUs: our clock, after COMMIT)
 *                   next    { lsn, commitTimeUs }       the next record waiting to be applied, or nulls
 *                   event   { type, message }
 *                   fatal   { code, message, hint }     the loop stopped for good (another writer, not a standby db)
 *                   stopped
 *
 * Invariants kept from the single-threaded design: (1) a record is applied only once the receiver said it is
 * durable in the standby archive and confirmed by the primary (never what is merely written, nor what the
 * primary may yet lose), and only after the archive reader verified
 * it; (2) one batch at a time, each one atomic behind its rollback journal (applier.ts); (3) a stop between
 * batches leaves no hot journal. The database and its raw fd belong to this thread alone.
 */
import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import { RedoshipError } from '../error/index.js';
import { Archive, ArchiveRecordReader, type Lsn, type ReadRecord, type RedoRecord } from '../redo/index.js';
import { Applier } from './applier.js';
import { readControl, type StandbyControl } from './control.js';

export interface ApplyLoopOptions {
  readonly db: string;
  readonly archiveDir: string;
  /** A record is applied once now >= its commit time + delayUs (unless apply --until forces it). */
  readonly delayUs: bigint;
  /** Most records in one batch. */
  readonly maxBatchRecords: number;
  /** Least time between the starts of two batches: one batch then covers what arrived meanwhile. */
  readonly coalesceMs: number;
  /**
   * Two BigInt64 words: the LSN durable in the standby archive, newer than the last durable message (or
   * absent); then a count the receiver raises when it sets records aside (ApplyThread.setAside): the loop then
   * reads the archive afresh. The receiver raises the count before it stores a durable LSN past the records
   * set aside, and the loop reads the LSN first: whenever it sees such an LSN, it sees the count too.
   */
  readonly durableWord?: SharedArrayBuffer;
  readonly trace: boolean;
}

/** What the standby's status shows of the applier (the fields of Applier it reads). */
export interface AppliedState {
  readonly appliedLsn: bigint;
  readonly appliedCommitTimeUs: bigint;
  readonly batches: number;
  readonly pagesWritten: number;
  readonly lastBatchMs: number;
  readonly maxBatchMs: number;
  readonly lastBatchPages: number;
}

export type ToApplyLoop = { readonly t: 'durable'; readonly lsn: bigint } | { readonly t: 'poke' } | { readonly t: 'stop' };
export type FromApplyLoop =
  | { readonly t: 'opened'; readonly state: AppliedState | null }
  | { readonly t: 'applied'; readonly state: AppliedState; readonly firstLsn: bigint; readonly atUs: bigint }
  | { readonly t: 'next'; readonly lsn: bigint | null; readonly commitTimeUs: bigint | null }
  | { readonly t: 'event'; readonly type: 'info' | 'warning'; readonly message: string }
  | { readonly t: 'fatal'; readonly code: string; readonly message: string; readonly hint: string }
  | { readonly t: 'stopped' };

/** Errors that retrying cannot cure: the loop stops and the standby fails with them. */
const FATAL_CODES = new Set(['WRONG_DATABASE', 'TARGET_EXISTS', 'NOT_A_DATABASE']);
/** Control changes (pause, resume, apply --until) and delays that pass are seen within this. */
const CONTROL_TICK_MS = 200;

const nowUs = () => BigInt(Math.round((performance.timeOrigin + performance.now()) * 1000));

function stateOf(a: Applier): AppliedState {
  return {
    appliedLsn: a.appliedLsn,
    appliedCommitTimeUs: a.appliedCommitTimeUs,
    batches: a.batches,
    pagesWritten: a.pagesWritten,
    lastBatchMs: a.lastBatchMs,
    maxBatchMs: a.maxBatchMs,
    lastBatchPages: a.lastBatchPages,
  };
}

export class ApplyLoop {
  private applier: Applier | null = null;
  private archive: Archive | null = null;
  private reader: ArchiveRecordReader | null = null;
  /** Last LSN the receiver said is durable. */
  private durable = 0n;
  /** The set-aside count of durableWord that reader was made under. */
  private setAsides = 0n;
  private timer: NodeJS.Timeout | null = null;
  private dueMs = 0;
  private lastStartMs = 0;
  private retryAtMs = 0;
  private stopped = false;
  private lastNext: bigint | null | undefined = undefined;
  private readonly tick: NodeJS.Timeout;

  constructor(
    private readonly o: ApplyLoopOptions,
    private readonly post: (m: FromApplyLoop) => void,
  ) {
    this.tick = setInterval(() => this.schedule(0), CONTROL_TICK_MS);
  }

  /** Opens the standby database when it exists; posts opened, or fatal. */
  open(): void {
    try {
      if (Archive.exists(this.o.archiveDir)) {
        this.archive = Archive.open(this.o.archiveDir);
        this.applier = Applier.open(this.o.db, this.archive);
      }
      this.post({ t: 'opened', state: this.applier ? stateOf(this.applier) : null });
      this.schedule(0);
    } catch (e) {
      this.fail(e);
    }
  }

  onMessage(m: ToApplyLoop): void {
    if (m.t === 'durable') {
      if (m.lsn > this.durable) this.durable = m.lsn;
      this.schedule(0);
    } else if (m.t === 'poke') this.schedule(0);
    else this.stop();
  }

  private stop(): void {
    this.stopped = true;
    clearInterval(this.tick);
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.post({ t: 'stopped' });
  }

  private fail(e: unknown): void {
    this.stopped = true;
    clearInterval(this.tick);
    if (this.timer) clearTimeout(this.timer);
    const re = e instanceof RedoshipError ? e : null;
    this.post({
      t: 'fatal',
      code: re?.code ?? 'INTERNAL',
      message: re ? re.message : `internal error in the applier: ${(e as Error)?.stack ?? String(e)}`,
      hint: re?.hint ?? 'report this as a bug',
    });
  }

  /** Wakes the loop in ms (never sooner than coalesceMs after the last batch began), unless due sooner. */
  private schedule(ms: number): void {
    if (this.stopped) return;
    const due = Math.max(Date.now() + ms, this.lastStartMs + this.o.coalesceMs);
    if (this.timer) {
      if (this.dueMs <= due) return;
      clearTimeout(this.timer);
    }
    this.dueMs = due;
    this.timer = setTimeout(() => this.step(), Math.max(0, due - Date.now()));
  }

  private setNext(r: RedoRecord | null): void {
    const lsn = r ? r.lsn : null;
    if (lsn === this.lastNext) return;
    this.lastNext = lsn;
    this.post({ t: 'next', lsn, commitTimeUs: r ? r.commitTimeUs : null });
  }

  /** Applies what is eligible (durable, past its delay or forced by --until) as one batch; reschedules. */
  private step(): void {
    this.timer = null;
    if (this.stopped || Date.now() < this.retryAtMs) return;
    if (this.o.durableWord) {
      const words = new BigInt64Array(this.o.durableWord);
      const now = Atomics.load(words, 0);
      if (now > this.durable) this.durable = now;
      const setAsides = Atomics.load(words, 1);
      if (setAsides !== this.setAsides) {
        this.setAsides = setAsides;
        this.reader = null; // it may hold a record read ahead that was set aside
      }
    }
    try {
      if (!this.archive) {
        if (!Archive.exists(this.o.archiveDir)) return;
        this.archive = Archive.open(this.o.archiveDir);
      }
      const archive = this.archive;
      const control: StandbyControl = readControl(this.o.archiveDir);
      const delayUs = this.o.delayUs;
      if (!this.applier) {
        const base = this.durable > 0n ? archive.latestBaseAtOrBefore(this.durable as Lsn) : null;
        if (base === null) return;
        const t = archive.commitTimeOf(base);
        if (t === null) return;
        if (t + delayUs > nowUs() && control.untilLsn === null) return this.schedule(Number((t + delayUs - nowUs()) / 1000n) + 1);
        this.applier = Applier.seed(this.o.db, archive, base);
        this.post({ t: 'event', type: 'info', message: `seeded ${this.o.db} from the base at LSN ${base}` });
        this.post({ t: 'opened', state: stateOf(this.applier) });
      }
      const applier = this.applier;
      if (control.paused) return;
      this.reader ??= new ArchiveRecordReader(archive, (applier.appliedLsn + 1n) as Lsn);
      const batch: RedoRecord[] = [];
      let streamed: ReadRecord | null = null;
      let pages = 0;
      let waitMs = -1;
      for (;;) {
        const r = this.reader.peek();
        if (!r || r.lsn > this.durable) {
          this.setNext(r);
          break;
        }
        const forced = (control.untilLsn !== null && r.lsn <= control.untilLsn) || (control.untilTimeUs !== null && r.commitTimeUs <= control.untilTimeUs);
        const pastUntil = (control.untilLsn !== null && r.lsn > control.untilLsn) || (control.untilTimeUs !== null && r.commitTimeUs > control.untilTimeUs);
        if (pastUntil || (!forced && r.commitTimeUs + delayUs > nowUs())) {
          this.setNext(r);
          if (!pastUntil) waitMs = Number((r.commitTimeUs + delayUs - nowUs()) / 1000n) + 1;
          break;
        }
        if (r.streamed) {
          // Too large to hold (a base, a large resync): a batch of its own, its pages read from the archive.
          if (batch.length === 0) streamed = this.reader.take()!;
          waitMs = 0;
          break;
        }
        batch.push(this.reader.take()!);
        pages += r.pages.length;
        if (batch.length >= this.o.maxBatchRecords || pages >= 50_000) {
          waitMs = 0;
          break;
        }
      }
      if (streamed) {
        const r = streamed;
        this.lastStartMs = Date.now();
        applier.applyStreamed(r, () => archive.partsInRange(r.lsn, r.lsn));
        this.post({ t: 'applied', state: stateOf(applier), firstLsn: r.lsn, atUs: nowUs() });
        this.setNext(this.reader.peek());
      } else if (batch.length > 0) {
        this.lastStartMs = Date.now();
        applier.apply(batch);
        this.post({ t: 'applied', state: stateOf(applier), firstLsn: batch[0]!.lsn, atUs: nowUs() });
        if (this.o.trace)
          this.post({ t: 'event', type: 'info', message: `trace: applied LSN ${batch[0]!.lsn}..${batch[batch.length - 1]!.lsn} in ${applier.lastBatchMs.toFixed(1)} ms (${applier.lastBatchPages} pages); next due in ${waitMs} ms` });
        const r = this.reader.peek();
        this.setNext(r);
        // More is durable already: go on (after coalesceMs).
        if (r && r.lsn <= this.durable && waitMs < 0) waitMs = 0;
      }
      if (waitMs >= 0) this.schedule(Math.max(0, waitMs));
    } catch (e) {
      this.reader = null;
      if (e instanceof RedoshipError && FATAL_CODES.has(e.code)) return this.fail(e);
      this.post({ t: 'event', type: 'warning', message: `apply failed: ${(e as Error).message}; retrying in 1 s` });
      this.retryAtMs = Date.now() + 1000;
      this.schedule(1000);
    }
  }
}

/** The worker's entry: one ApplyLoop driven by the parent's messages. */
if (!isMainThread && parentPort && (workerData as { kind?: string } | null)?.kind === 'redoship-apply') {
  const port = parentPort;
  const loop = new ApplyLoop((workerData as { options: ApplyLoopOptions }).options, (m) => port.postMessage(m));
  port.on('message', (m: ToApplyLoop) => loop.onMessage(m));
  loop.open();
}
