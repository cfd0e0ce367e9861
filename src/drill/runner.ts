/**
 * The drill runner: runs a scenario end to end on this machine with real processes. It makes a fresh
 * working directory (one directory per node, ports picked free), starts the daemons with `node
 * bin/redoship`, runs the workload as the application, carries out the steps in order (faults, actions),
 * samples standby lag while the workload runs, then runs the checks and computes the figures: timeline,
 * outages (RTO, from the workload's own log), transactions lost (RPO), failover and switchover times, lags.
 * A step that fails stops the steps (what follows would not mean anything) but the checks still run, so the
 * report shows the state it left.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, renameSync, rmSync, unlinkSync, writeFileSync, openSync, writeSync, closeSync, readSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { createSchema } from './workload.js';
import { Proc, REDOSHIP_BIN, WORKLOAD_SCRIPT, firstJson, lastLines, runToEnd, sleep } from './procs.js';
import { LinkProxy } from './proxy.js';
import type { Check, Scenario, Step, TimeRef } from './scenario.js';
import { Site, freePort } from './site.js';
import { readWorkloadLog, type WorkloadLog } from './workload-log.js';
import { runCheck, type CheckResult } from './checks.js';
import { tableHash } from './compare.js';
import { computeFigures, type Figures } from './figures.js';

export interface DrillOptions {
  /** Working directory (kept); default a fresh temporary one, removed after a passing run unless keep. */
  readonly dir?: string;
  readonly keep?: boolean;
  /** Multiplies every wait step. Default 1. */
  readonly scale?: number;
  /** Progress lines as the drill goes (stderr). */
  readonly onProgress?: (line: string) => void;
}

export interface TimelineEntry {
  readonly step: number;
  readonly kind: string;
  readonly label: string;
  /** ms since the drill started. */
  readonly atMs: number;
  readonly ms: number;
  readonly status: 'ok' | 'failed' | 'skipped';
  readonly detail: string;
  /** What the command printed with --json, or measured values. */
  readonly data?: Readonly<Record<string, unknown>>;
}

export interface DrillResult {
  readonly scenario: string;
  readonly file: string;
  readonly description: string;
  readonly vars: Readonly<Record<string, string | number | boolean>>;
  readonly workDir: string;
  readonly startedAt: string;
  readonly durationMs: number;
  readonly passed: boolean;
  readonly timeline: readonly TimelineEntry[];
  readonly checks: readonly CheckResult[];
  readonly figures: Figures;
}

export interface LagSample {
  readonly atMs: number;
  readonly node: string;
  /** Apply lag beyond the configured delay while something is waiting to be applied, in ms (null: archive only). */
  readonly lagMs: number | null;
  readonly recordsBehind: number;
}

/** The state a running drill shares with its checks and figures. */
export interface DrillState {
  readonly scenario: Scenario;
  readonly work: string;
  readonly t0: number;
  readonly sites: ReadonlyMap<string, Site>;
  readonly timeline: readonly TimelineEntry[];
  readonly lags: readonly LagSample[];
  readonly hashes: ReadonlyMap<string, { hash: string; rows: number }>;
  readonly workloadPaths: readonly string[];
  workloadLog(): WorkloadLog;
  primary(): Site | null;
  catchUp(names: readonly string[], timeoutMs: number): Promise<string>;
  redoship(label: string, args: string[], timeoutMs?: number): Promise<{ code: number | null; stdout: string; stderr: string }>;
}

export async function runDrill(scenario: Scenario, opts: DrillOptions = {}): Promise<DrillResult> {
  const drill = new Drill(scenario, opts);
  try {
    return await drill.run();
  } finally {
    await drill.cleanup();
  }
}

