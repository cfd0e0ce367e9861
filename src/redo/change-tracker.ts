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

/*
 * Storage: two rings of numbers, no object per record. A primary notes ~1,000 records a second and holds up to
 * MAX_TRACKED_PAGES page numbers (~750,000 small records); one Uint32Array each was ~100 bytes of heap per
 * record that every full garbage collection had to mark. Here:
 *  - pg holds the page numbers of the records held, oldest first, from pgHead on (wrapping), pgLen of them;
 *  - rec holds one number per record, oldest first, from recHead on (wrapping), count of them: n >= 0 for a
 *    record that wrote n pages (its numbers are the next n in pg), or -(sizePages + 1) for one that wrote every
 *    page 1..sizePages (a base: no page numbers stored, weight 1, as before).
 * Both grow by doubling when full. The newest record is kept even when it alone exceeds maxPages.
 */
export class ChangeTracker {
  private firstLsn = 0n;
  private rec = new Float64Array(64);
  private recHead = 0;
  private count = 0;
  private pg = new Uint32Array(256);
  private pgHead = 0;
  private pgLen = 0;
  /** Weight held: page numbers, plus 1 per "every page" record. */
  private pages = 0;

  constructor(private readonly maxPages = MAX_TRACKED_PAGES) {}

  /** The range held, or null when nothing is. */
  get range(): { readonly firstLsn: bigint; readonly lastLsn: bigint } | null {
    return this.count === 0 ? null : { firstLsn: this.firstLsn, lastLsn: this.firstLsn + BigInt(this.count - 1) };
  }

  /** A durable record: the pages it wrote (ascending or not), or 'all' pages 1..sizePages (a base). */
  note(lsn: Lsn, pgnos: Iterable<number> | 'all', sizePages: number): void {
    if (this.count === 0 || lsn !== this.firstLsn + BigInt(this.count)) {
      this.clear();
      this.firstLsn = lsn;
    }
    const list = pgnos === 'all' ? null : Array.isArray(pgnos) ? (pgnos as readonly number[]) : [...pgnos];
    const weight = list === null ? 1 : list.length;
    // The oldest records go first, the newest never: dropped before it is added, so that pg never needs room
    // for more than max(maxPages, its own pages).
    while (this.count > 0 && this.pages + weight > this.maxPages) this.dropOldest();
    if (list === null) this.pushRec(-(sizePages + 1));
    else {
      const n = list.length;
      if (this.pgLen + n > this.pg.length) this.growPg(this.pgLen + n);
      const cap = this.pg.length;
      let at = (this.pgHead + this.pgLen) % cap;
      for (let i = 0; i < n; i++) {
        this.pg[at] = list[i]!; // ToUint32, as Uint32Array.from did
        if (++at === cap) at = 0;
      }
      this.pgLen += n;
      this.pushRec(n);
    }
    this.pages += weight;
  }

  clear(): void {
    this.recHead = 0;
    this.count = 0;
    this.pgHead = 0;
    this.pgLen = 0;
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
    const from = Number(fromLsn - this.firstLsn);
    const to = Number(toLsn - this.firstLsn);
    const recCap = this.rec.length;
    const pgCap = this.pg.length;
    let at = this.pgHead; // page numbers of record i start here
    for (let i = 0; i <= to; i++) {
      const c = this.rec[(this.recHead + i) % recCap]!;
      if (c >= 0) {
        if (i >= from) for (let k = 0; k < c; k++) out.add(this.pg[(at + k) % pgCap]!);
        at = (at + c) % pgCap;
      } else if (i >= from) for (let p = 1, all = -c - 1; p <= all; p++) out.add(p);
    }
    return out;
  }

  private pushRec(c: number): void {
    if (this.count === this.rec.length) {
      const next = new Float64Array(this.rec.length * 2);
      for (let i = 0; i < this.count; i++) next[i] = this.rec[(this.recHead + i) % this.rec.length]!;
      this.rec = next;
      this.recHead = 0;
    }
    this.rec[(this.recHead + this.count) % this.rec.length] = c;
    this.count++;
  }

  private growPg(need: number): void {
    let cap = this.pg.length * 2;
    while (cap < need) cap *= 2;
    const next = new Uint32Array(cap);
    for (let i = 0; i < this.pgLen; i++) next[i] = this.pg[(this.pgHead + i) % this.pg.length]!;
    this.pg = next;
    this.pgHead = 0;
  }

  private dropOldest(): void {
    const c = this.rec[this.recHead]!;
    this.recHead = (this.recHead + 1) % this.rec.length;
    this.count--;
    this.firstLsn++;
    if (c >= 0) {
      this.pgHead = (this.pgHead + c) % this.pg.length;
      this.pgLen -= c;
      this.pages -= c;
    } else this.pages -= 1;
  }
}
