/**
 * Retention (RMAN REPORT/DELETE OBSOLETE) over generated backup histories: level 0s, differential and
 * cumulative level 1s taken the way take.ts takes them (parent: the last set at or before; cumulative: the
 * last level 0), increasing LSNs and commit times (ties included), archived redo in segments as a repository
 * holds them (overlapping copies, a lost segment, no times), random policies and clocks, some sets expired. The properties, for every point the policy promises:
 *   - restore's own planner (planChain) over the sets that are NOT obsolete (and not expired) reaches it, with
 *     the redo after the chain in segments that are NOT obsolete;
 *   - it plans exactly the chain it would plan with every set: nothing restore would use is obsolete;
 *   - no redo after a kept set is obsolete (every LSN a segment held stays held by a kept segment);
 * and the RMAN rules hold exactly (which level 0s stay, level 1s follow their level 0, redo after the oldest
 * kept level 0 stays). Then the article's examples as fixed cases.
 */
import { describe, expect, test } from 'vitest';
import type { BackupManifest } from './repo.js';
import { planChain } from './restore.js';
import { deleteOrder, findObsolete, repoOrder, type RedoSegmentInfo, type RetentionPolicy, type RetentionReport } from './retention.js';
import { prng } from '../../test/helpers/prng.js';

const DAY = 86_400_000;
const HOUR = 3_600_000;


function setName(endLsn: bigint, level: 0 | 1, cumulative: boolean, at: number): string {
  const t = new Date(at).toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
  return `${endLsn.toString().padStart(20, '0')}-L${level}${level === 1 && cumulative ? 'c' : ''}-${t}`;
}

function manifest(o: { level: 0 | 1; cumulative?: boolean; parent: BackupManifest | null; endLsn: bigint; time: number; createdAt?: number; name?: string }): BackupManifest {
  const cumulative = o.level === 1 && !!o.cumulative;
  const createdAt = o.createdAt ?? o.time;
  const name = o.name ?? setName(o.endLsn, o.level, cumulative, createdAt);
  return {
    format: 1,
    databaseId: '0'.repeat(32),
    pageSize: 4096,
    name,
    level: o.level,
    cumulative,
    parent: o.parent?.name ?? null,
    base: o.parent ? o.parent.base : name,
    startLsn: String(o.parent ? BigInt(o.parent.endLsn) + 1n : 1n),
    endLsn: String(o.endLsn),
    endCommitTime: new Date(o.time).toISOString(),
    createdAt: new Date(createdAt).toISOString(),
    sizePages: 10,
    pages: o.level === 0 ? 10 : 2,
    compression: { algorithm: 'none', level: 0 },
    encryption: null,
    pieces: [],
    pageHashes: { name: 'page-hashes', sha256: '' },
  };
}

interface History {
  /** times[lsn]: commit time (ms) of LSN 1..last; times[0] unused. */
  readonly times: number[];
  readonly last: bigint;
  readonly sets: BackupManifest[];
  readonly segments: RedoSegmentInfo[];
  readonly expired: Set<string>;
}