class Drill implements DrillState {
  readonly work: string;
  readonly t0 = Date.now();
  readonly sites = new Map<string, Site>();
  readonly timeline: TimelineEntry[] = [];
  readonly lags: LagSample[] = [];
  readonly hashes = new Map<string, { hash: string; rows: number }>();
  readonly marks = new Map<string, number>();
  private token = '';
  private workload: Proc | null = null;
  private workloadResult: Record<string, unknown> | null = null;
  private workloadError: string | null = null;
  private sampler: NodeJS.Timeout | null = null;
  readonly workloadPaths: string[] = [];
  private readonly counterLog: string;
  private readonly scale: number;
  private readonly progress: (line: string) => void;
  private passed = false;

  constructor(
    readonly scenario: Scenario,
    private readonly opts: DrillOptions,
  ) {
    this.work = opts.dir ?? mkdtempSync(join(tmpdir(), `redoship-drill-${scenario.name}-`));
    this.counterLog = join(this.work, 'workload.counter.log');
    this.scale = opts.scale ?? 1;
    this.progress = opts.onProgress ?? (() => {});
  }

  primary(): Site | null {
    for (const s of this.sites.values()) if (s.role === 'primary') return s;
    return null;
  }

  workloadLog(): WorkloadLog {
    return readWorkloadLog(this.counterLog);
  }

  async redoship(label: string, args: string[], timeoutMs = 120_000) {
    return runToEnd(label, REDOSHIP_BIN, args, { cwd: this.work, log: join(this.work, 'commands.log'), timeoutMs });
  }

  private site(name: string): Site {
    return this.sites.get(name)!;
  }

  private nowMs(): number {
    return Date.now() - this.t0;
  }

  async run(): Promise<DrillResult> {
    const startedAt = new Date(this.t0).toISOString();
    this.token = join(this.work, 'secret');
    writeFileSync(this.token, randomBytes(32).toString('base64') + '\n');
    const taken = new Set<number>();
    for (const spec of this.scenario.nodes) {
      const s = new Site(spec, this.work, await freePort(taken));
      s.prepare();
      s.onUnexpectedExit = (site, how) => {
        const e: TimelineEntry = { step: 0, kind: 'event', label: `${site.name} exited by itself`, atMs: this.nowMs(), ms: 0, status: 'failed', detail: how };
        this.timeline.push(e);
        this.progress(`${fmtMs(e.atMs).padStart(8)}  !! ${e.label}: ${e.detail}`);
      };
      this.sites.set(spec.name, s);
    }
    const primary = this.primary()!;
    const db = new Database(primary.db!);
    db.pragma('journal_mode = WAL');
    createSchema(db);
    db.close();
    for (const name of this.scenario.workload?.dbs ?? []) this.workloadPaths.push(this.site(name).db!);
    this.progress(`drill ${this.scenario.name} in ${this.work}`);

    let failedAt: number | null = null;
    let failedDetail = '';
    for (let i = 0; i < this.scenario.steps.length && failedAt === null; i++) {
      const step = this.scenario.steps[i]!;
      const at = this.nowMs();
      const began = Date.now();
      let entry: TimelineEntry;
      try {
        const r = (await this.step(step)) ?? {};
        entry = { step: i + 1, kind: step.kind, label: step.label, atMs: at, ms: Date.now() - began, status: r.skipped ? 'skipped' : 'ok', detail: r.detail ?? '', ...(r.data ? { data: r.data } : {}) };
        if (step.kind === 'check' && r.check && !r.check.passed) entry = { ...entry, status: 'failed' };
      } catch (e) {
        entry = { step: i + 1, kind: step.kind, label: step.label, atMs: at, ms: Date.now() - began, status: 'failed', detail: (e as Error).message };
        failedAt = i;
        failedDetail = entry.detail;
      }
      this.timeline.push(entry);
      this.progress(`${fmtMs(entry.atMs).padStart(8)}  ${entry.status === 'ok' ? '  ' : entry.status === 'failed' ? '!!' : '--'} ${entry.label} (${entry.ms} ms)${entry.detail ? `: ${entry.detail}` : ''}`);
    }
    if (this.workload?.running) await this.stopWorkload();
    const checks: CheckResult[] = this.inlineChecks;
    if (failedAt !== null) checks.push({ check: 'steps', where: this.scenario.steps[failedAt]!.where, passed: false, detail: `step ${failedAt + 1} (${this.scenario.steps[failedAt]!.label}) failed: ${failedDetail}` });
    if (this.workloadError !== null) checks.push({ check: 'workload', where: 'workload', passed: false, detail: this.workloadError });
    for (const c of this.scenario.checks) checks.push(await this.check(c));
    this.timeline.sort((x, y) => x.atMs - y.atMs);
    const figures = computeFigures(this, this.workloadResult);
    this.passed = checks.every((c) => c.passed);
    return {
      scenario: this.scenario.name,
      file: this.scenario.file,
      description: this.scenario.description,
      vars: this.scenario.vars,
      workDir: this.work,
      startedAt,
      durationMs: Date.now() - this.t0,
      passed: this.passed,
      timeline: this.timeline,
      checks,
      figures,
    };
  }

