/*
 * THE ARCHIVE: a directory holding
 *
 *   archive.json        identity: format, databaseId, pageSize, createdAt, databasePath (written once, atomically)
 *   segments/           sealed segments (*.seg, immutable) and at most one open segment (*.open)
 *   writer.lock         pid of the one process appending, while it runs
 *
 *   history.json        the incarnations this archive's line went through (history.ts); absent = never forked
 *   diverged/           records set aside by a fork: what an older incarnation had after the fork point
 *
 * Invariants: (1) Sorted by name, the segments hold consecutive LSNs with no gap and no overlap, each named
 * with the incarnation its first LSN belongs to on this archive's line (names sort by incarnation, then LSN,
 * and incarnations only grow with LSN). (2) The first record of the archive is a base. (3) Only the open
 * segment may end in a torn tail, which the next writer cuts off (damage anywhere else is reported, never
 * cut). (4) A segment holds records of one incarnation: the writer seals at every fork point.
 */
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, readSync, readdirSync, renameSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { RedoshipError, ioError } from '../error/index.js';
import { acquirePidLock, type PidLock } from './lock.js';
import {
  MAX_PART_BYTES,
  PART_HEADER_BYTES,
  SEGMENT_HEADER_BYTES,
  decodePartBody,
  parseSegmentName,
  segmentCorrupt,
  segmentName,
} from './segment-format.js';
import {
  compareHistories,
  currentIncarnation,
  describeIncarnation,
  incarnationOf,
  nextIncarnation,
  readHistory,
  writeHistory,
  type History,
  type Incarnation,
} from './history.js';
import { SegmentReader, assembleRecord } from './segment-reader.js';
import { ChangeTracker } from './change-tracker.js';
import type { RecordPart } from './segment-format.js';
import { SegmentWriter, fsyncDir, writeDurably, type RecordMeta } from './segment-writer.js';
import type { ArchiveIdentity, Lsn, RecordKind, RedoRecord, SegmentInfo, WalPosition } from './types.js';
import { crc32 } from 'node:zlib';

const IDENTITY_FILE = 'archive.json';
const SEGMENTS_DIR = 'segments';

/** The last complete record of the archive, without its pages. */
export interface ArchiveTail {
  readonly lsn: Lsn;
  readonly kind: RecordKind;
  readonly commitTimeUs: bigint;
  readonly sizePages: number;
  readonly wal: WalPosition | null;
}

export interface SegmentReport extends SegmentInfo {
  readonly records: number;
  readonly firstTimeUs: bigint | null;
  readonly lastTimeUs: bigint | null;
  readonly bases: Lsn[];
  readonly breaks: Array<{ lsn: Lsn; note: string }>;
  readonly pages: number;
  /** Damage found, or null. A torn tail of the open segment is not damage: see tornTail. */
  readonly damage: string | null;
  readonly tornTail: string | null;
}

export interface VerifyReport {
  readonly segments: SegmentReport[];
  readonly problems: string[];
  readonly firstLsn: Lsn | null;
  readonly lastLsn: Lsn | null;
}

export class Archive {
  /** The pages each record appended through this Archive's writer wrote (change-tracker.ts). */
  readonly changes = new ChangeTracker();

  private constructor(
    readonly dir: string,
    readonly identity: ArchiveIdentity,
  ) {}

  get segmentsDir(): string {
    return join(this.dir, SEGMENTS_DIR);
  }

  /** Opens an existing archive. ARCHIVE_MISSING when there is none at dir. */
  static open(dir: string): Archive {
    dir = resolve(dir);
    const idPath = join(dir, IDENTITY_FILE);
    if (!existsSync(idPath))
      throw new RedoshipError(
        'ARCHIVE_MISSING',
        `no redoship archive at ${dir} (${IDENTITY_FILE} not found)`,
        'check the --archive path; `redoship primary --db DB --archive DIR` creates one',
      );
    let identity: ArchiveIdentity;
    try {
      identity = JSON.parse(readFileSync(idPath, 'utf8')) as ArchiveIdentity;
    } catch (e) {
      throw new RedoshipError('ARCHIVE_CORRUPT', `${idPath} is not valid JSON`, 'restore it from a copy', { cause: e });
    }
    if (identity.format !== 1 || !/^[0-9a-f]{32}$/.test(identity.databaseId ?? '') || !(identity.pageSize > 0))
      throw new RedoshipError('ARCHIVE_CORRUPT', `${idPath} is not a redoship archive identity`, 'check the --archive path');
    return new Archive(dir, identity);
  }

