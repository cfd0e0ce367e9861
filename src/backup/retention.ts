/**
 * RETENTION: which backup sets (and which archived redo) a retention policy no longer needs. RMAN's REPORT
 * OBSOLETE / DELETE OBSOLETE semantics. Pure: manifests, segment descriptions and a clock in, a verdict out;
 * no I/O (the CLI in src/cli/retention-cmd.ts reads the repository and deletes).
 *
 * Words (RMAN): OBSOLETE = not needed to satisfy the policy. EXPIRED = listed, but its files are gone (found
 * by crosscheck, catalog.ts). They are different things: an expired set is never counted as satisfying a
 * policy (it cannot be restored), and it is only reported obsolete when it would be obsolete anyway.
 *
 * A CHAIN is a level 0 with every level 1 that depends on it (manifest.base names the level 0). Restore
 * (restore.ts planChain) starts from the newest level 0 at or before the target, applies level 1s of that
 * chain, then archived redo after the chain's end up to the target. So what a restore to target T needs is
 * one level 0 at or before T, sets of its chain, and the redo after them. Everything that follows is built
 * on that.
 *
 * The policies (exactly one):
 *
 *  - REDUNDANCY N (N >= 1): keep the N newest level 0 backups that are usable (not expired) and their
 *    chains. The promise: every LSN from the oldest kept level 0 to the end can be restored. Older level 0s
 *    are obsolete. With fewer than N usable level 0s, every level 0 is kept (a "shortfall": the policy is
 *    not met, and nothing is obsolete on its account) and the redo floor is the oldest level 0's end.
 *
 *  - RECOVERY WINDOW D: keep what is needed to restore ANY point in time in [now - D, now]. The earliest such
 *    point, now - D (the "point of recoverability"), is restored from the newest level 0 whose state is at or
 *    before it: the newest usable level 0 with endCommitTime <= now - D (the PIVOT). That level 0 is kept
 *    even though it is OLDER than the window: a newer level 0 inside the window cannot restore points
 *    before its own LSN (RMAN's example: window of 7 days on January 30, backups on January 1, 14 and 28:
 *    January 14 is kept for January 23..28, January 1 is obsolete). The pivot, every level 0 after it and
 *    their chains are kept; level 0s before the pivot are obsolete. When no usable level 0 is at or before
 *    now - D (the window reaches back before every backup), every level 0 is kept and no redo is obsolete:
 *    the points before the oldest level 0 can only come from redo (an archive's own base), so nothing old
 *    may go (a shortfall).
 *
 *    "The time of a backup" is the commit time of its end LSN (manifest.endCommitTime: the moment whose
 *    state it holds), not when it was taken (createdAt): a level 0 taken today of a database idle for ten
 *    days restores every point of those ten days.
 *
 * Level 1 sets follow their level 0: a level 1 whose level 0 is obsolete is obsolete, and so is a level 1
 * whose level 0 is not in the repository at all (no restore can use it). A level 1 of a kept level 0 is kept
 * (all of them, as RMAN does: a differential superseded by a later cumulative is not picked out).
 *
 * ARCHIVED REDO: the kept backups need the redo after the oldest kept level 0's end LSN (FLOOR): restores
 * from it to any later LSN apply redo after some set of the chain, the oldest such being the level 0
 * itself. A segment whose every record is at or before FLOOR (lastLsn <= FLOOR) is obsolete; a segment
 * holding any LSN after FLOOR is needed, and redo needed by a kept backup is never obsolete. When there is no
 * floor (no usable level 0, or the window shortfall above) no segment is obsolete. Segments may overlap (copies
 * from archives that sealed at other LSNs) or leave holes; each is judged on its own range, so a copy that
 * holds a needed LSN is kept whatever else holds it. LSNs are compared across incarnations safely: along an
 * archive's line they never repeat (src/redo/archive.ts), and a segment at or before FLOOR is before every
 * kept set's end, whichever line it came from, so no kept set can need it.
 *
 * Ordering: sets are taken in repository order (end LSN, then level, then name: Repo.sets()), so "newest"
 * is the last in that order. report.obsolete is in that order too; DELETE in deleteOrder(): level 1s before
 * the sets they depend on, so a deletion stopped half way never leaves a level 1 without its parent.
 */
import { RedoshipError } from '../error/index.js';
import type { BackupManifest } from './repo.js';

