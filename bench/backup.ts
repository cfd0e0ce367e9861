/**
 * Backup benchmark: backup sets and restores from them on a ~1 GiB database, each figure next to a peer
 * measured in the same run on the same file (DESIGN.md Backups; issue 4's figures):
 *
 *   1. full backup, uncompressed (--compress none)  vs better-sqlite3 db.backup() and cp (+ fsync)
 *   2. full backup, zstd (the default, level 1)      vs the zstd CLI: zstd -1 -T0 of the file
 *   3. level 1 after ~1% of the pages changed        vs the full zstd backup's time (target <= 5%)
 *   4. restore from a level 0 (none and zstd)        vs cp of the file (+ fsync) run right before or after it (in turn)
 *   5. restore to a point that needs 100,000 redo records after the newest set: time, records/s
 *
 * The database is filled with better-sqlite3 (WAL mode), then a primary runs in this process and takes its
 * base into an archive; the 1% change and the 100,000 transactions are made by other processes, captured
 * into the archive, and the level 1 finds its pages from that redo. Every restore is compared page for page
 * (header counters masked) with a db.backup() copy of the database at that LSN.
 *
 *   node dist/bench/backup.js [--mib 1024] [--records 100000] [--runs 7] [--dir D] [--keep]
 *   (or BENCH_MIB, BENCH_RECORDS, BENCH_RUNS, BENCH_DIR, BENCH_KEEP=1)
 *
 * Each figure takes the best of the runs of each side, the medians beside it (main() says why). Progress goes
 * to stderr, the table to stdout. Warm page cache: nothing is dropped.
 */