function genHistory(rnd: () => number): History {
  const int = (lo: number, hi: number) => lo + Math.floor(rnd() * (hi - lo + 1));
  const commits = int(1, 250);
  const span = int(1, 60) * DAY;
  const avg = span / commits;
  const times = [0, Date.UTC(2026, 0, 1)];
  for (let i = 2; i <= commits; i++) times.push(times[i - 1]! + (rnd() < 0.15 ? 0 : Math.floor(rnd() * 2 * avg)));
  const last = BigInt(commits);

  // Backups at random LSNs (repeats allowed: a backup with no write since the last one), taken as take.ts does.
  const lsns = Array.from({ length: int(1, 22) }, () => BigInt(int(1, commits))).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const sets: BackupManifest[] = [];
  let clock = times[1]!;
  for (const lsn of lsns) {
    const time = times[Number(lsn)]!;
    clock = Math.max(clock + 1000, time + int(0, 600) * 1000); // strictly later each time: distinct names
    const hasL0 = sets.some((s) => s.level === 0);
    const r = rnd();
    const level: 0 | 1 = !hasL0 || r < 0.3 ? 0 : 1;
    const cumulative = level === 1 && r > 0.7;
    const sorted = [...sets].sort(repoOrder);
    const parent = level === 0 ? null : (sorted.filter((s) => BigInt(s.endLsn) <= lsn && (cumulative ? s.level === 0 : true)).pop() ?? null);
    sets.push(manifest({ level, cumulative, parent, endLsn: lsn, time, createdAt: clock }));
  }
  sets.sort(repoOrder);

  // Redo as a repository holds it: segments of one archive; sometimes also copies from another archive that
  // sealed at other LSNs (overlapping), a segment lost (a hole), or no times (a repository knows names only).
  const segments: RedoSegmentInfo[] = [];
  const withTimes = rnd() < 0.7;
  const cut = (prefix: string, from: number, to: number) => {
    for (let first = from; first <= to; ) {
      const lastOf = Math.min(to, first + int(0, 40));
      segments.push({
        name: `${prefix}-${first}`,
        firstLsn: BigInt(first),
        lastLsn: BigInt(lastOf),
        ...(withTimes ? { firstTime: new Date(times[first]!), lastTime: new Date(times[lastOf]!) } : {}),
      });
      first = lastOf + 1;
    }
  };
  cut('seg', 1, commits);
  if (rnd() < 0.3) {
    const from = int(1, commits);
    cut('copy', from, int(from, commits));
  }
  if (rnd() < 0.2) segments.splice(int(0, segments.length - 1), 1);

  const expired = new Set<string>();
  if (rnd() < 0.3) for (const s of sets) if (rnd() < 0.12) expired.add(s.name);
  return { times, last, sets, segments, expired };
}

function genPolicy(rnd: () => number, h: History, now: number): RetentionPolicy {
  if (rnd() < 0.5) return { redundancy: 1 + Math.floor(rnd() * 4) };
  const r = rnd();
  if (r < 0.1) return { recoveryWindowMs: 0 };
  if (r < 0.35) {
    // exactly at a level 0's commit time: the <= boundary
    const l0 = h.sets.filter((s) => s.level === 0);
    const t = Date.parse(l0[Math.floor(rnd() * l0.length)]!.endCommitTime);
    if (now >= t) return { recoveryWindowMs: now - t };
  }
  return { recoveryWindowMs: Math.floor(rnd() * (now - h.times[1]! + 5 * DAY)) };
}

/** The LSNs the policy promises can be restored (the end of history is the last LSN). */
function promisedTargets(h: History, r: RetentionReport): bigint[] {
  const out: bigint[] = [];
  if ('redundancy' in r.policy) {
    if (!r.oldestKept) return out;
    for (let l = BigInt(r.oldestKept.endLsn); l <= h.last; l++) out.push(l);
    return out;
  }
  // Every point in time T in [now - D, now]: the LSN restored at T is the last one committed at or before T.
  const start = r.windowStart!.getTime();
  const now = r.now.getTime();
  let atStart = 0n;
  for (let l = 1; l <= Number(h.last); l++) {
    if (h.times[l]! <= start) atStart = BigInt(l);
    else if (h.times[l]! <= now) out.push(BigInt(l));
  }
  if (atStart > 0n) out.unshift(atStart);
  return out;
}

const names = (xs: readonly BackupManifest[]) => xs.map((s) => s.name);

