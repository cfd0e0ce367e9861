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
 *
 * The peer, where PostgreSQL's server programs are installed: a primary and a streaming standby on loopback,
 * the primary killed -9, `pg_ctl promote -w` on the standby, and the time from the promote command to the
 * first INSERT it accepts (PostgreSQL has no built-in switchover to compare with).
 */
import { spawnSync } from 'node:child_process';
import { appendFileSync, chmodSync, chownSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
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
  readonly checks: ReadonlyArray<{ check: string; where: string; passed: boolean; detail: string }>;
  readonly figures: {
    readonly workload: { readonly outages: ReadonlyArray<{ ms: number | null; during: string }> } | null;
    readonly rpo: { readonly lost: number } | null;
    readonly failovers: ReadonlyArray<{ deathToPromotedMs: number | null; promoteToFirstWriteMs: number | null; promoteMs: number | null; promoteCommandMs: number }>;
    readonly switchovers: ReadonlyArray<{ outageMs: number | null; commandMs: number; reported: Record<string, unknown> }>;
    readonly reinstates: ReadonlyArray<{ node: string; commandMs: number; reported: Record<string, unknown> }>;
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
  const d = JSON.parse(r.stdout) as DrillJson;
  // A failed check is printed with what it found, so that a FAIL in the tables below explains itself.
  for (const c of d.checks) if (!c.passed) process.stdout.write(`  ${scenario}: check ${c.check} (${c.where}) FAILED: ${c.detail}\n`);
  return d;
}

const median = (xs: number[]) => {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  return s.length ? s[Math.floor((s.length - 1) / 2)]! : NaN;
};
const f = (x: number | null | undefined) => (x === null || x === undefined || !Number.isFinite(x) ? '-' : x.toFixed(0));

/** PostgreSQL's failover on this machine: promote -> first accepted write, ms per run, or why it did not run. */
function pgFailover(n: number): number[] | string {
  const dirs = [...(existsSync('/usr/lib/postgresql') ? readdirSync('/usr/lib/postgresql').sort().reverse().map((v) => `/usr/lib/postgresql/${v}/bin`) : []), '/usr/local/bin', '/usr/bin'];
  const bin = dirs.find((d) => ['initdb', 'pg_ctl', 'postgres'].every((p) => existsSync(join(d, p))));
  const tool = (p: string) => [bin ?? '', '/usr/bin', '/usr/local/bin'].map((d) => join(d, p)).find((x) => existsSync(x));
  if (!bin || !tool('pg_basebackup') || !tool('psql')) return 'PostgreSQL server programs not found: no peer figure';
  const root = process.getuid?.() === 0;
  const as = (cmd: string, args: string[]) => spawnSync(root ? 'runuser' : cmd, root ? ['-u', 'postgres', '--', cmd, ...args] : args, { encoding: 'utf8', timeout: 120_000 });
  const must = (cmd: string, args: string[]) => {
    const r = as(cmd, args);
    if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr || r.stdout}`);
  };
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const dir = mkdtempSync(join(tmpdir(), 'redoship-pg-roles-'));
    chmodSync(dir, 0o755);
    if (root) {
      const id = (f: string) => Number(spawnSync('id', [f, 'postgres'], { encoding: 'utf8' }).stdout.trim());
      chownSync(dir, id('-u'), id('-g'));
    }
    const [p, sb] = [join(dir, 'p'), join(dir, 's')];
    const [pp, sp] = [25432 + i * 2, 25433 + i * 2];
    try {
      must(join(bin, 'initdb'), ['-D', p, '-A', 'trust', '-U', 'postgres', '--no-sync', '-E', 'UTF8', '--locale', 'C']);
      appendFileSync(join(p, 'postgresql.conf'), `\nport = ${pp}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '${dir}'\nwal_level = replica\n`);
      must(join(bin, 'pg_ctl'), ['-D', p, '-l', `${p}.log`, '-w', 'start']);
      must(tool('psql')!, ['-h', '127.0.0.1', '-p', String(pp), '-U', 'postgres', '-Xqc', 'CREATE TABLE t (id serial PRIMARY KEY, v text)']);
      must(tool('pg_basebackup')!, ['-h', '127.0.0.1', '-p', String(pp), '-U', 'postgres', '-D', sb, '-R', '-X', 'stream', '-c', 'fast']);
      appendFileSync(join(sb, 'postgresql.conf'), `\nport = ${sp}\n`);
      must(join(bin, 'pg_ctl'), ['-D', sb, '-l', `${sb}.log`, '-w', 'start']);
      const pid = Number(readFileSync(join(p, 'postmaster.pid'), 'utf8').split('\n')[0]);
      process.kill(pid, 'SIGKILL');
      const t0 = performance.now();
      must(join(bin, 'pg_ctl'), ['-D', sb, '-w', 'promote']);
      for (;;) {
        const r = spawnSync(tool('psql')!, ['-h', '127.0.0.1', '-p', String(sp), '-U', 'postgres', '-Xqc', "INSERT INTO t (v) VALUES ('after failover')"], { encoding: 'utf8' });
        if (r.status === 0) break;
        if (performance.now() - t0 > 60_000) throw new Error(`the promoted PostgreSQL standby took no write within 60 s: ${r.stderr}`);
      }
      out.push(performance.now() - t0);
    } catch (e) {
      return `PostgreSQL peer failed: ${(e as Error).message.slice(0, 400)}`;
    } finally {
      for (const d of [sb, p]) if (existsSync(join(d, 'postmaster.pid'))) as(join(bin, 'pg_ctl'), ['-D', d, '-m', 'immediate', 'stop']);
      rmSync(dir, { recursive: true, force: true });
    }
  }
  return out;
}

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
    // The old primary's reinstate (the scenario also reinstates standby c, which may have diverged).
    const re = d.figures.reinstates.find((x) => x.node === 'a')?.reported ?? {};
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
  const pg = pgFailover(runs);
  if (typeof pg === 'string') process.stdout.write(`  peer: ${pg}\n`);
  else
    process.stdout.write(
      `  peer, PostgreSQL (kill -9 of the primary, pg_ctl promote -w on its streaming standby): promote->first write ${pg.map(f).join(', ')} ms, median ${f(median(pg))} ms; ` +
        `redoship/PostgreSQL ${(median(fo.map((r) => r.firstWrite)) / median(pg)).toFixed(2)}\n`,
    );
  process.stdout.write(`\nloadavg at the end ${loadAvg()}\n`);
}

main();