export type RetentionPolicy = { readonly redundancy: number } | { readonly recoveryWindowMs: number };

/** One archived redo segment, as much as retention needs of it (a repository's are known by name: no times). */
export interface RedoSegmentInfo {
  readonly name: string;
  readonly firstLsn: bigint;
  readonly lastLsn: bigint;
  readonly firstTime?: Date;
  readonly lastTime?: Date;
}

export interface RetentionInput {
  readonly sets: readonly BackupManifest[];
  /** The archived redo (optional): which segments are obsolete is reported only when given. */
  readonly segments?: readonly RedoSegmentInfo[];
  readonly now: Date;
  readonly policy: RetentionPolicy;
  /** Names of sets crosscheck found expired (files missing): they never count toward the policy. */
  readonly expired?: Iterable<string>;
}

export interface ObsoleteSet {
  readonly set: BackupManifest;
  readonly reason: string;
}

export interface ObsoleteSegment {
  readonly segment: RedoSegmentInfo;
  readonly reason: string;
}

export interface RetentionReport {
  readonly policy: RetentionPolicy;
  readonly now: Date;
  /** now - D for a recovery window; null for redundancy. */
  readonly windowStart: Date | null;
  /** The oldest level 0 kept on the policy's account (redundancy: the Nth newest; window: the pivot), or null. */
  readonly oldestKept: BackupManifest | null;
  /** Archived redo after this LSN is needed; at or before it, not (null: every segment is needed). */
  readonly redoFloorLsn: bigint | null;
  /** Sets not obsolete, in repository order. */
  readonly kept: readonly BackupManifest[];
  /** Obsolete sets with the reason, in repository order (delete them in deleteOrder()). */
  readonly obsolete: readonly ObsoleteSet[];
  /** Obsolete archived redo segments, in LSN order (empty when no segments were given). */
  readonly obsoleteRedo: readonly ObsoleteSegment[];
  /** Why the policy is not met by what the repository holds, or null when it is. */
  readonly shortfall: string | null;
}

const timeOf = (s: BackupManifest): number => Date.parse(s.endCommitTime);

