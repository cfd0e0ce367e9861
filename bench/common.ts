/**
 * What both benchmarks share: settings from flags or environment, percentiles, CPU and pressure readings from
 * /proc, the clock offset to a fresh node process, and a new database with the workload's schema.
 */
import Database from 'better-sqlite3';
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createSchema } from '../src/drill/index.js';

/** Clock ticks per second of /proc/<pid>/stat times (USER_HZ). */
export const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout?.trim()) || 100;
const nowUs = () => (performance.timeOrigin + performance.now()) * 1000;

export function setting(flag: string, env: string, dflt: string): string {
  const i = process.argv.indexOf(`--${flag}`);
  if (i >= 0) {
    const v = process.argv[i + 1];
    if (v === undefined || v.startsWith('--')) return '1';
    return v;
  }
  return process.env[env] ?? dflt;
}

export function num(flag: string, env: string, dflt: number): number {
  const v = Number(setting(flag, env, String(dflt)));
  if (!Number.isFinite(v) || v < 0) {
    process.stderr.write(`bench: --${flag} / ${env} must be a number >= 0\n`);
    process.exit(2);
  }
  return v;
}

export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

export function cpuSeconds(pid: number | undefined): number {
  if (pid === undefined) return NaN;
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / CLK_TCK; // fields 14 and 15: utime, stime
  } catch {
    return NaN;
  }
}

export function psiSome(kind: 'cpu' | 'io'): number {
  try {
    return Number(/^some .*total=(\d+)/m.exec(readFileSync(`/proc/pressure/${kind}`, 'utf8'))?.[1] ?? NaN);
  } catch {
    return NaN;
  }
}

/** Offset between this process's clock and a fresh node process's (as the writer computes commit times). */
export async function clockCheck(): Promise<{ offsetUs: number; plusMinusUs: number }> {
  const script = `let b='';process.stdin.setEncoding('utf8');process.stdin.on('data',d=>{b+=d;let i;while((i=b.indexOf('\\n'))>=0){b=b.slice(i+1);process.stdout.write(String((performance.timeOrigin+performance.now())*1000)+'\\n');}});`;
  const child = spawn(process.execPath, ['-e', script], { stdio: ['pipe', 'pipe', 'inherit'] });
  let out = '';
  let waiting: ((line: string) => void) | null = null;
  child.stdout!.setEncoding('utf8');
  child.stdout!.on('data', (d: string) => {
    out += d;
    let i;
    while ((i = out.indexOf('\n')) >= 0 && waiting) {
      const line = out.slice(0, i);
      out = out.slice(i + 1);
      const w = waiting;
      waiting = null;
      w(line);
    }
  });
  let best = { rtt: Infinity, offset: NaN };
  for (let k = 0; k < 50; k++) {
    const a = nowUs();
    const line = await new Promise<string>((r) => {
      waiting = r;
      child.stdin!.write('\n');
    });
    const b = nowUs();
    if (b - a < best.rtt) best = { rtt: b - a, offset: Number(line) - (a + b) / 2 };
  }
  child.stdin!.end();
  await new Promise((r) => child.once('exit', r));
  return { offsetUs: best.offset, plusMinusUs: best.rtt / 2 };
}

/** A new database holding the workload's schema, in WAL mode, with no -wal left. */
export function newDatabase(dir: string): string {
  mkdirSync(dir, { recursive: true });
  const path = join(dir, 'app.db');
  const d = new Database(path);
  d.pragma('journal_mode = WAL');
  createSchema(d);
  d.close();
  return path;
}

/** Machine-wide busy ticks and this process's (children included once reaped), with pressure stall totals. */
export interface CpuSnap {
  atMs: number;
  busy: number;
  ours: number;
  /** Pressure stall totals (µs): some task waited for CPU / for I/O. NaN without PSI. */
  cpuStallUs: number;
  ioStallUs: number;
}

export function cpuSnap(): CpuSnap {
  try {
    const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
    const busy = (f[0] ?? 0) + (f[1] ?? 0) + (f[2] ?? 0) + (f[5] ?? 0) + (f[6] ?? 0) + (f[7] ?? 0); // user nice system irq softirq steal
    const st = readFileSync('/proc/self/stat', 'utf8');
    const g = st.slice(st.lastIndexOf(')') + 2).split(' ').map(Number);
    const ours = (g[11] ?? 0) + (g[12] ?? 0) + (g[13] ?? 0) + (g[14] ?? 0); // utime stime cutime cstime
    return { atMs: performance.now(), busy, ours, cpuStallUs: psiSome('cpu'), ioStallUs: psiSome('io') };
  } catch {
    return { atMs: performance.now(), busy: NaN, ours: NaN, cpuStallUs: NaN, ioStallUs: NaN };
  }
}