  /** Creates an archive at dir (which must not hold one). */
  static create(dir: string, id: Omit<ArchiveIdentity, 'format' | 'createdAt'>): Archive {
    dir = resolve(dir);
    const identity: ArchiveIdentity = { format: 1, createdAt: new Date().toISOString(), ...id };
    try {
      mkdirSync(join(dir, SEGMENTS_DIR), { recursive: true });
      const tmp = join(dir, `${IDENTITY_FILE}.tmp`);
      writeFileSync(tmp, JSON.stringify(identity, null, 2) + '\n', { flush: true });
      renameSync(tmp, join(dir, IDENTITY_FILE));
    } catch (e) {
      throw ioError('create archive', dir, e);
    }
    fsyncDir(dir);
    return new Archive(dir, identity);
  }

  static exists(dir: string): boolean {
    return existsSync(join(resolve(dir), IDENTITY_FILE));
  }

  /** The incarnations this archive's line went through (history.ts). */
  history(): History {
    return readHistory(this.dir);
  }

  private expect() {
    return this.identityExpect;
  }

  /** What every segment of this archive must carry in its header. */
  get identityExpect(): { databaseId: string; pageSize: number } {
    return { databaseId: this.identity.databaseId, pageSize: this.identity.pageSize };
  }

  /**
   * Segment files in LSN order, from their names alone: no file is read, so this is cheap enough for hot
   * paths. lastLsn is null for the open segment (its name does not say).
   */
  segmentNames(): Array<{ name: string; firstLsn: Lsn; lastLsn: Lsn | null }> {
    let names: string[];
    try {
      names = readdirSync(this.segmentsDir);
    } catch (e) {
      throw ioError('list archive segments in', this.segmentsDir, e);
    }
    const out: Array<{ name: string; firstLsn: Lsn; lastLsn: Lsn | null }> = [];
    for (const name of names.sort()) {
      const p = parseSegmentName(name);
      if (p) out.push({ name, firstLsn: p.firstLsn, lastLsn: p.lastLsn });
    }
    return out;
  }

  /** Segment files in LSN order. lastLsn of the open segment is found by reading it. */
  segments(): SegmentInfo[] {
    let names: string[];
    try {
      names = readdirSync(this.segmentsDir);
    } catch (e) {
      throw ioError('list archive segments in', this.segmentsDir, e);
    }
    const out: SegmentInfo[] = [];
    for (const name of names.sort()) {
      const p = parseSegmentName(name);
      if (!p) continue;
      const path = join(this.segmentsDir, name);
      let lastLsn = p.lastLsn;
      if (lastLsn === null) {
        const r = new SegmentReader(path, this.expect());
        try {
          for (const _ of r.parts());
        } finally {
          r.close();
        }
        lastLsn = r.lastLsn;
      }
      out.push({
        path,
        name,
        incarnation: p.incarnation,
        firstLsn: p.firstLsn,
        lastLsn,
        sealed: p.lastLsn !== null,
        bytes: statSync(path).size,
      });
    }
    return out;
  }

  /**
   * The parts of segment s, in order, up to the end of LSN stopAfter (all when omitted). A sealed segment
   * must hold every LSN its name promises, undamaged: anything less is ARCHIVE_CORRUPT naming it (an open
   * segment just ends where its writer has got to, or at a torn tail).
   */
  private *partsOf(s: SegmentInfo, stopAfter?: Lsn): Generator<RecordPart> {
    const r = new SegmentReader(s.path, this.expect());
    try {
      for (const { part } of r.parts()) {
        if (stopAfter !== undefined && part.lsn > stopAfter) return;
        yield part;
      }
      if (s.sealed) {
        // Damage past what was asked for does not stop a reader that wants less (restore up to before it).
        if (r.damage && (stopAfter === undefined || r.damage.lsn <= stopAfter)) r.assertUndamaged();
        if (r.lastLsn !== s.lastLsn && (stopAfter === undefined || r.lastLsn < stopAfter))
          throw segmentCorrupt(s.path, r.validEnd, `its name says it ends at LSN ${s.lastLsn}, its records end at ${r.lastLsn} (truncated?)`);
      }
    } finally {
      r.close();
    }
  }

  /** The last complete record, or null for an empty archive. */
  tail(): ArchiveTail | null {
    const segs = this.segments();
    for (let i = segs.length - 1; i >= 0; i--) {
      const s = segs[i]!;
      if (s.lastLsn < s.firstLsn) continue;
      let t: ArchiveTail | null = null;
      for (const part of this.partsOf(s))
        if (part.last) t = { lsn: part.lsn, kind: part.kind, commitTimeUs: part.commitTimeUs, sizePages: part.sizePages, wal: part.wal };
      if (t) return t;
    }
    return null;
  }

