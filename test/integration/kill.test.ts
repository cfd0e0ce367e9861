/**
 * Crash paths, with real kill -9 of real processes: the shipper killed and restarted during a run, a writer
 * killed in the middle of a transaction, a commit frame that a dying writer wrote but never published, and
 * the application closing every connection (which checkpoints and deletes the WAL) while the shipper is down.
 * Each ends with the restore compared with the primary page for page, by row hash and integrity_check.
 */
import Database from 'better-sqlite3';
import { spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { parseWalHeader, parseWalIndexHeader, walChecksum, walFrameOffset } from '../../src/sqlite/index.js';
import {
  ROOT,
  archiveList,
  compareWithPrimary,
  makeDb,
  run,
  sleep,
  startPrimary,
  startWorkload,
  stopGracefully,
  tempDir,
  type Proc,
} from '../helpers/index.js';

async function restoreAndCompare(db: string, arch: string, out: string) {
  const verify = await run(['archive', 'verify', '--archive', arch]);
  expect(verify.code, verify.stdout + verify.stderr).toBe(0);
  const r = await run(['restore', '--archive', arch, '--to', out]);
  expect(r.code, r.stderr).toBe(0);
  const cmp = compareWithPrimary(db, out);
  expect(cmp.differing).toEqual([]);
  expect(cmp.rowsEqual).toBe(true);
  expect(cmp.integrity).toBe('ok');
}

async function kill9(p: Proc): Promise<void> {
  p.child.kill('SIGKILL');
  await p.exited;
}

describe('crash paths', () => {
  test('shipper kill -9 and restart, several times, under stress writers', async () => {
    const dir = tempDir();
    const db = join(dir, 'app.db');
    const arch = join(dir, 'arch');
    makeDb(db);
    let primary = await startPrimary(db, arch, ['--segment-size', '2MB']);
    const writers = [1, 2].map((seed) => startWorkload(db, { seed, mix: 'stress', 'duration-ms': 7000 }));
    const starts: string[] = [];
    for (let i = 0; i < 3; i++) {
      await sleep(1200);
      await kill9(primary);
      await sleep(150 + 150 * i);
      primary = await startPrimary(db, arch, ['--segment-size', '2MB']);
      starts.push(/start: (\w+)/.exec(primary.stderr)?.[1] ?? '?');
    }
    const results = await Promise.all(writers.map((w) => w.result()));
    expect(await stopGracefully(primary)).toBe(0);
    const list = await archiveList(arch);
    expect(list.problems).toEqual([]);
    const breaks = list.segments.flatMap((s) => s.breaks);
    // A break is recorded exactly when a restart could not prove continuity; with none, every commit is there.
    expect(breaks.length).toBe(starts.filter((s) => s === 'resync').length);
    if (breaks.length === 0) expect(BigInt(list.lastLsn!) - 1n).toBe(BigInt(results.reduce((n, r) => n + r.commits, 0)));
    await restoreAndCompare(db, arch, join(dir, 'restored.db'));
  });

  test('a short kill -9 of the shipper under a steady writer loses nothing and records no break', async () => {
    const dir = tempDir();
    const db = join(dir, 'app.db');
    const arch = join(dir, 'arch');
    makeDb(db);
    // No checkpoint cycle runs (--checkpoint-frames above what the run writes) and the WAL stays below the
    // application's autocheckpoint (1000 frames): nothing can restart the WAL, so after every kill the WAL
    // still holds the last archived commit and continuity must be proven, not resynced. (A kill just after a
    // checkpoint cycle, before the next commit, legitimately ends in a resync: the stress test covers that.)
    const flags = ['--checkpoint-frames', '5000'];
    let primary = await startPrimary(db, arch, flags);
    // The writer runs until it is told to stop, after the kills: one that finished while the shipper was dead
    // would close the last connection, and SQLite would checkpoint and delete the WAL (a legitimate break).
    const writer = startWorkload(db, { seed: 7, mix: 'small', rate: 20, 'duration-ms': 60_000 }); // ~5 frames a commit, < 1000 in all
    for (let i = 0; i < 2; i++) {
      await sleep(1000);
      await kill9(primary);
      await sleep(300);
      primary = await startPrimary(db, arch, flags);
      expect(primary.stderr, primary.stderr).toMatch(/start: continued/);
    }
    await sleep(500);
    writer.child.kill('SIGTERM');
    const { commits } = await writer.result();
    expect(await stopGracefully(primary)).toBe(0);
    const list = await archiveList(arch);
    expect(list.segments.flatMap((s) => s.breaks)).toEqual([]);
    expect(BigInt(list.lastLsn!) - 1n).toBe(BigInt(commits));
    await restoreAndCompare(db, arch, join(dir, 'restored.db'));
  });

  test('a writer killed -9 in the middle of a transaction leaves nothing in the archive', async () => {
    const dir = tempDir();
    const db = join(dir, 'app.db');
    const arch = join(dir, 'arch');
    makeDb(db);
    const primary = await startPrimary(db, arch);
    const writer = startWorkload(db, { seed: 3, mix: 'small', rate: 200, 'duration-ms': 3000 });
    // A writer whose transaction outgrows its page cache spills frames into the WAL before committing.
    const victim = spawn(
      process.execPath,
      [
        '-e',
        `const D = require('better-sqlite3'); const db = new D(${JSON.stringify(db)}, { timeout: 10000 });
         db.pragma('cache_size = 8'); db.exec('BEGIN IMMEDIATE');
         const ins = db.prepare('INSERT INTO t (k, v) VALUES (?, ?)');
         for (let i = 0; i < 400; i++) ins.run(-1, Buffer.alloc(3000, 0xee));
         process.stdout.write('mid\\n'); setInterval(() => {}, 1000);`,
      ],
      { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] },
    );
    await new Promise<void>((res) => victim.stdout!.on('data', (d) => String(d).includes('mid') && res()));
    const walBefore = readFileSync(`${db}-wal`).length;
    const idx = parseWalIndexHeader(readFileSync(`${db}-shm`))!;
    expect(walBefore).toBeGreaterThan(walFrameOffset(idx.mxFrame + 50, 4096)); // frames past mxFrame exist
    victim.kill('SIGKILL');
    await new Promise((r) => victim.once('exit', r));
    const { commits } = await writer.result();
    expect(await stopGracefully(primary)).toBe(0);
    const list = await archiveList(arch);
    expect(list.segments.flatMap((s) => s.breaks)).toEqual([]);
    expect(BigInt(list.lastLsn!) - 1n).toBe(BigInt(commits));
    await restoreAndCompare(db, arch, join(dir, 'restored.db'));
    const check = new Database(db, { readonly: true });
    expect(check.prepare('SELECT count(*) FROM t WHERE k = -1').pluck().get()).toBe(0);
    check.close();
  });

  test('a commit frame written but never published in the wal-index is not archived', async () => {
    // This stands in for a writer that died between writing its commit frame and publishing it: the frame is
    // written here by hand, exactly as SQLite would have (salts, cumulative checksum), because no signal can
    // be timed to land inside that window of a real writer.
    const dir = tempDir();
    const db = join(dir, 'app.db');
    const arch = join(dir, 'arch');
    makeDb(db);
    const app = new Database(db);
    app.pragma('journal_mode = WAL');
    app.pragma('wal_autocheckpoint = 0');
    const primary = await startPrimary(db, arch);
    const ins = app.prepare('INSERT INTO t (k, v) VALUES (?, ?)');
    for (let i = 0; i < 20; i++) ins.run(i, Buffer.alloc(100, i));
    await sleep(300);
    const idx = parseWalIndexHeader(readFileSync(`${db}-shm`))!;
    const hdr = parseWalHeader(readFileSync(`${db}-wal`))!;
    const frame = Buffer.alloc(24 + 4096);
    const page2 = app.serialize().subarray(4096, 8192);
    page2.copy(frame, 24);
    frame.fill(0x5a, 24 + 2000, 24 + 2100); // a page image the database never had
    frame.writeUInt32BE(2, 0);
    frame.writeUInt32BE(idx.sizePages, 4); // commit frame
    frame.writeUInt32BE(hdr.salt1, 8);
    frame.writeUInt32BE(hdr.salt2, 12);
    let c = walChecksum(hdr.bigEndianChecksum, frame, 0, 8, idx.frameChecksum);
    c = walChecksum(hdr.bigEndianChecksum, frame, 24, 4096, c);
    frame.writeUInt32BE(c.s0, 16);
    frame.writeUInt32BE(c.s1, 20);
    const fd = openSync(`${db}-wal`, 'r+');
    writeSync(fd, frame, 0, frame.length, walFrameOffset(idx.mxFrame + 1, 4096));
    closeSync(fd);
    await sleep(300); // many wake-ups of the shipper
    let list = await archiveList(arch);
    expect(list.lastLsn).toBe('21');
    ins.run(99, Buffer.alloc(100, 99)); // the next real commit overwrites the phantom frame
    await sleep(300);
    app.close();
    expect(await stopGracefully(primary)).toBe(0);
    list = await archiveList(arch);
    expect(list.lastLsn).toBe('22');
    await restoreAndCompare(db, arch, join(dir, 'restored.db'));
  });

  test('the application closes all connections while the shipper is down: a break is recorded, nothing lost', async () => {
    const dir = tempDir();
    const db = join(dir, 'app.db');
    const arch = join(dir, 'arch');
    makeDb(db);
    let primary = await startPrimary(db, arch);
    const w1 = startWorkload(db, { seed: 11, mix: 'small', count: 300 });
    await w1.result();
    await sleep(200);
    primary.child.kill('SIGKILL');
    await primary.exited;
    // While the shipper is down: more commits, then the last connection closes, which checkpoints and
    // deletes the WAL. What the archive missed can no longer be proven from the WAL.
    const w2 = startWorkload(db, { seed: 12, mix: 'small', count: 200 });
    await w2.result();
    expect(() => readFileSync(`${db}-wal`)).toThrow();
    primary = await startPrimary(db, arch);
    expect(primary.stderr).toMatch(/start: resync/);
    const w3 = startWorkload(db, { seed: 13, mix: 'small', count: 100 });
    await w3.result();
    expect(await stopGracefully(primary)).toBe(0);
    const list = await archiveList(arch);
    const breaks = list.segments.flatMap((s) => s.breaks);
    expect(breaks.length).toBe(1);
    expect(breaks[0]!.lsn).toBe('302');
    expect(BigInt(list.lastLsn!)).toBe(302n + 100n);
    await restoreAndCompare(db, arch, join(dir, 'restored.db'));
  });
});
