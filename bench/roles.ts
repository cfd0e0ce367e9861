/**
 * Role-change figures (issue: role transitions), from the shipped drills run end to end with real processes:
 *
 *   node dist/bench/roles.js [--runs 3] [--load 4s] [--rate 200]
 *
 * - switchover outage with a writer running: first refused write to first accepted write, as the workload
 *   saw it (target < 1 s), beside what `switchover` itself reported (freeze to the target answering as the
 *   primary) and how long the command took;
 * - failover: primary death (kill -9) to promotion done, and `promote` to the first write accepted on the
 *   promoted database (target < 2 s), and what `promote` reported (request to accepting writes);
 * - reinstate: pages copied against the database's pages, and the transactions it discarded.
 * Each figure is printed per run and as the median, with the machine's load while the runs went on.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { num, setting } from './common.js';

const ROOT = join(fileURLToPath(new URL('.', import.meta.url)), '..', '..');
const BIN = join(ROOT, 'bin', 'redoship');
const runs = num('runs', 'BENCH_RUNS', 3);
const load = setting('load', 'BENCH_LOAD', '4s');
const rate = setting('rate', 'BENCH_RATE', '200');

interface DrillJson {
  readonly passed: boolean;
  readonly figures: {
    readonly workload: { readonly outages: ReadonlyArray<{ ms: number | null; during: string }> } | null;
    readonly rpo: { readonly lost: number } | null;
    readonly failovers: ReadonlyArray<{ deathToPromotedMs: number | null; promoteToFirstWriteMs: number | null; promoteMs: number | null; promoteCommandMs: number }>;
    readonly switchovers: ReadonlyArray<{ outageMs: number | null; commandMs: number; reported: Record<string, unknown> }>;
    readonly reinstates: ReadonlyArray<{ commandMs: number; reported: Record<string, unknown> }>;
  };
}

function loadAvg(): string {
  return readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
}

function drill(scenario: string): DrillJson {
  const r = spawnSync(process.execPath, [BIN, 'drill', join(ROOT, 'scenarios', scenario), '--json', '--quiet', '--set', `load=${load}`, '--set', `rate=${rate}`], {
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
    timeout: 10 * 60_000,
  });
  if (r.status !== 0 && r.status !== 4) throw new Error(`drill ${scenario} exited ${r.status}: ${r.stderr.slice(-2000)}`);
  return JSON.parse(r.stdout) as DrillJson;
}

const median = (xs: number[]) => {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  return s.length ? s[Math.floor((s.length - 1) / 2)]! : NaN;
};
const f = (x: number | null | undefined) => (x === null || x === undefined || !Number.isFinite(x) ? '-' : x.toFixed(0));

function main(): void {
  process.stdout.write(`roles benchmark: ${runs} runs of each drill, load ${load} between steps, workload ${rate} tx/s; loadavg at start ${loadAvg()}\n\n`);
  const so: Array<{ app: number[]; reported: number[]; command: number[]; lost: number; passed: boolean }> = [];
  for (let i = 0; i < runs; i++) {
    const d = drill('switchover.yaml');
    so.push({
      app: (d.figures.workload?.outages ?? []).map((o) => o.ms ?? NaN),
      reported: d.figures.switchovers.map((s) => Number(s.reported.outageMs ?? NaN)),
      command: d.figures.switchovers.map((s) => s.commandMs),
      lost: d.figures.rpo?.lost ?? NaN,
      passed: d.passed,
    });
  }
  process.stdout.write('switchover under a writer (two per run: there and back)\n');
  process.stdout.write('  run  outage seen by the app (ms)   reported by switchover (ms)   command (ms)     lost  checks\n');
  so.forEach((r, i) =>
    process.stdout.write(`  ${i + 1}    ${r.app.map(f).join(', ').padEnd(28)} ${r.reported.map(f).join(', ').padEnd(29)} ${r.command.map(f).join(', ').padEnd(16)} ${String(r.lost).padEnd(5)} ${r.passed ? 'pass' : 'FAIL'}\n`),
  );
  const allApp = so.flatMap((r) => r.app);
  process.stdout.write(`  median outage seen by the app: ${f(median(allApp))} ms, worst ${f(Math.max(...allApp))} ms (target < 1000 ms)\n\n`);

  const fo: Array<{ death: number; firstWrite: number; reported: number; command: number; copied: number; pages: number; discarded: number; lost: number; passed: boolean }> = [];
  for (let i = 0; i < runs; i++) {
    const d = drill('failover.yaml');
    const x = d.figures.failovers[0];
    const re = d.figures.reinstates[0]?.reported ?? {};
    fo.push({
      death: x?.deathToPromotedMs ?? NaN,
      firstWrite: x?.promoteToFirstWriteMs ?? NaN,
      reported: x?.promoteMs ?? NaN,
      command: x?.promoteCommandMs ?? NaN,
      copied: Number(re.pagesCopied ?? NaN),
      pages: Number(re.databasePages ?? NaN),
      discarded: Array.isArray(re.discarded) ? re.discarded.length : NaN,
      lost: d.figures.rpo?.lost ?? NaN,
      passed: d.passed,
    });
  }
  process.stdout.write('failover after kill -9 of the primary, then reinstate of the old primary\n');
  process.stdout.write('  run  death->promoted  promote->first write  promote reported  command   reinstate: copied/pages  discarded  lost  checks\n');
  fo.forEach((r, i) =>
    process.stdout.write(
      `  ${i + 1}    ${f(r.death).padEnd(16)} ${f(r.firstWrite).padEnd(21)} ${f(r.reported).padEnd(17)} ${f(r.command).padEnd(9)} ${`${f(r.copied)}/${f(r.pages)} (${((100 * r.copied) / r.pages).toFixed(1)}%)`.padEnd(24)} ${String(r.discarded).padEnd(10)} ${String(r.lost).padEnd(5)} ${r.passed ? 'pass' : 'FAIL'}\n`,
    ),
  );
  process.stdout.write(
    `  medians: death->promoted ${f(median(fo.map((r) => r.death)))} ms; promote->first write ${f(median(fo.map((r) => r.firstWrite)))} ms (target < 2000 ms); ` +
      `reinstate copied ${f(median(fo.map((r) => r.copied)))} of ${f(median(fo.map((r) => r.pages)))} pages\n`,
  );
  process.stdout.write(`\nloadavg at the end ${loadAvg()}\n`);
}

main();
