/**
 * The redo just written to the archive, kept in memory so that a standby close behind is streamed without
 * reading the archive back (DESIGN.md Transport: "from memory when close, from the archive when behind").
 *
 * The writer of the archive pushes each batch of records once it is written, before its sync (protocol.ts,
 * confirmation), and clears the ring if that sync fails (the LSNs come again with other contents). The ring
 * holds consecutive LSNs only, at most maxBytes of their frames, dropping the oldest. It keeps a record's frames (the archive's
 * own format, segment-format.ts: the very buffers the archive writer wrote, framedRecord), not the record,
 * so the bytes on the wire are exactly the bytes in the archive. Whatever it cannot vouch for (a base, which is
 * streamed to the archive without passing through here; a gap) makes it forget everything: the archive
 * then serves until the next push.
 */
import { framedRecord, type RedoRecord } from '../redo/index.js';
import { SlabArena } from './slab-arena.js';

interface Entry {
  readonly lsn: bigint;
  readonly framed: Buffer[];
  readonly bytes: number;
}

export class RecentRedo {
  /** Consecutive LSNs, oldest first. */
  private entries: Entry[] = [];
  private bytes = 0;

  /**
   * Memory for framing the records this ring will keep: give it to the archive's writer (ArchiveWriter.
   * framedAlloc), and the buffers go back to the arena when the ring drops them (slab-arena.ts says why).
   * Nothing but the ring may hold them after push(): a record framed here and never pushed just stays
   * allocated until it is collected.
   */
  private readonly arena = new SlabArena();
  readonly alloc = this.arena.take;

  constructor(
    private readonly pageSize: number,
    private readonly maxBytes = 16 * 1024 * 1024,
  ) {}

  /** Oldest LSN held, or null when empty. */
  get firstLsn(): bigint | null {
    return this.entries.length > 0 ? this.entries[0]!.lsn : null;
  }

  /** Newest LSN held, or null when empty. */
  get lastLsn(): bigint | null {
    return this.entries.length > 0 ? this.entries[this.entries.length - 1]!.lsn : null;
  }

  /** Records written to the archive, in LSN order. An empty batch (a base) or a gap forgets everything. */
  push(records: readonly RedoRecord[]): void {
    if (records.length === 0) return this.clear();
    const last = this.lastLsn;
    if (last !== null && records[0]!.lsn !== last + 1n) this.clear();
    for (const r of records) {
      const framed = framedRecord(r, this.pageSize);
      const bytes = framed.reduce((n, b) => n + b.length, 0);
      this.entries.push({ lsn: r.lsn, framed, bytes });
      this.bytes += bytes;
    }
    // Dropped entries are released at once (with their pages and frames): the bound is on what is held.
    while (this.bytes > this.maxBytes && this.entries.length > 1) this.drop(this.entries.shift()!);
  }

  clear(): void {
    for (const e of this.entries) this.drop(e);
    this.entries = [];
    this.bytes = 0;
  }

  /** An entry leaves the ring: its frames go back to the arena (read() results are used before the next push). */
  private drop(e: Entry): void {
    this.bytes -= e.bytes;
    for (const b of e.framed) this.arena.give(b);
  }

  /**
   * The framed parts of the records from lsn on, about maxBytes (at least one record when there is one), and
   * how many records they make. No record when lsn is just past the newest held; null when the ring cannot
   * serve lsn (older than what it holds, or it holds nothing): read the archive instead.
   */
  read(lsn: bigint, maxBytes: number): { framed: Buffer[]; records: number } | null {
    const first = this.firstLsn;
    if (first === null || lsn < first || lsn > this.lastLsn! + 1n) return null;
    const framed: Buffer[] = [];
    let bytes = 0;
    let records = 0;
    for (let i = Number(lsn - first); i < this.entries.length && (records === 0 || bytes < maxBytes); i++) {
      for (const b of this.entries[i]!.framed) {
        framed.push(b);
        bytes += b.length;
      }
      records++;
    }
    return { framed, records };
  }
}

type Cursor = { read(maxBytes: number): ReadonlyArray<{ readonly raw: Uint8Array }>; readonly nextLsn: bigint; readonly atRecordStart: boolean };

/**
 * A cursor that streams from the ring while it holds the next LSN, and from the archive otherwise (a standby
 * that is behind, or a base). It changes source only between records.
 */
export class RecentOrArchiveCursor {
  private disk: Cursor | null = null;
  private lsn: bigint;

  constructor(
    private readonly recent: RecentRedo,
    private readonly openArchive: (fromLsn: bigint) => Cursor,
    /** Last LSN durable in the archive: the ring, when it says "nothing more", must agree. */
    private readonly lastLsn: () => bigint,
    fromLsn: bigint,
  ) {
    this.lsn = fromLsn;
  }

  get nextLsn(): bigint {
    return this.disk ? this.disk.nextLsn : this.lsn;
  }

  read(maxBytes: number): ReadonlyArray<{ readonly raw: Uint8Array }> {
    if (this.disk) {
      const at = this.disk.nextLsn;
      const first = this.recent.firstLsn;
      if (!this.disk.atRecordStart || first === null || at < first || at > this.recent.lastLsn! + 1n) return this.disk.read(maxBytes);
      this.lsn = at;
      this.disk = null;
    }
    const got = this.recent.read(this.lsn, maxBytes);
    if (got === null || (got.records === 0 && this.lsn <= this.lastLsn())) {
      this.disk = this.openArchive(this.lsn);
      return this.disk.read(maxBytes);
    }
    this.lsn += BigInt(got.records);
    return got.framed.map((raw) => ({ raw }));
  }
}
