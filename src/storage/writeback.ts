/**
 * Writeback started while a large file is still being written. Linux keeps written pages dirty in memory
 * until a threshold (10% of RAM here) or fsync, so a file written fast and synced at the end does all its
 * disk I/O in that last fsync, while the CPU waits. Starting an fdatasync every few tens of MiB (at most one
 * in flight, on libuv's pool) overlaps that I/O with the work that produces the next bytes; the final fsync
 * then has little left to do. It makes nothing durable that was not going to be, and does not replace the
 * final fsync.
 *
 * An error of a background sync is kept and thrown by settle(): on Linux a writeback error is reported once
 * per open file, so the final fsync might not see it again.
 */
import { fdatasync } from 'node:fs';

/** Bytes written between two background syncs. */
const EVERY_BYTES = 32 * 1024 * 1024;

export class Writeback {
  private pending: Promise<void> | null = null;
  private unsynced = 0;
  private error: unknown = null;

  /** sync: how to fdatasync the file (an fd, or e.g. a FileHandle's datasync). */
  constructor(private readonly sync: number | (() => Promise<void>)) {}

  /** n more bytes were written: starts a background sync when enough are unsynced and none is running. */
  wrote(n: number): void {
    this.unsynced += n;
    if (this.unsynced < EVERY_BYTES || this.pending) return;
    this.unsynced = 0;
    const s = this.sync;
    const p = typeof s === 'number' ? new Promise<void>((res, rej) => fdatasync(s, (e) => (e ? rej(e) : res()))) : s();
    this.pending = p.then(
      () => {
        this.pending = null;
      },
      (e: unknown) => {
        this.error ??= e;
        this.pending = null;
      },
    );
  }

  /** Waits for a background sync still running; throws the first error one had. Call before the file's last sync or its close. */
  async settle(): Promise<void> {
    while (this.pending) await this.pending;
    if (this.error) throw this.error;
  }
}
