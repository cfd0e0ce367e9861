/**
 * The standby's side of the apply thread (apply-worker.ts runs the loop): starts it, tells it what is
 * durable, mirrors what it reports, and stops it between batches. Receiving and acknowledging redo stay on
 * the standby's event loop and never wait for a batch.
 *
 * When the compiled worker file is not there (the sources run directly, as under a test runner), the loop
 * runs on this thread instead, with the same messages.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { RedoshipError, isRedoshipError, type ErrorCode } from '../error/index.js';
import { ApplyLoop, type AppliedState, type ApplyLoopOptions, type FromApplyLoop, type ToApplyLoop } from './apply-worker.js';

export type { AppliedState, ApplyLoopOptions };

export interface ApplyThreadHandlers {
  /** After every batch; atUs is the loop's clock right after the batch committed. */
  readonly onApplied: (state: AppliedState, atUs: bigint) => void;
  /** The database was seeded from a base (state: applied up to that base). */
  readonly onSeeded: (state: AppliedState) => void;
  readonly onNext: (next: { lsn: bigint; commitTimeUs: bigint } | null) => void;
  readonly onEvent: (e: { type: 'info' | 'warning'; message: string }) => void;
  /** The loop stopped for good; the standby fails with this error. */
  readonly onFatal: (e: Error) => void;
}

const WORKER_URL = new URL('./apply-worker.js', import.meta.url);

export class ApplyThread {
  /** What the applier has applied; null until the database is opened or seeded. */
  state: AppliedState | null = null;
  private worker: Worker | null = null;
  private inline: ApplyLoop | null = null;
  private sentDurable = -1n;
  /**
   * Shared with the loop (apply-worker.ts): the durable LSN, stored on every call of durable(), then the
   * number of times the receiver set records aside (setAside()).
   */
  private readonly durableWord = new SharedArrayBuffer(16);
  private lastDurableMessageMs = 0;
  private durableTimer: NodeJS.Timeout | null = null;
  private coalesceMs = 0;
  private done = false;
  private stoppedResolve: (() => void) | null = null;
  private readonly stopped = new Promise<void>((r) => (this.stoppedResolve = r));

  private constructor(private readonly h: ApplyThreadHandlers) {}

  /** Starts the loop and resolves once it has opened the database (rejects with its error if it cannot). */
  static async start(o: ApplyLoopOptions, h: ApplyThreadHandlers): Promise<ApplyThread> {
    const t = new ApplyThread(h);
    t.coalesceMs = o.coalesceMs;
    o = { ...o, durableWord: t.durableWord };
    let opened!: () => void;
    let refused!: (e: Error) => void;
    const ready = new Promise<void>((res, rej) => ((opened = res), (refused = rej)));
    let isOpen = false;
    const onMessage = (m: FromApplyLoop) => {
      switch (m.t) {
        case 'opened':
          t.state = m.state;
          if (!isOpen) ((isOpen = true), opened());
          else if (m.state) h.onSeeded(m.state);
          return;
        case 'applied':
          t.state = m.state;
          return h.onApplied(m.state, m.atUs);
        case 'next':
          return h.onNext(m.lsn === null || m.commitTimeUs === null ? null : { lsn: m.lsn, commitTimeUs: m.commitTimeUs });
        case 'event':
          return h.onEvent({ type: m.type, message: m.message });
        case 'fatal': {
          const e = new RedoshipError(m.code as ErrorCode, m.message, m.hint);
          t.finish();
          if (!isOpen) return refused(e);
          return h.onFatal(e);
        }
        case 'stopped':
          return t.finish();
      }
    };
    if (existsSync(fileURLToPath(WORKER_URL))) {
      const w = new Worker(WORKER_URL, { workerData: { kind: 'redoship-apply', options: o } });
      t.worker = w;
      w.on('message', onMessage);
      w.on('error', (e) => {
        const err = isRedoshipError(e) ? e : new Error(`internal error in the apply thread: ${e.stack ?? e.message}`);
        t.finish();
        if (!isOpen) refused(err);
        else h.onFatal(err);
      });
      w.on('exit', (code) => {
        if (t.done) return;
        t.finish();
        const err = new Error(`the apply thread exited (code ${code})`);
        if (!isOpen) refused(err);
        else h.onFatal(err);
      });
    } else {
      // Each message is delivered on a later turn, as from a worker.
      t.inline = new ApplyLoop(o, (m) => setImmediate(() => onMessage(m)));
      t.inline.open();
    }
    await ready;
    return t;
  }

  private finish(): void {
    if (this.done) return;
    this.done = true;
    if (this.durableTimer) clearTimeout(this.durableTimer);
    this.stoppedResolve?.();
  }

  private send(m: ToApplyLoop): void {
    if (this.done) return;
    if (this.worker) this.worker.postMessage(m);
    else this.inline!.onMessage(m);
  }

  /**
   * Records up to lsn are durable in the standby archive. Stored in the shared word at once; the loop is woken
   * by a message at most once per coalesceMs (it starts no batch sooner), the last one carrying the latest.
   */
  durable(lsn: bigint): void {
    if (lsn <= this.sentDurable) return;
    this.sentDurable = lsn;
    Atomics.store(new BigInt64Array(this.durableWord), 0, lsn);
    if (this.durableTimer) return;
    const wait = this.lastDurableMessageMs + this.coalesceMs - Date.now();
    const wakeLoop = () => {
      this.durableTimer = null;
      this.lastDurableMessageMs = Date.now();
      this.send({ t: 'durable', lsn: this.sentDurable });
    };
    if (wait <= 0) wakeLoop();
    else {
      this.durableTimer = setTimeout(wakeLoop, wait);
      this.durableTimer.unref();
    }
  }

  /**
   * The receiver set aside records after the applied LSN (unconfirmed ones its primary lost): the loop must
   * forget anything it read ahead, since those LSNs come again with other contents. Call before durable()
   * names any of the new ones.
   */
  setAside(): void {
    Atomics.add(new BigInt64Array(this.durableWord), 1, 1n);
    this.poke();
  }

  /** Look again now (the control file changed). */
  poke(): void {
    this.send({ t: 'poke' });
  }

  /** Stops after the batch under way (never in the middle of one). */
  async stop(): Promise<void> {
    this.send({ t: 'stop' });
    await this.stopped;
    if (this.worker) {
      this.done = true;
      await this.worker.terminate();
    }
  }
}
