/**
 * The checks a scenario lists (scenario.ts CHECKS), run against the state a drill left: each one passes or
 * fails with one line saying what it saw.
 */
import { join } from 'node:path';
import { readFileSync, rmSync } from 'node:fs';
import type { Check } from './scenario.js';
import type { DrillState } from './runner.js';
import { contentHash, differingPages, integrityCheck, logicalImage, queryValue, tableHash } from './compare.js';
import { lossOf } from './figures.js';

export interface CheckResult {
  readonly check: string;
  readonly where: string;
  readonly passed: boolean;
  readonly detail: string;
}

export async function runCheck(d: DrillState, c: Check): Promise<CheckResult> {
  const r = (passed: boolean, detail: string): CheckResult => ({ check: c.label, where: c.where, passed, detail });
  const a = c.args;
  const site = (n: unknown) => d.sites.get(n as string)!;
  switch (c.kind) {
    case 'loss': {
      const max = (a.max as number | undefined) ?? 0;
      const l = lossOf(d);
      return r(l.lost <= max && l.extra === 0, `${l.lost} transactions lost (at most ${max} allowed)${l.extra ? `; ${l.extra} transactions the workload never made` : ''}: ${l.detail}`);
    }
    case 'outage': {
      const max = a.max as number;
      const outages = d.workloadLog().outages;
      if (outages.length === 0) return r(true, 'no write was refused');
      const open = outages.filter((o) => o.ms === null);
      const worst = Math.max(...outages.map((o) => o.ms ?? Infinity));
      return r(open.length === 0 && worst <= max, `${outages.length} outage(s): ${outages.map((o) => (o.ms === null ? 'never ended' : `${o.ms.toFixed(0)} ms`)).join(', ')} (at most ${max} ms allowed)`);
    }
    case 'equal': {
      const names = a.nodes as string[];
      const p = d.primary();
      if (!p) return r(false, 'no node is the primary');
      await d.catchUp(names, (a.timeout as number | undefined) ?? 30_000);
      const want = logicalImage(p.db!);
      const wantHash = contentHash(p.db!);
      const problems: string[] = [];
      const seen: string[] = [];
      for (const n of names) {
        const s = site(n);
        if (s === p) continue;
        let path = s.db;
        if (!path) {
          // Archive only: what it holds must restore to the same database.
          path = join(d.work, `${s.name}-restored-for-check.db`);
          rmSync(path, { force: true });
          const x = await d.redoship('restore for check', ['restore', '--archive', s.archive, '--to', path]);
          if (x.code !== 0) {
            problems.push(`${n}: its archive does not restore (exit ${x.code})`);
            continue;
          }
        }
        // A file SQLite cannot read is compared as it lies on disk (a standby's file is the whole database).
        const image = attempt(() => logicalImage(path)) ?? readFileSync(path);
        const diff = differingPages(want, image);
        const integrity = attempt(() => integrityCheck(path), (e) => `cannot run: ${e}`);
        const hash = attempt(() => contentHash(path), (e) => `none (${e})`);
        if (diff.length > 0) problems.push(`${n}: ${diff.length} page(s) differ (${diff.slice(0, 8).join(', ')}${diff.length > 8 ? ', ...' : ''})`);
        if (integrity !== 'ok') problems.push(`${n}: integrity_check: ${integrity.slice(0, 200)}`);
        if (hash !== wantHash) problems.push(`${n}: content hash ${hash}, primary ${wantHash}`);
        seen.push(`${n}${s.db ? '' : ' (restored from its archive)'}`);
      }
      const pages = want.length / (want.readUInt16BE(16) === 1 ? 65536 : want.readUInt16BE(16));
      return problems.length ? r(false, problems.join('; ')) : r(true, `${seen.join(', ')} equal ${p.name} page for page (${pages} pages), integrity ok, content hash ${wantHash}`);
    }
    case 'integrity': {
      const v = attempt(() => integrityCheck(site(a.node).db!), (e) => `cannot run: ${e}`);
      return r(v === 'ok', `integrity_check: ${v.slice(0, 300)}`);
    }
    case 'lag': {
      const samples = d.lags.filter((s) => s.node === a.node);
      if (samples.length === 0) return r(false, `no lag samples for ${String(a.node)}: it was not a running standby while the workload ran`);
      if (!site(a.node).db) return r(false, `${String(a.node)} is archive only: it applies nothing, so it has no apply lag`);
      const max = Math.max(...samples.map((s) => s.lagMs ?? 0));
      const behind = Math.max(...samples.map((s) => s.recordsBehind));
      return r(max <= (a.max as number), `apply lag beyond the delay at most ${max.toFixed(0)} ms (allowed ${a.max as number} ms), at most ${behind} records behind, ${samples.length} samples`);
    }
    case 'table-hash': {
      const want = d.hashes.get(a.equals as string)!;
      const got = tableHash(site(a.node).db!, a.table as string);
      if (!got) return r(false, `${String(a.node)} has no table ${String(a.table)}`);
      return r(got.hash === want.hash, `${String(a.table)} on ${String(a.node)}: ${got.rows} rows, hash ${got.hash}; remembered ${want.rows} rows, hash ${want.hash}`);
    }
    case 'rows': {
      const v = queryValue(site(a.node).db!, a.sql as string);
      return r(v === a.equals, `${a.sql as string} on ${String(a.node)} returned ${v} (expected ${a.equals as string})`);
    }
  }
}

/** f(), or what onError makes of its error message (null without onError). */
function attempt<T>(f: () => T): T | null;
function attempt<T>(f: () => T, onError: (message: string) => T): T;
function attempt<T>(f: () => T, onError?: (message: string) => T): T | null {
  try {
    return f();
  } catch (e) {
    return onError ? onError((e as Error).message) : null;
  }
}
