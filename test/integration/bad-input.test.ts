/**
 * Bad input (issue: every error a user can cause): each case runs the real CLI as its own process on real
 * SQLite files and archives and asserts that it
 *   (a) exits non-zero, with the exit code of its error (src/error/index.ts);
 *   (b) prints one clear error on stderr: one `redoship: error:` line with the key words, one `hint:` line,
 *       nothing else (no stack trace, no log lines);
 *   (c) changes no file: treeFingerprint() of the database directory and of the archive directory is the same
 *       before and after, no archive directory appears where there was none, and a restore target's directory
 *       holds no new file (neither the target nor a temporary file).
 * The application writing the database is this test process (better-sqlite3); `redoship primary` runs as its
 * own process, and is killed with SIGKILL where a case needs a crash.
 */
import Database from 'better-sqlite3';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { basename, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { ERROR_CODES } from '../../src/error/index.js';
import { Archive } from '../../src/redo/index.js';
import { PART_HEADER_BYTES } from '../../src/redo/segment-format.js';
import { SegmentReader } from '../../src/redo/segment-reader.js';
import {
  BIN,
  ROOT,
  compareWithPrimary,
  makeDb,
  sleep,
  start,
  stopGracefully,
  tempDir,
  treeFingerprint,
  type Proc,
} from '../helpers/index.js';

type Result = { code: number | null; stdout: string; stderr: string };

/**
 * Runs the CLI to completion. Not the helpers' run(): that one returns on the child's 'exit' event, when its
 * stdout and stderr may still hold unread data (Node emits 'exit' before the pipes are drained), which under
 * load returns an empty stderr now and then; this one waits for 'close'.
 */
function run(args: string[]): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d) => (stdout += d));
    child.stderr!.on('data', (d) => (stderr += d));
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/**
 * (a) and (b): the exit code, one error line holding every key word, a hint, nothing else on stderr.
 * Commander's own usage errors (unknown flag) print `error: ...` and `(run with --help for usage)` instead of a
 * `hint:` line: `help` accepts that form.
 */
function expectRefused(r: Result, code: number, words: RegExp[], form: 'hint' | 'help' = 'hint'): void {
  const ctx = `exit ${r.code}\nstderr:\n${r.stderr}\nstdout:\n${r.stdout}`;
  expect(r.code, ctx).toBe(code);
  expect(r.stderr, ctx).not.toMatch(/internal error|^\s+at .+:\d+:\d+\)?$|^\w*Error: /m);
  const lines = r.stderr.trimEnd().split('\n');
  if (form === 'hint') {
    expect(lines, ctx).toHaveLength(2);
    expect(lines[0], ctx).toMatch(/^redoship: error: \S/);
    expect(lines[1], ctx).toMatch(/^\s+hint: \S/);
  } else {
    // commander: `error: ...`, perhaps `(Did you mean --x?)`, then `(run with --help for usage)`
    expect(lines.length, ctx).toBeGreaterThanOrEqual(2);
    expect(lines.length, ctx).toBeLessThanOrEqual(3);
    expect(lines[0], ctx).toMatch(/^error: \S/);
    expect(lines.at(-1), ctx).toMatch(/--help/);
  }
  for (const w of words) expect(lines[0], ctx).toMatch(w);
}

const fp = treeFingerprint;

/**
 * treeFingerprint of a live database's directory, except the content of its -shm: that file is SQLite's
 * shared-memory wal-index, which every reader of a WAL database writes (its read marks), the application's own
 * readers included; it holds nothing durable. Its presence still counts (the listing is part of the result).
 */
function dataFingerprint(dir: string): string {
  const h = createHash('sha256');
  for (const name of readdirSync(dir).sort()) {
    h.update(`${name}\0`);
    if (!name.endsWith('-shm')) h.update(readFileSync(join(dir, name)));
  }
  return h.digest('hex');
}

/** The names in dir, sorted; [] when dir does not exist. */
function listing(dir: string): string[] {
  return existsSync(dir) ? readdirSync(dir).sort() : [];
}

async function waitForLsn(arch: string, lsn: bigint, timeoutMs = 10_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    let last: bigint | null = null;
    try {
      last = Archive.open(arch).tail()?.lsn ?? null;
    } catch {
      /* not created yet */
    }
    if (last !== null && last >= lsn) return;
    if (Date.now() > until) throw new Error(`LSN ${lsn} never archived in ${arch} (last ${last})`);
    await sleep(20);
  }
}