  private readonly inlineChecks: CheckResult[] = [];

  private async check(c: Check): Promise<CheckResult> {
    try {
      return await runCheck(this, c);
    } catch (e) {
      return { check: c.label, where: c.where, passed: false, detail: `could not run: ${(e as Error).message}` };
    }
  }

  async cleanup(): Promise<void> {
    if (this.sampler) clearInterval(this.sampler);
    this.workload?.signal('SIGKILL');
    await Promise.all([...this.sites.values()].map((s) => s.shutdown().catch(() => {})));
    if (!this.opts.dir && !this.opts.keep && this.passed) rmSync(this.work, { recursive: true, force: true });
  }

  private upstreamPort(s: Site): number | null {
    return s.upstream ? this.site(s.upstream).port : null;
  }

  private async startSite(s: Site): Promise<void> {
    if (s.role === 'standby' && s.spec.proxy && !s.proxy) s.proxy = await LinkProxy.start({ host: '127.0.0.1', port: this.upstreamPort(s)! });
    if (s.proxy && s.upstream) s.proxy.retarget({ host: '127.0.0.1', port: this.upstreamPort(s)! });
    await s.startDaemon(this.token, this.upstreamPort(s));
  }

  private timeOf(t: TimeRef): string {
    return 'iso' in t ? t.iso : new Date(this.marks.get(t.mark)!).toISOString();
  }

  private linkOf(name: string): LinkProxy {
    const s = this.site(name);
    if (!s.spec.proxy) throw new Error(`node ${name} has no proxy on its link: add proxy: true to it`);
    if (!s.proxy) throw new Error(`node ${name} has not been started: its link does not exist yet`);
    return s.proxy;
  }