import Database from 'better-sqlite3';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import { closeSync, fsyncSync, mkdirSync, mkdtempSync, openSync, readFileSync, readSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { cpus, release, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Repo, copyArchive, restoreFromRepo, takeBackupSet, type BackupManifest, type CompressionSpec } from '../src/backup/index.js';
import { WORKLOAD_SCRIPT, createSchema } from '../src/drill/index.js';
import { startPrimary, type PrimaryHandle } from '../src/primary/index.js';
import { Archive } from '../src/redo/index.js';
import { CLK_TCK, num, psiSome, setting, cpuSnap, type CpuSnap } from './common.js';

const ROOT = resolve(fileURLToPath(new URL('.', import.meta.url)), '../..');
const MiB = 1024 * 1024;

const cfg = {
  mib: num('mib', 'BENCH_MIB', 1024),
  records: Math.round(num('records', 'BENCH_RECORDS', 100_000)),
  runs: Math.max(1, Math.round(num('runs', 'BENCH_RUNS', 7))),
  dir: setting('dir', 'BENCH_DIR', ''),
  keep: !['', '0'].includes(setting('keep', 'BENCH_KEEP', '')),
};

const t0 = performance.now();
const log = (msg: string) => process.stderr.write(`[bench ${((performance.now() - t0) / 1000).toFixed(1).padStart(6)} s] ${msg}\n`);
const fmt = (x: number, d = 0) => (Number.isFinite(x) ? x.toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d }) : 'n/a');
const best = (xs: readonly number[]) => Math.min(...xs);
const median = (xs: readonly number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

interface Row {
  figure: string;
  redoship: string;
  peer: string;
  ratio: string;
  target: string;
}
const rows: Row[] = [];
const notes: string[] = [];
const verdict = (ok: boolean) => (ok ? 'MET' : 'MISSED');

// ------------------------------------------------------------------------------------ load readings

const sectionLoad: string[] = [];
async function section<T>(name: string, f: () => Promise<T>): Promise<T> {
  const a = cpuSnap();
  const r = await f();
  const b = cpuSnap();
  const other = (b.busy - a.busy - (b.ours - a.ours)) / CLK_TCK / ((b.atMs - a.atMs) / 1000);
  const wallUs = (b.atMs - a.atMs) * 1000;
  const line = `${name}: other CPU ${other.toFixed(2)} cores, CPU stall ${fmt((100 * (b.cpuStallUs - a.cpuStallUs)) / wallUs)}%, I/O stall ${fmt((100 * (b.ioStallUs - a.ioStallUs)) / wallUs)}%`;
  sectionLoad.push(line);
  log(`  (${fmt((b.atMs - a.atMs) / 1000, 1)} s; ${line})`);
  return r;
}

// ------------------------------------------------------------------------------------ helpers

const running = new Set<ChildProcess>();

/** Runs a node script to completion (a separate process writes the database, as an application would). */
function node(args: string[]): Promise<string> {
  return new Promise((res, rej) => {
    const child = spawn(process.execPath, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    running.add(child);
    let out = '';
    let err = '';
    child.stdout!.on('data', (d) => (out += d));
    child.stderr!.on('data', (d) => (err += d));
    child.once('close', (code) => {
      running.delete(child);
      code === 0 ? res(out) : rej(new Error(`${args.join(' ')} exited ${code}: ${err}`));
    });
  });
}

function fsyncFile(path: string): void {
  const fd = openSync(path, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

async function caughtUp(h: PrimaryHandle, want: bigint): Promise<void> {
  const start = performance.now();
  while (h.capturer.lastLsn < want) {
    if (performance.now() - start > 300_000) throw new Error(`capture did not reach LSN ${want} (at ${h.capturer.lastLsn})`);
    await sleep(5);
  }
}

/** Pages that differ between two database files, header fields that may differ between copies masked. */
function differingPages(a: string, b: string, pageSize: number): { differing: number[]; pages: number } {
  const sa = statSync(a).size;
  const sb = statSync(b).size;
  if (sa !== sb) return { differing: [-1], pages: sa / pageSize };
  const fa = openSync(a, 'r');
  const fb = openSync(b, 'r');
  const differing: number[] = [];
  const step = 1024 * pageSize;
  const ba = Buffer.alloc(step);
  const bb = Buffer.alloc(step);
  try {
    for (let off = 0; off < sa; off += step) {
      const n = readSync(fa, ba, 0, step, off);
      readSync(fb, bb, 0, step, off);
      if (off === 0)
        for (const [s, e] of [[18, 20], [24, 28], [92, 96]] as const) {
          ba.fill(0, s, e);
          bb.fill(0, s, e);
        }
      for (let p = 0; p < n; p += pageSize) if (!ba.subarray(p, p + pageSize).equals(bb.subarray(p, p + pageSize))) differing.push((off + p) / pageSize + 1);
    }
  } finally {
    closeSync(fa);
    closeSync(fb);
  }
  return { differing, pages: sa / pageSize };
}

/** better-sqlite3's db.backup() of the live database into `to` (the peer of figure 1); its time in ms. */
async function sqliteBackup(db: string, to: string): Promise<number> {
  rmSync(to, { force: true });
  const d = new Database(db, { readonly: true });
  const a = performance.now();
  try {
    await d.backup(to);
  } finally {
    d.close();
  }
  return performance.now() - a;
}

/**
 * The reference restores are compared with: the live database's logical content (file + committed WAL) as
 * SQLite serializes it. (A db.backup() copy is no reference: SQLite bumps the copy's schema cookie.)
 */
function reference(db: string, to: string): void {
  const d = new Database(db, { readonly: true });
  try {
    writeFileSync(to, d.serialize());
  } finally {
    d.close();
  }
  // Synced here, untimed: else the kernel writes its GiB back ~30 s later, inside whatever is being timed.
  fsyncFile(to);
}

// ------------------------------------------------------------------------------------ the database

/**
 * ~cfg.mib MiB of rows of about one page each, half random hex (entropy 4 bits a byte) and half repeated
 * text, so zstd has real work to do (about 2:1) rather than all-random or all-zero pages.
 */
function fill(db: string): void {
  const pool = Buffer.allocUnsafe(64 * MiB);
  for (let off = 0; off < pool.length; off += MiB) randomFillSync(pool.subarray(off, off + MiB));
  const text = 'order shipped to warehouse 17, status pending review; '.repeat(40).slice(0, 1900);
  const d = new Database(db);
  d.pragma('journal_mode = WAL');
  d.pragma('synchronous = OFF');
  createSchema(d); // the workload's tables: its transactions are then exactly one commit each
  d.exec('CREATE TABLE fill (id INTEGER PRIMARY KEY, v TEXT NOT NULL)');
  const ins = d.prepare('INSERT INTO fill (v) VALUES (?)');
  const batch = d.transaction((n: number) => {
    for (let i = 0; i < n; i++) {
      const off = Math.floor(Math.random() * (pool.length - 1000));
      ins.run(pool.toString('hex', off, off + 975) + text);
    }
  });
  const pageCount = d.prepare('PRAGMA page_count').pluck();
  const pageSize = Number(d.pragma('page_size', { simple: true }));
  while (Number(pageCount.get()) * pageSize < cfg.mib * MiB) batch(5000);
  d.pragma('wal_checkpoint(TRUNCATE)');
  d.close();
}

/** changeRows commits this many rows per transaction (one archive record each). */
const ROWS_PER_CHANGE_TX = 500;

/** Waits until the primary's archive holds LSN lsn (10 s at most). */
async function capturedThrough(h: PrimaryHandle, lsn: bigint): Promise<void> {
  const until = performance.now() + 10_000;
  while (BigInt(h.status().lastLsn) < lsn) {
    if (performance.now() > until) throw new Error(`capture did not reach LSN ${lsn} within 10 s (at ${h.status().lastLsn})`);
    await sleep(5);
  }
}

/** Rewrites ~fraction of the fill rows (one page each) in a separate process; returns the rows changed. */
async function changeRows(db: string, fraction: number): Promise<number> {
  const script = `
    const Database = require(${JSON.stringify(join(ROOT, 'node_modules', 'better-sqlite3'))});
    const { randomBytes } = require('node:crypto');
    const d = new Database(process.argv[1]);
    d.pragma('busy_timeout = 10000');
    const max = d.prepare('SELECT max(id) FROM fill').pluck().get();
    const n = Math.round(max * ${fraction});
    const upd = d.prepare('UPDATE fill SET v = ? WHERE id = ?');
    const ids = new Set();
    while (ids.size < n) ids.add(1 + Math.floor(Math.random() * max));
    const all = [...ids];
    for (let i = 0; i < all.length; i += ${ROWS_PER_CHANGE_TX})
      d.transaction(() => { for (const id of all.slice(i, i + ${ROWS_PER_CHANGE_TX})) upd.run(randomBytes(975).toString('hex') + 'x'.repeat(1900), id); })();
    d.close();
    console.log(n);`;
  return Number((await node(['-e', script, db])).trim());
}

// ------------------------------------------------------------------------------------ the run

const NONE: CompressionSpec = { algorithm: 'none', level: 0 };
const ZSTD: CompressionSpec = { algorithm: 'zstd', level: 1 };
const PIECE = 256 * MiB;

/** This process's CPU time (all its threads) since `from`, as "cpu S s = C cores" over ms of wall time. */
const cpuSince = (from: NodeJS.CpuUsage, ms: number): string => {
  const u = process.cpuUsage(from);
  const s = (u.user + u.system) / 1e6;
  return `cpu ${fmt(s, 2)} s (sys ${fmt(u.system / 1e6, 2)}) = ${fmt(s / (ms / 1000), 2)} cores`;
};

async function backup(h: PrimaryHandle, repoDir: string, level: 0 | 1, c: CompressionSpec): Promise<{ ms: number; m: BackupManifest; cpu: string; phases: string }> {
  const repo = await Repo.openFor(repoDir, h.archive.identity.databaseId, h.archive.identity.pageSize);
  const cpu0 = process.cpuUsage();
  const a = performance.now();
  const snap = h.backupSnapshot();
  let first = NaN;
  let last = NaN;
  try {
    const onProgress = () => {
      last = performance.now() - a;
      if (Number.isNaN(first)) first = last;
    };
    const m = await takeBackupSet(repo, h.archive, snap, { level, cumulative: false, compression: c, maxPieceBytes: PIECE, onProgress });
    const ms = performance.now() - a;
    // Where the time went: until the first chunk was encoded (finding and reading pages), the chunks, the
    // rest (the page-hash file, the manifest and the catalog, each written and synced).
    const phases = `first chunk at ${fmt(first)} ms, last at ${fmt(last)} ms, written at ${fmt(ms)} ms`;
    return { ms, m, cpu: cpuSince(cpu0, ms), phases };
  } finally {
    snap.release();
  }
}
const setBytes = (m: BackupManifest) => m.pieces.reduce((n, p) => n + p.bytes, 0);

async function main(): Promise<void> {
  const work = cfg.dir ? resolve(cfg.dir) : mkdtempSync(join(tmpdir(), 'redoship-bench-backup-'));
  mkdirSync(work, { recursive: true });
  const started = new Date();
  const loadAtStart = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
  const zstdCli = spawnSync('zstd', ['--version'], { encoding: 'utf8' });
  const zstdVersion = zstdCli.status === 0 ? zstdCli.stdout.trim() : null;
  if (!zstdVersion) notes.push('the zstd CLI is not installed here (apt-get install zstd): figure 2 has no peer');
  const db = join(work, 'app.db');
  const arch = join(work, 'arch');
  const ref = join(work, 'reference.db');
  let h: PrimaryHandle | null = null;
  try {
    log(`filling ${cfg.mib} MiB into ${db}`);
    const fillMs = await section('fill', async () => {
      const a = performance.now();
      fill(db);
      const ms = performance.now() - a;
      fsyncFile(db); // untimed (the fill runs with synchronous = OFF): its writeback must not land in a timed section
      return ms;
    });
    const dbBytes = statSync(db).size;
    const dbMiB = dbBytes / MiB;
    log(`  ${fmt(dbMiB, 1)} MiB in ${fmt(fillMs)} ms; starting the primary (it archives a base)`);
    h = await startPrimary({ db, archive: arch, onEvent: (e) => e.type === 'warning' && notes.push(`primary warning: ${e.message}`) });
    const pageSize = h.archive.identity.pageSize;

    // 1 + 2: full backups and their peers, alternating so that a disturbance hits both sides.
    const r = { none: [] as number[], zstd: [] as number[], bk: [] as number[], cp: [] as number[], cpSync: [] as number[], zcli: [] as number[], zcliSync: [] as number[] };
    let full: { none: BackupManifest | null; zstd: BackupManifest | null } = { none: null, zstd: null };
    await section('full backups and peers', async () => {
      for (let i = 0; i < cfg.runs; i++) {
        const last = i === cfg.runs - 1;
        const repoNone = join(work, `repo-none-${i}`);
        const repoZstd = join(work, `repo-zstd-${i}`);
        const n = await backup(h!, repoNone, 0, NONE);
        r.none.push(n.ms);
        const bkMs = await sqliteBackup(db, join(work, 'copy-backup.db'));
        rmSync(join(work, 'copy-backup.db'));
        if (i === 0) reference(db, ref);
        r.bk.push(bkMs);
        const copy = join(work, 'copy.db');
        let a = performance.now();
        if (spawnSync('cp', [db, copy]).status !== 0) throw new Error('cp failed');
        const cpMs = performance.now() - a;
        fsyncFile(copy);
        r.cp.push(cpMs);
        r.cpSync.push(performance.now() - a);
        rmSync(copy);
        const z = await backup(h!, repoZstd, 0, ZSTD);
        r.zstd.push(z.ms);
        let zMs = NaN;
        let zSyncMs = NaN;
        if (zstdVersion) {
          const out = join(work, 'copy.zst');
          a = performance.now();
          if (spawnSync('zstd', ['-1', '-T0', '-q', '-f', db, '-o', out]).status !== 0) throw new Error('zstd failed');
          zMs = performance.now() - a;
          fsyncFile(out);
          zSyncMs = performance.now() - a;
          rmSync(out);
        }
        r.zcli.push(zMs);
        r.zcliSync.push(zSyncMs);
        log(
          `  pass ${i + 1}: backup none ${fmt(n.ms)} ms (${n.cpu}), db.backup() ${fmt(bkMs)} ms, cp ${fmt(cpMs)} ms (+fsync ${fmt(r.cpSync[i]! - cpMs)}), ` +
            `backup zstd ${fmt(z.ms)} ms (${fmt(setBytes(z.m) / MiB, 1)} MiB, ${z.cpu}), zstd -1 -T0 ${fmt(zMs)} ms (+fsync ${fmt(zSyncMs - zMs)})`,
        );
        if (last) full = { none: n.m, zstd: z.m };
        else {
          rmSync(repoNone, { recursive: true, force: true });
          rmSync(repoZstd, { recursive: true, force: true });
        }
      }
    });
    // Each figure takes each side's best pass: a write-heavy pass here sometimes costs 2-3x its usual kernel
    // time, on either side (memory the host took back is backed again on first touch: see the restores
    // below; the per-pass lines on stderr show it as system time). The best pass is a side's time without
    // that; the ratio of the medians stands beside each verdict.
    const rate = (msList: number[]) => dbMiB / (best(msList) / 1000);
    const rateMedian = (msList: number[]) => dbMiB / (median(msList) / 1000);
    const medians = (ours: number[], peer: number[]) => `medians ${(rateMedian(ours) / rateMedian(peer)).toFixed(2)}`;
    const noneRate = rate(r.none);
    rows.push({ figure: `1. full backup, --compress none, ${fmt(dbMiB)} MiB`, redoship: `${fmt(noneRate)} MiB/s`, peer: `db.backup() ${fmt(rate(r.bk))} MiB/s`, ratio: (noneRate / rate(r.bk)).toFixed(2), target: `>= 1.0: ${verdict(noneRate >= rate(r.bk))} (${medians(r.none, r.bk)})` });
    rows.push({ figure: '   same, against cp', redoship: `${fmt(noneRate)} MiB/s`, peer: `cp ${fmt(rate(r.cp))} MiB/s`, ratio: (noneRate / rate(r.cp)).toFixed(2), target: '' });
    rows.push({ figure: '   same, against cp + fsync (redoship fsyncs)', redoship: `${fmt(noneRate)} MiB/s`, peer: `cp+fsync ${fmt(rate(r.cpSync))} MiB/s`, ratio: (noneRate / rate(r.cpSync)).toFixed(2), target: '' });
    const zRate = rate(r.zstd);
    const zcli = rate(r.zcli);
    rows.push({
      figure: `2. full backup, zstd:1 (${fmt(setBytes(full.zstd!) / MiB)} MiB, ${(dbBytes / setBytes(full.zstd!)).toFixed(2)}:1)`,
      redoship: `${fmt(zRate)} MiB/s`,
      peer: zstdVersion ? `zstd -1 -T0 ${fmt(zcli)} MiB/s` : 'zstd CLI missing',
      ratio: zstdVersion ? (zRate / zcli).toFixed(2) : 'n/a',
      target: zstdVersion ? `>= 0.9: ${verdict(zRate / zcli >= 0.9)} (${medians(r.zstd, r.zcli)})` : '',
    });
    if (zstdVersion) rows.push({ figure: '   same, against zstd -1 -T0 + fsync', redoship: `${fmt(zRate)} MiB/s`, peer: `${fmt(rate(r.zcliSync))} MiB/s`, ratio: (zRate / rate(r.zcliSync)).toFixed(2), target: '' });

    // 4: restores from the level 0s, each compared with the reference copy.
    const restoreSection = async (label: string, repoDir: string, m: BackupManifest) => {
      const times: number[] = [];
      const cpTimes: number[] = [];
      // Memory freed and left free for ~2 s is handed back to the host here, and the first write into it
      // costs ~5 microseconds per 4 KiB page (a cp 3 s after removing a 1 GiB file: 1.4-1.6 s of system time,
      // right after: 0.33 s). Each pass below starts right after the one before removed its 1 GiB file; an
      // untimed cp first does the same for the first pass.
      const copy = join(work, 'copy.db');
      if (spawnSync('cp', [db, copy]).status !== 0) throw new Error('cp failed');
      rmSync(copy);
      for (let i = 0; i < cfg.runs; i++) {
        const to = join(work, 'restored.db');
        const cpPass = () => {
          const b = performance.now();
          if (spawnSync('cp', [db, copy]).status !== 0) throw new Error('cp failed');
          fsyncFile(copy);
          cpTimes.push(performance.now() - b);
          rmSync(copy);
        };
        // Who goes first alternates, so that neither always meets the memory the other just freed.
        if (i % 2 === 1) cpPass();
        const cpu0 = process.cpuUsage();
        const a = performance.now();
        await restoreFromRepo({ repo: repoDir, to, untilLsn: BigInt(m.endLsn) });
        times.push(performance.now() - a);
        const cpu = cpuSince(cpu0, times[i]!);
        if (i === 0) {
          const d = differingPages(ref, to, pageSize);
          if (d.differing.length) throw new Error(`restore from ${label} differs from the reference in pages ${d.differing.slice(0, 10).join(', ')}`);
          log(`  ${label}: restored file equals the reference page for page (${d.pages} pages)`);
        }
        rmSync(to);
        if (i % 2 === 0) cpPass();
        log(`  restore from ${label} pass ${i + 1}: ${fmt(times[i]!)} ms (${cpu}); cp + fsync ${fmt(cpTimes[i]!)} ms`);
      }
      const rr = rate(times);
      const cr = rate(cpTimes);
      rows.push({ figure: `4. restore from the level 0 (${label}) + integrity_check`, redoship: `${fmt(rr)} MiB/s`, peer: `cp+fsync ${fmt(cr)} MiB/s`, ratio: (rr / cr).toFixed(2), target: `>= 0.8: ${verdict(rr / cr >= 0.8)} (${medians(times, cpTimes)})` });
      // A restore and the cp + fsync run back to back share the VM's state of that moment.
      rows.push({ figure: `   same, per pass (cp+fsync / restore time)`, redoship: times.map((t, k) => (cpTimes[k]! / t).toFixed(2)).join(' '), peer: '', ratio: '', target: `median ${median(times.map((t, k) => cpTimes[k]! / t)).toFixed(2)}` });
    };
    await section('restores from level 0', async () => {
      await restoreSection('none', join(work, `repo-none-${cfg.runs - 1}`), full.none!);
      await restoreSection('zstd', join(work, `repo-zstd-${cfg.runs - 1}`), full.zstd!);
    });
    rmSync(join(work, `repo-none-${cfg.runs - 1}`), { recursive: true, force: true });
    const repoDir = join(work, `repo-zstd-${cfg.runs - 1}`);

    // 3: a level 1 after ~1% of the pages changed (by another process, captured into the archive), runs
    // times: each a differential level 1 on the one before, after a new 1% change; the median is the figure
    // (one level 1 takes tens of ms, so a single one moves with whatever else the machine does).
    let changed = 0;
    let l1!: Awaited<ReturnType<typeof backup>>;
    const l1Ms: number[] = [];
    await section('level 1', async () => {
      for (let i = 0; i < cfg.runs; i++) {
        const before = BigInt(h!.status().lastLsn);
        changed = await changeRows(db, 0.01);
        // The level 1 starts once capture has archived the change, as in use: capture follows each commit
        // within milliseconds, long before a backup comes; archiving 10 MiB of redo (with its fdatasync) is
        // the capture bench's figure, not the backup's. backupSnapshot() would capture it otherwise.
        await capturedThrough(h!, before + BigInt(Math.ceil(changed / ROWS_PER_CHANGE_TX)));
        l1 = await backup(h!, repoDir, 1, ZSTD);
        l1Ms.push(l1.ms);
        log(`  level 1 pass ${i + 1} after ${changed} rows changed: ${l1.m.pages} pages (${((100 * l1.m.pages) / l1.m.sizePages).toFixed(2)}% of ${l1.m.sizePages}), ${fmt(setBytes(l1.m) / MiB, 1)} MiB, ${fmt(l1.ms)} ms (${l1.cpu}; ${l1.phases})`);
      }
    });
    const fullZstdMs = best(r.zstd);
    const l1Best = best(l1Ms);
    const share = l1Best / fullZstdMs;
    rows.push({
      figure: `3. level 1 after ${fmt(changed)} rows changed (${l1.m.pages} pages, ${((100 * l1.m.pages) / l1.m.sizePages).toFixed(2)}%)`,
      redoship: `${fmt(l1Best)} ms, ${fmt(setBytes(l1.m) / MiB, 1)} MiB`,
      peer: `full zstd ${fmt(fullZstdMs)} ms, ${fmt(setBytes(full.zstd!) / MiB)} MiB`,
      ratio: share.toFixed(3),
      target: `<= 0.05: ${verdict(share <= 0.05)} (medians ${(median(l1Ms) / median(r.zstd)).toFixed(3)})`,
    });
    reference(db, ref);
    {
      const to = join(work, 'restored-l1.db');
      await restoreFromRepo({ repo: repoDir, to, untilLsn: BigInt(l1.m.endLsn) });
      const d = differingPages(ref, to, pageSize);
      if (d.differing.length) throw new Error(`restore of level 0 + level 1 differs from the reference in pages ${d.differing.slice(0, 10).join(', ')}`);
      log(`  level 0 + ${cfg.runs} level 1s restored: equals the reference page for page`);
      rmSync(to);
    }

    // 5: restore to a point that needs cfg.records redo records after the newest set.
    const before = h.capturer.lastLsn;
    log(`writing ${cfg.records} transactions (workload process, --mix small)`);
    await section('redo records', async () => {
      await node([WORKLOAD_SCRIPT, '--db', db, '--mix', 'small', '--synchronous', 'NORMAL', '--rate', '0', '--count', String(cfg.records)]);
      await caughtUp(h!, before + BigInt(cfg.records));
    });
    const target = before + BigInt(cfg.records);
    const lastLsn = h.capturer.lastLsn;
    if (lastLsn !== target) notes.push(`capture reached LSN ${lastLsn}, expected ${target}`);
    reference(db, ref);
    await h.stop(); // seals the open segment, so the repository can take a copy of the redo too
    h = null;
    const redoRun = async (label: string, withArchive: boolean) => {
      const to = join(work, `restored-redo.db`);
      const a = performance.now();
      const res = await restoreFromRepo({ repo: repoDir, ...(withArchive ? { archive: arch } : {}), to, untilLsn: target });
      const ms = performance.now() - a;
      const redo = res.plan.steps.find((s) => s.kind === 'redo');
      const records = redo && redo.kind === 'redo' ? redo.records : 0;
      const d = differingPages(ref, to, pageSize);
      if (d.differing.length) throw new Error(`restore with redo (${label}) to LSN ${target} differs from the reference (capture at ${lastLsn}; sizes ${statSync(to).size} / ${statSync(ref).size}) in pages ${d.differing.slice(0, 10).join(', ')}`);
      log(`  restore to LSN ${target} (${label}): ${fmt(ms)} ms, ${records} redo records; equals the reference page for page`);
      rmSync(to);
      rows.push({ figure: `5. restore to LSN ${target}: level 0 + level 1 + ${fmt(records)} redo records (${label})`, redoship: `${fmt(ms)} ms`, peer: `${fmt(records / (ms / 1000))} records/s`, ratio: '', target: '' });
    };
    await section('restore with redo', async () => {
      await redoRun('redo from --archive', true);
      await copyArchive(await Repo.open(repoDir), Archive.open(arch), { deleteInput: false });
      await redoRun("redo from the repository's copy", false);
    });
  } finally {
    for (const c of running) c.kill('SIGKILL');
    if (h) await h.stop().catch(() => undefined);
    if (!cfg.keep) rmSync(work, { recursive: true, force: true });
  }

  let model = 'unknown';
  try {
    model = /^model name\s*:\s*(.*)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1]?.trim() ?? model;
  } catch {
    /* not Linux */
  }
  const fsType = spawnSync('findmnt', ['-n', '-o', 'FSTYPE,SOURCE', '-T', tmpdir()], { encoding: 'utf8' }).stdout?.trim().replace(/\s+/, ' on ') || 'unknown fs';
  const head: Row = { figure: 'figure', redoship: 'redoship', peer: 'peer', ratio: 'ratio', target: 'target' };
  const keys = ['figure', 'redoship', 'peer', 'ratio', 'target'] as const;
  const w = keys.map((k) => Math.max(...[head, ...rows].map((x) => x[k].length)));
  const line = (x: Row) => keys.map((k, i) => x[k].padEnd(w[i]!)).join('  ').trimEnd();
  const out = [
    '',
    `redoship backup benchmark, ${started.toISOString()}, ${fmt((performance.now() - t0) / 1000)} s; warm page cache (nothing dropped)`,
    `machine: ${model}, ${cpus().length} cores, Linux ${release()}; node ${process.version}; ${zstdVersion ?? 'no zstd CLI'}; working directory on ${fsType}`,
    `settings: mib=${cfg.mib} records=${cfg.records} runs=${cfg.runs} (each figure: the best run of each side; medians beside the verdicts)`,
    `load average at start ${loadAtStart}; during each section: CPU used by other processes, and pressure stall (PSI "some"):`,
    ...sectionLoad.map((l) => `  ${l}`),
    '',
    line(head),
    keys.map((_, i) => '-'.repeat(w[i]!)).join('  '),
    ...rows.map(line),
    '',
    ...notes.map((n) => `note: ${n}`),
  ];
  process.stdout.write(out.join('\n') + '\n');
}

main().catch((e: unknown) => {
  for (const c of running) c.kill('SIGKILL');
  process.stderr.write(`bench failed: ${(e as Error)?.stack ?? String(e)}\n`);
  process.exit(1);
});