async function statusLsn(arch: string): Promise<bigint | null> {
  const r = await run(['status', '--archive', arch, '--json']);
  expect(r.code, r.stderr).toBe(0);
  const s = JSON.parse(r.stdout) as { lastLsn: string | null };
  return s.lastLsn === null ? null : BigInt(s.lastLsn);
}

/** The application: one connection of this process, writing rows of a few hundred bytes. */
function openApp(db: string): { app: Database.Database; commit: (n?: number) => void } {
  const app = new Database(db);
  app.pragma('journal_mode = WAL');
  const ins = app.prepare('INSERT INTO t (k, v) VALUES (?, ?)');
  let k = 0;
  return {
    app,
    commit(n = 1) {
      for (let i = 0; i < n; i++) ins.run(k++, randomBytes(300 + (k % 7) * 100));
    },
  };
}

/** Byte offsets of every part of a clean segment: [lsn, offset, body length, last]. */
function partsOf(path: string, pageSize: number, databaseId: string): Array<{ lsn: bigint; offset: number; len: number; last: boolean }> {
  const bytes = readFileSync(path);
  const r = new SegmentReader(path, { databaseId, pageSize });
  const out: Array<{ lsn: bigint; offset: number; len: number; last: boolean }> = [];
  try {
    for (const { part, offset } of r.parts()) out.push({ lsn: part.lsn, offset, len: bytes.readUInt32BE(offset), last: part.last });
  } finally {
    r.close();
  }
  if (r.damage) throw new Error(`fixture segment ${path} is damaged: ${r.damage.reason}`);
  return out;
}

function flipByte(path: string, at: number): void {
  const b = readFileSync(path);
  b[at]! ^= 0x5a;
  writeFileSync(path, b);
}

/** Removes the pid lock files a killed primary leaves (any next start takes them over); they are not data. */
function removeStaleLocks(...paths: string[]): void {
  for (const p of paths) rmSync(p, { force: true });
}

const children: ChildProcess[] = [];
afterAll(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
});
/** `redoship primary`, started as the helpers' startPrimary does, but killed after the tests whatever happens. */
async function startPrimary(db: string, archive: string, extra: string[] = []): Promise<Proc> {
  const p = start(['primary', '--db', db, '--archive', archive, ...extra]);
  children.push(p.child);
  await Promise.race([
    p.waitFor(/primary: capturing/, 15_000),
    p.exited.then(({ code }) => {
      throw new Error(`primary exited with ${code} before capturing:\n${p.stderr}`);
    }),
  ]);
  return p;
}

// ---------------------------------------------------------------------------------------------------------------

describe.concurrent('primary --db that is not a database', () => {
  const cases: Array<[string, (path: string) => void, RegExp[]]> = [
    ['does not exist', () => {}, [/does not exist/]],
    ['is a directory', (p) => mkdirSync(p), [/is a directory/]],
    ['is an empty 0-byte file', (p) => writeFileSync(p, ''), [/is empty/, /0 bytes/]],
    ['is a text file', (p) => writeFileSync(p, 'id,name\n1,alice\n2,bob\n'.repeat(40)), [/not a SQLite database/]],
    ['is a short text file', (p) => writeFileSync(p, 'hello\n'), [/not a SQLite database/]],
  ];
  test.each(cases)('refused when the path %s; no archive is created', async (_what, make, words) => {
    const dir = tempDir();
    const dbDir = join(dir, 'data');
    mkdirSync(dbDir);
    const db = join(dbDir, 'app.db');
    make(db);
    const archParent = join(dir, 'archives');
    const arch = join(archParent, 'arch');
    const before = fp(dbDir);
    const r = await run(['primary', '--db', db, '--archive', arch]);
    expectRefused(r, ERROR_CODES.NOT_A_DATABASE, [...words, new RegExp(basename(db))]);
    expect(fp(dbDir)).toBe(before);
    expect(listing(dbDir)).toEqual(existsSync(db) ? ['app.db'] : []);
    expect(existsSync(archParent)).toBe(false);
  });
});