describe('retention over generated backup histories', () => {
  test('every promised point stays restorable with exactly the plan it had; the RMAN rules hold', () => {
    let checkedTargets = 0;
    let obsoleteSeen = 0;
    let obsoleteRedoSeen = 0;
    let windowKeptOlder = 0;
    for (let seed = 1; seed <= 600; seed++) {
      const rnd = prng(seed);
      const h = genHistory(rnd);
      const lastTime = h.times[Number(h.last)]!;
      const now = rnd() < 0.1 ? h.times[1 + Math.floor(rnd() * Number(h.last))]! : lastTime + Math.floor(rnd() * 3 * DAY);
      const policy = genPolicy(rnd, h, now);
      const ctx = `seed ${seed}, policy ${JSON.stringify(policy)}`;
      // Shuffled input: the order the caller gives must not matter.
      const shuffled = [...h.sets].sort(() => rnd() - 0.5);
      const r = findObsolete({ sets: shuffled, segments: h.segments, now: new Date(now), policy, expired: h.expired });

      const obsolete = new Set(r.obsolete.map((o) => o.set.name));
      const obsoleteSegs = new Set(r.obsoleteRedo.map((o) => o.segment.name));
      obsoleteSeen += obsolete.size;
      obsoleteRedoSeen += obsoleteSegs.size;
      expect(obsolete.size + r.kept.length, ctx).toBe(h.sets.length);
      expect(names(r.kept), ctx).toEqual(names(h.sets.filter((s) => !obsolete.has(s.name))));

      // What restore sees: sorted as Repo.sets() returns them, expired sets left out (restoreFromRepo).
      const usableAll = h.sets.filter((s) => !h.expired.has(s.name));
      const usableKept = usableAll.filter((s) => !obsolete.has(s.name));
      const coveredKept: boolean[] = [];
      const coveredAll: boolean[] = [];
      for (const g of h.segments)
        for (let l = g.firstLsn; l <= g.lastLsn; l++) {
          coveredAll[Number(l)] = true;
          if (!obsoleteSegs.has(g.name)) coveredKept[Number(l)] = true;
        }
      // Redo needed by a kept backup is never obsolete: every LSN after a kept set's end that some segment held
      // is still held by a kept one (whatever other copies of it went).
      for (const s of usableKept)
        for (let l = BigInt(s.endLsn) + 1n; l <= h.last; l++)
          if (coveredAll[Number(l)] && !coveredKept[Number(l)]) expect.fail(`${ctx}: redo LSN ${l} after kept ${s.name} is obsolete`);

      const targets = promisedTargets(h, r);
      const oldestKeptEnd = r.oldestKept ? BigInt(r.oldestKept.endLsn) : null;
      for (const t of targets) {
        const before = planChain(usableAll, t);
        const after = planChain(usableKept, t);
        // When the policy is met, every promised point is restorable in the first place.
        if (r.shortfall === null) expect(before.length, `${ctx}: LSN ${t} unreachable even with every set`).toBeGreaterThan(0);
        if (before.length === 0) continue;
        checkedTargets++;
        // (plain checks first: expect() per LSN would dominate the run time)
        if (names(after).join() !== names(before).join()) expect(names(after), `${ctx}: plan for LSN ${t}`).toEqual(names(before));
        for (const s of before) if (obsolete.has(s.name)) expect.fail(`${ctx}: ${s.name} is needed for LSN ${t} but obsolete`);
        const chainEnd = BigInt(after[after.length - 1]!.endLsn);
        // (a hole in the redo before retention is no retention's doing: only what was there must stay)
        for (let l = chainEnd + 1n; l <= t; l++) if (coveredAll[Number(l)] && !coveredKept[Number(l)]) expect.fail(`${ctx}: redo LSN ${l} is needed for LSN ${t} (chain ends ${chainEnd}) but obsolete`);
      }

      // RMAN, exactly.
      const level0 = h.sets.filter((s) => s.level === 0);
      const usable0 = level0.filter((s) => !h.expired.has(s.name));
      const keptUsable0 = usable0.filter((s) => !obsolete.has(s.name));
      if ('redundancy' in policy) {
        if (usable0.length >= policy.redundancy) {
          expect(keptUsable0.length, ctx).toBe(policy.redundancy);
          expect(r.shortfall, ctx).toBeNull();
        } else {
          expect(r.obsolete.filter((o) => o.set.level === 0), ctx).toEqual([]);
          expect(r.shortfall, ctx).not.toBeNull();
        }
      } else {
        const start = now - policy.recoveryWindowMs;
        const atOrBefore = keptUsable0.filter((s) => Date.parse(s.endCommitTime) <= start);
        if (usable0.some((s) => Date.parse(s.endCommitTime) <= start)) {
          // exactly one kept level 0 at or before the window start: the newest such, possibly outside the window
          expect(atOrBefore.length, ctx).toBe(1);
          expect(atOrBefore[0]!.name, ctx).toBe(usable0.filter((s) => Date.parse(s.endCommitTime) <= start).pop()!.name);
          if (Date.parse(atOrBefore[0]!.endCommitTime) < start && keptUsable0.length > 1) windowKeptOlder++;
          expect(r.shortfall, ctx).toBeNull();
        } else {
          expect(obsolete.size, ctx).toBe(0);
          expect(r.redoFloorLsn, ctx).toBeNull();
          expect(r.shortfall, ctx).not.toBeNull();
        }
        for (const o of r.obsolete) if (o.set.level === 0) expect(Date.parse(o.set.endCommitTime) <= start, `${ctx}: ${o.set.name} obsolete`).toBe(true);
      }
      // Level 0s: obsolete exactly when older than the oldest kept one.
      for (const s of level0) expect(obsolete.has(s.name), `${ctx}: ${s.name}`).toBe(r.oldestKept !== null && repoOrder(s, r.oldestKept) < 0);
      // Level 1s follow their level 0.
      for (const s of h.sets) if (s.level === 1) expect(obsolete.has(s.name), `${ctx}: ${s.name}`).toBe(obsolete.has(s.base));
      // Redo: obsolete exactly when all of it is at or before the oldest kept level 0's end.
      expect(r.redoFloorLsn, ctx).toBe(r.redoFloorLsn === null ? null : oldestKeptEnd);
      for (const g of h.segments) expect(obsoleteSegs.has(g.name), `${ctx}: ${g.name}`).toBe(r.redoFloorLsn !== null && g.lastLsn <= r.redoFloorLsn);

      // Deleting in deleteOrder() never removes a set before one that depends on it.
      const order = deleteOrder(r).map((o) => o.set);
      order.forEach((s, i) => {
        for (const later of order.slice(i + 1)) expect(later.parent === s.name || later.base === s.name && later.name !== s.name, `${ctx}: ${later.name} deleted after ${s.name}`).toBe(false);
      });
    }
    // The generator really exercised the interesting cases.
    expect(checkedTargets).toBeGreaterThan(10_000);
    expect(obsoleteSeen).toBeGreaterThan(500);
    expect(obsoleteRedoSeen).toBeGreaterThan(200);
    expect(windowKeptOlder).toBeGreaterThan(20);
  });
});

