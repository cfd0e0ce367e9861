/**
 * The figures of a drill, from the workload's own log and the timeline: outages (RTO: first refused write
 * to first accepted write), transactions lost (RPO), failover (primary death to promotion; promote to the
 * first accepted write), switchovers (the outage the workload saw; what the command reported), reinstates
 * (what the command reported: pages copied, discarded transactions), and lag per standby.
 */
import type { DrillState, TimelineEntry } from './runner.js';
import { counterOf } from './compare.js';
import { firstCommitAfter } from './workload-log.js';

export interface OutageFigure {
  readonly atMs: number;
  readonly ms: number | null;
  readonly from: string;
  readonly to: string | null;
  readonly during: string;
}

export interface Figures {
  readonly workload: { readonly commits: number; readonly switches: number; readonly outages: readonly OutageFigure[] } | null;
  readonly rpo: { readonly lost: number; readonly detail: string } | null;
  readonly failovers: ReadonlyArray<{ node: string; deathToPromotedMs: number | null; promoteCommandMs: number; promoteMs: number | null; promoteToFirstWriteMs: number | null; forkLsn: string | null; incarnation: number | null }>;
  readonly switchovers: ReadonlyArray<{ from: string; to: string; commandMs: number; outageMs: number | null; reported: Readonly<Record<string, unknown>> }>;
  readonly reinstates: ReadonlyArray<{ node: string; commandMs: number; reported: Readonly<Record<string, unknown>> }>;
  readonly restores: ReadonlyArray<{ from: string; to: string; commandMs: number; reported: Readonly<Record<string, unknown>> }>;
  readonly lags: Readonly<Record<string, { maxMs: number | null; p50Ms: number | null; maxRecordsBehind: number; samples: number }>>;
}

/** Transactions lost in role changes, and at the end (the file the workload last wrote holds its last counter). */
export function lossOf(d: DrillState): { lost: number; extra: number; detail: string } {
  const log = d.workloadLog();
  if (log.commits === 0) return { lost: 0, extra: 0, detail: 'the workload committed nothing' };
  let lost = 0;
  let extra = 0;
  const parts: string[] = [];
  for (const s of log.switches) {
    if (s.lost > 0) lost += s.lost;
    if (s.lost < 0) extra -= s.lost;
    parts.push(`switch ${name(d, s.from)} -> ${name(d, s.to)}: last counter ${s.lastOld ?? '-'} there, first ${s.firstNew ?? '-'} here (${s.lost > 0 ? `${s.lost} lost` : s.lost < 0 ? `${-s.lost} unknown` : 'none lost'})`);
  }
  const path = d.workloadPaths[log.lastDb]!;
  const n = counterOf(path);
  if (n === null) parts.push(`cannot read the counter of ${name(d, log.lastDb)}`);
  else {
    const gap = log.lastCounter! - n;
    if (gap > 0) lost += gap;
    if (gap < 0) extra -= gap;
    parts.push(`${name(d, log.lastDb)} holds counter ${n}, the workload's last commit ${log.lastCounter}`);
  }
  return { lost, extra, detail: `${log.commits} commits; ${parts.join('; ')}` };
}

function name(d: DrillState, dbIndex: number): string {
  const path = d.workloadPaths[dbIndex];
  for (const s of d.sites.values()) if (s.db === path) return s.name;
  return `db ${dbIndex}`;
}

function stepAt(d: DrillState, absMs: number): TimelineEntry | undefined {
  let last: TimelineEntry | undefined;
  for (const e of d.timeline) if (d.t0 + e.atMs <= absMs) last = e;
  return last;
}

export function computeFigures(d: DrillState, workloadResult: Record<string, unknown> | null): Figures {
  const log = d.workloadLog();
  const outages = log.outages.map((o): OutageFigure => ({
    atMs: o.refusedUs / 1000 - d.t0,
    ms: o.ms,
    from: name(d, o.fromDb),
    to: o.toDb === null ? null : name(d, o.toDb),
    during: stepAt(d, o.refusedUs / 1000)?.label ?? '-',
  }));
  const abs = (e: TimelineEntry) => d.t0 + e.atMs;
  const failovers: Array<Figures['failovers'][number]> = [];
  const switchovers: Array<Figures['switchovers'][number]> = [];
  const reinstates: Array<Figures['reinstates'][number]> = [];
  const restores: Array<Figures['restores'][number]> = [];
  d.timeline.forEach((e, i) => {
    if (e.status !== 'ok') return;
    const data = e.data ?? {};
    if (e.kind === 'promote' || (e.kind === 'restore' && / as the primary|started as the primary/.test(e.detail))) {
      const node = String(e.kind === 'promote' ? data.node : data.to);
      const kill = d.timeline.slice(0, i).reverse().find((k) => k.kind === 'kill' && k.data?.primary === true);
      const promotedAt = abs(e) + e.ms;
      const dbIndex = d.workloadPaths.indexOf(d.sites.get(node)?.db ?? '');
      const first = dbIndex >= 0 ? firstCommitAfter(log, abs(e) * 1000, dbIndex) : null;
      failovers.push({
        node,
        deathToPromotedMs: kill ? promotedAt - Number(kill.data!.killedAtMs) : null,
        promoteCommandMs: e.ms,
        promoteMs: typeof data.promoteMs === 'number' ? data.promoteMs : null,
        promoteToFirstWriteMs: first === null ? null : first / 1000 - abs(e),
        forkLsn: data.forkLsn === undefined ? null : String(data.forkLsn),
        incarnation: typeof data.incarnation === 'number' ? data.incarnation : null,
      });
      if (e.kind === 'restore') restores.push({ from: String(data.from), to: node, commandMs: e.ms, reported: data });
    } else if (e.kind === 'switchover') {
      const o = log.outages.find((x) => x.refusedUs / 1000 >= abs(e) - 50 && x.refusedUs / 1000 <= abs(e) + e.ms);
      switchovers.push({ from: String(data.from), to: String(data.to), commandMs: e.ms, outageMs: o?.ms ?? null, reported: data });
    } else if (e.kind === 'reinstate') reinstates.push({ node: String(data.node), commandMs: e.ms, reported: data });
    else if (e.kind === 'restore') restores.push({ from: String(data.from), to: String(data.to), commandMs: e.ms, reported: data });
  });
  const lags: Record<string, { maxMs: number | null; p50Ms: number | null; maxRecordsBehind: number; samples: number }> = {};
  for (const s of d.sites.values()) {
    const xs = d.lags.filter((l) => l.node === s.name);
    if (xs.length === 0) continue;
    const sorted = xs.flatMap((x) => (x.lagMs === null ? [] : [x.lagMs])).sort((a, b) => a - b);
    lags[s.name] = { maxMs: sorted.length ? sorted[sorted.length - 1]! : null, p50Ms: sorted.length ? sorted[Math.floor(sorted.length / 2)]! : null, maxRecordsBehind: Math.max(...xs.map((x) => x.recordsBehind)), samples: xs.length };
  }
  const ran = log.commits > 0 || workloadResult !== null;
  const loss = ran ? lossOf(d) : null;
  return {
    workload: ran ? { commits: log.commits, switches: log.switches.length, outages } : null,
    rpo: loss ? { lost: loss.lost, detail: loss.detail } : null,
    failovers,
    switchovers,
    reinstates,
    restores,
    lags,
  };
}
