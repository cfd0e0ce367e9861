/*
 * INCARNATION HISTORY: which line of history an archive follows (DESIGN.md Words: incarnation; Oracle's
 * RESETLOGS, PostgreSQL's timelines). Kept beside the archive identity as
 *
 *   history.json   { "format": 1, "incarnations": [ Incarnation, ... ] }   (written atomically, fsynced)
 *
 * Incarnation 1 is the line the archive was created on (forkLsn 0). Each promotion (or opening after a
 * point-in-time restore) appends one entry: its number (one more than any before), the last LSN it shares
 * with its parent (forkLsn: its own records start at forkLsn + 1), a random id and when.
 *
 * LSNs go on increasing across incarnations, so "LSN n on this line" is unambiguous: it belongs to the last
 * incarnation whose forkLsn < n. Invariants: (1) entries are in order, incarnation numbers strictly increasing
 * and forkLsn non-decreasing; (2) an archive holds records of its own line only: what an older incarnation
 * had after a fork is set aside (diverged/) when the fork is recorded; (3) a history is only ever extended,
 * never rewritten: two archives are on the same line iff one's history is a prefix of the other's.
 *
 * Fencing follows from (3): a peer whose history extends ours knows a fork we do not; one whose history is a
 * proper prefix of ours was superseded (it must not ship to us); neither: the lines diverged.
 */