  private async step(step: Step): Promise<{ detail?: string; data?: Record<string, unknown>; skipped?: boolean; check?: CheckResult } | void> {
    const a = step.args;
    const node = () => this.site(a.node as string);
    switch (step.kind) {
      case 'start': {
        // In waves: a node starts once its upstream runs (a cascade's middle before its end).
        const todo = (a.nodes as string[]).map((n) => this.site(n));
        while (todo.length > 0) {
          const ready = todo.filter((s) => s.role !== 'standby' || !s.upstream || !todo.some((t) => t.name === s.upstream));
          if (ready.length === 0) throw new Error(`${todo.map((s) => s.name).join(', ')} receive from each other: none can start first`);
          await Promise.all(ready.map((s) => this.startSite(s)));
          for (const s of ready) todo.splice(todo.indexOf(s), 1);
        }
        return { detail: (a.nodes as string[]).map((n) => `${n} as ${this.site(n).role}${this.site(n).upstream && this.site(n).role === 'standby' ? ` of ${this.site(n).upstream}` : ''}`).join(', ') };
      }
      case 'stop': {
        const code = await node().proc?.stop();
        return { detail: `exit ${code}` };
      }
      case 'kill': {
        const s = node();
        if (!s.running) throw new Error(`${s.name} is not running`);
        const wasPrimary = s.role === 'primary';
        const r = await s.killSite(wasPrimary);
        return { detail: wasPrimary ? `kill -9, site fenced ${r.fencedAtMs! - r.killedAtMs} ms later` : 'kill -9', data: { ...r, primary: wasPrimary } };
      }
      case 'workload':
        if (a.action === 'start') return this.startWorkload();
        return { detail: await this.stopWorkload() };
      case 'wait':
        await sleep((a.for as number) * this.scale);
        return;
      case 'catch-up':
        return { detail: await this.catchUp(a.nodes as string[], (a.timeout as number | undefined) ?? 30_000) };
      case 'switchover':
        return this.switchover(this.site(a.to as string));
      case 'promote':
        return this.promote(node(), a);
      case 'reinstate':
        return this.reinstate(node());
      case 'repoint': {
        const s = node();
        if (s.role !== 'standby') throw new Error(`${s.name} is ${s.role}, not a standby`);
        await s.proc?.stop();
        s.upstream = a.from as string;
        await this.startSite(s);
        return { detail: `${s.name} now receives from ${s.upstream}` };
      }
      case 'pause':
      case 'resume': {
        const r = await this.redoship(`standby ${step.kind}`, ['standby', step.kind, '--archive', node().archive, '--json']);
        if (r.code !== 0) throw new Error(`standby ${step.kind} exited ${r.code}: ${lastLines(r.stderr)}`);
        const j = firstJson(r.stdout);
        return { detail: `applied LSN ${j?.appliedLsn ?? '-'}, received ${j?.receivedLsn ?? '-'}`, ...(j ? { data: j } : {}) };
      }
      case 'apply-until': {
        const until = a.lsn !== undefined ? ['--until-lsn', String(a.lsn)] : ['--until-time', this.timeOf(a.time as TimeRef)];
        const r = await this.redoship('standby apply', ['standby', 'apply', '--archive', node().archive, ...until, '--json']);
        if (r.code !== 0) throw new Error(`standby apply exited ${r.code}: ${lastLines(r.stderr)}`);
        const j = firstJson(r.stdout);
        return { detail: `until ${until[1]}: applied LSN ${j?.appliedLsn ?? '-'}`, ...(j ? { data: j } : {}) };
      }
      case 'restore':
        return this.restore(a);
      case 'sql': {
        const s = this.writable(node());
        this.withWriter(s.db!, (db) => db.exec(a.sql as string));
        return;
      }
      case 'drop-table': {
        const s = this.writable(node());
        this.withWriter(s.db!, (db) => db.exec(`DROP TABLE "${a.table as string}"`));
        return { detail: `dropped ${a.table as string} on ${s.name}` };
      }
      case 'hash-table': {
        const s = node();
        const h = tableHash(s.db!, a.table as string);
        if (!h) throw new Error(`${s.name} has no table ${a.table as string}`);
        this.hashes.set(a.as as string, h);
        return { detail: `${h.rows} rows, hash ${h.hash}` };
      }
      case 'copy-table':
        return { detail: this.copyTable(this.site(a.from as string), this.writable(this.site(a.to as string)), a.table as string) };
      case 'cut-link':
      case 'stall-link':
      case 'heal-link':
        this.linkOf(a.node as string).set(step.kind === 'cut-link' ? 'cut' : step.kind === 'stall-link' ? 'stall' : 'pass');
        return;
      case 'fill-disk':
      case 'free-disk':
        return this.disk(node(), step.kind === 'fill-disk');
      case 'corrupt-page': {
        const s = node();
        const fd = openSync(s.db!, 'r+');
        try {
          const hdr = Buffer.alloc(18);
          readSync(fd, hdr, 0, 18, 0);
          const size = hdr.readUInt16BE(16) === 1 ? 65536 : hdr.readUInt16BE(16);
          writeSync(fd, randomBytes(size), 0, size, ((a.page as number) - 1) * size);
        } finally {
          closeSync(fd);
        }
        return { detail: `page ${a.page as number} of ${s.name}.db overwritten` };
      }
      case 'mark':
        this.marks.set(a.name as string, Date.now());
        return { detail: new Date(this.marks.get(a.name as string)!).toISOString() };
      case 'check': {
        const r = await this.check(step.check!);
        this.inlineChecks.push(r);
        return { detail: `${r.passed ? 'PASS' : 'FAIL'}: ${r.detail}`, check: r };
      }
    }
  }