describe('primary on a database that cannot be switched to WAL mode', () => {
  const BETTER_SQLITE3 = createRequire(import.meta.url).resolve('better-sqlite3');
  const HOLDER = `
    const Database = require(process.env.B3);
    const db = new Database(process.env.DB);
    db.prepare(process.env.MODE === 'write' ? 'BEGIN IMMEDIATE' : 'BEGIN').run();
    db.prepare('SELECT count(*) FROM t').get();
    process.stdout.write('holding\\n');
    process.stdin.on('end', () => { db.prepare('ROLLBACK').run(); db.close(); process.exit(0); });
    process.stdin.resume();`;

  test.each(['read', 'write'] as const)('refused (JOURNAL_MODE) while another process holds a %s transaction; nothing changes', async (mode) => {
    const dir = tempDir();
    const dbDir = join(dir, 'data');
    mkdirSync(dbDir);
    const db = join(dbDir, 'app.db');
    makeDb(db, { wal: false });
    const app = new Database(db);
    app.prepare('INSERT INTO t (k, v) VALUES (1, ?)').run(randomBytes(1000));
    app.close();
    expect(readFileSync(db)[18]).toBe(1); // rollback journal

    const holder = spawn(process.execPath, ['-e', HOLDER], { env: { ...process.env, B3: BETTER_SQLITE3, DB: db, MODE: mode }, stdio: ['pipe', 'pipe', 'inherit'] });
    children.push(holder);
    await new Promise<void>((res, rej) => {
      holder.stdout!.on('data', (d) => String(d).includes('holding') && res());
      holder.once('exit', (c) => rej(new Error(`holder exited ${c}`)));
    });
    try {
      const archParent = join(dir, 'archives');
      const before = fp(dbDir);
      const r = await run(['primary', '--db', db, '--archive', join(archParent, 'arch')]);
      expectRefused(r, ERROR_CODES.JOURNAL_MODE, [/journal mode/, /WAL/, new RegExp(basename(db))]);
      expect(fp(dbDir)).toBe(before);
      expect(readFileSync(db)[18]).toBe(1);
      expect(existsSync(archParent), 'an archive directory was created for a database that was refused').toBe(false);
    } finally {
      holder.stdin!.end();
      await new Promise((r) => (holder.exitCode !== null ? r(null) : holder.once('exit', r)));
    }
  });
});

describe('primary with an archive that belongs to another database', () => {
  let dir: string;
  let arch: string;
  beforeAll(async () => {
    dir = tempDir();
    mkdirSync(join(dir, 'one'));
    const db1 = join(dir, 'one', 'app.db');
    makeDb(db1);
    arch = join(dir, 'arch');
    const p = await startPrimary(db1, arch);
    expect(await stopGracefully(p)).toBe(0);
    expect(Archive.exists(arch)).toBe(true);
  });

  test.each([
    ['in rollback-journal mode', false],
    ['in WAL mode', true],
  ] as const)('refused (WRONG_DATABASE) for a database %s: the archive and the database are unchanged', async (_what, wal) => {
    const dbDir = join(dir, wal ? 'wal' : 'rollback');
    mkdirSync(dbDir);
    const db2 = join(dbDir, 'app.db');
    makeDb(db2, { wal });
    const beforeDb = fp(dbDir);
    const beforeArch = fp(arch);
    const files = listing(dbDir);
    const r = await run(['primary', '--db', db2, '--archive', arch]);
    expectRefused(r, ERROR_CODES.WRONG_DATABASE, [/belongs to the database/, /one\/app\.db/, new RegExp(`${basename(dbDir)}/app\\.db`)]);
    expect(fp(arch)).toBe(beforeArch);
    expect(readFileSync(db2)[18], 'the database was switched to WAL mode before the check').toBe(wal ? 2 : 1);
    expect(listing(dbDir), 'files appeared beside the refused database').toEqual(files);
    expect(fp(dbDir)).toBe(beforeDb);
  });
});