/** Repository order: end LSN, then level, then name (as Repo.sets() returns them). */
export function repoOrder(a: BackupManifest, b: BackupManifest): number {
  const x = BigInt(a.endLsn);
  const y = BigInt(b.endLsn);
  if (x !== y) return x < y ? -1 : 1;
  if (a.level !== b.level) return a.level - b.level;
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

export function describePolicy(p: RetentionPolicy): string {
  return 'redundancy' in p ? `redundancy ${p.redundancy}` : `recovery window of ${formatWindow(p.recoveryWindowMs)}`;
}

function formatWindow(ms: number): string {
  const units: Array<[string, number]> = [['d', 86_400_000], ['h', 3_600_000], ['m', 60_000], ['s', 1000]];
  for (const [u, n] of units) if (ms >= n && ms % n === 0) return `${ms / n}${u}`;
  return `${ms}ms`;
}

function checkPolicy(p: RetentionPolicy): void {
  if ('redundancy' in p) {
    if (!Number.isInteger(p.redundancy) || p.redundancy < 1)
      throw new RedoshipError('USAGE', `redundancy ${p.redundancy}: keep at least one level 0`, 'give --redundancy a whole number >= 1');
  } else if (!Number.isFinite(p.recoveryWindowMs) || p.recoveryWindowMs < 0) {
    throw new RedoshipError('USAGE', `recovery window ${p.recoveryWindowMs} ms: not a duration`, 'give --recovery-window a duration like 7d or 12h');
  }
}

/** Decides what the policy no longer needs. See the top of this file for the semantics. */
export function findObsolete(input: RetentionInput): RetentionReport {
  const { policy, now } = input;
  checkPolicy(policy);
  const expired = new Set(input.expired ?? []);
  const sets = [...input.sets].sort(repoOrder);
  const byName = new Map(sets.map((s) => [s.name, s]));
  const index = new Map(sets.map((s, i) => [s.name, i]));
  const level0 = sets.filter((s) => s.level === 0);
  const usable0 = level0.filter((s) => !expired.has(s.name));

  let pivot: BackupManifest | null = null; // the oldest level 0 the policy keeps; older ones are obsolete
  let floor: BackupManifest | null = null; // redo at or before its end LSN is not needed
  let shortfall: string | null = null;
  let windowStart: Date | null = null;
  let why: (s: BackupManifest) => string;

  if ('redundancy' in policy) {
    const n = policy.redundancy;
    if (usable0.length < n)
      shortfall = `redundancy ${n} wants ${n} level 0 backup(s); the repository holds ${usable0.length} usable${level0.length > usable0.length ? ` (${level0.length - usable0.length} expired)` : ''}`;
    // Short of N usable level 0s, nothing goes: not even an expired one older than them all.
    pivot = usable0.length >= n ? usable0[usable0.length - n]! : (level0[0] ?? null);
    floor = pivot;
    why = () => `level 0 beyond redundancy ${n}: the ${n} newer level 0 backup(s) from ${pivot!.name} on are kept`;
  } else {
    const start = now.getTime() - policy.recoveryWindowMs;
    windowStart = new Date(start);
    const before = usable0.filter((s) => timeOf(s) <= start);
    pivot = before[before.length - 1] ?? null;
    floor = pivot;
    if (!pivot)
      shortfall =
        usable0.length === 0
          ? `the window starts at ${windowStart.toISOString()} and the repository holds no usable level 0 backup`
          : `the window starts at ${windowStart.toISOString()}, before the oldest usable level 0 ${usable0[0]!.name} (committed ${usable0[0]!.endCommitTime}): points before it cannot be restored from this repository, so nothing is obsolete`;
    why = (s) =>
      `level 0 (committed ${s.endCommitTime}) older than ${pivot!.name} (committed ${pivot!.endCommitTime}), the newest level 0 at or before the window start ${windowStart!.toISOString()}, which restores every point of the window`;
  }

  const obsolete0 = new Set<string>();
  if (pivot) {
    const p = index.get(pivot.name)!;
    for (const s of level0) if (index.get(s.name)! < p) obsolete0.add(s.name);
  }

  const kept: BackupManifest[] = [];
  const obsolete: ObsoleteSet[] = [];
  for (const s of sets) {
    let reason: string | null = null;
    if (s.level === 0) {
      if (obsolete0.has(s.name)) reason = why(s);
    } else {
      const base = byName.get(s.base);
      if (!base || base.level !== 0) reason = `level 1 whose level 0 ${s.base} is not in the repository: no restore can use it`;
      else if (obsolete0.has(base.name)) reason = `level 1 of ${base.name}, which is obsolete`;
    }
    if (reason !== null) obsolete.push({ set: s, reason: expired.has(s.name) ? `${reason} (and expired)` : reason });
    else kept.push(s);
  }

  const obsoleteRedo: ObsoleteSegment[] = [];
  const floorLsn = floor ? BigInt(floor.endLsn) : null;
  if (floorLsn !== null && input.segments) {
    const segs = [...input.segments].sort((a, b) => (a.firstLsn < b.firstLsn ? -1 : a.firstLsn > b.firstLsn ? 1 : 0));
    for (const g of segs)
      if (g.lastLsn <= floorLsn)
        obsoleteRedo.push({
          segment: g,
          reason: `its redo (LSN ${g.firstLsn}..${g.lastLsn}${g.lastTime ? `, to ${g.lastTime.toISOString()}` : ''}) is all at or before LSN ${floorLsn}, where the oldest kept level 0 ${floor!.name} is consistent`,
        });
  }

  return { policy, now, windowStart, oldestKept: pivot, redoFloorLsn: floorLsn, kept, obsolete, obsoleteRedo, shortfall };
}

/**
 * The obsolete sets in a safe order to delete: every set before its parent and its level 0 (deepest in the
 * parent chain first, newest first among equals), so a deletion stopped half way leaves whole chains.
 */
export function deleteOrder(r: RetentionReport): ObsoleteSet[] {
  const byName = new Map(r.obsolete.map((o) => [o.set.name, o.set]));
  const depth = (s: BackupManifest): number => {
    let d = 0;
    for (let p = s.parent ? byName.get(s.parent) : undefined; p && d < byName.size; p = p.parent ? byName.get(p.parent) : undefined) d++;
    return s.level === 0 ? 0 : d + 1;
  };
  return r.obsolete
    .map((o, i) => ({ o, i, d: depth(o.set) }))
    .sort((a, b) => b.d - a.d || b.i - a.i)
    .map((x) => x.o);
}
