/**
 * Standby benchmark: how soon a commit is durable (and applied) on a standby, what synchronous commit costs an
 * application, how much redo a standby ships and applies per second, and what apply does to readers of the
 * standby. Every redoship figure is printed beside PostgreSQL 15 streaming replication's where PostgreSQL is
 * installed (the same work on the same machine), or beside redoship's own baseline. See bench/README.md.
 *
 *   npx tsc -p . && node dist/bench/standby.js            (or: npm run bench:standby)
 *
 * Settings (a flag, or an environment variable; with the defaults the whole run takes about 2 minutes):
 *   --latency-ms   BENCH_LATENCY_MS    10000  the latency run (writer at --rate), redoship and PostgreSQL each
 *   --rate         BENCH_RATE          1000   commits/s of the latency run
 *   --sync-ms      BENCH_SYNC_MS       4000   one synchronous-commit run (each variant, each system)
 *   --runs         BENCH_RUNS          2      runs per variant of the synchronous-commit section, alternating
 *   --sustain-ms   BENCH_SUSTAIN_MS    5000   the sustained-throughput run (writer at full speed)
 *   --read-ms      BENCH_READ_MS       3000   each reader run on the standby (during the write load, during the catch-up, idle)
 *   --keepup-ms    BENCH_KEEPUP_MS     1000   "keeps up": the standby applies the last commit within this after the writer stops
 *   --pg-clients   BENCH_PG_CLIENTS    2      pgbench clients (and threads) in the PostgreSQL latency run (-R is their total)
 *   --pg           BENCH_PG            1      0: skip PostgreSQL
 *   --diag         BENCH_DIAG          1      0: skip the diagnostic runs (archive-only standby, no apply)
 *   --pg-bin       BENCH_PG_BIN        (found) directory holding initdb, pg_ctl, pg_basebackup, psql, pgbench
 *   --only         BENCH_ONLY          all    comma list of: latency,sync,sustain
 *   --dir          BENCH_DIR           (tmp)  where to make the working directory (a new one is made inside it)
 *   --keep         BENCH_KEEP=1               keep the working directory (removed otherwise)
 *   (diagnostics)  BENCH_PRIMARY_ARGS         more flags for the latency run's `redoship primary` (e.g. --checkpoint-frames 100000)
 *                  BENCH_DUMP=PREFIX          write each latency run's commits as "commit-µs commit->durable-µs commit->captured-µs"
 *                                             lines to PREFIX-db.txt / PREFIX-ao.txt (to see when the slow commits happen)
 *
 * Nothing is dropped from the page cache: every figure is warm-cache.
 */
import Database from 'better-sqlite3';
import { spawn, spawnSync, type ChildProcess, type SpawnSyncReturns } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { appendFileSync, chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { cpus, release, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { READER_SCRIPT, WORKLOAD_SCRIPT, createSchema } from '../src/drill/index.js';
import { STATUS_FILE, startPrimary, type PrimaryStatus } from '../src/primary/index.js';
import { Archive, type Lsn } from '../src/redo/index.js';
import { STANDBY_STATUS_FILE, startStandby, type StandbyStatus } from '../src/standby/index.js';
import { CLK_TCK, clockCheck, cpuSeconds, newDatabase, num, percentile, psiSome, setting, cpuSnap, type CpuSnap } from './common.js';

// ---------------------------------------------------------------------------------------------- settings

const ROOT = resolve(fileURLToPath(new URL('.', import.meta.url)), '../..');
const BIN = join(ROOT, 'bin', 'redoship');
const MiB = 1024 * 1024;
const MB = 1_000_000;

const flagOn = (flag: string, env: string, dflt: string) => {
  const v = setting(flag, env, dflt);
  return v !== '' && v !== '0' && v !== 'false';
};

const cfg = {
  latencyMs: num('latency-ms', 'BENCH_LATENCY_MS', 10_000),
  rate: Math.max(1, num('rate', 'BENCH_RATE', 1000)),
  syncMs: num('sync-ms', 'BENCH_SYNC_MS', 4000),
  runs: Math.max(1, Math.round(num('runs', 'BENCH_RUNS', 2))),
  sustainMs: num('sustain-ms', 'BENCH_SUSTAIN_MS', 5000),
  readMs: num('read-ms', 'BENCH_READ_MS', 3000),
  keepupMs: num('keepup-ms', 'BENCH_KEEPUP_MS', 1000),
  pgClients: Math.max(1, Math.round(num('pg-clients', 'BENCH_PG_CLIENTS', 2))),
  diag: flagOn('diag', 'BENCH_DIAG', '1'),
  pg: flagOn('pg', 'BENCH_PG', '1'),
  pgBin: setting('pg-bin', 'BENCH_PG_BIN', ''),
  only: new Set(setting('only', 'BENCH_ONLY', 'latency,sync,sustain').split(',').map((s) => s.trim())),
  dir: setting('dir', 'BENCH_DIR', ''),
  keep: flagOn('keep', 'BENCH_KEEP', ''),
};

// ---------------------------------------------------------------------------------------------- helpers

const t0 = performance.now();
function log(msg: string): void {
  process.stderr.write(`[bench ${((performance.now() - t0) / 1000).toFixed(1).padStart(6)} s] ${msg}\n`);
}
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const yieldNow = () => new Promise<void>((r) => setImmediate(r));
/** Wall clock in µs, computed exactly as the workload process and the standby compute their times. */
const nowUs = () => (performance.timeOrigin + performance.now()) * 1000;

function median(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const n = s.length;
  return n % 2 ? s[(n - 1) / 2]! : (s[n / 2 - 1]! + s[n / 2]!) / 2;
}
const fmt = (x: number, d = 0) =>
  Number.isFinite(x) ? x.toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d }) : 'n/a';
const ms = (us: number) => `${fmt(us / 1000, 3)} ms`;
const ratioX = (a: number, b: number) => (Number.isFinite(a / b) ? `${(a / b).toFixed(2)}x` : 'n/a');
const ratio2 = (a: number, b: number) => (Number.isFinite(a / b) ? (a / b).toFixed(2) : 'n/a');
interface Pcts {
  n: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
  min: number;
}
function pcts(xs: number[]): Pcts {
  const s = [...xs].sort((a, b) => a - b);
  return { n: s.length, p50: percentile(s, 50), p90: percentile(s, 90), p99: percentile(s, 99), max: s[s.length - 1] ?? NaN, min: s[0] ?? NaN };
}

interface Proc {
  readonly child: ChildProcess;
  stdout: string;
  stderr: string;
  readonly exited: Promise<number | null>;
  waitFor(re: RegExp, timeoutMs?: number): Promise<RegExpExecArray>;
}

/** Children still running: stopped (by their pid) if the benchmark fails half-way. */
const running = new Set<ChildProcess>();