  /** SQL as the application writes: only on the primary's file (a standby's file is the applier's). */
  private writable(s: Site): Site {
    if (s.role !== 'primary' || !s.db) throw new Error(`${s.name} is ${s.role}: the application writes only to the primary`);
    return s;
  }

  private withWriter(path: string, f: (db: Database.Database) => void): void {
    const db = new Database(path, { fileMustExist: true, timeout: 10_000 });
    try {
      f(db);
    } finally {
      db.close();
    }
  }

  private copyTable(from: Site, to: Site, table: string): string {
    const src = new Database(from.db!, { readonly: true, fileMustExist: true, timeout: 5000 });
    try {
      const ddl = src.prepare("SELECT sql FROM sqlite_schema WHERE tbl_name = ? AND sql IS NOT NULL ORDER BY type = 'table' DESC").pluck().all(table) as string[];
      if (ddl.length === 0) throw new Error(`${from.name} has no table ${table}`);
      const rows = src.prepare(`SELECT * FROM "${table}"`).raw().all() as unknown[][];
      this.withWriter(to.db!, (db) => {
        db.transaction(() => {
          for (const sql of ddl) db.exec(sql);
          if (rows.length > 0) {
            const ins = db.prepare(`INSERT INTO "${table}" VALUES (${rows[0]!.map(() => '?').join(', ')})`);
            for (const r of rows) ins.run(...r);
          }
        })();
      });
      return `${rows.length} rows of ${table} from ${from.name} into ${to.name}`;
    } finally {
      src.close();
    }
  }

  private startWorkload(): { detail: string } {
    const w = this.scenario.workload!;
    if (this.workload?.running) throw new Error('the workload is already running');
    const args = [...this.workloadPaths.flatMap((p) => ['--db', p]), '--rate', String(w.rate), '--mix', w.mix, '--seed', String(w.seed), '--counter-log', this.counterLog];
    const p = new Proc('workload', WORKLOAD_SCRIPT, args, { cwd: this.work, log: join(this.work, 'workload.log') });
    this.workload = p;
    void p.exited.then(({ code, signal }) => {
      if (code !== 0) this.workloadError = `the workload died (exit ${code ?? signal}): ${lastLines(p.stderr)}`;
    });
    this.sampler = setInterval(() => this.sampleLags(), 250);
    return { detail: `${w.rate} transactions/s (${w.mix}) on ${w.dbs.join(', ')}` };
  }

  private async stopWorkload(): Promise<string> {
    if (this.sampler) clearInterval(this.sampler);
    this.sampler = null;
    const p = this.workload;
    if (!p) throw new Error('the workload is not running');
    await p.stop(15_000);
    this.workload = null;
    const j = firstJson(p.stdout);
    if (j) this.workloadResult = { ...(this.workloadResult ?? {}), ...j, commits: Number(this.workloadResult?.commits ?? 0) + Number(j.commits ?? 0) };
    return j ? `${j.commits} commits${j.switches !== undefined ? `, ${j.switches} switches` : ''}` : 'stopped';
  }

  private sampleLags(): void {
    for (const s of this.sites.values()) {
      if (s.role !== 'standby' || !s.running) continue;
      let st: Record<string, unknown>;
      try {
        st = JSON.parse(readFileSync(join(s.archive, 'standby.status.json'), 'utf8')) as Record<string, unknown>;
      } catch {
        continue;
      }
      const behind = Number(st.applyLagRecords ?? 0) + Number(st.receiveLagRecords ?? 0);
      const applyLagMs = typeof st.applyLagMs === 'number' ? st.applyLagMs : 0;
      const lagMs = !s.db ? null : behind > 0 && !st.paused ? Math.max(0, applyLagMs - Number(st.delayMs ?? 0)) : 0;
      this.lags.push({ atMs: this.nowMs(), node: s.name, lagMs, recordsBehind: behind });
    }
  }

