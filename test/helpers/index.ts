/**
 * Helpers for integration tests: real processes (the CLI, the workload), real SQLite files, byte comparison.
 * Nothing here mocks SQLite, the file system or the network.
 */
import Database from 'better-sqlite3';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, readdirSync, statSync, existsSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createSchema } from '../../src/drill/index.js';

export const ROOT = resolve(fileURLToPath(new URL('.', import.meta.url)), '../..');
export const BIN = join(ROOT, 'bin', 'redoship');
export const WORKLOAD = join(ROOT, 'dist', 'src', 'drill', 'workload.js');

/** Directories made by tempDir() in this test file; test/setup.ts removes them after the file's tests. */
export const createdTempDirs: string[] = [];

export function tempDir(prefix = 'redoship-test-'): string {
  const d = mkdtempSync(join(tmpdir(), prefix));
  createdTempDirs.push(d);
  return d;
}

export interface Proc {
  readonly child: ChildProcess;
  stdout: string;
  stderr: string;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Resolves when stderr or stdout matches re (already or later); rejects after timeoutMs. */
  waitFor(re: RegExp, timeoutMs?: number): Promise<void>;
}

/** Processes started by start() in this test file; test/setup.ts kills any still running after its tests. */
export const startedProcesses: ChildProcess[] = [];

/**
 * Starts the CLI (or opts.script) under node. dataLimitMiB caps the process's data segment (RLIMIT_DATA, which
 * counts its heap and private anonymous memory, not files it maps): an allocation past it fails, so a test can
 * show that a command works in bounded memory. Set by bash's ulimit, which then execs node (same pid).
 */
export function start(args: string[], opts: { cwd?: string; script?: string; env?: Record<string, string>; dataLimitMiB?: number } = {}): Proc {
  const argv = [opts.script ?? BIN, ...args];
  const [cmd, cmdArgs] = opts.dataLimitMiB
    ? ['bash', ['-c', `ulimit -d ${opts.dataLimitMiB * 1024} && exec "$0" "$@"`, process.execPath, ...argv]]
    : [process.execPath, argv];
  const child = spawn(cmd, cmdArgs, {
    cwd: opts.cwd ?? ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
    ...(opts.env ? { env: { ...process.env, ...opts.env } } : {}),
  });
  startedProcesses.push(child);
  const p: Proc = {
    child,
    stdout: '',
    stderr: '',
    // 'close', not 'exit': it comes after the output pipes are drained, so stdout/stderr are complete.
    exited: new Promise((r) => child.once('close', (code, signal) => r({ code, signal }))),
    waitFor(re, timeoutMs = 30_000) {
      return new Promise((res, rej) => {
        const check = () => {
          if (re.test(p.stderr) || re.test(p.stdout)) {
            clearInterval(iv);
            clearTimeout(to);
            res();
          }
        };
        const iv = setInterval(check, 10);
        const to = setTimeout(() => {
          clearInterval(iv);
          rej(new Error(`timed out waiting for ${re}; stderr:\n${p.stderr}\nstdout:\n${p.stdout}`));
        }, timeoutMs);
        check();
      });
    },
  };
  child.stdout!.on('data', (d) => (p.stdout += d));
  child.stderr!.on('data', (d) => (p.stderr += d));
  return p;
}

/** Runs the CLI to completion. */
export async function run(args: string[], opts: { cwd?: string; dataLimitMiB?: number } = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const p = start(args, opts);
  const { code } = await p.exited;
  return { code, stdout: p.stdout, stderr: p.stderr };
}

/** Starts `redoship primary` and waits until it captures. */
export async function startPrimary(db: string, archive: string, extra: string[] = [], opts: { dataLimitMiB?: number } = {}): Promise<Proc> {
  const p = start(['primary', '--db', db, '--archive', archive, ...extra], opts);
  try {
    await Promise.race([
      p.waitFor(/primary: capturing/),
      p.exited.then(({ code }) => {
        throw new Error(`primary exited with ${code} before capturing:\n${p.stderr}`);
      }),
    ]);
  } catch (e) {
    p.child.kill('SIGKILL'); // never leave a stray primary behind
    throw e;
  }
  return p;
}