  /**
   * Yields records with LSN in [fromLsn, toLsn], in order, across segments. Throws ARCHIVE_GAP when an LSN
   * in the range is missing and ARCHIVE_CORRUPT on damage (a torn tail of the open segment just ends the
   * archive there).
   */
  *records(fromLsn: Lsn, toLsn?: Lsn): Generator<RedoRecord> {
    let acc: RecordPart[] = [];
    for (const part of this.partsInRange(fromLsn, toLsn)) {
      acc.push(part);
      if (part.last) {
        yield assembleRecord(acc, this.identity.pageSize);
        acc = [];
      }
    }
  }

  /**
   * The pages written by the records in [fromLsn, toLsn] (the change tracking behind a level 1 backup): from
   * the change tracking kept by this process's writer when it holds the range, else from the parts' page
   * lists (no record is assembled). Throws as records() does.
   */
  pagesWritten(fromLsn: Lsn, toLsn: Lsn): Set<number> {
    if (this.changes.covers(fromLsn, toLsn)) return this.changes.pagesWritten(fromLsn, toLsn);
    const out = new Set<number>();
    for (const part of this.partsInRange(fromLsn, toLsn)) for (const p of part.pgnos) out.add(p);
    return out;
  }

  /**
   * The parts of the records in [fromLsn, toLsn], in order; ARCHIVE_GAP when an LSN in the range is missing.
   * What records() assembles, one part (at most MAX_PART_PAGE_BYTES of pages) at a time: a caller that only
   * folds pages into something (a file, hashes) holds one part, where a base as one record is the whole
   * database in memory. A record's parts repeat its kind, LSN and size; only the one with `last` completes it,
   * and a torn tail of the open segment may yield parts of a record whose last part never comes.
   */
  *partsInRange(fromLsn: Lsn, toLsn?: Lsn): Generator<RecordPart> {
    let expect = fromLsn;
    for (const s of this.segments()) {
      if (s.lastLsn < expect) continue;
      if (toLsn !== undefined && s.firstLsn > toLsn) break;
      if (s.firstLsn > expect)
        throw new RedoshipError(
          'ARCHIVE_GAP',
          `the archive ${this.dir} has no LSN ${expect}..${s.firstLsn - 1n} (next segment ${s.name} starts at ${s.firstLsn})`,
          'the missing segments may be in another copy of this archive (a standby, a backup repository); restore can reach LSN ' +
            (expect - 1n),
        );
      for (const part of this.partsOf(s, toLsn)) {
        if (part.lsn < expect) continue;
        yield part;
        if (part.last) expect = (part.lsn + 1n) as Lsn;
      }
      if (toLsn !== undefined && expect > toLsn) return;
    }
  }

  /**
   * The LSN of the latest base at or before lsn, or null. Searches from the newest segment back and stops at
   * the first that holds one, so a standby asking for a seed does not make the server read the whole archive.
   */
  latestBaseAtOrBefore(target: Lsn): Lsn | null {
    const segs = this.segments().filter((s) => s.firstLsn <= target);
    for (let i = segs.length - 1; i >= 0; i--) {
      let found: Lsn | null = null;
      for (const part of this.partsOf(segs[i]!, target)) if (part.kind === 'base' && part.last) found = part.lsn;
      if (found !== null) return found;
    }
    return null;
  }

  /** The commit time of the record at lsn, or null when the archive does not hold it whole. */
  commitTimeOf(lsn: Lsn): bigint | null {
    const s = this.segments().find((x) => x.firstLsn <= lsn && lsn <= x.lastLsn);
    if (!s) return null;
    for (const part of this.partsOf(s, lsn)) if (part.lsn === lsn && part.last) return part.commitTimeUs;
    return null;
  }

  /** The last LSN whose commit time is at or before timeUs, or null when none is. */
  lsnAtTime(timeUs: bigint): Lsn | null {
    let found: Lsn | null = null;
    for (const s of this.segments()) {
      for (const part of this.partsOf(s)) {
        if (!part.last) continue;
        if (part.commitTimeUs > timeUs) return found;
        found = part.lsn;
      }
    }
    return found;
  }