function run(script: string, args: string[]): Proc {
  const child = spawn(process.execPath, [script, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  running.add(child);
  child.once('exit', () => running.delete(child));
  const p: Proc = {
    child,
    stdout: '',
    stderr: '',
    // 'close', not 'exit': it comes after the output pipes are drained, so stdout/stderr are complete.
    exited: new Promise((r) => child.once('close', (code, signal) => r(signal ? -1 : code))),
    waitFor(re, timeoutMs = 60_000) {
      return new Promise((res, rej) => {
        const started = Date.now();
        const check = () => {
          const m = re.exec(p.stderr) ?? re.exec(p.stdout);
          if (m) return res(m);
          if (child.exitCode !== null || child.signalCode !== null)
            return rej(new Error(`process exited while waiting for ${re}; stderr:\n${p.stderr}`));
          if (Date.now() - started > timeoutMs) return rej(new Error(`timed out waiting for ${re}; stderr:\n${p.stderr}`));
          setTimeout(check, 5);
        };
        check();
      });
    },
  };
  child.stdout!.on('data', (d) => (p.stdout += d));
  child.stderr!.on('data', (d) => (p.stderr += d));
  return p;
}

async function stopProc(p: Proc, what: string): Promise<void> {
  if (p.child.exitCode !== null || p.child.signalCode !== null) return;
  p.child.kill('SIGTERM');
  const timer = setTimeout(() => p.child.kill('SIGKILL'), 15_000);
  const code = await p.exited;
  clearTimeout(timer);
  if (code !== 0) notes.push(`${what} exited with ${code}: ${p.stderr.trim().split('\n').slice(-3).join(' | ')}`);
  const warn = p.stderr
    .split('\n')
    .filter((l) => /warning|error/i.test(l))
    .slice(0, 3);
  if (warn.length) notes.push(`${what} printed: ${warn.join(' | ')}`);
}

interface WorkloadResult {
  commits: number;
  elapsedMs: number;
}

function workload(db: string, extra: string[]): { proc: Proc; result: Promise<WorkloadResult> } {
  const p = run(WORKLOAD_SCRIPT, ['--db', db, '--mix', 'small', '--synchronous', 'NORMAL', ...extra]);
  const result = p.exited.then((code) => {
    const line = p.stdout.trim().split('\n').pop() ?? '';
    if (code !== 0 || !line.startsWith('{')) throw new Error(`workload failed (exit ${code}):\n${p.stderr}\n${p.stdout}`);
    return JSON.parse(line) as WorkloadResult;
  });
  return { proc: p, result };
}


/** CPU seconds (user + system) a process has used so far, from /proc; NaN when unreadable. */
/** CPU seconds this process (the benchmark and what it embeds: a standby or a primary) has used. */
function ownCpuSeconds(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

const sectionLoad: string[] = [];
/**
 * Runs one section and records how busy the machine was meanwhile: CPU used by processes other than this
 * benchmark and its (reaped) children, and the share of time some task stalled for CPU / for I/O (PSI).
 * PostgreSQL's server processes are not children of this process, so in the PostgreSQL sections their
 * CPU is in the "other" figure.
 */
async function section(name: string, f: () => Promise<void>): Promise<void> {
  const a = cpuSnap();
  await f();
  const b = cpuSnap();
  const o = (b.busy - a.busy - (b.ours - a.ours)) / CLK_TCK / ((b.atMs - a.atMs) / 1000);
  const wallUs = (b.atMs - a.atMs) * 1000;
  const cpuP = (100 * (b.cpuStallUs - a.cpuStallUs)) / wallUs;
  const ioP = (100 * (b.ioStallUs - a.ioStallUs)) / wallUs;
  sectionLoad.push(`${name}: ${fmt((b.atMs - a.atMs) / 1000, 1)} s, other CPU ${o.toFixed(2)} cores, CPU stall ${fmt(cpuP)}%, I/O stall ${fmt(ioP)}%`);
  log(`  (${name}: ${fmt((b.atMs - a.atMs) / 1000, 1)} s; other CPU ${o.toFixed(2)} cores; stalled for CPU ${fmt(cpuP)}% / for I/O ${fmt(ioP)}% of the time)`);
}


function readJson<T>(path: string): T | null {
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as T;
  } catch {
    return null;
  }
}

function archiveLastLsn(dir: string): bigint {
  return Archive.open(dir).tail()?.lsn ?? 0n;
}

/** Pages and bytes of page images in the archive's records from..to (inclusive), and the count of records. */
function archivedPages(dir: string, from: bigint, to: bigint): { pages: number; bytes: number; records: number } {
  const a = Archive.open(dir);
  let pages = 0;
  if (from > to) return { pages: 0, bytes: 0, records: 0 };
  let records = 0;
  for (const r of a.records(from as Lsn, to as Lsn)) {
    if (r.lsn < from) continue;
    if (r.lsn > to) break;
    pages += r.pages.length;
    records++;
  }
  return { pages, bytes: pages * a.identity.pageSize, records };
}

/** Bytes of all files under dir. */
function dirBytes(dir: string): number {
  let n = 0;
  try {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) n += dirBytes(p);
      else if (e.isFile()) n += statSync(p).size;
    }
  } catch {
    /* a file went away while we looked */
  }
  return n;
}