export async function stopGracefully(p: Proc): Promise<number | null> {
  p.child.kill('SIGTERM');
  const { code } = await p.exited;
  return code;
}

export interface WorkloadResult {
  commits: number;
  vacuums: number;
  checkpoints: number;
  elapsedMs: number;
}

export function startWorkload(db: string, args: Record<string, string | number>): Proc & { result(): Promise<WorkloadResult> } {
  const flat = Object.entries(args).flatMap(([k, v]) => [`--${k}`, String(v)]);
  const p = start(['--db', db, ...flat], { script: WORKLOAD });
  return Object.assign(p, {
    async result() {
      const { code } = await p.exited;
      if (code !== 0) throw new Error(`workload exited ${code}: ${p.stderr}`);
      return JSON.parse(p.stdout.trim().split('\n').pop()!) as WorkloadResult;
    },
  });
}

/** The logical content of a database as SQLite sees it now (db file + committed WAL), as one buffer. */
export function logicalImage(path: string): Buffer {
  const db = new Database(path, { readonly: true, fileMustExist: true });
  try {
    return db.serialize();
  } finally {
    db.close();
  }
}

/** Header bytes that may differ between copies of one state (DESIGN.md Apply). */
const MASK: Array<[number, number]> = [
  [18, 20],
  [24, 28],
  [92, 96],
];

/** Compares two database images page for page; returns the differing page numbers (empty when equal). */
export function differingPages(a: Buffer, b: Buffer, pageSize: number): number[] {
  const out: number[] = [];
  const n = Math.max(a.length, b.length) / pageSize;
  for (let i = 0; i < n; i++) {
    const pa = Buffer.from(a.subarray(i * pageSize, (i + 1) * pageSize));
    const pb = Buffer.from(b.subarray(i * pageSize, (i + 1) * pageSize));
    if (i === 0)
      for (const [s, e] of MASK) {
        pa.fill(0, s, e);
        pb.fill(0, s, e);
      }
    if (!pa.equals(pb)) out.push(i + 1);
  }
  return out;
}

/** A hash of every row of every table, in rowid order. */
export function rowHash(path: string): string {
  const db = new Database(path, { readonly: true, fileMustExist: true });
  try {
    const h = createHash('sha256');
    const tables = db.prepare("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name").pluck().all() as string[];
    for (const t of tables) {
      h.update(`table ${t}\n`);
      for (const row of db.prepare(`SELECT * FROM "${t}" ORDER BY rowid`).raw().iterate() as Iterable<unknown[]>)
        for (const v of row) h.update(Buffer.isBuffer(v) ? v : `${typeof v}:${String(v)};`);
    }
    return h.digest('hex');
  } finally {
    db.close();
  }
}

export function integrityCheck(path: string): string {
  const db = new Database(path, { readonly: true, fileMustExist: true });
  try {
    return (db.prepare('PRAGMA integrity_check').pluck().all() as string[]).join('; ');
  } finally {
    db.close();
  }
}

/**
 * Asserts-ready comparison of a restored file with the primary's current logical content: page for page
 * (header fields masked), by row hash, and integrity_check of the restored file.
 */
export function compareWithPrimary(primary: string, restored: string): { differing: number[]; rowsEqual: boolean; integrity: string; pages: number } {
  const a = logicalImage(primary);
  const b = readFileSync(restored);
  const pageSize = a.readUInt16BE(16) === 1 ? 65536 : a.readUInt16BE(16);
  return {
    differing: a.length === b.length ? differingPages(a, b, pageSize) : [-1],
    rowsEqual: rowHash(primary) === rowHash(restored),
    integrity: integrityCheck(restored),
    pages: a.length / pageSize,
  };
}