  /** Checks every record of every segment, and the continuity between segments. Never throws on damage. */
  verify(): VerifyReport {
    const problems: string[] = [];
    const reports: SegmentReport[] = [];
    let prev: SegmentReport | null = null;
    let openCount = 0;
    for (const s of this.segments()) {
      const rep = this.verifySegment(s);
      reports.push(rep);
      if (!s.sealed) openCount++;
      if (rep.damage) problems.push(`${s.name}: ${rep.damage}`);
      if (prev && s.firstLsn !== prev.lastLsn + 1n)
        problems.push(
          s.firstLsn > prev.lastLsn + 1n
            ? `gap: LSN ${prev.lastLsn + 1n}..${s.firstLsn - 1n} missing between ${prev.name} and ${s.name}`
            : `overlap: ${s.name} starts at LSN ${s.firstLsn}, ${prev.name} ends at ${prev.lastLsn}`,
        );
      prev = rep;
    }
    if (openCount > 1) problems.push(`${openCount} open segments; at most one may be open`);
    try {
      const h = this.history();
      for (const r of reports)
        if (r.records > 0 && r.incarnation !== incarnationOf(h, r.firstLsn))
          problems.push(`${r.name}: named incarnation ${r.incarnation}, but LSN ${r.firstLsn} belongs to incarnation ${incarnationOf(h, r.firstLsn)} on this archive's line`);
    } catch (e) {
      problems.push(e instanceof RedoshipError ? e.message : String(e));
    }
    const first = reports[0];
    if (first && first.records > 0 && first.bases[0] !== first.firstLsn)
      problems.push(`the archive does not start with a base (first record LSN ${first.firstLsn})`);
    const nonEmpty = reports.filter((r) => r.records > 0);
    return {
      segments: reports,
      problems,
      firstLsn: nonEmpty[0]?.firstLsn ?? null,
      lastLsn: nonEmpty[nonEmpty.length - 1]?.lastLsn ?? null,
    };
  }

  private verifySegment(s: SegmentInfo): SegmentReport {
    let reader: SegmentReader;
    const base = { ...s, records: 0, firstTimeUs: null, lastTimeUs: null, bases: [], breaks: [], pages: 0, tornTail: null };
    try {
      reader = new SegmentReader(s.path, this.expect());
    } catch (e) {
      return { ...base, damage: e instanceof RedoshipError ? e.message : String(e) };
    }
    let firstTimeUs: bigint | null = null;
    let lastTimeUs: bigint | null = null;
    const bases: Lsn[] = [];
    const breaks: Array<{ lsn: Lsn; note: string }> = [];
    let pages = 0;
    let damage: string | null = null;
    let tornTail: string | null = null;
    try {
      for (const { part } of reader.parts()) {
        pages += part.pgnos.length;
        if (part.part === 0) {
          firstTimeUs ??= part.commitTimeUs;
          lastTimeUs = part.commitTimeUs;
          if (part.kind === 'base') bases.push(part.lsn);
          if (part.continuityBreak) breaks.push({ lsn: part.lsn, note: part.note ?? '' });
        }
      }
      const d = reader.damage;
      if (d) {
        const where = `at byte ${d.offset}, LSN ${d.lsn}: ${d.reason}`;
        if (s.sealed) damage = where;
        else if (hasValidPartAfter(reader.path, d.offset, reader.fileBytes, this.identity.pageSize))
          damage = `${where}, with valid records after it`;
        else tornTail = where;
      }
      if (s.sealed && damage === null && reader.lastLsn !== s.lastLsn)
        damage = `its name says it ends at LSN ${s.lastLsn}, its records end at ${reader.lastLsn}`;
    } catch (e) {
      damage = e instanceof RedoshipError ? e.message : String(e);
    } finally {
      reader.close();
    }
    const records = Number(reader.lastLsn - s.firstLsn + 1n);
    return { ...s, records, firstTimeUs, lastTimeUs, bases, breaks, pages, damage, tornTail };
  }

  /** Takes the writer lock and recovers the open segment. One writer per archive. */
  openWriter(opts: ArchiveWriterOptions): ArchiveWriter {
    return new ArchiveWriter(this, opts);
  }
}

/**
 * True when some byte offset after `from` starts a part that passes its length bound and CRC: then the
 * damage at `from` is not a torn tail (a crash only ever tears the end of the file) but damage in the middle.
 */
export function hasValidPartAfter(path: string, from: number, fileBytes: number, pageSize: number): boolean {
  let data: Buffer;
  try {
    data = readFileSync(path);
  } catch {
    return false;
  }
  for (let off = from + 1; off + PART_HEADER_BYTES < fileBytes; off++) {
    const len = data.readUInt32BE(off);
    if (len === 0 || len > MAX_PART_BYTES || off + PART_HEADER_BYTES + len > fileBytes) continue;
    const body = data.subarray(off + PART_HEADER_BYTES, off + PART_HEADER_BYTES + len);
    if (crc32(body) === data.readUInt32BE(off + 4) && typeof decodePartBody(body, pageSize) !== 'string') return true;
  }
  return false;
}

