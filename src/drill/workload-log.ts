/**
 * Reads the workload's counter log (see workload.ts) into what a drill reports: commits, outages (first
 * refused write to first accepted write, by the workload's own clock) and transactions lost in role
 * changes. The counter row goes up by one per transaction on whichever file the workload writes, so after a
 * switch the first counter on the new file says how much of the old file's history it holds: a first
 * counter of n + 1 after a last old counter of n is a switch without loss; each counter the new file does
 * not continue from is a lost transaction.
 */
import { existsSync, readFileSync } from 'node:fs';

export interface Outage {
  /** When the first refused attempt began (µs since the epoch). */
  readonly refusedUs: number;
  /** When the first accepted commit after it returned; null if none came. */
  readonly acceptedUs: number | null;
  readonly ms: number | null;
  readonly fromDb: number;
  readonly toDb: number | null;
  readonly code: string;
}

export interface SwitchLoss {
  readonly us: number;
  readonly from: number;
  readonly to: number;
  /** The last counter committed on the old file, and the first on the new one. */
  readonly lastOld: number | null;
  readonly firstNew: number | null;
  /** Transactions committed on the old file that the new one never got (negative: it has some the workload never made). */
  readonly lost: number;
}

export interface WorkloadLog {
  readonly commits: number;
  readonly commitUs: readonly number[];
  readonly counters: readonly number[];
  readonly dbs: readonly number[];
  readonly outages: readonly Outage[];
  readonly switches: readonly SwitchLoss[];
  readonly lastCounter: number | null;
  readonly lastDb: number;
}

export function readWorkloadLog(path: string): WorkloadLog {
  const commitUs: number[] = [];
  const counters: number[] = [];
  const dbs: number[] = [];
  const outages: Outage[] = [];
  const switchEvents: Array<{ us: number; from: number; to: number; commitIndex: number }> = [];
  let open: { refusedUs: number; fromDb: number; code: string } | null = null;
  const text = existsSync(path) ? readFileSync(path, 'utf8') : '';
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const f = line.split(' ');
    if (f[0] === '#') {
      if (f[1] === 'refused' && open === null) open = { refusedUs: Number(f[2]), fromDb: Number(f[3]), code: f[4] ?? '' };
      else if (f[1] === 'switch') switchEvents.push({ us: Number(f[2]), from: Number(f[3]), to: Number(f[4]), commitIndex: counters.length });
      continue;
    }
    const [, us, n, db] = f.map(Number) as [number, number, number, number | undefined];
    if (open !== null) {
      outages.push({ ...open, acceptedUs: us, ms: (us - open.refusedUs) / 1000, toDb: db ?? 0 });
      open = null;
    }
    commitUs.push(us);
    counters.push(n);
    dbs.push(db ?? 0);
  }
  if (open !== null) outages.push({ ...open, acceptedUs: null, ms: null, toDb: null });
  const switches = switchEvents.map((s): SwitchLoss => {
    const lastOld = s.commitIndex > 0 ? counters[s.commitIndex - 1]! : null;
    const firstNew = s.commitIndex < counters.length ? counters[s.commitIndex]! : null;
    return { us: s.us, from: s.from, to: s.to, lastOld, firstNew, lost: lastOld !== null && firstNew !== null ? lastOld - (firstNew - 1) : 0 };
  });
  return {
    commits: counters.length,
    commitUs,
    counters,
    dbs,
    outages,
    switches,
    lastCounter: counters.length ? counters[counters.length - 1]! : null,
    lastDb: dbs.length ? dbs[dbs.length - 1]! : 0,
  };
}

/** The first commit returned at or after us (on db, if given): its time, or null. */
export function firstCommitAfter(log: WorkloadLog, us: number, db?: number): number | null {
  for (let i = 0; i < log.commitUs.length; i++) if (log.commitUs[i]! >= us && (db === undefined || log.dbs[i] === db)) return log.commitUs[i]!;
  return null;
}