  /** Waits until each node holds (archive only) or has applied (with a database) the primary's last LSN. */
  async catchUp(names: readonly string[], timeoutMs: number): Promise<string> {
    const p = this.primary();
    if (!p) throw new Error('no node is the primary');
    const deadline = Date.now() + timeoutMs;
    // The primary's last LSN from `status` (its archive's tail); a standby's position from the status file it
    // writes (it can only be behind, so waiting on it never ends early).
    const status = async (s: Site) => {
      const r = await this.redoship('status', ['status', '--archive', s.archive, '--json'], 30_000);
      return r.code === 0 ? (JSON.parse(r.stdout) as Record<string, unknown>) : null;
    };
    const standbyStatus = (s: Site): Record<string, unknown> | null => {
      try {
        return JSON.parse(readFileSync(join(s.archive, 'standby.status.json'), 'utf8')) as Record<string, unknown>;
      } catch {
        return null;
      }
    };
    let last = '';
    for (;;) {
      const target = (await status(p))?.lastLsn as string | undefined;
      let behind = 0;
      const parts: string[] = [];
      for (const n of names) {
        const s = this.site(n);
        if (s === p) continue;
        const st = standbyStatus(s) ?? (await status(s));
        const at = (s.db ? st?.appliedLsn : st?.receivedLsn) as string | null | undefined;
        parts.push(`${n} ${s.db ? 'applied' : 'holds'} ${at ?? '-'}`);
        if (!target || !at || BigInt(at) < BigInt(target)) behind++;
      }
      last = `primary ${p.name} at LSN ${target ?? '-'}; ${parts.join(', ')}`;
      if (behind === 0) return last;
      if (Date.now() > deadline) throw new Error(`not caught up within ${timeoutMs} ms: ${last}`);
      await sleep(200);
    }
  }

  private async switchover(target: Site) {
    const old = this.primary();
    if (!old) throw new Error('no node is the primary');
    if (target.role !== 'standby' || !target.running) throw new Error(`${target.name} is ${target.running ? target.role : 'not running'}: switchover needs a running standby`);
    const r = await this.redoship('switchover', ['switchover', '--to', target.url, '--token-file', this.token, '--json']);
    if (r.code !== 0) throw new Error(`switchover exited ${r.code}: ${lastLines(r.stderr)}`);
    target.role = 'primary';
    target.upstream = null;
    old.role = 'standby';
    old.upstream = target.name;
    const j = firstJson(r.stdout);
    return { detail: `${target.name} is the primary, ${old.name} its standby${j ? `: ${summary(j)}` : ''}`, data: { ...(j ?? {}), from: old.name, to: target.name } };
  }

  private async promote(s: Site, a: Readonly<Record<string, unknown>>) {
    if (s.role !== 'standby') throw new Error(`${s.name} is ${s.role}: only a standby can be promoted`);
    const old = this.primary();
    const until = a['until-lsn'] !== undefined ? ['--until-lsn', String(a['until-lsn'])] : a['until-time'] ? ['--until-time', this.timeOf(a['until-time'] as TimeRef)] : [];
    const r = await this.redoship('promote', ['promote', '--archive', s.archive, ...until, '--json']);
    if (r.code !== 0) throw new Error(`promote exited ${r.code}: ${lastLines(r.stderr)}`);
    s.role = 'primary';
    s.upstream = null;
    if (old) old.role = 'failed';
    const j = firstJson(r.stdout);
    return { detail: `${s.name} is the primary${j ? `: ${summary(j)}` : ''}`, data: { ...(j ?? {}), node: s.name, from: old?.name ?? null } };
  }