export interface ArchiveWriterOptions {
  /** Seal the open segment once it holds at least this many bytes. */
  readonly segmentBytes: number;
  /** Seal the open segment once its first record is this old (checked by sealIfOld). */
  readonly segmentAgeMs: number;
  /** Ignored: the incarnation of a segment comes from the archive's history (history.ts). */
  readonly incarnation?: number;
  /** Called with the path of every segment once it is sealed (to copy it elsewhere: remote archiving). */
  readonly onSealed?: (path: string) => void;
  /**
   * The last LSN a segment may end in when it is sealed (by size or age): a standby's confirmed LSN, so that
   * a sealed segment, which never changes again and may be copied away at once, holds no record its primary
   * may yet lose (transport/protocol.ts, confirmation). Sealing waits until it is reached. Default: no limit.
   */
  readonly sealableThrough?: () => bigint;
}

export class ArchiveWriter {
  private readonly lock: PidLock;
  private seg: SegmentWriter | null = null;
  private segOpenedAtMs = 0;
  /** Last complete LSN in the archive (0 when empty). */
  lastLsn: Lsn;
  tail: ArchiveTail | null;
  /** Set when recovery cut a torn tail: what was cut. */
  readonly recovered: string | null = null;
  /** The archive's line of history; changed only by fork() and adoptHistory(). */
  history: History;
  /**
   * Where append() frames records (framedRecord's alloc): set by a primary that serves redo to its ring's
   * arena, which takes the buffers back when the ring drops them; a new buffer per part otherwise.
   */
  framedAlloc: ((size: number) => Buffer) | undefined = undefined;

  constructor(
    readonly archive: Archive,
    private readonly opts: ArchiveWriterOptions,
  ) {
    this.lock = acquirePidLock(join(archive.dir, 'writer.lock'), `the archive ${archive.dir}`);
    try {
      this.history = archive.history();
      const segs = archive.segments();
      const open = segs.filter((s) => !s.sealed);
      if (open.length > 1)
        throw segmentCorrupt(open[1]!.path, 0, `${open.length} open segments; at most one may be open`);
      const o = open[0];
      if (o) {
        if (o !== segs[segs.length - 1]) throw segmentCorrupt(o.path, 0, 'an open segment is followed by sealed ones');
        const r = new SegmentReader(o.path, { databaseId: archive.identity.databaseId, pageSize: archive.identity.pageSize });
        try {
          for (const _ of r.parts());
        } finally {
          r.close();
        }
        if (r.damage) {
          if (hasValidPartAfter(o.path, r.damage.offset, r.fileBytes, archive.identity.pageSize))
            throw segmentCorrupt(o.path, r.damage.offset, `${r.damage.reason}, with valid records after it (not a torn tail)`);
          this.recovered = `cut a torn tail of ${r.fileBytes - r.validEnd} bytes from ${o.name} (LSN ${r.damage.lsn}: ${r.damage.reason})`;
        }
        this.seg = SegmentWriter.reopen(o.path, r.header, r.validEnd, r.lastLsn);
        this.segOpenedAtMs = Date.now();
      }
      this.tail = archive.tail();
      this.lastLsn = this.tail?.lsn ?? (0n as Lsn);
    } catch (e) {
      this.lock.release();
      throw e;
    }
  }

  /**
   * Appends records and returns once they are durable. Seals when the segment reaches its size. onWritten
   * runs with the records once they are written and before they are synced (SegmentWriter.append); lastLsn
   * moves only once they are durable.
   */
  append(records: readonly RedoRecord[], onWritten?: (written: readonly RedoRecord[]) => void): void {
    if (records.length === 0) return;
    // A batch that crosses a fork point goes into two segments (invariant 4).
    const cut = records.findIndex((r) => incarnationOf(this.history, r.lsn) !== incarnationOf(this.history, records[0]!.lsn));
    if (cut > 0) {
      this.append(records.slice(0, cut), onWritten);
      this.append(records.slice(cut), onWritten);
      return;
    }
    this.openSegment(records[0]!.lsn).append(records, this.framedAlloc, onWritten && (() => onWritten(records)));
    for (const r of records) this.archive.changes.note(r.lsn, r.kind === 'base' ? 'all' : r.pages.map(([pgno]) => pgno), r.sizePages);
    this.appended(records[records.length - 1]!);
  }