describe('a damaged sealed segment', () => {
  /** An archive of two sealed segments (two primary runs): LSN 1..4 and 5..7. Never modified: tests copy it. */
  let pristine: string;
  let work: string;
  let pageSize: number;
  let databaseId: string;
  let segNames: string[];
  beforeAll(async () => {
    work = tempDir();
    const db = join(work, 'app.db');
    pristine = join(work, 'arch');
    makeDb(db);
    const { app, commit } = openApp(db);
    try {
      let p = await startPrimary(db, pristine);
      commit(3);
      await waitForLsn(pristine, 4n);
      expect(await stopGracefully(p)).toBe(0);
      p = await startPrimary(db, pristine);
      commit(3);
      await waitForLsn(pristine, 7n);
      expect(await stopGracefully(p)).toBe(0);
    } finally {
      app.close();
    }
    const a = Archive.open(pristine);
    pageSize = a.identity.pageSize;
    databaseId = a.identity.databaseId;
    const segs = a.segments();
    expect(segs.map((s) => [s.sealed, s.firstLsn, s.lastLsn])).toEqual([
      [true, 1n, 4n],
      [true, 5n, 7n],
    ]);
    segNames = segs.map((s) => s.name);
  });

  let copies = 0;
  /** A copy of the pristine archive whose segment `which` (0: LSN 1..4, 1: LSN 5..7) is damaged by `damage`. */
  function damagedCopy(which: number, damage: (seg: string, parts: ReturnType<typeof partsOf>) => void): string {
    const a = join(work, `copy${copies++}`);
    cpSync(pristine, a, { recursive: true });
    const seg = join(a, 'segments', segNames[which]!);
    damage(seg, partsOf(seg, pageSize, databaseId));
    return a;
  }

  /** verify, verify --json, list --json and restore all see the damage, name the segment and the LSN, change nothing. */
  async function expectDamageReported(arch: string, which: number, lsn: bigint, reason: RegExp): Promise<void> {
    const name = segNames[which]!;
    const before = fp(arch);
    const v = await run(['archive', 'verify', '--archive', arch]);
    expect(v.code, v.stdout + v.stderr).toBe(ERROR_CODES.ARCHIVE_CORRUPT);
    expect(v.stdout).toMatch(new RegExp(`DAMAGE: ${name}: .*LSN ${lsn}\\b`));
    expect(v.stdout).toMatch(reason);
    expect(v.stdout).toMatch(/^\s+hint: \S/m);
    expect(v.stderr).not.toMatch(/internal error|^\s+at /m);

    const vj = await run(['archive', 'verify', '--archive', arch, '--json']);
    expect(vj.code).toBe(ERROR_CODES.ARCHIVE_CORRUPT);
    const vr = JSON.parse(vj.stdout) as { ok: boolean; problems: string[] };
    expect(vr.ok).toBe(false);
    expect(vr.problems.join('\n')).toMatch(new RegExp(`${name}: .*LSN ${lsn}\\b`));

    const l = await run(['archive', 'list', '--archive', arch, '--json']);
    expect(l.stderr).not.toMatch(/internal error/);
    const list = JSON.parse(l.stdout) as { segments: Array<{ name: string; damage: string | null; tornTail: string | null }>; problems: string[] };
    const seg = list.segments.find((s) => s.name === name)!;
    expect(seg.damage).toMatch(new RegExp(`LSN ${lsn}\\b`));
    expect(seg.tornTail).toBeNull();
    expect(list.segments.find((s) => s.name !== name)!.damage).toBeNull();
    expect(list.problems.length).toBeGreaterThan(0);

    const outDir = join(work, `out${copies++}`);
    mkdirSync(outDir);
    const r = await run(['restore', '--archive', arch, '--to', join(outDir, 'restored.db')]);
    expectRefused(r, ERROR_CODES.ARCHIVE_CORRUPT, [new RegExp(name), /damaged/, new RegExp(`LSN ${lsn}\\b`)]);
    expect(readdirSync(outDir), 'restore left a file behind').toEqual([]);
    expect(fp(arch)).toBe(before);
  }

  test('one byte flipped in the middle of the file', async () => {
    let lsn = 0n;
    const arch = damagedCopy(0, (seg, parts) => {
      const mid = Math.floor(statSync(seg).size / 2);
      lsn = parts.find((p) => p.offset <= mid && mid < p.offset + PART_HEADER_BYTES + p.len)!.lsn;
      flipByte(seg, mid);
    });
    await expectDamageReported(arch, 0, lsn, /checksum|claims|ends inside/);
  });

  test.each([
    ['a transaction record (LSN 3)', 0, 3n],
    ['the base record (LSN 1)', 0, 1n],
    ['a transaction record of the last segment (LSN 6)', 1, 6n],
  ])('one byte flipped in the middle of %s', async (_what, which, lsn) => {
    const arch = damagedCopy(which, (seg, parts) => {
      const part = parts.find((p) => p.lsn === lsn)!;
      flipByte(seg, part.offset + PART_HEADER_BYTES + Math.floor(part.len / 2));
    });
    await expectDamageReported(arch, which, lsn, /checksum mismatch/);
  });

  test("restore --until-lsn before the damage still succeeds, as verify's hint says", async () => {
    const arch = damagedCopy(0, (seg, parts) => {
      const part = parts.find((p) => p.lsn === 3n)!;
      flipByte(seg, part.offset + PART_HEADER_BYTES + Math.floor(part.len / 2));
    });
    const v = await run(['archive', 'verify', '--archive', arch]);
    expect(v.stdout).toMatch(/restore can reach the LSN before the first damage/);
    const outDir = join(work, `out${copies++}`);
    mkdirSync(outDir);
    const r = await run(['restore', '--archive', arch, '--to', join(outDir, 'at2.db'), '--until-lsn', '2', '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).lsn).toBe('2');
    const ref = await run(['restore', '--archive', pristine, '--to', join(outDir, 'ref.db'), '--until-lsn', '2']);
    expect(ref.code, ref.stderr).toBe(0);
    expect(readFileSync(join(outDir, 'at2.db')).equals(readFileSync(join(outDir, 'ref.db')))).toBe(true);
  });

  test.each([
    ['the first segment', 0, 4n],
    ['the last segment', 1, 7n],
  ])('%s truncated in the middle of its last record', async (_what, which, lsn) => {
    const arch = damagedCopy(which, (seg, parts) => {
      const last = parts.find((p) => p.lsn === lsn)!;
      truncateSync(seg, last.offset + PART_HEADER_BYTES + Math.floor(last.len / 2));
    });
    await expectDamageReported(arch, which, lsn, /ends inside a part/);
  });

  test.each([
    ['the first segment', 0, 4n],
    ['the last segment', 1, 7n],
  ])('%s truncated at a record boundary (its last record missing)', async (_what, which, lsn) => {
    const arch = damagedCopy(which, (seg, parts) => truncateSync(seg, parts.find((p) => p.lsn === lsn)!.offset));
    await expectDamageReported(arch, which, lsn, new RegExp(`name says it ends at LSN ${lsn}, its records end at ${lsn - 1n}`));
  });
});

describe('the open segment after a crash', () => {
  interface Crashed {
    dir: string;
    /** The directory of the database (app.db, -wal, -shm). */
    dataDir: string;
    db: string;
    arch: string;
    seg: string;
    parts: ReturnType<typeof partsOf>;
    app: ReturnType<typeof openApp>;
  }
  /** A primary that archived LSN 1..4 into an open segment and was killed; the application keeps running. */
  async function crashed(): Promise<Crashed> {
    const dir = tempDir();
    const dataDir = join(dir, 'data');
    mkdirSync(dataDir);
    const db = join(dataDir, 'app.db');
    const arch = join(dir, 'arch');
    makeDb(db);
    const app = openApp(db);
    const p = await startPrimary(db, arch, ['--segment-size', '1GB', '--segment-age', '1h']);
    app.commit(3);
    await waitForLsn(arch, 4n);
    p.child.kill('SIGKILL');
    await p.exited;
    removeStaleLocks(`${db}-redoship.lock`, join(arch, 'writer.lock'));
    const a = Archive.open(arch);
    const open = a.segments().filter((s) => !s.sealed);
    expect(open).toHaveLength(1);
    const seg = open[0]!.path;
    const parts = partsOf(seg, a.identity.pageSize, a.identity.databaseId);
    expect(parts.filter((x) => x.last).map((x) => x.lsn)).toEqual([1n, 2n, 3n, 4n]);
    return { dir, dataDir, db, arch, seg, parts, app };
  }

  async function expectTornTailNoted(c: Crashed): Promise<void> {
    const before = fp(c.arch);
    const v = await run(['archive', 'verify', '--archive', c.arch]);
    expect(v.code, v.stdout + v.stderr).toBe(0);
    expect(v.stdout).toMatch(new RegExp(`note: ${basename(c.seg)} ends in a torn tail`));
    expect(v.stdout).toMatch(/^ok: /m);
    const l = await run(['archive', 'list', '--archive', c.arch, '--json']);
    const list = JSON.parse(l.stdout) as { lastLsn: string; segments: Array<{ damage: string | null; tornTail: string | null }>; problems: string[] };
    expect(list.problems).toEqual([]);
    expect(list.segments.at(-1)!.damage).toBeNull();
    expect(list.segments.at(-1)!.tornTail).toMatch(/LSN \d+/);
    expect(fp(c.arch)).toBe(before);
  }

  /** Restart: the torn tail is cut (with a warning), capture goes on, and the archive restores to the database. */
  async function expectRestartCutsAndContinues(c: Crashed, kept: Buffer, lastBefore: bigint): Promise<void> {
    const p = await startPrimary(c.db, c.arch, ['--segment-size', '1GB', '--segment-age', '1h']);
    try {
      expect(p.stderr).toMatch(/warning: cut a torn tail of \d+ bytes/);
      await waitForLsn(c.arch, lastBefore); // a transaction cut with the tail is captured again from the WAL
      c.app.commit(2);
      await waitForLsn(c.arch, lastBefore + 2n);
    } finally {
      expect(await stopGracefully(p)).toBe(0);
    }
    c.app.app.close();
    const sealed = Archive.open(c.arch).segments();
    expect(sealed).toHaveLength(1);
    expect(readFileSync(sealed[0]!.path).subarray(0, kept.length).equals(kept), 'records before the tear were rewritten').toBe(true);
    const v = await run(['archive', 'verify', '--archive', c.arch]);
    expect(v.code, v.stdout).toBe(0);
    expect(v.stdout).not.toMatch(/torn tail/);
    const l = JSON.parse((await run(['archive', 'list', '--archive', c.arch, '--json'])).stdout) as { lastLsn: string; segments: Array<{ breaks: unknown[] }> };
    expect(BigInt(l.lastLsn)).toBe(lastBefore + 2n);
    expect(l.segments.flatMap((s) => s.breaks)).toEqual([]);
    const out = join(c.dir, 'restored.db');
    const r = await run(['restore', '--archive', c.arch, '--to', out]);
    expect(r.code, r.stderr).toBe(0);
    const cmp = compareWithPrimary(c.db, out);
    expect(cmp.differing).toEqual([]);
    expect(cmp.rowsEqual).toBe(true);
  }

  test('garbage appended: verify notes a torn tail and exits 0; the next primary cuts it and continues', async () => {
    const c = await crashed();
    const kept = readFileSync(c.seg);
    writeFileSync(c.seg, Buffer.concat([kept, randomBytes(333)]));
    await expectTornTailNoted(c);
    await expectRestartCutsAndContinues(c, kept, 4n);
  });

  test('truncated in the middle of its last record: verify notes a torn tail; the next primary cuts it and captures it again', async () => {
    const c = await crashed();
    const last = c.parts.find((x) => x.lsn === 4n)!;
    const kept = readFileSync(c.seg).subarray(0, last.offset);
    truncateSync(c.seg, last.offset + PART_HEADER_BYTES + Math.floor(last.len / 2));
    await expectTornTailNoted(c);
    await expectRestartCutsAndContinues(c, kept, 4n);
  });

  test('a byte flipped in the middle, valid records after it: not cut; verify reports damage, primary refuses (ARCHIVE_CORRUPT)', async () => {
    const c = await crashed();
    try {
      const victim = c.parts.find((x) => x.lsn === 2n)!;
      flipByte(c.seg, victim.offset + PART_HEADER_BYTES + Math.floor(victim.len / 2));
      const beforeArch = fp(c.arch);
      const beforeData = dataFingerprint(c.dataDir);
      const files = listing(c.dataDir);

      const v = await run(['archive', 'verify', '--archive', c.arch]);
      expect(v.code, v.stdout).toBe(ERROR_CODES.ARCHIVE_CORRUPT);
      expect(v.stdout).toMatch(new RegExp(`DAMAGE: ${basename(c.seg)}: .*LSN 2\\b.*valid records after it`));

      const r = await run(['primary', '--db', c.db, '--archive', c.arch]);
      expectRefused(r, ERROR_CODES.ARCHIVE_CORRUPT, [new RegExp(basename(c.seg)), /damaged/, /not a torn tail/]);
      expect(fp(c.arch), 'the archive changed').toBe(beforeArch);
      expect(statSync(c.seg).size).toBe(c.parts.at(-1)!.offset + PART_HEADER_BYTES + c.parts.at(-1)!.len);
      expect(listing(c.dataDir)).toEqual(files);
      expect(dataFingerprint(c.dataDir), 'the database or its WAL changed').toBe(beforeData);
    } finally {
      c.app.app.close();
    }
  });
});

describe('a second primary on a running database', () => {
  test('refused (LOCKED) for the same archive and for another one; the first keeps capturing', async () => {
    const dir = tempDir();
    const db = join(dir, 'app.db');
    const arch = join(dir, 'arch');
    makeDb(db);
    const { app, commit } = openApp(db);
    const first = await startPrimary(db, arch);
    try {
      const lock = readFileSync(`${db}-redoship.lock`, 'utf8');
      expect(lock.split('\n')[0]).toBe(String(first.child.pid));
      const other = join(dir, 'other-arch');
      for (const a of [arch, other]) {
        const r = await run(['primary', '--db', db, '--archive', a]);
        expectRefused(r, ERROR_CODES.LOCKED, [/in use by another redoship process/, new RegExp(`pid ${first.child.pid}\\b`)]);
      }
      expect(existsSync(other), 'the refused primary created its archive').toBe(false);
      expect(readFileSync(`${db}-redoship.lock`, 'utf8')).toBe(lock);
      expect(first.child.exitCode).toBeNull();

      const before = await statusLsn(arch);
      expect(before).not.toBeNull();
      commit();
      let now = before;
      for (let i = 0; i < 100 && now === before; i++) {
        await sleep(30);
        now = await statusLsn(arch);
      }
      expect(now).toBe(before! + 1n);
      const s = JSON.parse((await run(['status', '--archive', arch, '--json'])).stdout) as { primary: { pid: number } | null };
      expect(s.primary?.pid).toBe(first.child.pid);
    } finally {
      app.close();
      expect(await stopGracefully(first)).toBe(0);
    }
    expect(first.stderr).not.toMatch(/error|warning/);
  });
});

describe.concurrent('restore and flag values', () => {
  let dir: string;
  let arch: string;
  let firstCommit: string;
  beforeAll(async () => {
    dir = tempDir();
    const db = join(dir, 'app.db');
    arch = join(dir, 'arch');
    makeDb(db);
    const { app, commit } = openApp(db);
    const p = await startPrimary(db, arch);
    commit(2);
    await waitForLsn(arch, 3n);
    expect(await stopGracefully(p)).toBe(0);
    app.close();
    const l = JSON.parse((await run(['archive', 'list', '--archive', arch, '--json'])).stdout) as { segments: Array<{ firstTime: string }> };
    firstCommit = l.segments[0]!.firstTime;
  });

  let outs = 0;
  /** Runs a restore into a new, empty directory; asserts it stays as it was and the archive is unchanged. */
  async function restoreInto(args: string[], prepare?: (outDir: string) => void): Promise<{ r: Result; outDir: string; to: string }> {
    const outDir = join(dir, `out${outs++}`);
    mkdirSync(outDir);
    const to = join(outDir, 'restored.db');
    prepare?.(outDir);
    const beforeOut = fp(outDir);
    const files = listing(outDir);
    const beforeArch = fp(arch);
    const r = await run(['restore', '--archive', arch, '--to', to, ...args]);
    expect(listing(outDir), 'restore left a file behind').toEqual(files);
    expect(fp(outDir)).toBe(beforeOut);
    expect(fp(arch)).toBe(beforeArch);
    return { r, outDir, to };
  }

  test('--to an existing file: refused (TARGET_EXISTS), the file unchanged', async () => {
    const { r } = await restoreInto([], (d) => writeFileSync(join(d, 'restored.db'), 'precious data\n'));
    expectRefused(r, ERROR_CODES.TARGET_EXISTS, [/restored\.db already exists/]);
  });

  test('--to a path whose -wal is left over: refused (TARGET_EXISTS)', async () => {
    const { r } = await restoreInto([], (d) => writeFileSync(join(d, 'restored.db-wal'), 'stale'));
    expectRefused(r, ERROR_CODES.TARGET_EXISTS, [/restored\.db-wal exists/]);
  });

  test('--until-lsn past the end: refused (TARGET_UNREACHABLE)', async () => {
    for (const lsn of ['4', '18446744073709551615']) {
      const { r } = await restoreInto(['--until-lsn', lsn]);
      expectRefused(r, ERROR_CODES.TARGET_UNREACHABLE, [new RegExp(`LSN ${lsn} is past the archive's last LSN 3`)]);
    }
  });

  test('--until-time before the first commit: refused (TARGET_UNREACHABLE)', async () => {
    const before = new Date(Date.parse(firstCommit) - 1000).toISOString();
    for (const t of [before, '2000-01-01T00:00:00Z']) {
      const { r } = await restoreInto(['--until-time', t]);
      expectRefused(r, ERROR_CODES.TARGET_UNREACHABLE, [/no transaction at or before/]);
    }
  });

  test.each([
    ['--until-lsn', 'abc'],
    ['--until-lsn', '0'],
    ['--until-lsn', '-3'],
    ['--until-lsn', '1.5'],
    ['--until-lsn', '0x10'],
    ['--until-lsn', ''],
    ['--until-time', 'yesterday'],
    ['--until-time', '2026-13-45'],
    ['--until-time', '2026-11-22T25:00:00Z'],
    ['--until-time', '2026-02-30T10:00:00Z'],
    ['--until-time', ''],
  ])('restore %s %j: usage error (exit 2)', async (flag, value) => {
    const { r } = await restoreInto([flag, value]);
    expectRefused(r, ERROR_CODES.USAGE, [new RegExp(`${flag} `), /not an? (LSN|time)/]);
  });

  test.each(['12XB', '0', '-5', 'big', '1.5.5', ''])('primary --segment-size %j: usage error (exit 2), nothing created', async (value) => {
    const d = tempDir();
    const db = join(d, 'app.db');
    makeDb(db);
    const before = fp(d);
    const r = await run(['primary', '--db', db, '--archive', join(d, 'arch'), '--segment-size', value]);
    expectRefused(r, ERROR_CODES.USAGE, [/--segment-size/, /not a size/]);
    expect(fp(d)).toBe(before);
    expect(listing(d)).toEqual(['app.db']);
  });

  test('an unknown flag: usage error (exit 2), nothing done', async () => {
    const { r } = await restoreInto(['--bogus']);
    expectRefused(r, ERROR_CODES.USAGE, [/unknown option '--bogus'/], 'help');
    const d = tempDir();
    const db = join(d, 'app.db');
    makeDb(db);
    const before = fp(d);
    for (const args of [
      ['primary', '--db', db, '--archive', join(d, 'arch'), '--segmentsize', '1MB'],
      ['archive', 'verify', '--archive', arch, '--fix'],
      ['status', '--archive', arch, '-x'],
    ]) {
      const u = await run(args);
      expectRefused(u, ERROR_CODES.USAGE, [/unknown option/], 'help');
    }
    expect(fp(d)).toBe(before);
  });
});

describe.concurrent('a directory that is not an archive', () => {
  test.each([['archive list'], ['archive verify'], ['status'], ['restore']])('%s: refused (ARCHIVE_MISSING), nothing changes', async (name) => {
    const dir = tempDir();
    const notArch = join(dir, 'not-an-archive');
    mkdirSync(join(notArch, 'segments'), { recursive: true });
    writeFileSync(join(notArch, 'notes.txt'), 'not an archive\n');
    const outDir = join(dir, 'out');
    mkdirSync(outDir);
    const before = fp(dir);
    const command = name.split(' ');
    for (const a of [notArch, join(dir, 'missing')]) {
      const extra = command[0] === 'restore' ? ['--to', join(outDir, 'r.db')] : [];
      const r = await run([...command, '--archive', a, ...extra]);
      expectRefused(r, ERROR_CODES.ARCHIVE_MISSING, [/no redoship archive at/, new RegExp(basename(a))]);
      expect(fp(dir)).toBe(before);
      expect(existsSync(join(dir, 'missing'))).toBe(false);
      expect(readdirSync(outDir)).toEqual([]);
    }
  });
});
