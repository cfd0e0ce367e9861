/**
 * Capture benchmark: what attaching redoship costs a writer, how fast a commit becomes durable in the archive,
 * whether capture keeps up with a writer at full speed, and how fast a restore runs. Every figure is printed
 * beside its peer (the same thing without redoship, or the disk's own floor) and the ratio. See bench/README.md.
 *
 *   npx tsc -p . && node dist/bench/capture.js            (or: npm run bench)
 *
 * Settings (a flag, or an environment variable; with the defaults a run took 63-135 s on a 2-core machine):
 *   --duration-ms  BENCH_DURATION_MS   5000   one throughput run (writer at full speed)
 *   --runs         BENCH_RUNS          3      throughput runs per variant, alternating; the median is reported
 *   --latency-ms   BENCH_LATENCY_MS    10000  the latency run
 *   --rate         BENCH_RATE          1000   commits/s of the latency run
 *   --keepup-ms    BENCH_KEEPUP_MS     8000   the keep-up run (writer at full speed)
 *   --fsyncs       BENCH_FSYNCS        1000   appends + fdatasync for the disk's peer figure
 *   --restore-mib  BENCH_RESTORE_MIB   256    size of the database that is restored
 *   --restore-txns BENCH_RESTORE_TXNS  5000   transactions archived after its base
 *   --only         BENCH_ONLY          all    comma list of: throughput,latency,keepup,restore
 *   --dir          BENCH_DIR           (new)  working directory; default a new one under the system temp dir
 *   --keep         BENCH_KEEP=1               keep the working directory (it is removed otherwise)
 *
 * Nothing is dropped from the page cache: every figure is warm-cache.
 */
import Database from 'better-sqlite3';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomFillSync as cryptoFill } from 'node:crypto';
import {
  closeSync,
  fdatasyncSync,
  fsyncSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  statSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { cpus, release, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { restoreFromArchive } from '../src/backup/index.js';
import { WORKLOAD_SCRIPT, createSchema } from '../src/drill/index.js';
import { STATUS_FILE, startPrimary, type CaptureEvent, type PrimaryHandle, type PrimaryStatus } from '../src/primary/index.js';
import { Archive } from '../src/redo/index.js';
import { CLK_TCK, clockCheck, cpuSeconds, newDatabase, num, percentile, psiSome, setting, cpuSnap, type CpuSnap } from './common.js';

// ---------------------------------------------------------------------------------------------- settings

const ROOT = resolve(fileURLToPath(new URL('.', import.meta.url)), '../..');
const BIN = join(ROOT, 'bin', 'redoship');
const MiB = 1024 * 1024;


const cfg = {
  durationMs: num('duration-ms', 'BENCH_DURATION_MS', 5000),
  runs: Math.max(1, Math.round(num('runs', 'BENCH_RUNS', 3))),
  latencyMs: num('latency-ms', 'BENCH_LATENCY_MS', 10_000),
  rate: num('rate', 'BENCH_RATE', 1000),
  keepupMs: num('keepup-ms', 'BENCH_KEEPUP_MS', 8000),
  fsyncs: Math.max(10, Math.round(num('fsyncs', 'BENCH_FSYNCS', 1000))),
  restoreMiB: num('restore-mib', 'BENCH_RESTORE_MIB', 256),
  restoreTxns: Math.round(num('restore-txns', 'BENCH_RESTORE_TXNS', 5000)),
  only: new Set(setting('only', 'BENCH_ONLY', 'throughput,latency,keepup,restore').split(',').map((s) => s.trim())),
  dir: setting('dir', 'BENCH_DIR', ''),
  keep: setting('keep', 'BENCH_KEEP', '') !== '' && setting('keep', 'BENCH_KEEP', '') !== '0',
};

// ---------------------------------------------------------------------------------------------- helpers

const t0 = performance.now();
function log(msg: string): void {
  process.stderr.write(`[bench ${((performance.now() - t0) / 1000).toFixed(1).padStart(6)} s] ${msg}\n`);
}
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
/** Wall clock in µs, computed exactly as the workload process computes its commit times. */
const nowUs = () => (performance.timeOrigin + performance.now()) * 1000;

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const n = s.length;
  return n % 2 ? s[(n - 1) / 2]! : (s[n / 2 - 1]! + s[n / 2]!) / 2;
}
const fmt = (x: number, d = 0) =>
  Number.isFinite(x) ? x.toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d }) : 'n/a';