  /**
   * Appends framed parts received from another archive (see SegmentWriter.appendRaw), durably. tail is the
   * last complete record's header, when these parts complete one. Seals only between records.
   */
  appendRaw(
    parts: ReadonlyArray<{ readonly lsn: Lsn; readonly part: number; readonly last: boolean; readonly raw: Uint8Array }>,
    lastComplete: RecordMeta | null,
  ): void {
    if (parts.length === 0) return;
    const first = parts[0]!;
    const cut = parts.findIndex((p) => p.part === 0 && incarnationOf(this.history, p.lsn) !== incarnationOf(this.history, first.lsn));
    if (cut > 0) {
      // The parts before the cut end in a complete record (a record starts at the cut).
      const before = parts[cut - 1]!;
      this.appendRaw(parts.slice(0, cut), this.metaOfRaw(before));
      this.appendRaw(parts.slice(cut), lastComplete);
      return;
    }
    const seg = this.openSegment(first.part === 0 ? first.lsn : this.lastLsn);
    seg.appendRaw(parts);
    if (lastComplete) this.appended(lastComplete, !seg.hasIncompleteRecord);
  }

  /**
   * Appends one record whose pages come from an iterator (a base, or a resync of many pages), durably. The
   * change tracking learns its page numbers as they stream by (a base: every page).
   */
  appendStream(meta: RecordMeta, pages: Iterable<readonly [number, Uint8Array]>): void {
    const pgnos: number[] = [];
    const noted =
      meta.kind === 'base'
        ? pages
        : (function* () {
            for (const p of pages) {
              pgnos.push(p[0]);
              yield p;
            }
          })();
    this.openSegment(meta.lsn).appendStream(meta, noted);
    this.archive.changes.note(meta.lsn, meta.kind === 'base' ? 'all' : pgnos, meta.sizePages);
    this.appended(meta);
  }

  /** The header fields of the record a raw last part completes (only its LSN is known without decoding). */
  private metaOfRaw(p: { readonly lsn: Lsn; readonly raw: Uint8Array }): RecordMeta {
    const body = decodePartBody(Buffer.from(p.raw.buffer, p.raw.byteOffset + PART_HEADER_BYTES, p.raw.length - PART_HEADER_BYTES), this.archive.identity.pageSize);
    if (typeof body === 'string') throw new RedoshipError('ASSERT', `a checked part does not decode: ${body}`, 'this is a bug; please report it');
    return { lsn: p.lsn, kind: body.kind, commitTimeUs: body.commitTimeUs, sizePages: body.sizePages, wal: body.wal };
  }

  private openSegment(firstLsn: Lsn): SegmentWriter {
    const inc = incarnationOf(this.history, firstLsn);
    if (this.seg && this.seg.header.incarnation !== inc && !this.seg.hasIncompleteRecord) this.seal();
    if (!this.seg) {
      this.seg = SegmentWriter.create(this.archive.segmentsDir, {
        databaseId: this.archive.identity.databaseId,
        incarnation: inc,
        firstLsn,
        pageSize: this.archive.identity.pageSize,
      });
      this.segOpenedAtMs = Date.now();
    }
    return this.seg;
  }

  /** Whether the open segment may be sealed now as far as confirmation goes (ArchiveWriterOptions.sealableThrough). */
  private get sealable(): boolean {
    return !this.opts.sealableThrough || this.lastLsn <= this.opts.sealableThrough();
  }

  private appended(last: RecordMeta, maySeal = true): void {
    this.lastLsn = last.lsn;
    this.tail = { lsn: last.lsn, kind: last.kind, commitTimeUs: last.commitTimeUs, sizePages: last.sizePages, wal: last.wal };
    if (maySeal && this.seg && this.seg.bytes >= this.opts.segmentBytes && this.sealable) {
      // The records are durable whatever happens now: a failed seal must not look like a failed append
      // (the caller would write them again under new LSNs). sealIfOld retries it.
      try {
        this.seal();
        this.sealError = null;
      } catch (e) {
        this.sealError = e as Error;
      }
    }
  }

  /** Cuts an incomplete record at the end of the open segment (its sender starts it over). */
  dropIncomplete(): void {
    this.seg?.dropIncomplete();
  }

  /** Removes an open segment that holds no complete record (a first base cut short): the next starts afresh. */
  discardEmptyOpen(): void {
    if (!this.seg || this.seg.recordCount > 0) return;
    this.seg.dropIncomplete();
    this.seg.seal(); // with no record: removes the file
    this.seg = null;
  }

  /**
   * Seals the open segment if it has records and is older than segmentAgeMs (or past segmentBytes, its seal
   * having waited for confirmation, or failed). Returns the sealed path.
   */
  sealIfOld(nowMs = Date.now()): string | null {
    const s = this.seg;
    if (s && s.recordCount > 0 && !s.hasIncompleteRecord && this.sealable && (this.sealError || s.bytes >= this.opts.segmentBytes || nowMs - this.segOpenedAtMs >= this.opts.segmentAgeMs)) {
      const sealed = this.seal();
      this.sealError = null;
      return sealed;
    }
    return null;
  }