describe('retention: fixed cases', () => {
  /** A weekly-ish history: a level 0 every 7 days (the newest 3 days old), a differential and a cumulative daily in between. */
  function weekly(now: number, level0AgesDays: number[]) {
    const sets: BackupManifest[] = [];
    const times: number[] = [0];
    const lsnAt = (t: number) => {
      while (times[times.length - 1]! < t) times.push(times[times.length - 1]! ? times[times.length - 1]! + HOUR : t);
      return BigInt(times.length - 1);
    };
    times.push(now - 30 * DAY);
    const l0: Record<number, BackupManifest> = {};
    for (const age of [...level0AgesDays].sort((a, b) => b - a)) {
      const t0 = now - age * DAY;
      const base = manifest({ level: 0, parent: null, endLsn: lsnAt(t0), time: times[times.length - 1]! });
      sets.push(base);
      l0[age] = base;
      if (age > 1) {
        const d1 = manifest({ level: 1, parent: base, endLsn: lsnAt(t0 + DAY), time: times[times.length - 1]! });
        const c2 = manifest({ level: 1, cumulative: true, parent: base, endLsn: lsnAt(t0 + 2 * DAY), time: times[times.length - 1]! });
        sets.push(d1, c2);
      }
    }
    const end = lsnAt(now - HOUR);
    const segments: RedoSegmentInfo[] = [];
    for (let f = 1n; f <= end; f += 24n) {
      const l = f + 23n > end ? end : f + 23n;
      segments.push({ name: `seg-${f}`, firstLsn: f, lastLsn: l, firstTime: new Date(times[Number(f)]!), lastTime: new Date(times[Number(l)]!) });
    }
    return { sets: sets.sort(repoOrder), segments, l0, times, end };
  }

  test('RMAN: a 7-day window, the newest level 0 3 days old, the previous 10: the 10-day-old one is kept', () => {
    const now = Date.UTC(2026, 1, 1, 12);
    const h = weekly(now, [24, 17, 10, 3]);
    const r = findObsolete({ sets: h.sets, segments: h.segments, now: new Date(now), policy: { recoveryWindowMs: 7 * DAY } });
    expect(r.shortfall).toBeNull();
    expect(r.oldestKept?.name).toBe(h.l0[10]!.name);
    const obsolete = r.obsolete.map((o) => o.set);
    // The 24- and 17-day-old level 0s and their level 1s are obsolete; the 10-day-old chain and the newest are kept.
    expect(names(obsolete)).toEqual(names(h.sets.filter((s) => s.base === h.l0[24]!.name || s.base === h.l0[17]!.name)));
    expect(names(r.kept)).toEqual(names(h.sets.filter((s) => s.base === h.l0[10]!.name || s.base === h.l0[3]!.name)));
    expect(r.obsolete.find((o) => o.set.name === h.l0[17]!.name)!.reason).toMatch(/older than .* the newest level 0 at or before the window start/);
    expect(r.obsolete.find((o) => o.set.base === h.l0[17]!.name && o.set.level === 1)!.reason).toMatch(/level 1 of .*, which is obsolete/);
    // Redo from the 10-day-old level 0 on is kept, older redo is obsolete.
    const floor = BigInt(h.l0[10]!.endLsn);
    expect(r.redoFloorLsn).toBe(floor);
    expect(r.obsoleteRedo.length).toBeGreaterThan(0);
    for (const g of h.segments) expect(r.obsoleteRedo.some((o) => o.segment === g)).toBe(g.lastLsn <= floor);
    // Points 4..7 days ago are restored from the 10-day-old chain plus redo, with only what is kept.
    const kept = r.kept;
    for (const daysAgo of [7, 6.5, 5, 4]) {
      const t = now - daysAgo * DAY;
      const target = BigInt(h.times.filter((x, i) => i > 0 && x <= t).length);
      const chain = planChain(kept, target);
      expect(chain[0]?.name, `${daysAgo} days ago`).toBe(h.l0[10]!.name);
      const chainEnd = BigInt(chain[chain.length - 1]!.endLsn);
      const keptSegs = h.segments.filter((g) => !r.obsoleteRedo.some((o) => o.segment === g));
      for (let l = chainEnd + 1n; l <= target; l++) expect(keptSegs.some((g) => g.firstLsn <= l && l <= g.lastLsn)).toBe(true);
    }
    // With the newest level 0 alone, 7 days ago could not be restored: that is why the older one stays.
    expect(planChain([h.l0[3]!], BigInt(h.times.filter((x, i) => i > 0 && x <= now - 7 * DAY).length))).toEqual([]);
  });

  test("the article's figures: backups January 1, 14, 28; a 7-day window on January 23 and on January 30", () => {
    const at = (d: number) => Date.UTC(2026, 0, d, 12);
    const jan1 = manifest({ level: 0, parent: null, endLsn: 100n, time: at(1) });
    const jan14 = manifest({ level: 0, parent: null, endLsn: 500n, time: at(14) });
    const jan28 = manifest({ level: 0, parent: null, endLsn: 1050n, time: at(28) });
    const logs: RedoSegmentInfo[] = [
      { name: 'seq 1-499', firstLsn: 1n, lastLsn: 499n, firstTime: new Date(at(1)), lastTime: new Date(at(14) - 1) },
      { name: 'seq 500-850', firstLsn: 500n, lastLsn: 850n, firstTime: new Date(at(14)), lastTime: new Date(at(23)) },
      { name: 'seq 851-1150', firstLsn: 851n, lastLsn: 1150n, firstTime: new Date(at(23)), lastTime: new Date(at(30)) },
    ];
    // Figure 1: January 23, the point of recoverability January 16: January 14 is needed, January 1 and the logs before 500 are not.
    let r = findObsolete({ sets: [jan1, jan14], segments: logs.slice(0, 2), now: new Date(at(23)), policy: { recoveryWindowMs: 7 * DAY } });
    expect(names(r.obsolete.map((o) => o.set))).toEqual([jan1.name]);
    expect(r.obsoleteRedo.map((o) => o.segment.name)).toEqual(['seq 1-499']);
    // Figure 2: January 30, the point January 23: January 14 is NOT obsolete although January 28 is in the window.
    r = findObsolete({ sets: [jan1, jan14, jan28], segments: logs, now: new Date(at(30)), policy: { recoveryWindowMs: 7 * DAY } });
    expect(names(r.kept)).toEqual([jan14.name, jan28.name]);
    expect(names(r.obsolete.map((o) => o.set))).toEqual([jan1.name]);
    expect(r.obsoleteRedo.map((o) => o.segment.name)).toEqual(['seq 1-499']); // logs 500..1150 are kept
    // Redundancy 1 on January 30 keeps only January 28 (and the redo after it).
    r = findObsolete({ sets: [jan1, jan14, jan28], segments: logs, now: new Date(at(30)), policy: { redundancy: 1 } });
    expect(names(r.kept)).toEqual([jan28.name]);
    expect(r.obsoleteRedo.map((o) => o.segment.name)).toEqual(['seq 1-499', 'seq 500-850']);
    // The window starting exactly at January 14's commit time still pivots on it (<=).
    r = findObsolete({ sets: [jan1, jan14, jan28], now: new Date(at(30)), policy: { recoveryWindowMs: at(30) - at(14) } });
    expect(r.oldestKept?.name).toBe(jan14.name);
    expect(r.obsoleteRedo).toEqual([]); // no segments given, none reported
  });

  test('a window before every level 0, and fewer level 0s than the redundancy: nothing is obsolete, and it says why', () => {
    const now = Date.UTC(2026, 1, 1);
    const h = weekly(now, [10, 3]);
    let r = findObsolete({ sets: h.sets, segments: h.segments, now: new Date(now), policy: { recoveryWindowMs: 20 * DAY } });
    expect(r.obsolete).toEqual([]);
    expect(r.obsoleteRedo).toEqual([]);
    expect(r.shortfall).toMatch(/before the oldest usable level 0 .* nothing is obsolete/);
    r = findObsolete({ sets: h.sets, segments: h.segments, now: new Date(now), policy: { redundancy: 3 } });
    expect(r.obsolete).toEqual([]);
    expect(r.shortfall).toMatch(/redundancy 3 wants 3 level 0 backup\(s\); the repository holds 2 usable/);
    r = findObsolete({ sets: [], segments: h.segments, now: new Date(now), policy: { redundancy: 1 } });
    expect([r.obsolete, r.obsoleteRedo, r.oldestKept]).toEqual([[], [], null]);
  });

  test('an expired level 0 does not count: redundancy 1 keeps the newest usable one too', () => {
    const now = Date.UTC(2026, 1, 1);
    const h = weekly(now, [17, 10, 3]);
    const r = findObsolete({ sets: h.sets, now: new Date(now), policy: { redundancy: 1 }, expired: [h.l0[3]!.name] });
    expect(r.oldestKept?.name).toBe(h.l0[10]!.name);
    expect(names(r.obsolete.map((o) => o.set))).toEqual(names(h.sets.filter((s) => s.base === h.l0[17]!.name)));
  });

  test('a level 1 whose level 0 is gone is obsolete; deletion order puts dependants first, even at one LSN', () => {
    const now = Date.UTC(2026, 1, 1);
    const gone = manifest({ level: 0, parent: null, endLsn: 5n, time: now - 9 * DAY });
    const orphan = manifest({ level: 1, parent: gone, endLsn: 8n, time: now - 8 * DAY });
    const a = manifest({ level: 0, parent: null, endLsn: 10n, time: now - 7 * DAY });
    const c = manifest({ level: 1, cumulative: true, parent: a, endLsn: 12n, time: now - 6 * DAY, createdAt: now - 6 * DAY });
    const d = manifest({ level: 1, parent: c, endLsn: 12n, time: now - 6 * DAY, createdAt: now - 6 * DAY + 1000 }); // no write since c
    const b = manifest({ level: 0, parent: null, endLsn: 20n, time: now - DAY });
    const r = findObsolete({ sets: [b, d, c, a, orphan], now: new Date(now), policy: { redundancy: 1 } });
    expect(r.obsolete.find((o) => o.set === orphan)!.reason).toMatch(/whose level 0 .* is not in the repository/);
    expect(names(r.kept)).toEqual([b.name]);
    const order = names(deleteOrder(r).map((o) => o.set));
    expect(order.indexOf(d.name)).toBeLessThan(order.indexOf(c.name));
    expect(order.indexOf(c.name)).toBeLessThan(order.indexOf(a.name));
    expect(order).toHaveLength(4);
  });

  test('policies out of range are usage errors', () => {
    const now = new Date();
    expect(() => findObsolete({ sets: [], now, policy: { redundancy: 0 } })).toThrow(/keep at least one level 0/);
    expect(() => findObsolete({ sets: [], now, policy: { redundancy: 1.5 } })).toThrow(/redundancy/);
    expect(() => findObsolete({ sets: [], now, policy: { recoveryWindowMs: -1 } })).toThrow(/recovery window/);
  });
});