/** A fingerprint of every file under dir (names, sizes, content hashes): to prove a command changed nothing. */
export function treeFingerprint(dir: string): string {
  const h = createHash('sha256');
  const walk = (d: string) => {
    if (!existsSync(d)) return;
    for (const name of readdirSync(d).sort()) {
      const p = join(d, name);
      const st = statSync(p);
      if (st.isDirectory()) walk(p);
      else h.update(`${p}\0${st.size}\0`).update(readFileSync(p));
    }
  };
  walk(dir);
  return h.digest('hex');
}

/** The archive as `archive list --json` reports it. */
export async function archiveList(archive: string): Promise<{
  lastLsn: string | null;
  segments: Array<{ name: string; records: number; bases: string[]; breaks: Array<{ lsn: string; note: string }>; damage: string | null }>;
  problems: string[];
}> {
  const r = await run(['archive', 'list', '--archive', archive, '--json']);
  if (r.code !== 0) throw new Error(`archive list failed: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export function makeDb(path: string, opts: { wal?: boolean } = {}): void {
  const db = new Database(path);
  if (opts.wal !== false) db.pragma('journal_mode = WAL');
  createSchema(db);
  db.close();
}

export const READER = join(ROOT, 'dist', 'src', 'drill', 'reader.js');

export interface ReaderResult {
  reads: number;
  violations: number;
  firstViolations: string[];
  busy: number;
  lastCounter: number;
  p50Ms: number | null;
  p99Ms: number | null;
}

/** A reader process looping over the workload's invariant query (src/drill/reader.ts). */
export function startReader(db: string, args: Record<string, string | number> = {}): Proc & { result(): Promise<ReaderResult> } {
  const flat = Object.entries(args).flatMap(([k, v]) => [`--${k}`, String(v)]);
  const p = start(['--db', db, ...flat], { script: READER });
  return Object.assign(p, {
    async result() {
      p.child.kill('SIGTERM');
      const { code } = await p.exited;
      if (code !== 0) throw new Error(`reader exited ${code}: ${p.stderr}`);
      return JSON.parse(p.stdout.trim().split('\n').pop()!) as ReaderResult;
    },
  });
}

/** A free TCP port on 127.0.0.1 (the kernel picks it; there is a small window before it is used). */
export async function freePort(): Promise<number> {
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

export function tokenFile(dir: string): string {
  const p = join(dir, 'secret');
  writeFileSync(p, randomBytes(32).toString('base64') + '\n');
  return p;
}

/** Starts `redoship standby` and waits until it runs. */
export async function startStandbyProc(args: { db?: string; archive: string; from: string; token: string; extra?: string[]; env?: Record<string, string>; dataLimitMiB?: number }): Promise<Proc> {
  const p = start([
    'standby',
    ...(args.db ? ['--db', args.db] : []),
    '--archive', args.archive,
    '--from', args.from,
    '--token-file', args.token,
    ...(args.extra ?? []),
  ], { ...(args.env ? { env: args.env } : {}), ...(args.dataLimitMiB ? { dataLimitMiB: args.dataLimitMiB } : {}) });
  try {
    await Promise.race([
      p.waitFor(/standby: receiving/),
      p.exited.then(({ code }) => {
        throw new Error(`standby exited with ${code}:\n${p.stderr}`);
      }),
    ]);
  } catch (e) {
    p.child.kill('SIGKILL');
    throw e;
  }
  return p;
}

/** Polls `status --json` of an archive until pred holds; returns the last status. */
export async function waitForStatus(archive: string, pred: (s: Record<string, any>) => boolean, timeoutMs = 30_000): Promise<Record<string, any>> {
  const deadline = Date.now() + timeoutMs;
  let last: Record<string, any> = {};
  while (Date.now() < deadline) {
    const r = await run(['status', '--archive', archive, '--json']);
    if (r.code === 0) {
      last = JSON.parse(r.stdout);
      if (pred(last)) return last;
    }
    await sleep(100);
  }
  throw new Error(`status of ${archive} never matched; last: ${JSON.stringify(last)}`);
}
