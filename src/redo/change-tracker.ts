/*
 * CHANGE TRACKING, kept by capture (DESIGN.md Backups: a level 1 finds the pages changed since its parent
 * "from the change tracking kept by capture, never by scanning"; RMAN's block change tracking file plays this
 * part). An Archive holds one; its ArchiveWriter notes each record once it is durable: its LSN and the page
 * numbers it wrote, or "every page" for a base. A level 1 taken in the process that captures (a primary
 * serves every backup request of its database) then reads no redo to find its pages: Archive.pagesWritten
 * answers from here whenever the range is covered, and reads the segments' page lists otherwise.
 *
 * Invariants: (1) the LSNs held are consecutive, firstLsn..lastLsn, each exactly as durable in the archive:
 * a note that does not follow lastLsn starts over at that LSN (records appended by other paths are never
 * guessed at); (2) anything that removes records from the archive (a fork, a rewind) calls clear(); (3) at
 * most MAX_TRACKED_PAGES page numbers are held: the oldest records are dropped first, so a range that
 * reaches back before firstLsn is simply not covered.
 */
import type { Lsn } from './types.js';

/** 4 Mi page numbers (16 MiB): the changes behind a level 1 of 16 GiB of 4 KiB pages. */
export const MAX_TRACKED_PAGES = 4 * 1024 * 1024;

/** The pages one record wrote: their numbers, or every page up to sizePages (a base). */
type Changes = Uint32Array | { readonly all: number };

export class ChangeTracker {
  private firstLsn = 0n;
  /** changes[i] belongs to LSN firstLsn + i. */
  private changes: Changes[] = [];
  private head = 0;
  private pages = 0;

  constructor(private readonly maxPages = MAX_TRACKED_PAGES) {}

  /** The range held, or null when nothing is. */
  get range(): { readonly firstLsn: bigint; readonly lastLsn: bigint } | null {
    const n = this.changes.length - this.head;
    return n === 0 ? null : { firstLsn: this.firstLsn, lastLsn: this.firstLsn + BigInt(n - 1) };
  }

  /** A durable record: the pages it wrote (ascending or not), or 'all' pages 1..sizePages (a base). */
  note(lsn: Lsn, pgnos: Iterable<number> | 'all', sizePages: number): void {
    const r = this.range;
    if (!r || lsn !== r.lastLsn + 1n) {
      this.clear();
      this.firstLsn = lsn;
    }
    // From an array (what the archive's writer passes), the constructor copies without the iterator protocol.
    const c: Changes = pgnos === 'all' ? { all: sizePages } : Array.isArray(pgnos) ? new Uint32Array(pgnos as number[]) : Uint32Array.from(pgnos);
    this.changes.push(c);
    this.pages += weight(c);
    while (this.pages > this.maxPages && this.changes.length - this.head > 1) {
      this.pages -= weight(this.changes[this.head]!);
      this.changes[this.head++] = EMPTY;
      this.firstLsn++;
    }
    // Drop the dead front now and then, not on every note.
    if (this.head > 4096 && this.head * 2 > this.changes.length) {
      this.changes = this.changes.slice(this.head);
      this.head = 0;
    }
  }

  clear(): void {
    this.changes = [];
    this.head = 0;
    this.pages = 0;
    this.firstLsn = 0n;
  }

  covers(fromLsn: bigint, toLsn: bigint): boolean {
    const r = this.range;
    return r !== null && fromLsn >= r.firstLsn && toLsn <= r.lastLsn && fromLsn <= toLsn;
  }

  /** The pages written by the records in [fromLsn, toLsn], which must be covered. */
  pagesWritten(fromLsn: bigint, toLsn: bigint): Set<number> {
    if (!this.covers(fromLsn, toLsn)) throw new Error(`assert: change tracking holds ${JSON.stringify(this.range, (_, v: unknown) => (typeof v === 'bigint' ? String(v) : v))}, not ${fromLsn}..${toLsn}`);
    const out = new Set<number>();
    const from = this.head + Number(fromLsn - this.firstLsn);
    const to = this.head + Number(toLsn - this.firstLsn);
    for (let i = from; i <= to; i++) {
      const c = this.changes[i]!;
      if (c instanceof Uint32Array) for (const p of c) out.add(p);
      else for (let p = 1; p <= c.all; p++) out.add(p);
    }
    return out;
  }
}

const EMPTY = new Uint32Array(0);
const weight = (c: Changes): number => (c instanceof Uint32Array ? c.length : 1);