const ms = (us: number) => `${fmt(us / 1000, 3)} ms`;

interface Proc {
  readonly child: ChildProcess;
  stdout: string;
  stderr: string;
  readonly exited: Promise<number | null>;
  waitFor(re: RegExp, timeoutMs?: number): Promise<void>;
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
    exited: new Promise((r) => child.once('exit', (code, signal) => r(signal ? -1 : code))),
    waitFor(re, timeoutMs = 60_000) {
      return new Promise((res, rej) => {
        const started = Date.now();
        const check = () => {
          if (re.test(p.stderr) || re.test(p.stdout)) return res();
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

interface WorkloadResult {
  commits: number;
  elapsedMs: number;
}

async function workload(db: string, extra: string[]): Promise<WorkloadResult> {
  const p = run(WORKLOAD_SCRIPT, ['--db', db, '--mix', 'small', '--synchronous', 'NORMAL', ...extra]);
  const code = await p.exited;
  const line = p.stdout.trim().split('\n').pop() ?? '';
  if (code !== 0 || !line.startsWith('{')) throw new Error(`workload failed (exit ${code}):\n${p.stderr}\n${p.stdout}`);
  return JSON.parse(line) as WorkloadResult;
}

/**
 * CPU used on this machine by processes other than this benchmark's (other users' work, and kernel threads
 * such as writeback), in cores, between two snapshots taken when no child of this process is running.
 */
function otherCores(a: CpuSnap, b: CpuSnap): number {
  return (b.busy - a.busy - (b.ours - a.ours)) / CLK_TCK / ((b.atMs - a.atMs) / 1000);
}
const sectionLoad: string[] = [];
async function section(name: string, f: () => Promise<void>): Promise<void> {
  const a = cpuSnap();
  await f();
  const b = cpuSnap();
  const o = otherCores(a, b);
  const wallUs = (b.atMs - a.atMs) * 1000;
  const cpuP = (100 * (b.cpuStallUs - a.cpuStallUs)) / wallUs;
  const ioP = (100 * (b.ioStallUs - a.ioStallUs)) / wallUs;
  sectionLoad.push(`${name}: other CPU ${o.toFixed(2)} cores, CPU stall ${fmt(cpuP)}%, I/O stall ${fmt(ioP)}%`);
  log(
    `  (${name}: ${fmt((b.atMs - a.atMs) / 1000, 1)} s; CPU not used by this benchmark's processes: ${o.toFixed(2)} cores; ` +
      `some task stalled waiting for CPU ${fmt(cpuP)}% / for I/O ${fmt(ioP)}% of the time)`,
  );
}

/** Waits until the in-process primary has archived LSN `lsn`; returns the wait in ms. */
async function caughtUp(h: PrimaryHandle, lsn: bigint, timeoutMs = 30_000): Promise<number> {
  const start = performance.now();
  while (h.capturer.lastLsn < lsn) {
    if (performance.now() - start > timeoutMs)
      throw new Error(`capture did not reach LSN ${lsn} within ${timeoutMs} ms (at ${h.capturer.lastLsn})`);
    await sleep(1);
  }
  return performance.now() - start;
}

function archiveLastLsn(dir: string): bigint {
  return Archive.open(dir).tail()?.lsn ?? 0n;
}

/**
 * Frames published in the live WAL and not captured yet, read at this moment through the primary's own
 * wal-index fd (status() only says what the last capture saw). Reaches into the capturer's private fields
 * (live, pos); returns null when they are not there.
 */
function liveLagFrames(h: PrimaryHandle): number | null {
  const c = h.capturer as unknown as {
    live?: { readWalIndex?: () => { mxFrame: number; salt1: number; salt2: number } | null };
    pos?: { salt1: number; salt2: number; frame: number };
  };
  const idx = c.live?.readWalIndex?.();
  const pos = c.pos;
  if (!idx || !pos) return null;
  // A new WAL generation: capture had every frame of the old one (it checks that), none of the new one.
  return idx.salt1 === pos.salt1 && idx.salt2 === pos.salt2 ? Math.max(0, idx.mxFrame - pos.frame) : idx.mxFrame;
}

/** The status file the primary writes into its archive (last written when it stops), or null. */
function readPrimaryStatus(arch: string): PrimaryStatus | null {
  try {
    return JSON.parse(readFileSync(join(arch, STATUS_FILE), 'utf8')) as PrimaryStatus;
  } catch {
    return null;
  }
}

/** Rejects when the in-process primary fails by itself. */
function guard<T>(h: PrimaryHandle, p: Promise<T>): Promise<T> {
  return Promise.race([p, h.failed.then((e) => Promise.reject(new Error(`the primary failed: ${e.message}`)))]);
}

// ---------------------------------------------------------------------------------------------- sections

interface Row {
  figure: string;
  redoship: string;
  peer: string;
  ratio: string;
  target: string;
}
const rows: Row[] = [];
const notes: string[] = [];


/** The disk's floor for a durable append: `bytes` bytes + fdatasync, in the working directory. */
function fdatasyncPeer(dir: string, bytes = 100): { p50: number; p90: number; p99: number; max: number } {
  const path = join(dir, 'fdatasync-peer.bin');
  const fd = openSync(path, 'a');
  const buf = Buffer.alloc(bytes, 0x61);
  const lat: number[] = [];
  try {
    for (let i = 0; i < cfg.fsyncs; i++) {
      const a = performance.now();
      writeSync(fd, buf);
      fdatasyncSync(fd);
      lat.push((performance.now() - a) * 1000);
    }
  } finally {
    closeSync(fd);
    unlinkSync(path);
  }
  lat.sort((x, y) => x - y);
  return { p50: percentile(lat, 50), p90: percentile(lat, 90), p99: percentile(lat, 99), max: lat[lat.length - 1]! };
}

async function throughput(work: string): Promise<void> {
  log(`throughput: ${cfg.runs} runs per variant, ${cfg.durationMs} ms each, writer at full speed (--rate 0), synchronous=NORMAL`);
  const without: number[] = [];
  const withP: number[] = [];
  const cpu: number[] = [];
  const walBytesPerCommit: number[] = [];
  const capturedMiBs: number[] = [];
  let frameBytes = 4096 + 24;
  const lsnProblems: string[] = [];
  for (let i = 0; i < cfg.runs; i++) {
    // Without a shipper.
    {
      const db = newDatabase(join(work, `tp-none-${i}`));
      const r = await workload(db, ['--rate', '0', '--duration-ms', String(cfg.durationMs)]);
      without.push((r.commits * 1000) / r.elapsedMs);
      log(`  run ${i + 1} without shipper: ${r.commits} commits in ${r.elapsedMs} ms = ${fmt(without.at(-1)!)} commits/s`);
    }
    // With `redoship primary` as its own process.
    {
      const dir = join(work, `tp-primary-${i}`);
      const db = newDatabase(dir);
      const arch = join(dir, 'archive');
      const primary = run(BIN, ['primary', '--db', db, '--archive', arch]);
      await primary.waitFor(/primary: capturing/);
      const cpu0 = cpuSeconds(primary.child.pid);
      const r = await workload(db, ['--rate', '0', '--duration-ms', String(cfg.durationMs)]);
      const cpu1 = cpuSeconds(primary.child.pid);
      primary.child.kill('SIGTERM');
      const code = await primary.exited;
      if (code !== 0) throw new Error(`redoship primary exited with ${code}:\n${primary.stderr}`);
      if (/warning|error/i.test(primary.stderr)) notes.push(`throughput run ${i + 1}: the primary printed:\n${primary.stderr.trim()}`);
      withP.push((r.commits * 1000) / r.elapsedMs);
      cpu.push(((cpu1 - cpu0) * 1000) / r.elapsedMs);
      const st = readPrimaryStatus(arch);
      if (st && st.stats.transactions > 0) {
        walBytesPerCommit.push(st.stats.bytes / st.stats.transactions);
        frameBytes = Archive.open(arch).identity.pageSize + 24;
        capturedMiBs.push(st.stats.bytes / MiB / (r.elapsedMs / 1000));
      }
      const last = archiveLastLsn(arch);
      if (last !== BigInt(r.commits) + 1n) lsnProblems.push(`run ${i + 1}: ${r.commits} commits, archive last LSN ${last}`);
      log(
        `  run ${i + 1} with primary:     ${r.commits} commits in ${r.elapsedMs} ms = ${fmt(withP.at(-1)!)} commits/s; ` +
          `primary CPU ${fmt(cpu.at(-1)! * 100)}% of a core; archive last LSN ${last}`,
      );
    }
  }
  const a = median(withP);
  const b = median(without);
  rows.push({
    figure: `1. writer commits/s, full speed (median of ${cfg.runs})`,
    redoship: `${fmt(a)} with primary`,
    peer: `${fmt(b)} without shipper`,
    ratio: (a / b).toFixed(2),
    target: `>= 0.90 ${a / b >= 0.9 ? 'MET' : 'MISSED'}`,
  });
  rows.push({
    figure: '   runs with primary / without',
    redoship: withP.map((x) => fmt(x)).join(', '),
    peer: without.map((x) => fmt(x)).join(', '),
    ratio: '',
    target: '',
  });
  if (walBytesPerCommit.length) {
    const per = median(walBytesPerCommit);
    const frames = per / frameBytes;
    rows.push({
      figure: '   WAL written per commit (primary status)',
      redoship: `${fmt(per / 1024, 1)} KiB = ${fmt(frames, 2)} frames`,
      peer: '',
      ratio: '',
      target: '',
    });
    rows.push({
      figure: '   WAL MiB/s: captured / written by the writer alone',
      redoship: `${fmt(median(capturedMiBs), 1)} MiB/s captured`,
      peer: `${fmt((b * per) / MiB, 1)} MiB/s written (alone: commits/s x WAL per commit)`,
      ratio: (median(capturedMiBs) / ((b * per) / MiB)).toFixed(2),
      target: '',
    });
  }
  rows.push({
    figure: '   primary process CPU (median)',
    redoship: `${fmt(median(cpu) * 100)}% of a core`,
    peer: `${cpus().length} cores`,
    ratio: '',
    target: '',
  });
  rows.push({
    figure: '   every commit archived (last LSN = commits + 1)',
    redoship: lsnProblems.length ? 'NO' : `yes, ${cfg.runs} of ${cfg.runs} runs`,
    peer: '',
    ratio: '',
    target: lsnProblems.length ? 'MISSED' : 'MET',
  });
  if (lsnProblems.length) notes.push(`throughput: archive last LSN != commits + 1: ${lsnProblems.join('; ')}`);
}

type Peer = ReturnType<typeof fdatasyncPeer>;
async function latency(work: string, peer: Peer, peer20k: Peer, clock: { offsetUs: number; plusMinusUs: number }): Promise<void> {
  log(`latency: writer at ${cfg.rate} commits/s for ${cfg.latencyMs} ms, primary in this process`);
  const dir = join(work, 'latency');
  const db = newDatabase(dir);
  const arch = join(dir, 'archive');
  const commitLog = join(dir, 'commits.log');
  const durable = new Map<number, number>();
  let batches = 0;
  const onEvent = (e: CaptureEvent) => {
    if (e.type === 'archived') {
      batches++;
      const at = Number(e.durableAtUs);
      for (const r of e.records) durable.set(Number(r.lsn), at);
    } else if (e.type === 'warning') notes.push(`latency run: primary warning: ${e.message}`);
  };
  const h = await startPrimary({ db, archive: arch, onEvent });
  let r: WorkloadResult;
  let catchUpMs: number;
  try {
    batches = 0;
    r = await guard(h, workload(db, ['--rate', String(cfg.rate), '--duration-ms', String(cfg.latencyMs), '--commit-log', commitLog]));
    catchUpMs = await guard(h, caughtUp(h, BigInt(r.commits) + 1n));
  } finally {
    await h.stop();
  }
  const commits = readFileSync(commitLog, 'utf8').trim().split('\n').map(Number);
  const lat: number[] = [];
  let missing = 0;
  commits.forEach((c, i) => {
    const d = durable.get(i + 2); // the writer's (i+1)-th commit is LSN i+2; LSN 1 is the base
    if (d === undefined) missing++;
    else lat.push(d - c);
  });
  lat.sort((x, y) => x - y);
  const p50 = percentile(lat, 50);
  const p90 = percentile(lat, 90);
  const p99 = percentile(lat, 99);
  const max = lat[lat.length - 1] ?? NaN;
  const min = lat[0] ?? NaN;
  log(
    `  ${r.commits} commits (${fmt((r.commits * 1000) / r.elapsedMs)} commits/s), ${batches} batches, ` +
      `latency p50 ${ms(p50)} p90 ${ms(p90)} p99 ${ms(p99)} max ${ms(max)} min ${ms(min)}; caught up ${fmt(catchUpMs, 1)} ms after the writer exited`,
  );
  const ratio = (a: number, b: number) => `${(a / b).toFixed(1)}x`;
  rows.push({ figure: `2. capture latency at ${fmt(cfg.rate)} commits/s: p50`, redoship: ms(p50), peer: `append+fdatasync p50 ${ms(peer.p50)}`, ratio: ratio(p50, peer.p50), target: `< 1 ms ${p50 < 1000 ? 'MET' : 'MISSED'}` });
  rows.push({ figure: '   p90', redoship: ms(p90), peer: `append+fdatasync p90 ${ms(peer.p90)}`, ratio: ratio(p90, peer.p90), target: '' });
  rows.push({ figure: '   p99', redoship: ms(p99), peer: `append+fdatasync p99 ${ms(peer.p99)}`, ratio: ratio(p99, peer.p99), target: `< 10 ms ${p99 < 10_000 ? 'MET' : 'MISSED'}` });
  rows.push({ figure: '   max', redoship: ms(max), peer: `append+fdatasync max ${ms(peer.max)}`, ratio: ratio(max, peer.max), target: '' });
  rows.push({
    figure: '   (peer: append 20 KiB + fdatasync, ~one small txn)',
    redoship: '',
    peer: `p50 ${ms(peer20k.p50)}, p99 ${ms(peer20k.p99)}`,
    ratio: `${(p50 / peer20k.p50).toFixed(1)}x, ${(p99 / peer20k.p99).toFixed(1)}x`,
    target: '',
  });
  rows.push({
    figure: '   commits measured / archive batches',
    redoship: `${fmt(lat.length)} / ${fmt(batches)}${missing ? ` (${missing} NOT ARCHIVED)` : ''}`,
    peer: `clock offset writer-bench ${fmt(clock.offsetUs, 1)} ± ${fmt(clock.plusMinusUs, 1)} µs`,
    ratio: '',
    target: '',
  });
  if (missing) notes.push(`latency: ${missing} of ${commits.length} commits had no archived LSN`);
  const negative = lat.filter((x) => x < 0).length;
  if (negative)
    notes.push(
      `latency: ${negative} of ${lat.length} latencies are negative (smallest ${ms(min)}) though the clocks agree within ` +
        `${fmt(Math.abs(clock.offsetUs) + clock.plusMinusUs, 0)} µs: the writer reads its clock after COMMIT returns, which includes ` +
        `its own autocheckpoint (fsyncs) and any time it is descheduled, so a capture can be durable before that; such commit times are late and the latencies understated`,
    );
}

async function keepUp(work: string): Promise<void> {
  log(`keep-up: writer at full speed for ${cfg.keepupMs} ms with --commit-log, primary in this process, sampled every 100 ms and after every batch`);
  const dir = join(work, 'keepup');
  const db = newDatabase(dir);
  const arch = join(dir, 'archive');
  const commitLog = join(dir, 'commits.log');
  // Counts the writer's commits (every transaction bumps counter.n). Never closed while the primary runs:
  // this process must not close a file descriptor of the live database (DESIGN.md Capture 3).
  const reader = new Database(db, { fileMustExist: true });
  reader.pragma('wal_autocheckpoint = 0');
  const committed = reader.prepare('SELECT n FROM counter WHERE id = 1').pluck();
  let h: PrimaryHandle | null = null;
  const durable = new Map<number, number>();
  let maxLagFrames = 0;
  let maxLagTxns = 0;
  let maxLiveLagFrames = -1;
  let maxSinceCaptureMs = 0;
  let maxWalBytes = 0;
  let maxGapMs = 0;
  let samples = 0;
  let last = performance.now();
  /** The lag right now. Runs on the timer and also inside every 'archived' event, which fires even while capture keeps the event loop busy. */
  const lagNow = () => {
    if (!h) return;
    const s = h.status();
    maxLagTxns = Math.max(maxLagTxns, Number(committed.get()) - (Number(h.capturer.lastLsn) - 1));
    maxLagFrames = Math.max(maxLagFrames, s.stats.lastMxFrame - s.stats.capturedFrame);
    const live = liveLagFrames(h);
    if (live !== null) maxLiveLagFrames = Math.max(maxLiveLagFrames, live);
    maxWalBytes = Math.max(maxWalBytes, s.walBytes);
  };
  const sample = () => {
    const now = performance.now();
    maxGapMs = Math.max(maxGapMs, now - last);
    last = now;
    lagNow();
    const lc = h?.capturer.stats.lastCaptureMs;
    if (lc) maxSinceCaptureMs = Math.max(maxSinceCaptureMs, Date.now() - lc);
    samples++;
  };
  const onEvent = (e: CaptureEvent) => {
    if (e.type === 'archived') {
      const at = Number(e.durableAtUs);
      for (const r of e.records) durable.set(Number(r.lsn), at);
      lagNow();
    } else if (e.type === 'warning') notes.push(`keep-up run: primary warning: ${e.message}`);
  };
  h = await startPrimary({ db, archive: arch, onEvent });
  const hh = h;
  let r: WorkloadResult;
  let stats: PrimaryHandle['capturer']['stats'];
  const timer = setInterval(sample, 100);
  try {
    r = await guard(hh, workload(db, ['--rate', '0', '--duration-ms', String(cfg.keepupMs), '--commit-log', commitLog]));
    await guard(hh, caughtUp(hh, BigInt(r.commits) + 1n, 300_000));
    sample();
    stats = { ...hh.capturer.stats };
  } finally {
    clearInterval(timer);
    await hh.stop();
    reader.close();
  }
  const commits = readFileSync(commitLog, 'utf8').trim().split('\n').map(Number);
  const delay: number[] = [];
  commits.forEach((c, i) => {
    const d = durable.get(i + 2);
    if (d !== undefined) delay.push(d - c);
  });
  const lastDelay = delay[delay.length - 1] ?? NaN;
  delay.sort((x, y) => x - y);
  const lastLsn = archiveLastLsn(arch);
  const ok = lastLsn === BigInt(r.commits) + 1n;
  log(
    `  ${r.commits} commits in ${r.elapsedMs} ms (${fmt((r.commits * 1000) / r.elapsedMs)} commits/s); ${samples} timer samples, ${stats.batches} batches; ` +
      `max lag ${maxLagFrames} frames (status), ${maxLiveLagFrames} frames (live), ${maxLagTxns} transactions; ` +
      `commit-to-durable p50 ${ms(percentile(delay, 50))} p99 ${ms(percentile(delay, 99))} max ${ms(delay[delay.length - 1] ?? NaN)}; last commit durable after ${ms(lastDelay)}; ` +
      `max ${fmt(maxSinceCaptureMs)} ms since a capture; max WAL ${fmt(maxWalBytes / MiB, 1)} MiB; max sampler gap ${fmt(maxGapMs)} ms; ` +
      `${stats.checkpoints} checkpoints (${stats.checkpointsBusy} busy), ${stats.walGenerations} WAL restarts; archive last LSN ${lastLsn}`,
  );
  const row = (figure: string, redoship: string, peer = '', target = '') => rows.push({ figure, redoship, peer, ratio: '', target });
  row('3. keep-up at full speed: writer commits/s', fmt((r.commits * 1000) / r.elapsedMs), `${fmt(r.commits)} commits in ${fmt(r.elapsedMs / 1000, 1)} s (asked: ${fmt(cfg.keepupMs / 1000, 1)} s)`);
  row('   max capture lag (status: lastMxFrame - capturedFrame)', `${fmt(maxLagFrames)} frames`);
  row('   max capture lag (live wal-index mxFrame - captured)', maxLiveLagFrames >= 0 ? `${fmt(maxLiveLagFrames)} frames` : 'n/a');
  row('   max capture lag (committed - archived)', `${fmt(maxLagTxns)} transactions`);
  row('   commit to durable in the archive: p50 / p99 / max', `${ms(percentile(delay, 50))} / ${ms(percentile(delay, 99))} / ${ms(delay[delay.length - 1] ?? NaN)}`);
  row('   last commit durable after (catch-up)', ms(lastDelay));
  row('   max time since the last capture', `${fmt(maxSinceCaptureMs)} ms`, `sampler max gap ${fmt(maxGapMs)} ms`);
  row('   max WAL size / checkpoints (busy) / WAL restarts', `${fmt(maxWalBytes / MiB, 1)} MiB / ${stats.checkpoints} (${stats.checkpointsBusy}) / ${stats.walGenerations}`);
  row('   archive last LSN = writer commits + 1', `${ok ? 'yes' : 'NO'}: ${lastLsn} = ${r.commits} + 1`, '', ok ? 'MET' : 'MISSED');
}

async function restoreSpeed(work: string): Promise<void> {
  const dir = join(work, 'restore');
  mkdirSync(dir, { recursive: true });
  const db = join(dir, 'big.db');
  const arch = join(dir, 'archive');
  // Fill: random 4000-byte blobs (one row per 4 KiB page), in WAL mode, then checkpoint the WAL away.
  let fillMs = performance.now();
  {
    const d = new Database(db);
    d.pragma('journal_mode = WAL');
    d.pragma('synchronous = OFF');
    createSchema(d);
    d.exec('CREATE TABLE fill (id INTEGER PRIMARY KEY, b BLOB NOT NULL)');
    const ins = d.prepare('INSERT INTO fill (b) VALUES (?)');
    const batch = d.transaction((n: number) => {
      for (let i = 0; i < n; i++) ins.run(randomBlob(4000));
    });
    const pageSize = Number(d.pragma('page_size', { simple: true }));
    const pages = d.prepare('PRAGMA page_count').pluck();
    while (Number(pages.get()) * pageSize < cfg.restoreMiB * MiB) batch(2000);
    d.pragma('wal_checkpoint(TRUNCATE)');
    d.close();
  }
  fillMs = performance.now() - fillMs;
  const dbBytes = statSync(db).size;
  log(`restore: filled ${fmt(dbBytes / MiB, 1)} MiB in ${fmt(fillMs)} ms; starting the primary (takes the base)`);
  let baseMs = performance.now();
  const h = await startPrimary({ db, archive: arch, onEvent: (e) => e.type === 'warning' && notes.push(`restore run: primary warning: ${e.message}`) });
  baseMs = performance.now() - baseMs;
  try {
    const r = await guard(h, workload(db, ['--rate', '0', '--count', String(cfg.restoreTxns)]));
    await guard(h, caughtUp(h, BigInt(r.commits) + 1n));
  } finally {
    await h.stop();
  }
  const lastLsn = archiveLastLsn(arch);
  log(`  base of ${fmt(dbBytes / MiB, 1)} MiB archived in ${fmt(baseMs)} ms; ${cfg.restoreTxns} transactions after it; archive last LSN ${lastLsn}`);

  const restoreRates: number[] = [];
  const cpRates: number[] = [];
  const cpSyncRates: number[] = [];
  let restoredBytes = 0;
  let counterOk: boolean | null = null;
  for (let i = 0; i < 2; i++) {
    const to = join(dir, `restored-${i}.db`);
    const a = performance.now();
    const res = restoreFromArchive({ archive: arch, to });
    const restoreMs = performance.now() - a;
    restoredBytes = res.sizePages * res.pageSize;
    restoreRates.push(restoredBytes / MiB / (restoreMs / 1000));
    if (i === 0) {
      const d = new Database(to, { readonly: true, fileMustExist: true });
      counterOk = Number(d.prepare('SELECT n FROM counter WHERE id = 1').pluck().get()) === cfg.restoreTxns && res.lsn === lastLsn;
      d.close();
    }
    for (const f of [to, `${to}-wal`, `${to}-shm`]) rmSync(f, { force: true });

    const copy = join(dir, `copy-${i}.db`);
    const b = performance.now();
    const cp = spawnSync('cp', [db, copy]);
    const cpMs = performance.now() - b;
    if (cp.status !== 0) throw new Error(`cp failed: ${cp.stderr}`);
    const c = performance.now();
    const fd = openSync(copy, 'r');
    fsyncSync(fd);
    closeSync(fd);
    const syncMs = performance.now() - c;
    cpRates.push(dbBytes / MiB / (cpMs / 1000));
    cpSyncRates.push(dbBytes / MiB / ((cpMs + syncMs) / 1000));
    unlinkSync(copy);
    log(
      `  pass ${i + 1}: restore ${fmt(restoredBytes / MiB, 1)} MiB in ${fmt(restoreMs)} ms (${res.records} records); ` +
        `cp ${fmt(dbBytes / MiB, 1)} MiB in ${fmt(cpMs)} ms, + fsync ${fmt(syncMs)} ms`,
    );
  }
  const rr = median(restoreRates);
  const cr = median(cpRates);
  const cs = median(cpSyncRates);
  rows.push({
    figure: `4. restore ${fmt(restoredBytes / MiB)} MiB + ${fmt(cfg.restoreTxns)} txns (median of 2; warm cache)`,
    redoship: `${fmt(rr)} MiB/s`,
    peer: `cp ${fmt(cr)} MiB/s`,
    ratio: (rr / cr).toFixed(2),
    target: '',
  });
  rows.push({ figure: '   same, against cp + fsync of the copy', redoship: `${fmt(rr)} MiB/s`, peer: `cp+fsync ${fmt(cs)} MiB/s`, ratio: (rr / cs).toFixed(2), target: '' });
  rows.push({
    figure: '   base capture (primary start) of that database',
    redoship: `${fmt(dbBytes / MiB / (baseMs / 1000))} MiB/s`,
    peer: `${fmt(baseMs)} ms`,
    ratio: '',
    target: '',
  });
  rows.push({
    figure: '   restored database = writer state',
    redoship: counterOk ? `yes (LSN ${lastLsn})` : 'NO',
    peer: '',
    ratio: '',
    target: counterOk ? 'MET' : 'MISSED',
  });
}

let blobPool: Buffer | null = null;
function randomBlob(n: number): Buffer {
  // 64 MiB of random bytes, sliced at random offsets: incompressible, and faster than a fresh randomBytes each row.
  if (!blobPool) {
    blobPool = Buffer.allocUnsafe(64 * MiB);
    for (let off = 0; off < blobPool.length; off += MiB) cryptoFill(blobPool.subarray(off, off + MiB));
  }
  const off = Math.floor(Math.random() * (blobPool.length - n));
  return blobPool.subarray(off, off + n);
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

let loadAtStart = '';

function table(): string {
  const head: Row = { figure: 'figure', redoship: 'redoship', peer: 'peer', ratio: 'ratio', target: 'target' };
  const all = [head, ...rows];
  const keys = ['figure', 'redoship', 'peer', 'ratio', 'target'] as const;
  const w = keys.map((k) => Math.max(...all.map((r) => r[k].length)));
  const line = (r: Row) => keys.map((k, i) => r[k].padEnd(w[i]!)).join('  ').trimEnd();
  return [line(head), keys.map((_, i) => '-'.repeat(w[i]!)).join('  '), ...rows.map(line)].join('\n');
}

async function main(): Promise<void> {
  const work = cfg.dir ? resolve(cfg.dir) : mkdtempSync(join(tmpdir(), 'redoship-bench-'));
  mkdirSync(work, { recursive: true });
  const started = new Date();
  const header = machine(work);
  loadAtStart = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
  for (const l of header) log(l);
  try {
    const clock = await clockCheck();
    log(`clock: a new node process reads ${fmt(clock.offsetUs, 1)} ± ${fmt(clock.plusMinusUs, 1)} µs from this one`);
    const peer = fdatasyncPeer(work);
    log(`disk: ${cfg.fsyncs} x (append 100 bytes + fdatasync): p50 ${ms(peer.p50)} p99 ${ms(peer.p99)} max ${ms(peer.max)}`);
    const peer20k = fdatasyncPeer(work, 20 * 1024);
    log(`disk: ${cfg.fsyncs} x (append 20 KiB + fdatasync): p50 ${ms(peer20k.p50)} p99 ${ms(peer20k.p99)} max ${ms(peer20k.max)}`);
    if (cfg.only.has('throughput')) await section('throughput', () => throughput(work));
    if (cfg.only.has('latency')) await section('latency', () => latency(work, peer, peer20k, clock));
    if (cfg.only.has('keepup')) await section('keep-up', () => keepUp(work));
    if (cfg.only.has('restore')) await section('restore', () => restoreSpeed(work));
  } finally {
    for (const c of running) c.kill('SIGKILL');
    if (!cfg.keep) rmSync(work, { recursive: true, force: true });
  }
  const settings = `duration-ms=${cfg.durationMs} runs=${cfg.runs} latency-ms=${cfg.latencyMs} rate=${cfg.rate} keepup-ms=${cfg.keepupMs} fsyncs=${cfg.fsyncs} restore-mib=${cfg.restoreMiB} restore-txns=${cfg.restoreTxns}`;
  const out = [
    '',
    `redoship capture benchmark, ${started.toISOString()}, ${fmt((performance.now() - t0) / 1000, 0)} s; warm page cache (nothing dropped)`,
    ...header,
    `settings: ${settings}`,
    `load average at start ${loadAtStart}; during each section: CPU used by other processes and kernel threads, and pressure stall (PSI "some"):`,
    ...sectionLoad.map((l) => `  ${l}`),
    '',
    table(),
    '',
    'ratio: redoship / peer (for latencies: how many small durable appends of this disk one capture takes)',
    ...notes.map((n) => `note: ${n}`),
    '',
  ];
  process.stdout.write(out.join('\n'));
}

main().then(
  () => process.exit(0),
  (e) => {
    process.stderr.write(`bench: failed: ${(e as Error)?.stack ?? e}\n`);
    process.exit(1);
  },
);