  private async reinstate(s: Site) {
    const p = this.primary();
    if (!p) throw new Error('no node is the primary');
    if (s.running) throw new Error(`${s.name} is still running: a failed primary is reinstated after it stopped`);
    if (!s.db) throw new Error(`${s.name} has no database`);
    await s.unfence();
    const r = await this.redoship('reinstate', ['reinstate', '--db', s.db, '--archive', s.archive, '--from', p.url, '--token-file', this.token, '--no-serve', '--json']);
    if (r.code !== 0) throw new Error(`reinstate exited ${r.code}: ${lastLines(r.stderr)}`);
    s.role = 'standby';
    s.upstream = p.name;
    await this.startSite(s);
    const j = firstJson(r.stdout);
    return { detail: `${s.name} is a standby of ${p.name}${j ? `: ${summary(j)}` : ''}`, data: { ...(j ?? {}), node: s.name } };
  }

  private async restore(a: Readonly<Record<string, unknown>>) {
    const from = this.site(a.from as string);
    const to = this.site(a.to as string);
    if (!to.db) throw new Error(`${to.name} has no database (db: false)`);
    if (to.running) throw new Error(`${to.name} is running`);
    const until = a['until-lsn'] !== undefined ? ['--until-lsn', String(a['until-lsn'])] : a['until-time'] ? ['--until-time', this.timeOf(a['until-time'] as TimeRef)] : [];
    // Restored beside its place, then renamed in: the workload switches to a file only once it is whole.
    const side = `${to.db}.restoring`;
    rmSync(side, { force: true });
    const r = await this.redoship('restore', ['restore', '--archive', from.archive, '--to', side, ...until, '--json']);
    if (r.code !== 0) throw new Error(`restore exited ${r.code}: ${lastLines(r.stderr)}`);
    const j = firstJson(r.stdout);
    for (const suffix of ['', '-wal', '-shm']) if (existsSync(to.db + suffix)) unlinkSync(to.db + suffix);
    let detail = `${from.name}'s archive into ${to.name}.db${j?.lsn ? ` at LSN ${String(j.lsn)}` : ''}`;
    if (a.as === 'primary') {
      const old = this.primary();
      if (old && old !== to) old.role = 'failed';
      to.role = 'primary';
      to.upstream = null;
      renameSync(side, to.db);
      await this.startSite(to);
      detail += `, started as the primary`;
    } else {
      renameSync(side, to.db);
      if (to.role === 'none') to.role = 'failed'; // a file, no daemon
    }
    return { detail, data: { ...(j ?? {}), from: from.name, to: to.name } };
  }

  private disk(s: Site, fill: boolean) {
    if (!s.spec.disk) throw new Error(`node ${s.name} has no disk: (a tmpfs size) to ${fill ? 'fill' : 'free'}`);
    if (s.diskSkipped) return { skipped: true, detail: `skipped: ${s.diskSkipped}` };
    const filler = join(s.dir, 'filler');
    if (!fill) {
      rmSync(filler, { force: true });
      return { detail: 'filler removed' };
    }
    const fd = openSync(filler, 'a');
    const chunk = Buffer.alloc(64 * 1024, 0xee);
    let bytes = 0;
    try {
      for (;;) bytes += writeSync(fd, chunk);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOSPC') throw e;
      // The last bytes, in smaller pieces.
      for (const n of [4096, 512, 1])
        try {
          for (;;) bytes += writeSync(fd, chunk, 0, n);
        } catch {
          /* full at this size */
        }
    } finally {
      closeSync(fd);
    }
    return { detail: `disk full (${bytes} bytes of filler)` };
  }
}

function summary(j: Record<string, unknown>): string {
  return Object.entries(j)
    .filter(([, v]) => typeof v !== 'object' || v === null)
    .slice(0, 8)
    .map(([k, v]) => `${k} ${String(v)}`)
    .join(', ');
}

export function fmtMs(ms: number): string {
  return `+${(ms / 1000).toFixed(3)}s`;
}