  /**
   * Seals the open segment now (archive switch). Returns the sealed path, or null when nothing was open or
   * it ends in an incomplete record (it stays open until the record completes).
   */
  seal(): string | null {
    const s = this.seg;
    if (!s || s.hasIncompleteRecord) return null;
    if (s.filePath.endsWith('.seg')) {
      // Renamed by an earlier attempt whose directory sync failed: finish that.
      fsyncDir(this.archive.segmentsDir);
      this.seg = null;
      return s.filePath;
    }
    const sealed = s.seal(); // throws, leaving the segment open, when it cannot be sealed
    this.seg = null;
    if (sealed) this.opts.onSealed?.(sealed);
    return sealed;
  }

  /** The last error sealing by size, or null: the records were durable; sealing is retried by sealIfOld. */
  sealError: Error | null = null;

  get openSegmentBytes(): number {
    return this.seg ? this.seg.bytes - SEGMENT_HEADER_BYTES : 0;
  }

  /**
   * Starts a new incarnation after forkLsn (promotion, RESETLOGS): records after forkLsn are set aside in
   * diverged/ (listed in what is returned), then the history gains the new entry. Crash-safe in this order:
   * a shortened copy of a segment that spans the fork is written before the original is moved, so the
   * archive always reads as either the old line or the old line cut at forkLsn; the history is written last.
   */
  fork(forkLsn: Lsn, reason: string, db?: string): { incarnation: Incarnation; setAside: SetAside } {
    if (forkLsn > this.lastLsn)
      throw new RedoshipError('TARGET_UNREACHABLE', `cannot fork after LSN ${forkLsn}: the archive ${this.archive.dir} ends at LSN ${this.lastLsn}`, 'pick an LSN the archive holds');
    const inc = nextIncarnation(this.history, forkLsn, reason, db);
    const setAside = this.setAsideAfter(forkLsn, `before ${describeIncarnation(inc)}`);
    this.history = [...this.history, inc];
    writeHistory(this.archive.dir, this.history);
    return { incarnation: inc, setAside };
  }

  /**
   * Follows a peer's history (a standby learning of a promotion upstream). Refuses, changing nothing, when
   * the peer was superseded (FENCED) or when this archive holds records the peer's line never had (DIVERGED).
   */
  adoptHistory(theirs: History, peer: string): void {
    const c = compareHistories(this.history, theirs);
    if (c.relation === 'same') return;
    if (c.relation === 'ahead')
      throw new RedoshipError(
        'FENCED',
        `${peer} is at ${describeIncarnation(currentIncarnation(theirs))}, which was superseded: this archive follows ${describeIncarnation(currentIncarnation(this.history))}`,
        'that primary was replaced by a failover or switchover and must not ship redo; make it a standby with `redoship reinstate`, or point this standby at the new primary',
      );
    if (c.relation === 'diverged' || this.lastLsn > c.forkLsn)
      throw new RedoshipError(
        'DIVERGED',
        `${peer} follows ${describeIncarnation(currentIncarnation(theirs))}, which left this archive's line after LSN ${c.forkLsn}; this archive holds LSN ${c.forkLsn + 1n}..${this.lastLsn} of ${describeIncarnation(currentIncarnation(this.history))}, which that line never had`,
        'make this side a standby of the new primary with `redoship reinstate` (it lists and keeps the transactions it discards), or seed it again into an empty directory',
      );
    writeHistory(this.archive.dir, theirs);
    this.history = theirs;
  }

  /**
   * Reinstate: sets aside every record after forkLsn (they are not on the line of `theirs`, which forked
   * there) and follows `theirs` from then on.
   */
  rewindTo(forkLsn: Lsn, theirs: History, why: string): { setAside: SetAside } {
    const setAside = this.setAsideAfter(forkLsn, why);
    writeHistory(this.archive.dir, theirs);
    this.history = theirs;
    return { setAside };
  }

  /**
   * Sets aside every record after lsn, keeping the line: a standby's records its primary never confirmed
   * durable, and then lost (transport/protocol.ts, confirmation). They are kept in diverged/ like a fork's.
   */
  setAsideUnconfirmed(lsn: Lsn, why: string): SetAside {
    return this.setAsideAfter(lsn, why, false);
  }