async function until(what: string, cond: () => boolean, timeoutMs: number, everyMs = 5): Promise<number> {
  const start = performance.now();
  while (!cond()) {
    if (performance.now() - start > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
  return performance.now() - start;
}

// ---------------------------------------------------------------------------------------------- table

interface Row {
  figure: string;
  redoship: string;
  peer: string;
  ratio: string;
  target: string;
}
const rows: Row[] = [];
const notes: string[] = [];
const row = (figure: string, redoship: string, peer = '', ratio = '', target = '') => rows.push({ figure, redoship, peer, ratio, target });

function table(): string {
  const head: Row = { figure: 'figure', redoship: 'redoship', peer: 'peer', ratio: 'ratio', target: 'target' };
  const all = [head, ...rows];
  const keys = ['figure', 'redoship', 'peer', 'ratio', 'target'] as const;
  const w = keys.map((k) => Math.max(...all.map((r) => r[k].length)));
  const line = (r: Row) => keys.map((k, i) => r[k].padEnd(w[i]!)).join('  ').trimEnd();
  return [line(head), keys.map((_, i) => '-'.repeat(w[i]!)).join('  '), ...rows.map(line)].join('\n');
}

// ---------------------------------------------------------------------------------------------- PostgreSQL

/**
 * A PostgreSQL primary and a streaming standby (pg_basebackup -R) on loopback, in a temporary directory owned
 * by the user the servers run as (PostgreSQL refuses to run as root; when this process is root it runs the
 * server programs through runuser as "postgres", or "nobody" when there is no such user). Clients (psql,
 * pgbench) connect over TCP as the superuser "postgres" with trust authentication on 127.0.0.1.
 */
class Pg {
  readonly dir: string;
  primaryPort = 0;
  standbyPort = 0;
  private started: string[] = [];
  version = '';
  private constructor(
    readonly bin: string,
    readonly runAs: string | null,
  ) {
    // Inside the working directory (the same disk as redoship's files), which the server user may traverse.
    if (runAs !== null) chmodSync(work, 0o711);
    this.dir = mkdtempSync(join(work, 'pg-'));
  }

  static find(): { bin: string; version: string } | string {
    const has = (d: string) => ['initdb', 'pg_ctl', 'pg_basebackup', 'psql', 'pgbench', 'postgres'].every((p) => existsSync(join(d, p)));
    const candidates: string[] = [];
    if (cfg.pgBin) candidates.push(cfg.pgBin);
    try {
      const versions = readdirSync('/usr/lib/postgresql').sort((a, b) => Number(b) - Number(a));
      for (const v of versions) candidates.push(`/usr/lib/postgresql/${v}/bin`);
    } catch {
      /* not a Debian layout */
    }
    const cfgBin = spawnSync('pg_config', ['--bindir'], { encoding: 'utf8' });
    if (cfgBin.status === 0) candidates.push(cfgBin.stdout.trim());
    candidates.push('/usr/local/pgsql/bin', '/usr/local/bin', '/usr/bin');
    const bin = candidates.find(has);
    if (!bin) return `no PostgreSQL server programs (initdb, pg_ctl, pg_basebackup, psql, pgbench, postgres) in ${candidates.join(', ')}`;
    const v = spawnSync(join(bin, 'postgres'), ['--version'], { encoding: 'utf8' });
    return { bin, version: v.stdout?.trim() ?? 'unknown version' };
  }

  static async start(bin: string, version: string): Promise<Pg> {
    let runAs: string | null = null;
    let uid = -1;
    let gid = -1;
    if (process.getuid?.() === 0) {
      for (const u of ['postgres', 'nobody']) {
        const id = spawnSync('id', ['-u', u], { encoding: 'utf8' });
        const g = spawnSync('id', ['-g', u], { encoding: 'utf8' });
        if (id.status === 0 && g.status === 0) {
          runAs = u;
          uid = Number(id.stdout.trim());
          gid = Number(g.stdout.trim());
          break;
        }
      }
      if (runAs === null) throw new Error('running as root, and neither a "postgres" nor a "nobody" user exists to run PostgreSQL as');
    }
    const pg = new Pg(bin, runAs);
    pg.version = version;
    pgActive = pg; // stopped by the signal handler from here on, even half-started
    try {
      if (runAs !== null) chownSync(pg.dir, uid, gid);
      pg.primaryPort = await freePort();
      pg.standbyPort = await freePort();
      const p = join(pg.dir, 'primary');
      const s = join(pg.dir, 'standby');
      pg.server('initdb', ['-D', p, '-A', 'trust', '-U', 'postgres', '--no-sync', '-E', 'UTF8', '--locale', 'C']);
      // Defaults otherwise: fsync=on, synchronous_commit=on, wal_sync_method=fdatasync on Linux,
      // shared_buffers=128MB, wal_level=replica, hot_standby=on on the standby.
      appendFileSync(
        join(p, 'postgresql.conf'),
        [
          '',
          '# redoship standby benchmark',
          `port = ${pg.primaryPort}`,
          "listen_addresses = '127.0.0.1'",
          `unix_socket_directories = '${pg.dir}'`,
          'wal_level = replica',
          'max_wal_senders = 4',
          'fsync = on',
          'synchronous_commit = on',
          "synchronous_standby_names = ''",
          '',
        ].join('\n'),
      );
      pg.ctlStart(p);
      pg.sql(pg.primaryPort, 'CREATE TABLE t (id bigserial PRIMARY KEY, k integer NOT NULL, v text NOT NULL)');
      pg.server('pg_basebackup', ['-h', '127.0.0.1', '-p', String(pg.primaryPort), '-U', 'postgres', '-D', s, '-R', '-X', 'stream', '-c', 'fast']);
      appendFileSync(join(s, 'postgresql.conf'), `\n# the standby\nport = ${pg.standbyPort}\n`);
      pg.ctlStart(s);
      await until('the PostgreSQL standby to stream', () => pg.sql(pg.primaryPort, "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'") === '1', 30_000, 50);
      return pg;
    } catch (e) {
      pg.stop();
      pgActive = null;
      throw e;
    }
  }

  /** Runs a server program (as the PostgreSQL user when root); throws with its output when it fails. */
  private server(prog: string, args: string[]): string {
    const cmd = join(this.bin, prog);
    const r: SpawnSyncReturns<string> =
      this.runAs !== null
        ? spawnSync('runuser', ['-u', this.runAs, '--', cmd, ...args], { cwd: this.dir, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 120_000 })
        : spawnSync(cmd, args, { cwd: this.dir, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 120_000 });
    if (r.status !== 0) throw new Error(`${prog} ${args.join(' ')} failed (${r.status ?? r.signal ?? r.error?.message}):\n${r.stdout}\n${r.stderr}`);
    return r.stdout;
  }

  private ctlStart(dataDir: string): void {
    this.started.push(dataDir); // before: a start that fails half-way may still leave a server to stop
    this.server('pg_ctl', ['-D', dataDir, '-l', `${dataDir}.log`, '-w', '-t', '60', 'start']);
  }

  sql(port: number, q: string): string {
    const r = spawnSync(join(this.bin, 'psql'), ['-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', '-X', '-At', '-v', 'ON_ERROR_STOP=1', '-c', q, 'postgres'], {
      encoding: 'utf8',
      timeout: 30_000,
    });
    if (r.status !== 0) throw new Error(`psql -c "${q}" failed: ${r.stderr}`);
    return r.stdout.trim();
  }

  /** Sets synchronous_standby_names and waits until pg_stat_replication shows the standby in that state. */
  async setSync(sync: boolean): Promise<void> {
    this.sql(this.primaryPort, sync ? "ALTER SYSTEM SET synchronous_standby_names = '*'" : 'ALTER SYSTEM RESET synchronous_standby_names');
    this.sql(this.primaryPort, 'SELECT pg_reload_conf()');
    const want = sync ? 'sync' : 'async';
    await until(`the PostgreSQL standby to be ${want}`, () => this.sql(this.primaryPort, 'SELECT sync_state FROM pg_stat_replication') === want, 20_000, 50);
  }

  /** Runs pgbench on the primary with a script; returns tps (without initial connection time) and the count. */
  async pgbench(script: string, args: string[]): Promise<{ tps: number; txns: number; out: string }> {
    const child = spawn(join(this.bin, 'pgbench'), ['-h', '127.0.0.1', '-p', String(this.primaryPort), '-U', 'postgres', '-n', '-f', script, ...args, 'postgres'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    running.add(child);
    let out = '';
    child.stdout!.on('data', (d) => (out += d));
    child.stderr!.on('data', (d) => (out += d));
    const code = await new Promise<number | null>((r) => child.once('close', (c) => r(c)));
    running.delete(child);
    if (code !== 0) throw new Error(`pgbench failed (${code}):\n${out}`);
    const tps = Number(/tps = ([\d.]+) \(without initial connection time\)/.exec(out)?.[1] ?? NaN);
    const txns = Number(/number of transactions actually processed: (\d+)/.exec(out)?.[1] ?? NaN);
    return { tps, txns, out };
  }

  /**
   * Samples pg_stat_replication every 10 ms through one psql session (\watch 0.01) until stop() is called:
   * the sample's clock_timestamp and write_lag, flush_lag, replay_lag in µs (null when PostgreSQL shows NULL).
   */
  sampler(): { stop(): Promise<Array<{ atUs: number; write: number | null; flush: number | null; replay: number | null }>> } {
    const child = spawn(join(this.bin, 'psql'), ['-h', '127.0.0.1', '-p', String(this.primaryPort), '-U', 'postgres', '-X', '-At', 'postgres'], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    running.add(child);
    let out = '';
    let err = '';
    child.stdout!.on('data', (d) => (out += d));
    child.stderr!.on('data', (d) => (err += d));
    const us = (col: string) => `(extract(epoch from ${col}) * 1000000)::bigint`;
    child.stdin!.write(`SELECT ${us('clock_timestamp()')}, ${us('write_lag')}, ${us('flush_lag')}, ${us('replay_lag')} FROM pg_stat_replication \\watch 0.01\n`);
    const closed = new Promise<void>((r) => child.once('close', () => r()));
    return {
      async stop() {
        child.kill('SIGINT'); // ends \watch; psql then reads end of input and exits, flushing its output
        child.stdin!.end();
        const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
        await closed;
        clearTimeout(timer);
        running.delete(child);
        const samples = [];
        for (const line of out.split('\n')) {
          const f = line.split('|');
          if (f.length !== 4 || !/^\d+$/.test(f[0]!)) continue;
          const n = (s: string) => (s === '' ? null : Number(s));
          samples.push({ atUs: Number(f[0]), write: n(f[1]!), flush: n(f[2]!), replay: n(f[3]!) });
        }
        if (samples.length === 0) throw new Error(`the pg_stat_replication sampler got nothing: ${err}`);
        return samples;
      },
    };
  }

  /** Stops both servers (fast, then immediate) and removes the directory (unless --keep). */
  stop(): void {
    for (const d of this.started.reverse()) {
      if (!existsSync(join(d, 'postmaster.pid'))) continue; // not running
      try {
        this.server('pg_ctl', ['-D', d, '-m', 'fast', '-w', '-t', '30', 'stop']);
      } catch {
        try {
          this.server('pg_ctl', ['-D', d, '-m', 'immediate', '-w', 'stop']);
        } catch (e) {
          log(`could not stop the PostgreSQL server in ${d}: ${(e as Error).message}`);
        }
      }
    }
    this.started = [];
    if (!cfg.keep) rmSync(this.dir, { recursive: true, force: true });
  }
}

async function freePort(): Promise<number> {
  const { createServer } = await import('node:net');
  return new Promise((res, rej) => {
    const s = createServer();
    s.once('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => res(port));
    });
  });
}

/** pgbench script: one small INSERT per transaction (an autocommit statement is one commit). */
function pgScript(dir: string): string {
  const p = join(dir, 'insert.sql');
  writeFileSync(p, "\\set k random(1, 1000000)\nINSERT INTO t (k, v) VALUES (:k, repeat(md5(:k::text), 3));\n");
  return p;
}

// ---------------------------------------------------------------------------------------------- sections

let tokenFile = '';
let secret: Buffer = Buffer.alloc(0);

/** `redoship primary --listen 127.0.0.1:0` as its own process; resolves with it and the port it serves on. */
async function primaryProcess(db: string, archive: string): Promise<{ proc: Proc; port: number }> {
  const extra = (process.env.BENCH_PRIMARY_ARGS ?? '').split(' ').filter(Boolean);
  const proc = run(BIN, ['primary', '--db', db, '--archive', archive, '--listen', '127.0.0.1:0', '--token-file', tokenFile, ...extra]);
  const m = await proc.waitFor(/serving redo on ws:\/\/127\.0\.0\.1:(\d+)/);
  return { proc, port: Number(m[1]) };
}

// 1. Commit -> durable on the standby, redoship.
interface Lat {
  durable: Pcts;
  applied: Pcts;
  commits: number;
  achieved: number;
  events: number;
  applyEvents: number;
  missing: number;
  primaryCpu: number;
  standbyCpu: number;
  /** Writer's commit -> the primary's capture of it (the record's time, taken as capture starts its batch). */
  capture: Pcts;
  /** That capture time -> durable on the standby (the primary's archive fsync, sending, the standby's fsync). */
  ship: Pcts;
}
/**
 * The latency run. withDb=false is the diagnostic variant: an archive-only standby (no database, so no apply),
 * which shows how much of commit -> durable is the apply sharing the standby's event loop with receiving.
 */
async function latencyRedoship(work: string, withDb = true): Promise<Lat> {
  log(
    `latency${withDb ? '' : ' (diagnostic: archive-only standby, no apply)'}: writer at ${cfg.rate} commits/s for ${cfg.latencyMs} ms; ` +
      'redoship primary process; standby in this process (startStandby)',
  );
  const dir = join(work, withDb ? 'latency' : 'latency-archive-only');
  const db = newDatabase(dir);
  const parch = join(dir, 'primary-archive');
  const sdb = join(dir, 'standby.db');
  const sarch = join(dir, 'standby-archive');
  const commitLog = join(dir, 'commits.log');
  const { proc: primary, port } = await primaryProcess(db, parch);
  const durable: Array<{ lsn: number; atUs: number }> = [];
  const applied: Array<{ lsn: number; atUs: number }> = [];
  const standbyNotes: string[] = [];
  const sb = await startStandby({
    ...(withDb ? { db: sdb } : {}),
    archive: sarch,
    from: `ws://127.0.0.1:${port}`,
    secret,
    name: 'bench',
    onEvent: (e) => e.type === 'warning' && standbyNotes.push(e.message),
    onProgress: (e) => (e.type === 'durable' ? durable : applied).push({ lsn: Number(e.lastLsn), atUs: Number(e.atUs) }),
  });
  let r: WorkloadResult;
  let cpuP = NaN;
  let cpuS = NaN;
  try {
    await Promise.race([
      until('the standby to be seeded', () => Number(withDb ? (sb.status().appliedLsn ?? 0) : sb.status().receivedLsn) >= 1, 30_000),
      sb.failed.then((e) => Promise.reject(e)),
    ]);
    durable.length = 0;
    applied.length = 0;
    const c0 = cpuSeconds(primary.child.pid);
    const s0 = ownCpuSeconds();
    const w = workload(db, ['--rate', String(cfg.rate), '--duration-ms', String(cfg.latencyMs), '--commit-log', commitLog]);
    r = await Promise.race([w.result, sb.failed.then((e) => Promise.reject(e))]);
    const target = r.commits + 1;
    try {
      await until(`the standby to hold LSN ${target}`, () => Number(withDb ? (sb.status().appliedLsn ?? 0) : sb.status().receivedLsn) >= target, 30_000);
    } catch (e) {
      notes.push(`latency run: ${(e as Error).message}`);
    }
    cpuP = (cpuSeconds(primary.child.pid) - c0) / (r.elapsedMs / 1000);
    cpuS = (ownCpuSeconds() - s0) / (r.elapsedMs / 1000);
  } finally {
    await sb.stop();
    await stopProc(primary, 'latency run: redoship primary');
  }
  for (const n of standbyNotes.slice(0, 3)) notes.push(`latency run: standby warning: ${n}`);
  const commits = readFileSync(commitLog, 'utf8').trim().split('\n').map(Number);
  const match = (events: Array<{ lsn: number; atUs: number }>) => {
    const lat: number[] = [];
    let j = 0;
    let missing = 0;
    commits.forEach((c, i) => {
      const lsn = i + 2; // the writer's (i+1)-th commit is LSN i+2; LSN 1 is the base
      while (j < events.length && events[j]!.lsn < lsn) j++;
      if (j >= events.length) missing++;
      else lat.push(events[j]!.atUs - c);
    });
    return { lat, missing };
  };
  const d = match(durable);
  const a = match(applied);
  // Split commit -> durable at the record's time (the primary's clock when it captured the batch).
  const recTime = new Map<number, number>();
  try {
    for (const rec of Archive.open(sarch).records(2n as Lsn)) recTime.set(Number(rec.lsn), Number(rec.commitTimeUs));
  } catch (e) {
    notes.push(`latency run: could not read the standby archive: ${(e as Error).message}`);
  }
  const capture: number[] = [];
  const ship: number[] = [];
  {
    let j = 0;
    commits.forEach((c, i) => {
      const lsn = i + 2;
      const t = recTime.get(lsn);
      while (j < durable.length && durable[j]!.lsn < lsn) j++;
      if (t === undefined || j >= durable.length) return;
      capture.push(t - c);
      ship.push(durable[j]!.atUs - t);
    });
  }
  if (process.env.BENCH_DUMP) {
    const rows: string[] = [];
    let j = 0;
    commits.forEach((c, i) => {
      const lsn = i + 2;
      while (j < durable.length && durable[j]!.lsn < lsn) j++;
      const t = recTime.get(lsn);
      if (j < durable.length && t !== undefined) rows.push(`${c} ${durable[j]!.atUs - c} ${t - c}`);
    });
    writeFileSync(`${process.env.BENCH_DUMP}-${withDb ? 'db' : 'ao'}.txt`, rows.join('\n') + '\n');
  }
  const last = archiveLastLsn(sarch);
  if (last !== BigInt(r.commits) + 1n) notes.push(`latency run: standby archive last LSN ${last}, expected ${r.commits} commits + 1`);
  const res: Lat = {
    durable: pcts(d.lat),
    applied: pcts(a.lat),
    commits: commits.length,
    achieved: (r.commits * 1000) / r.elapsedMs,
    events: durable.length,
    applyEvents: applied.length,
    missing: d.missing,
    primaryCpu: cpuP,
    standbyCpu: cpuS,
    capture: pcts(capture),
    ship: pcts(ship),
  };
  log(
    `  ${r.commits} commits (${fmt(res.achieved)} commits/s); ${durable.length} durable events, ${applied.length} apply batches; ` +
      `commit->durable p50 ${ms(res.durable.p50)} p90 ${ms(res.durable.p90)} p99 ${ms(res.durable.p99)} max ${ms(res.durable.max)} min ${ms(res.durable.min)}; ` +
      `commit->applied p50 ${ms(res.applied.p50)} p99 ${ms(res.applied.p99)}; commit->captured p50 ${ms(res.capture.p50)} p99 ${ms(res.capture.p99)}, ` +
      `captured->durable on standby p50 ${ms(res.ship.p50)} p99 ${ms(res.ship.p99)}; primary CPU ${fmt(cpuP * 100)}%, standby (this process) ${fmt(cpuS * 100)}%`,
  );
  return res;
}

interface PgLat {
  flush: Pcts;
  replay: Pcts;
  write: Pcts;
  samples: number;
  nulls: number;
  tps: number;
}
async function latencyPg(pg: Pg, script: string): Promise<PgLat> {
  const secs = Math.max(1, Math.round(cfg.latencyMs / 1000));
  log(`latency (PostgreSQL): pgbench -R ${cfg.rate} -c ${cfg.pgClients} -T ${secs}, sampling pg_stat_replication every 10 ms`);
  await pg.setSync(false);
  const sampler = pg.sampler();
  await sleep(300);
  const from = nowUs() + 500_000; // leave out pgbench's first half second (connection, ramp)
  const b = await pg.pgbench(script, ['-c', String(cfg.pgClients), '-j', String(cfg.pgClients), '-R', String(cfg.rate), '-T', String(secs)]);
  const to = nowUs();
  const samples = (await sampler.stop()).filter((s) => s.atUs >= from && s.atUs <= to);
  const col = (k: 'write' | 'flush' | 'replay') => pcts(samples.map((s) => s[k]).filter((x): x is number => x !== null));
  const res: PgLat = {
    flush: col('flush'),
    replay: col('replay'),
    write: col('write'),
    samples: samples.length,
    nulls: samples.filter((s) => s.flush === null).length,
    tps: b.tps,
  };
  log(
    `  pgbench ${b.txns} transactions, ${fmt(b.tps)} tps; ${samples.length} samples (${res.nulls} NULL); flush_lag p50 ${ms(res.flush.p50)} p99 ${ms(res.flush.p99)} max ${ms(res.flush.max)}; ` +
      `replay_lag p50 ${ms(res.replay.p50)} p99 ${ms(res.replay.p99)}`,
  );
  return res;
}

function latencyRows(r: Lat, p: PgLat | null, clock: { offsetUs: number; plusMinusUs: number }): void {
  const peer = (label: string, v: number | undefined) => (p ? `PG flush_lag ${label} ${ms(v!)}` : 'PostgreSQL not run');
  const rat = (a: number, b: number | undefined) => (p ? ratioX(a, b!) : '');
  row(`1. commit -> durable on standby, ${fmt(cfg.rate)}/s: p50`, ms(r.durable.p50), peer('p50', p?.flush.p50), rat(r.durable.p50, p?.flush.p50), `<= 1.5 ms ${r.durable.p50 <= 1500 ? 'MET' : 'MISSED'}`);
  row('   p90', ms(r.durable.p90), peer('p90', p?.flush.p90), rat(r.durable.p90, p?.flush.p90));
  row('   p99', ms(r.durable.p99), peer('p99', p?.flush.p99), rat(r.durable.p99, p?.flush.p99), `<= 10 ms ${r.durable.p99 <= 10_000 ? 'MET' : 'MISSED'}`);
  row('   max', ms(r.durable.max), peer('max', p?.flush.max), rat(r.durable.max, p?.flush.max));
  row(
    '   commit -> applied on standby: p50',
    ms(r.applied.p50),
    p ? `PG replay_lag p50 ${ms(p.replay.p50)}` : '',
    p ? ratioX(r.applied.p50, p.replay.p50) : '',
  );
  row('   p99', ms(r.applied.p99), p ? `PG replay_lag p99 ${ms(p.replay.p99)}` : '', p ? ratioX(r.applied.p99, p.replay.p99) : '');
  row(
    '   commits measured / rate reached',
    `${fmt(r.commits)} / ${fmt(r.achieved)}/s${r.missing ? ` (${r.missing} NEVER DURABLE)` : ''}`,
    p ? `${fmt(p.samples)} samples (${fmt(p.nulls)} NULL) / pgbench ${fmt(p.tps)} tps, ${cfg.pgClients} client${cfg.pgClients > 1 ? 's' : ''}` : '',
  );
  row(
    '   standby receive batches / apply batches',
    `${fmt(r.events)} / ${fmt(r.applyEvents)}`,
    `clock offset writer-bench ${fmt(clock.offsetUs, 1)} ± ${fmt(clock.plusMinusUs, 1)} µs`,
  );
  row('   CPU: primary process / standby (bench process)', `${fmt(r.primaryCpu * 100)}% / ${fmt(r.standbyCpu * 100)}% of a core`);
  row('   split: commit -> captured on primary, p50 / p99', `${ms(r.capture.p50)} / ${ms(r.capture.p99)}`, 'record time = primary clock at capture');
  row('   split: captured -> durable on standby, p50 / p99', `${ms(r.ship.p50)} / ${ms(r.ship.p99)}`, "incl. the primary's own archive fsync");
  const neg = r.durable.min < 0;
  if (neg)
    notes.push(
      `latency: some commit->durable latencies are negative (smallest ${ms(r.durable.min)}): the writer reads its clock after COMMIT returns, which includes its own autocheckpoint and any time it was descheduled; such latencies are understated`,
    );
  if (p && p.tps < cfg.rate * 0.95)
    notes.push(`latency (PostgreSQL): pgbench reached ${fmt(p.tps)} tps of the ${fmt(cfg.rate)} asked with ${cfg.pgClients} client(s); raise --pg-clients to reach the rate`);
}

// 2. Synchronous commit.
interface SyncResult {
  sync: number[];
  async: number[];
  /** The same no-wait loop on a database with no primary attached (reference). */
  alone: number;
  /** fsyncPingPong(): round trips/s of two processes taking turns to write and fdatasync. */
  floor: number;
  /** Time each waitForStandbys(1) took, µs. */
  wait: Pcts;
  /** Diagnostic: the waiting loop with an archive-only standby (no apply). */
  archiveOnly?: number;
  archiveOnlyWait?: Pcts;
}
/** One application connection's loop: one INSERT per commit for syncMs; after each commit `after` runs. */
async function appLoop(ins: Database.Statement, after: () => Promise<unknown>, waits?: number[]): Promise<number> {
  const blob = randomBytes(100);
  let n = 0;
  const start = performance.now();
  const end = start + cfg.syncMs;
  while (performance.now() < end) {
    ins.run(n & 0xfffff, blob);
    n++;
    const a = performance.now();
    await after();
    waits?.push((performance.now() - a) * 1000);
  }
  return (n * 1000) / (performance.now() - start);
}
function appConnection(db: string): Database.Database {
  const app = new Database(db, { timeout: 10_000 });
  app.pragma('journal_mode = WAL');
  app.pragma('synchronous = NORMAL');
  return app;
}

async function syncRedoship(work: string): Promise<SyncResult> {
  log(`sync: one connection in this process, one INSERT per commit, ${cfg.runs} x ${cfg.syncMs} ms per variant (alternating); primary in this process (startPrimary, listen), standby process`);
  const dir = join(work, 'sync');
  // Reference: the no-wait loop with no primary attached at all.
  let alone: number;
  {
    const a = appConnection(newDatabase(join(dir, 'alone')));
    try {
      alone = await appLoop(a.prepare('INSERT INTO t (k, v) VALUES (?, ?)'), yieldNow);
    } finally {
      a.close();
    }
    log(`  no primary attached (reference): ${fmt(alone)} commits/s`);
  }
  const db = newDatabase(dir);
  const parch = join(dir, 'primary-archive');
  const h = await startPrimary({ db, archive: parch, listen: { host: '127.0.0.1', port: 0 }, secret, onEvent: (e) => e.type === 'warning' && notes.push(`sync run: primary warning: ${e.message}`) });
  const port = h.server!.address.port;
  const standby = run(BIN, ['standby', '--db', join(dir, 'standby.db'), '--archive', join(dir, 'standby-archive'), '--from', `ws://127.0.0.1:${port}`, '--token-file', tokenFile]);
  // The application's connection. This process holds the primary, which must never see a file descriptor
  // of the live database closed while it runs (DESIGN.md Capture 3): it is closed only after h.stop().
  const app = appConnection(db);
  const out: SyncResult = { sync: [], async: [], alone, floor: NaN, wait: pcts([]) };
  const floors: number[] = [];
  const waits: number[] = [];
  try {
    const ins = app.prepare('INSERT INTO t (k, v) VALUES (?, ?)');
    await h.waitForStandbys(1, 30_000);
    for (let i = 0; i < cfg.runs; i++) {
      // The disk's flush time here varies from minute to minute: the floor is measured beside each run.
      floors.push(fsyncPingPong(join(dir, 'ping-pong')));
      log(`  run ${i + 1} floor: two processes writing and fdatasyncing in turn: ${fmt(floors[i]!)} round trips/s`);
      for (const wait of [false, true]) {
        // Waiting: resolves when the commit is durable on 1 standby. Not waiting: the same loop yields to the
        // event loop once per commit (as a server does between requests), so the embedded primary captures.
        const c = await appLoop(ins, wait ? () => h.waitForStandbys(1, 10_000) : yieldNow, wait ? waits : undefined);
        (wait ? out.sync : out.async).push(c);
        log(`  run ${i + 1} ${wait ? 'waitForStandbys(1) after each commit' : 'no wait                            '}: ${fmt(c)} commits/s`);
      }
    }
    await h.waitForStandbys(1, 30_000);
    if (cfg.diag) {
      // Diagnostic: the same waiting loop with an archive-only standby (no database, so no apply) instead.
      await stopProc(standby, 'sync run: redoship standby');
      const ao = run(BIN, ['standby', '--archive', join(dir, 'standby-archive-only'), '--from', `ws://127.0.0.1:${port}`, '--token-file', tokenFile]);
      try {
        await h.waitForStandbys(1, 30_000);
        const aw: number[] = [];
        out.archiveOnly = await appLoop(ins, () => h.waitForStandbys(1, 10_000), aw);
        out.archiveOnlyWait = pcts(aw);
        log(`  diagnostic, archive-only standby: ${fmt(out.archiveOnly)} commits/s; waitForStandbys(1) p50 ${ms(out.archiveOnlyWait.p50)} p99 ${ms(out.archiveOnlyWait.p99)}`);
      } finally {
        await stopProc(ao, 'sync run: archive-only standby');
      }
    }
  } finally {
    await h.stop();
    app.close();
    await stopProc(standby, 'sync run: redoship standby');
  }
  out.wait = pcts(waits);
  out.floor = median(floors);
  log(`  waitForStandbys(1): p50 ${ms(out.wait.p50)} p99 ${ms(out.wait.p99)} max ${ms(out.wait.max)}`);
  return out;
}

async function syncPg(pg: Pg, script: string): Promise<{ sync: number[]; async: number[] }> {
  const secs = Math.max(1, Math.round(cfg.syncMs / 1000));
  log(`sync (PostgreSQL): pgbench -c 1 -T ${secs}, synchronous_commit = on, ${cfg.runs} runs per variant (alternating)`);
  const out = { sync: [] as number[], async: [] as number[] };
  for (let i = 0; i < cfg.runs; i++) {
    for (const sync of [false, true]) {
      await pg.setSync(sync);
      const b = await pg.pgbench(script, ['-c', '1', '-j', '1', '-T', String(secs)]);
      (sync ? out.sync : out.async).push(b.tps);
      log(`  run ${i + 1} ${sync ? "synchronous_standby_names = '*'" : "synchronous_standby_names = '' "}: ${fmt(b.tps)} tps`);
    }
  }
  await pg.setSync(false);
  return out;
}

/**
 * The floor under a synchronous commit whose two syncs run one after the other (the primary's, then the
 * standby's: redoship before protocol version 2, and PostgreSQL): two processes on this machine take turns,
 * each writing 8,279 bytes (a small commit's framed record) over preallocated room of its own file and
 * fdatasync()ing it, then waking the other through a pipe. No SQLite, no WebSocket, no checks: round trips
 * per second, each two fdatasyncs and two process wake-ups. Since protocol version 2 redoship sends before
 * its own sync (transport/protocol.ts, confirmation), so its syncs overlap and it can pass this floor.
 */
const PING_PONG = `
const fs = require('node:fs');
const [file, role, n] = [process.argv[1], process.argv[2], Number(process.argv[3])];
const fd = fs.openSync(file, 'w+');
fs.writeSync(fd, Buffer.alloc(64 << 20), 0, 64 << 20, 0);
fs.fsyncSync(fd);
const b = Buffer.alloc(8279, 7);
let off = 0;
const one = () => { fs.writeSync(fd, b, 0, b.length, off); off += b.length; fs.fdatasyncSync(fd); };
if (role === 'b') {
  process.stdin.on('data', (d) => { for (let i = 0; i < d.length; i++) { one(); process.stdout.write('x'); } });
  process.stdin.on('end', () => fs.unlinkSync(file));
} else {
  const c = require('node:child_process').spawn(process.execPath, ['-e', process.env.PING_PONG, file + '.b', 'b'], { stdio: ['pipe', 'pipe', 'inherit'], env: process.env });
  let k = 0;
  let t0 = 0;
  c.stdout.on('data', (d) => {
    k += d.length;
    if (k === 50) t0 = performance.now(); // warmed up
    if (k >= n + 50) { process.stdout.write(String((n * 1000) / (performance.now() - t0))); c.stdin.end(); fs.unlinkSync(file); }
    else { one(); c.stdin.write('x'); }
  });
  one();
  c.stdin.write('x');
}`;

function fsyncPingPong(dir: string, roundTrips = 2000): number {
  mkdirSync(dir, { recursive: true });
  const r = spawnSync(process.execPath, ['-e', PING_PONG, join(dir, 'ping-pong'), 'a', String(roundTrips)], { encoding: 'utf8', env: { ...process.env, PING_PONG } });
  const v = Number(r.stdout);
  if (r.status !== 0 || !Number.isFinite(v)) throw new Error(`fsync ping-pong failed: ${r.stderr}`);
  return v;
}

function syncRows(r: SyncResult, p: { sync: number[]; async: number[] } | null): void {
  const s = median(r.sync);
  const a = median(r.async);
  const ps = p ? median(p.sync) : NaN;
  const pa = p ? median(p.async) : NaN;
  row(`2. sync commit: commits/s, wait for 1 standby (median of ${cfg.runs})`, fmt(s), p ? `PG sync standby: ${fmt(ps)} tps` : 'PostgreSQL not run', p ? ratio2(s, ps) : '');
  row('   same loop, no wait (async)', fmt(a), p ? `PG async standby: ${fmt(pa)} tps` : '', p ? ratio2(a, pa) : '');
  row('   sync / async', ratio2(s, a), p ? `PG ${ratio2(ps, pa)}` : '', p ? ratio2(s / a, ps / pa) : '', `>= 0.8 ${s / a >= 0.8 ? 'MET' : 'MISSED'}`);
  row('   runs sync / async', `${r.sync.map((x) => fmt(x)).join(', ')} / ${r.async.map((x) => fmt(x)).join(', ')}`, p ? `${p.sync.map((x) => fmt(x)).join(', ')} / ${p.async.map((x) => fmt(x)).join(', ')}` : '');
  row('   sync: mean time per commit', ms(1e6 / s), p ? `PG ${ms(1e6 / ps)}` : '', p ? ratioX(1 / s, 1 / ps) : '');
  row('   waitForStandbys(1) after a commit: p50 / p99', `${ms(r.wait.p50)} / ${ms(r.wait.p99)}`);
  row('   no-wait loop: primary attached / none (reference)', fmt(a), `no primary attached: ${fmt(r.alone)}`, ratio2(a, r.alone));
  row(`   sync commits/s against two fdatasyncs in turn (median of ${cfg.runs})`, fmt(s), `2 processes, fdatasync in turn: ${fmt(r.floor)}/s`, ratio2(s, r.floor));
  row('   that floor / async: best sync / async with serial syncs', ratio2(r.floor, a), 'redoship overlaps its two syncs (protocol 2)');
  if (r.archiveOnly !== undefined && r.archiveOnlyWait) {
    row('   diagnostic: sync, archive-only standby (no apply)', fmt(r.archiveOnly), `with apply ${fmt(s)}`, ratio2(r.archiveOnly, s));
    row('   its sync / async', ratio2(r.archiveOnly, a), `wait p50 ${ms(r.archiveOnlyWait.p50)}, p99 ${ms(r.archiveOnlyWait.p99)}`);
  }
}

// 3 + 4. Sustained throughput and readers on the standby.
async function sustained(work: string): Promise<void> {
  log(`sustain: writer at full speed for ${cfg.sustainMs} ms; redoship primary process + standby process; reader on the standby for ${cfg.readMs} ms during it, then ${cfg.readMs} ms idle`);
  const dir = join(work, 'sustain');
  const db = newDatabase(dir);
  const parch = join(dir, 'primary-archive');
  const sdb = join(dir, 'standby.db');
  const sarch = join(dir, 'standby-archive');
  const { proc: primary, port } = await primaryProcess(db, parch);
  const standby = run(BIN, ['standby', '--db', sdb, '--archive', sarch, '--from', `ws://127.0.0.1:${port}`, '--token-file', tokenFile]);
  const sStatus = () => readJson<StandbyStatus>(join(sarch, STANDBY_STATUS_FILE));
  // Samples of the standby's status file (rewritten every 500 ms) and of the standby archive's size.
  const samples: Array<{ atMs: number; st: StandbyStatus | null; archBytes: number; primaryUpdatedMs: number; primaryLsn: bigint | null; walBytes: number }> = [];
  let sampler: NodeJS.Timeout | null = null;
  let counter: Database.Database | null = null;
  try {
    await until('the standby to be seeded', () => Number(sStatus()?.appliedLsn ?? 0) >= 1, 30_000, 20);
    const archBytes0 = dirBytes(sarch);
    // The primary rewrites its status file every second from a timer on its event loop: how stale the file
    // gets shows how long that loop went without a turn (the redo server runs on it too).
    const pStatus = () => readJson<PrimaryStatus>(join(parch, STATUS_FILE));
    // The live WAL's size (stat only: no file descriptor of the live database is opened here).
    const walBytes = () => {
      try {
        return statSync(`${db}-wal`).size;
      } catch {
        return 0;
      }
    };
    sampler = setInterval(
      () => {
        const ps = pStatus();
        samples.push({
          atMs: Date.now(),
          st: sStatus(),
          archBytes: dirBytes(sarch),
          primaryUpdatedMs: Date.parse(ps?.updatedAt ?? '') || NaN,
          primaryLsn: ps ? BigInt(ps.lastLsn) : null,
          walBytes: walBytes(),
        });
      },
      100,
    );
    const cpuP0 = cpuSeconds(primary.child.pid);
    const cpuS0 = cpuSeconds(standby.child.pid);
    const wStart = Date.now();
    const w = workload(db, ['--rate', '0', '--duration-ms', String(cfg.sustainMs)]);
    // Reader during apply: starts half a second into the write load, and is done before it ends.
    await sleep(Math.min(500, cfg.sustainMs / 10));
    const busyWin = { from: Date.now(), to: NaN };
    const busyRead = readerResult(run(READER_SCRIPT, ['--db', sdb, '--interval-ms', '1', '--duration-ms', String(Math.min(cfg.readMs, Math.max(100, cfg.sustainMs - 1500)))])).then((x) => {
      busyWin.to = Date.now();
      return x;
    });
    const r = await w.result;
    const wEnd = Date.now();
    const cpuP = (cpuSeconds(primary.child.pid) - cpuP0) / ((wEnd - wStart) / 1000);
    const cpuS = (cpuSeconds(standby.child.pid) - cpuS0) / ((wEnd - wStart) / 1000);
    const atStop = sStatus();
    // A second reader while the standby catches up (when it applies hardest), started as the writer stops.
    const catchWin = { from: Date.now(), to: NaN };
    const catchRead = readerResult(run(READER_SCRIPT, ['--db', sdb, '--interval-ms', '1', '--duration-ms', String(cfg.readMs)])).then((x) => {
      catchWin.to = Date.now();
      return x;
    });
    // Catch-up: poll the standby database itself (every transaction bumps counter.n) every 10 ms.
    counter = new Database(sdb, { readonly: true, fileMustExist: true, timeout: 10_000 });
    const n = counter.prepare('SELECT n FROM counter WHERE id = 1').pluck();
    let caughtUpMs = NaN;
    try {
      caughtUpMs = await until(`the standby to apply all ${r.commits} commits`, () => Number(n.get()) >= r.commits, 60_000, 10);
    } catch (e) {
      notes.push(`sustain: ${(e as Error).message}`);
    }
    counter.close();
    counter = null;
    const caughtAt = Date.now();
    await sleep(600); // the status file catches up
    clearInterval(sampler);
    sampler = null;
    const busy = await busyRead;
    const caught = await catchRead;
    // Reader with no writes (apply idle).
    const idle = await readerResult(run(READER_SCRIPT, ['--db', sdb, '--interval-ms', '1', '--duration-ms', String(cfg.readMs)]));
    const final = sStatus();
    await stopProc(primary, 'sustain run: redoship primary');
    const ps = readJson<PrimaryStatus>(join(parch, STATUS_FILE)); // written last when it stopped
    await stopProc(standby, 'sustain run: redoship standby');

    // Figures. The writer's commits are LSN 2..commits+1 (LSN 1 is the base).
    const target = BigInt(r.commits) + 1n;
    const last = archiveLastLsn(sarch);
    const produced = archivedPages(sarch, 2n, target);
    const pageSize = Archive.open(sarch).identity.pageSize;
    const writerS = r.elapsedMs / 1000;
    // Shipped and applied during the write load: between the first status written after the writer started
    // and the last one written before it stopped (the status carries its own time).
    const inWindow = samples.filter((s) => s.st && Date.parse(s.st.updatedAt) >= wStart && Date.parse(s.st.updatedAt) <= wEnd);
    const first = inWindow[0]?.st;
    const lastSt = inWindow[inWindow.length - 1]?.st;
    let shippedMBs = NaN;
    let appliedMBs = NaN;
    let appliedPagesS = NaN;
    let windowS = NaN;
    let consumedMBs = NaN;
    if (first && lastSt && first !== lastSt) {
      windowS = (Date.parse(lastSt.updatedAt) - Date.parse(first.updatedAt)) / 1000;
      const recv = archivedPages(sarch, BigInt(first.receivedLsn) + 1n, BigInt(lastSt.receivedLsn));
      shippedMBs = recv.bytes / MB / windowS;
      const ap = (lastSt.apply?.pages ?? 0) - (first.apply?.pages ?? 0);
      appliedPagesS = ap / windowS;
      appliedMBs = (ap * pageSize) / MB / windowS;
      // Apply writes each page once per batch (its final image), so the redo it consumed is more than it wrote.
      consumedMBs = archivedPages(sarch, BigInt(first.appliedLsn ?? 0) + 1n, BigInt(lastSt.appliedLsn ?? 0)).bytes / MB / windowS;
    } else notes.push('sustain: fewer than two standby status samples during the write load; shipped/applied rates not computed');
    const archGrowth = (samples.find((s) => s.atMs >= wEnd)?.archBytes ?? dirBytes(sarch)) - archBytes0;
    const lagAtStop = atStop ? { recv: target - BigInt(atStop.receivedLsn), applied: target - BigInt(atStop.appliedLsn ?? 0) } : null;
    const endToEndS = (caughtAt - wStart) / 1000;
    const loadSamples = samples.filter((x) => x.atMs >= wStart && x.atMs <= wEnd && Number.isFinite(x.primaryUpdatedMs));
    const primaryStaleMs = loadSamples.length ? Math.max(...loadSamples.map((x) => x.atMs - x.primaryUpdatedMs)) : NaN;
    const standbyStaleMs = Math.max(...samples.filter((x) => x.atMs >= wStart && x.atMs <= wEnd && x.st).map((x) => x.atMs - Date.parse(x.st!.updatedAt)));
    log(
      `  ${r.commits} commits in ${r.elapsedMs} ms (${fmt(r.commits / writerS)} commits/s); ${produced.pages} pages in ${produced.records} records = ${fmt(produced.bytes / MB / writerS, 1)} MB/s produced; ` +
        `status window ${fmt(windowS, 2)} s: shipped ${fmt(shippedMBs, 1)} MB/s, applied ${fmt(appliedMBs, 1)} MB/s (${fmt(appliedPagesS)} pages/s); ` +
        `standby archive grew ${fmt(archGrowth / MB, 1)} MB while the writer ran; at writer stop the standby status (as of ${atStop?.updatedAt}) was ${lagAtStop?.recv} LSNs behind received, ${lagAtStop?.applied} behind applied; ` +
        `caught up ${fmt(caughtUpMs)} ms after the writer exited; primary CPU ${fmt(cpuP * 100)}%, standby CPU ${fmt(cpuS * 100)}%; apply batches ${final?.apply?.batches} max ${final?.apply?.maxBatchMs} ms; ` +
        `primary captured ${ps ? fmt(ps.stats.bytes / MB, 1) : '?'} MB of WAL`,
    );
    log(`  reader during the write load: ${JSON.stringify(busy)}`);
    log(`  reader during the catch-up:   ${JSON.stringify(caught)}`);
    log(`  reader idle:                  ${JSON.stringify(idle)}`);

    row(`3. sustained, writer full speed ${fmt(cfg.sustainMs / 1000, 1)} s: commits/s`, fmt(r.commits / writerS), `${fmt(r.commits)} commits in ${fmt(writerS, 2)} s`);
    row('   page images produced (standby archive, LSN 2..last)', `${fmt(produced.bytes / MB, 1)} MB = ${fmt(produced.bytes / MB / writerS, 1)} MB/s`, `${fmt(produced.pages / r.commits, 2)} pages/commit`);
    row(
      '   shipped: durable in standby archive, during load',
      `${fmt(shippedMBs, 1)} MB/s`,
      `produced ${fmt(produced.bytes / MB / writerS, 1)} MB/s`,
      ratio2(shippedMBs, produced.bytes / MB / writerS),
    );
    row('   applied: pages written to standby db, during load', `${fmt(appliedMBs, 1)} MB/s = ${fmt(appliedPagesS)} pages/s`, `shipped ${fmt(shippedMBs, 1)} MB/s`, ratio2(appliedMBs, shippedMBs));
    row('   applied: redo consumed (page images of applied LSNs)', `${fmt(consumedMBs, 1)} MB/s`, `shipped ${fmt(shippedMBs, 1)} MB/s`, ratio2(consumedMBs, shippedMBs));
    if (atStop && Number.isFinite(caughtUpMs)) {
      const rest = archivedPages(sarch, BigInt(atStop.appliedLsn ?? 0) + 1n, target);
      row(
        '   after the writer stopped: received + applied',
        `${fmt(rest.bytes / MB, 1)} MB in ${fmt(caughtUpMs / 1000, 2)} s = ${fmt(rest.bytes / MB / (caughtUpMs / 1000), 1)} MB/s`,
        `${fmt(rest.records)} LSNs = ${fmt(rest.records / (caughtUpMs / 1000))}/s`,
      );
    }
    // What the primary had archived (its status file, rewritten every second): shipping can only follow that.
    const pAtStop = [...samples].reverse().find((x) => x.atMs <= wEnd && x.primaryLsn !== null && x.primaryUpdatedMs >= wStart);
    if (pAtStop && pAtStop.primaryLsn !== null) {
      const capturedS = (pAtStop.primaryUpdatedMs - wStart) / 1000;
      const cap = archivedPages(sarch, 2n, pAtStop.primaryLsn);
      row(
        '   captured: durable in primary archive, during load',
        `${fmt(cap.bytes / MB / capturedS, 1)} MB/s`,
        `produced ${fmt(produced.bytes / MB / writerS, 1)} MB/s; primary status ${fmt(wEnd - pAtStop.primaryUpdatedMs)} ms before the stop: LSN ${pAtStop.primaryLsn} of ${target}`,
        ratio2(cap.bytes / MB / capturedS, produced.bytes / MB / writerS),
      );
    }
    row(
      '   lag when the writer stopped (standby status)',
      lagAtStop ? `${fmt(Number(lagAtStop.recv))} received, ${fmt(Number(lagAtStop.applied))} applied (LSNs)` : 'n/a',
      `status as of ${atStop ? fmt(wEnd - Date.parse(atStop.updatedAt)) : '?'} ms before the stop`,
    );
    const kept = Number.isFinite(caughtUpMs) && last === target;
    row(
      '   standby applied every commit, after writer stopped',
      Number.isFinite(caughtUpMs) ? `in ${fmt(caughtUpMs)} ms` : 'NO (60 s)',
      `end to end ${fmt(endToEndS, 2)} s for ${fmt(writerS, 2)} s of writes`,
      '',
      `within ${fmt(cfg.keepupMs / 1000, 1)} s ${kept && caughtUpMs <= cfg.keepupMs ? 'MET' : 'MISSED'}`,
    );
    row(
      '   CPU during load: primary / standby process',
      `${fmt(cpuP * 100)}% / ${fmt(cpuS * 100)}% of a core`,
      `apply batches ${fmt(final?.apply?.batches ?? NaN)}, longest ${fmt(final?.apply?.maxBatchMs ?? NaN, 1)} ms`,
    );
    const maxWal = Math.max(0, ...samples.filter((x) => x.atMs >= wStart && x.atMs <= caughtAt).map((x) => x.walBytes));
    row('   largest live WAL (-wal file), load + catch-up', `${fmt(maxWal / MiB, 1)} MiB`, 'checkpoint cycle every 1,000 frames (4 MiB) by default');
    row(
      '   longest wait for a status rewrite, during load',
      `primary ${fmt(primaryStaleMs)} ms (every 1,000)`,
      `standby ${fmt(standbyStaleMs)} ms (every 500)`,
    );
    if (last !== target) notes.push(`sustain: standby archive last LSN ${last}, expected ${r.commits} commits + 1`);

    const ok = (x: ReaderResult) => x.violations === 0;
    // Pages the standby applied while a reader ran (from the status samples: about ±0.5 s at each end).
    const appliedIn = (win: { from: number; to: number }) => {
      const inside = samples.filter((x) => x.st?.apply && Date.parse(x.st.updatedAt) >= win.from && Date.parse(x.st.updatedAt) <= win.to);
      return inside.length >= 2 ? inside[inside.length - 1]!.st!.apply!.pages - inside[0]!.st!.apply!.pages : 0;
    };
    const readerRows = (label: string, x: ReaderResult, win: { from: number; to: number }) => {
      row(`${label}: p50`, `${fmt(x.p50Ms ?? NaN, 3)} ms`, `idle ${fmt(idle.p50Ms ?? NaN, 3)} ms`, ratioX(x.p50Ms ?? NaN, idle.p50Ms ?? NaN));
      row('   p99', `${fmt(x.p99Ms ?? NaN, 3)} ms`, `idle ${fmt(idle.p99Ms ?? NaN, 3)} ms`, ratioX(x.p99Ms ?? NaN, idle.p99Ms ?? NaN));
      row('   reads / busy timeouts / violations', `${fmt(x.reads)} / ${x.busy} / ${x.violations}`, `idle ${fmt(idle.reads)} / ${idle.busy} / ${idle.violations}`);
      row('   pages applied meanwhile (status, ±0.5 s)', fmt(appliedIn(win)), `reader ran ${fmt(win.to - win.from)} ms`);
    };
    readerRows(`4. standby reads (${fmt(cfg.readMs / 1000, 1)} s) during the write load`, busy, busyWin);
    readerRows('   during the catch-up after it', caught, catchWin);
    row(
      '   catch-up reader overlapped apply',
      `${fmt(Math.max(0, Math.min(caughtAt, catchWin.to) - catchWin.from))} of ${fmt(catchWin.to - catchWin.from)} ms`,
      '',
      '',
      ok(busy) && ok(caught) && ok(idle) ? 'no violation: MET' : 'violations: MISSED',
    );
    if (!ok(busy) || !ok(caught) || !ok(idle))
      notes.push(`readers: violations: ${JSON.stringify([...busy.firstViolations, ...caught.firstViolations, ...idle.firstViolations])}`);
  } finally {
    if (sampler) clearInterval(sampler);
    counter?.close();
    await stopProc(standby, 'sustain run: redoship standby');
    await stopProc(primary, 'sustain run: redoship primary');
  }
}

interface ReaderResult {
  reads: number;
  violations: number;
  firstViolations: string[];
  busy: number;
  lastCounter: number;
  p50Ms: number | null;
  p99Ms: number | null;
}
async function readerResult(p: Proc): Promise<ReaderResult> {
  const code = await p.exited;
  const line = p.stdout.trim().split('\n').pop() ?? '';
  if (code !== 0 || !line.startsWith('{')) throw new Error(`reader failed (exit ${code}):\n${p.stderr}\n${p.stdout}`);
  return JSON.parse(line) as ReaderResult;
}

// ---------------------------------------------------------------------------------------------- main

function machine(dir: string): string[] {
  let model = 'unknown';
  try {
    model = /^model name\s*:\s*(.*)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1]?.trim() ?? model;
  } catch {
    /* not Linux */
  }
  const d = new Database(':memory:');
  const sqlite = String(d.prepare('select sqlite_version()').pluck().get());
  d.close();
  const fsType = spawnSync('findmnt', ['-n', '-o', 'FSTYPE,SOURCE', '-T', dir], { encoding: 'utf8' }).stdout?.trim().replace(/\s+/, ' on ') || 'unknown fs';
  return [
    `machine: ${model}, ${cpus().length} cores, Linux ${release()}`,
    `node ${process.version}, SQLite ${sqlite} (better-sqlite3), working directory ${dir} (${fsType})`,
  ];
}

let pgActive: Pg | null = null;
let work = '';
function cleanupSync(): void {
  for (const c of running) c.kill('SIGKILL');
  pgActive?.stop();
  pgActive = null;
  if (work && !cfg.keep) rmSync(work, { recursive: true, force: true });
}
for (const sig of ['SIGINT', 'SIGTERM'] as const)
  process.once(sig, () => {
    process.stderr.write(`bench: ${sig}: stopping what it started\n`);
    cleanupSync();
    process.exit(130);
  });

async function main(): Promise<void> {
  const parent = cfg.dir ? resolve(cfg.dir) : tmpdir();
  mkdirSync(parent, { recursive: true });
  work = mkdtempSync(join(parent, 'redoship-bench-standby-'));
  const started = new Date();
  const header = machine(work);
  const loadAtStart = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
  for (const l of header) log(l);
  tokenFile = join(work, 'token');
  writeFileSync(tokenFile, randomBytes(32).toString('base64') + '\n', { mode: 0o600 });
  secret = Buffer.from(readFileSync(tokenFile, 'utf8').trim(), 'utf8');
  let pgLine = 'PostgreSQL: not run (--pg 0)';
  let pgFound: { bin: string; version: string } | null = null;
  if (cfg.pg) {
    const f = Pg.find();
    if (typeof f === 'string') {
      pgLine = `PostgreSQL: not run: ${f}`;
      notes.push(`PostgreSQL peers not measured: ${f}`);
    } else pgFound = f;
  }
  let pgSettings = '';
  const startPg = async (): Promise<Pg | null> => {
    if (!pgFound) return null;
    if (pgActive) return pgActive;
    try {
      log(`PostgreSQL: starting a primary and a streaming standby (${pgFound.version}, ${pgFound.bin})`);
      pgActive = await Pg.start(pgFound.bin, pgFound.version);
      const show = (k: string) => pgActive!.sql(pgActive!.primaryPort, `SHOW ${k}`);
      pgSettings = `fsync=${show('fsync')} synchronous_commit=${show('synchronous_commit')} wal_sync_method=${show('wal_sync_method')} shared_buffers=${show('shared_buffers')}`;
      pgLine = `peer: ${pgFound.version}, primary + streaming standby (pg_basebackup -R) on 127.0.0.1, run as user "${pgActive.runAs ?? 'self'}"; ${pgSettings}`;
      log(`  ${pgLine}`);
      return pgActive;
    } catch (e) {
      const msg = (e as Error).message.split('\n').slice(0, 4).join(' ');
      pgLine = `PostgreSQL: could not be started here: ${msg}`;
      notes.push(`PostgreSQL peers not measured: ${msg}`);
      pgFound = null;
      return null;
    }
  };
  try {
    const clock = await clockCheck();
    log(`clock: a new node process reads ${fmt(clock.offsetUs, 1)} ± ${fmt(clock.plusMinusUs, 1)} µs from this one`);
    if (cfg.only.has('latency')) {
      let r!: Lat;
      await section('1 latency, redoship', async () => {
        r = await latencyRedoship(work);
      });
      let d: Lat | null = null;
      if (cfg.diag)
        await section('1 latency, redoship archive-only standby (diagnostic)', async () => {
          d = await latencyRedoship(work, false);
        });
      let p: PgLat | null = null;
      const pg = await startPg();
      if (pg) {
        const script = pgScript(work);
        await section('1 latency, PostgreSQL', async () => {
          p = await latencyPg(pg, script);
        });
      }
      latencyRows(r, p, clock);
      if (d) {
        const x: Lat = d;
        row('   diagnostic: archive-only standby (no apply): p50', ms(x.durable.p50), `with apply ${ms(r.durable.p50)}`, ratioX(x.durable.p50, r.durable.p50));
        row('   p99', ms(x.durable.p99), `with apply ${ms(r.durable.p99)}`, ratioX(x.durable.p99, r.durable.p99));
        row('   receive batches / rate reached', `${fmt(x.events)} / ${fmt(x.achieved)}/s`, `with apply ${fmt(r.events)} / ${fmt(r.achieved)}/s`);
        row('   split: captured -> durable on standby, p50 / p99', `${ms(x.ship.p50)} / ${ms(x.ship.p99)}`, `with apply ${ms(r.ship.p50)} / ${ms(r.ship.p99)}`);
      }
    }
    if (cfg.only.has('sync')) {
      let r!: SyncResult;
      await section('2 sync, redoship', async () => {
        r = await syncRedoship(work);
      });
      let p: { sync: number[]; async: number[] } | null = null;
      const pg = await startPg();
      if (pg) {
        const script = pgScript(work);
        await section('2 sync, PostgreSQL', async () => {
          p = await syncPg(pg, script);
        });
      }
      syncRows(r, p);
    }
    if (pgActive) {
      log('PostgreSQL: stopping both servers');
      (pgActive as Pg).stop();
      pgActive = null;
    }
    if (cfg.only.has('sustain')) await section('3+4 sustain + readers, redoship', () => sustained(work));
  } finally {
    for (const c of running) c.kill('SIGKILL');
    pgActive?.stop();
    pgActive = null;
    if (!cfg.keep) rmSync(work, { recursive: true, force: true });
  }
  const settings = `latency-ms=${cfg.latencyMs} rate=${cfg.rate} sync-ms=${cfg.syncMs} runs=${cfg.runs} sustain-ms=${cfg.sustainMs} read-ms=${cfg.readMs} keepup-ms=${cfg.keepupMs} pg-clients=${cfg.pgClients}`;
  const out = [
    '',
    `redoship standby benchmark, ${started.toISOString()}, ${fmt((performance.now() - t0) / 1000, 0)} s; warm page cache (nothing dropped); loopback`,
    ...header,
    pgLine,
    `settings: ${settings}`,
    `load average at start ${loadAtStart}; during each section: CPU used by other processes and kernel threads (PostgreSQL's servers count as other), and pressure stall (PSI "some"):`,
    ...sectionLoad.map((l) => `  ${l}`),
    '',
    table(),
    '',
    'ratio: redoship / peer. PostgreSQL lags are pg_stat_replication samples every 10 ms; redoship latencies are per commit (see bench/README.md).',
    ...notes.map((n) => `note: ${n}`),
    '',
  ];
  process.stdout.write(out.join('\n'));
}

main().then(
  () => process.exit(0),
  (e) => {
    process.stderr.write(`bench: failed: ${(e as Error)?.stack ?? e}\n`);
    cleanupSync();
    process.exit(1);
  },
);