import { existsSync, readFileSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { RedoshipError, ioError } from '../error/index.js';
import { fsyncDir } from './segment-writer.js';

export const HISTORY_FILE = 'history.json';

export interface Incarnation {
  readonly incarnation: number;
  /** Last LSN shared with the parent incarnation; this incarnation's records start at forkLsn + 1. */
  readonly forkLsn: bigint;
  /** 16 hex digits, random: two forks that happen to pick the same number are still told apart. */
  readonly id: string;
  /** ISO time of the fork. */
  readonly at: string;
  /** Why: 'created', 'promoted', 'switchover', 'restored'. */
  readonly reason: string;
  /** The database that became the primary of this incarnation (files only; informational on other sites). */
  readonly db?: string;
}

export type History = readonly Incarnation[];

/** The history of an archive that never forked. The id is fixed so that every copy of it agrees. */
export const FIRST_INCARNATION: Incarnation = { incarnation: 1, forkLsn: 0n, id: '0000000000000001', at: '1970-01-01T00:00:00.000Z', reason: 'created' };

export function currentIncarnation(h: History): Incarnation {
  return h[h.length - 1]!;
}

/** The incarnation LSN n belongs to on this line. */
export function incarnationOf(h: History, n: bigint): number {
  let inc = h[0]!.incarnation;
  for (const e of h) if (e.forkLsn < n) inc = e.incarnation;
  return inc;
}

export function sameEntry(a: Incarnation, b: Incarnation): boolean {
  return a.incarnation === b.incarnation && a.forkLsn === b.forkLsn && a.id === b.id;
}

export function isPrefix(a: History, b: History): boolean {
  return a.length <= b.length && a.every((e, i) => sameEntry(e, b[i]!));
}

/**
 * How history `ours` relates to history `theirs`:
 *  'same'      equal
 *  'behind'    ours is a proper prefix of theirs: they know forks we do not (forkLsn: where the first one left us)
 *  'ahead'     theirs is a proper prefix of ours: they were superseded (forkLsn: where we left them)
 *  'diverged'  neither (forkLsn: the last LSN both lines share, as far as the histories tell)
 */
export function compareHistories(ours: History, theirs: History): { relation: 'same' | 'behind' | 'ahead' | 'diverged'; forkLsn: bigint } {
  let i = 0;
  while (i < ours.length && i < theirs.length && sameEntry(ours[i]!, theirs[i]!)) i++;
  if (i === ours.length && i === theirs.length) return { relation: 'same', forkLsn: 0n };
  if (i === ours.length) return { relation: 'behind', forkLsn: theirs[i]!.forkLsn };
  if (i === theirs.length) return { relation: 'ahead', forkLsn: ours[i]!.forkLsn };
  const a = ours[i]!.forkLsn;
  const b = theirs[i]!.forkLsn;
  return { relation: 'diverged', forkLsn: a < b ? a : b };
}

export function describeIncarnation(e: Incarnation): string {
  return e.forkLsn === 0n ? `incarnation ${e.incarnation}` : `incarnation ${e.incarnation} (forked after LSN ${e.forkLsn}, ${e.reason} ${e.at})`;
}

/** A new incarnation forking this line after forkLsn. */
export function nextIncarnation(h: History, forkLsn: bigint, reason: string, db?: string): Incarnation {
  const cur = currentIncarnation(h);
  if (forkLsn < cur.forkLsn)
    throw new RedoshipError('USAGE', `cannot fork at LSN ${forkLsn}: ${describeIncarnation(cur)} starts after LSN ${cur.forkLsn}`, 'pick a later point');
  return { incarnation: cur.incarnation + 1, forkLsn, id: randomBytes(8).toString('hex'), at: new Date().toISOString(), reason, ...(db ? { db } : {}) };
}

/** Checks a decoded history (from a file or the wire). Returns a reason when it is not one. */
export function checkHistory(h: History): string | null {
  if (h.length === 0) return 'empty history';
  if (h.length > 10_000) return 'history too long';
  for (let i = 0; i < h.length; i++) {
    const e = h[i]!;
    if (!Number.isInteger(e.incarnation) || e.incarnation < 1 || e.incarnation > 0xffffffff) return `entry ${i}: bad incarnation`;
    if (typeof e.forkLsn !== 'bigint' || e.forkLsn < 0n) return `entry ${i}: bad forkLsn`;
    if (typeof e.id !== 'string' || !/^[0-9a-f]{16}$/.test(e.id)) return `entry ${i}: bad id`;
    if (typeof e.at !== 'string' || typeof e.reason !== 'string' || e.reason.length > 64) return `entry ${i}: bad time or reason`;
    if (i === 0 && e.forkLsn !== 0n) return 'entry 0: the first incarnation must start at LSN 0';
    if (i > 0 && (e.incarnation <= h[i - 1]!.incarnation || e.forkLsn < h[i - 1]!.forkLsn)) return `entry ${i}: out of order`;
  }
  return null;
}

/** For JSON and msgpack: forkLsn as a decimal string in files, a bigint on the wire. */
export function historyToJson(h: History): Array<Record<string, string | number>> {
  return h.map((e) => ({ incarnation: e.incarnation, forkLsn: String(e.forkLsn), id: e.id, at: e.at, reason: e.reason, ...(e.db ? { db: e.db } : {}) }));
}

export function historyFromJson(raw: unknown, where: string): History {
  const bad = (why: string) =>
    new RedoshipError('ARCHIVE_CORRUPT', `${where} is not a valid incarnation history (${why})`, 'restore it from a copy of this archive (a standby or the backup repository holds one)');
  if (!Array.isArray(raw)) throw bad('not a list');
  let h: Incarnation[];
  try {
    h = raw.map((o: Record<string, unknown>) => ({
      incarnation: Number(o.incarnation),
      forkLsn: BigInt(String(o.forkLsn)),
      id: String(o.id),
      at: String(o.at),
      reason: String(o.reason),
      ...(typeof o.db === 'string' ? { db: o.db } : {}),
    }));
  } catch {
    throw bad('an entry does not parse');
  }
  const why = checkHistory(h);
  if (why) throw bad(why);
  return h;
}

export function readHistory(archiveDir: string): History {
  const p = join(archiveDir, HISTORY_FILE);
  if (!existsSync(p)) return [FIRST_INCARNATION];
  let o: { format?: number; incarnations?: unknown };
  try {
    o = JSON.parse(readFileSync(p, 'utf8')) as typeof o;
  } catch (e) {
    throw new RedoshipError('ARCHIVE_CORRUPT', `${p} is not valid JSON`, 'restore it from a copy of this archive', { cause: e });
  }
  if (o.format !== 1) throw new RedoshipError('ARCHIVE_CORRUPT', `${p} has format ${String(o.format)}; this redoship reads 1`, 'upgrade redoship');
  return historyFromJson(o.incarnations, p);
}

/** Writes the history atomically and durably. Refuses to rewrite: the new one must extend the old. */
export function writeHistory(archiveDir: string, h: History): void {
  const old = readHistory(archiveDir);
  if (!isPrefix(old, h))
    throw new RedoshipError('FENCED', `refusing to replace the incarnation history of ${archiveDir} with one that does not extend it`, 'this archive follows another line of history; see `redoship reinstate`');
  const why = checkHistory(h);
  if (why) throw new RedoshipError('USAGE', `invalid incarnation history: ${why}`, 'this is a bug; please report it');
  const p = join(archiveDir, HISTORY_FILE);
  try {
    writeFileSync(`${p}.tmp`, JSON.stringify({ format: 1, incarnations: historyToJson(h) }, null, 2) + '\n', { flush: true });
    renameSync(`${p}.tmp`, p);
  } catch (e) {
    throw ioError('write the incarnation history', p, e);
  }
  fsyncDir(archiveDir);
}

/*
 * THE FENCE: fenced.json in an archive directory says its database was superseded as a primary (demoted by a
 * switchover, or told by a standby that follows a newer incarnation). `redoship primary` refuses to run on it
 * and its redo server refuses every standby; `redoship reinstate` makes it a standby and removes the fence.
 *
 *   fenced.json   { "why": "...", "at": ISO, "newPrimary": URL | null }
 */
export const FENCE_FILE = 'fenced.json';

export interface Fence {
  readonly why: string;
  readonly at: string;
  readonly newPrimary: string | null;
}

export function readFence(archiveDir: string): Fence | null {
  const p = join(archiveDir, FENCE_FILE);
  if (!existsSync(p)) return null;
  try {
    const o = JSON.parse(readFileSync(p, 'utf8')) as Partial<Fence>;
    return { why: String(o.why ?? 'superseded'), at: String(o.at ?? ''), newPrimary: typeof o.newPrimary === 'string' ? o.newPrimary : null };
  } catch {
    // A fence that does not parse still fences: refusing to ship is the safe side.
    return { why: `${p} exists (unreadable)`, at: '', newPrimary: null };
  }
}

export function writeFence(archiveDir: string, f: Fence): void {
  const p = join(archiveDir, FENCE_FILE);
  try {
    writeFileSync(`${p}.tmp`, JSON.stringify(f, null, 2) + '\n', { flush: true });
    renameSync(`${p}.tmp`, p);
  } catch (e) {
    throw ioError('write the fence', p, e);
  }
  fsyncDir(archiveDir);
}

export function removeFence(archiveDir: string): void {
  const p = join(archiveDir, FENCE_FILE);
  if (!existsSync(p)) return;
  try {
    unlinkSync(p);
  } catch (e) {
    throw ioError('remove the fence', p, e);
  }
  fsyncDir(archiveDir);
}