  /**
   * Moves every record after forkLsn into diverged/<time>-after-<forkLsn>/, shortening a segment that spans it.
   * sealOpen false: an open segment that reaches past forkLsn is closed, not sealed, and moves as it is (a
   * sealed segment holds no unconfirmed record, not even for a moment: ArchiveWriterOptions.sealableThrough).
   */
  private setAsideAfter(forkLsn: Lsn, why: string, sealOpen = true): SetAside {
    this.archive.changes.clear();
    this.dropIncomplete();
    if (this.seg && this.seg.recordCount === 0) this.discardEmptyOpen();
    if (sealOpen) this.seal();
    else if (this.seg && this.seg.lastLsn > forkLsn) {
      this.seg.close();
      this.seg = null;
    }
    const moving = this.archive.segments().filter((s) => s.lastLsn > forkLsn);
    const records: SetAside['records'] = [];
    if (moving.length === 0) return { dir: null, records };
    const dir = join(this.archive.dir, 'diverged', `${new Date().toISOString().replace(/[:.]/g, '')}-after-${forkLsn}`);
    try {
      mkdirSync(dir, { recursive: true });
    } catch (e) {
      throw ioError('create', dir, e);
    }
    for (const s of moving) {
      const r = new SegmentReader(s.path, this.archive.identityExpect);
      let keepBytes = s.firstLsn <= forkLsn ? -1 : 0;
      try {
        for (const { part, offset } of r.parts()) {
          if (part.lsn === forkLsn + 1n && part.part === 0) keepBytes = offset;
          if (part.lsn > forkLsn && part.last) records.push({ lsn: part.lsn, kind: part.kind, commitTimeUs: part.commitTimeUs });
        }
        r.assertUndamaged();
        if (keepBytes < 0) throw segmentCorrupt(s.path, r.validEnd, `holds no record ${forkLsn + 1n} to cut before, though its name says it does`);
        if (keepBytes > 0) {
          // The shortened copy, durable under its final name before the original moves (see fork()).
          const buf = Buffer.allocUnsafe(keepBytes);
          const fd = openSync(s.path, 'r');
          try {
            if (readSync(fd, buf, 0, keepBytes, 0) !== keepBytes) throw segmentCorrupt(s.path, keepBytes, 'shorter than just read');
          } finally {
            closeSync(fd);
          }
          const to = join(this.archive.segmentsDir, segmentName(s.incarnation, s.firstLsn, forkLsn));
          writeDurably(`${to}.tmp`, buf);
          renameSync(`${to}.tmp`, to);
          fsyncDir(this.archive.segmentsDir);
        }
      } finally {
        r.close();
      }
      renameSync(s.path, join(dir, s.name));
    }
    fsyncDir(dir);
    fsyncDir(this.archive.segmentsDir);
    writeDurably(
      join(dir, 'records.json'),
      Buffer.from(
        JSON.stringify(
          {
            why,
            forkLsn: String(forkLsn),
            records: records.map((x) => ({ lsn: String(x.lsn), kind: x.kind, commitTime: new Date(Number(x.commitTimeUs / 1000n)).toISOString() })),
          },
          null,
          2,
        ) + '\n',
      ),
    );
    this.tail = this.archive.tail();
    this.lastLsn = this.tail?.lsn ?? (0n as Lsn);
    return { dir, records };
  }

  /** Seals (if asked) and releases the lock. */
  close(opts: { seal: boolean }): void {
    try {
      if (opts.seal) this.seal();
      this.seg?.close();
      this.seg = null;
    } finally {
      this.lock.release();
    }
  }
}

/** Records moved out of the archive's line by a fork, and where they were kept. */
export interface SetAside {
  readonly dir: string | null;
  readonly records: Array<{ readonly lsn: Lsn; readonly kind: RecordKind; readonly commitTimeUs: bigint }>;
}

export { assembleRecord };

/**
 * The state the archive describes at toLsn, as page hashes: replays from the latest base at or before toLsn.
 * hashes[pgno - 1] is the hash of page pgno. Used to find exactly the pages a resync must carry.
 */
export function archivedPageHashes(
  archive: Archive,
  toLsn: Lsn,
  hash: (pgno: number, page: Uint8Array) => Buffer,
): { sizePages: number; hashes: Buffer[] } {
  const base = archive.latestBaseAtOrBefore(toLsn);
  if (base === null)
    throw new RedoshipError('ARCHIVE_EMPTY', `the archive ${archive.dir} has no base at or before LSN ${toLsn}`, 'start a new archive in an empty directory');
  let hashes: Buffer[] = [];
  let sizePages = 0;
  const ps = archive.identity.pageSize;
  // Part by part: a base is every page of the database, too much to hold as one record.
  for (const part of archive.partsInRange(base, toLsn)) {
    for (let i = 0; i < part.pgnos.length; i++) hashes[part.pgnos[i]! - 1] = hash(part.pgnos[i]!, part.pageData.subarray(i * ps, (i + 1) * ps));
    sizePages = part.sizePages;
    if (hashes.length > sizePages) hashes = hashes.slice(0, sizePages);
  }
  return { sizePages, hashes };
}
