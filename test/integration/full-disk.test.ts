/**
 * A full disk, for real: a small tmpfs mounted for the test (needs root, as CI and this machine have; the
 * test says so and skips where mount is not allowed). The primary whose archive fills keeps its read
 * transaction (so nothing in the WAL is lost), says what is wrong, and catches up once there is room; a
 * restore onto a full disk fails with one clear error and leaves no partial file; a backup onto a full disk
 * fails with one clear error and leaves the repository as it was; a restore from a repository onto a full
 * disk leaves nothing at the target, not even the redo it staged there.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { archiveList, compareWithPrimary, makeDb, run, sleep, startPrimary, startWorkload, stopGracefully, tempDir, treeFingerprint, waitForStatus } from '../helpers/index.js';

const mounts: string[] = [];
function mountTmpfs(dir: string, size: string): boolean {
  mkdirSync(dir, { recursive: true });
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir], { stdio: 'ignore' });
    mounts.push(dir);
    return true;
  } catch {
    return false;
  }
}
afterAll(() => {
  for (const m of mounts) {
    try {
      execFileSync('umount', ['-l', m], { stdio: 'ignore' });
    } catch {
      /* already gone */
    }
  }
});

const canMount = (() => {
  const probe = join(tempDir(), 'probe');
  const ok = mountTmpfs(probe, '1m');
  if (ok) execFileSync('umount', [probe]);
  mounts.splice(mounts.indexOf(probe), 1);
  return ok;
})();

describe.skipIf(!canMount)('full disk (tmpfs; skipped where mount is not permitted)', () => {
  test('the primary waits out a full archive disk without losing a transaction', async () => {
    const dir = tempDir();
    const db = join(dir, 'app.db');
    makeDb(db);
    const small = join(dir, 'small');
    expect(mountTmpfs(small, '1m')).toBe(true);
    const arch = join(small, 'arch');
    const primary = await startPrimary(db, arch, ['--checkpoint-frames', '100000']);
    const writer = startWorkload(db, { seed: 1, count: 400 }); // ~7 MB of page images: far more than 1 MB
    const { commits } = await writer.result();
    await primary.waitFor(/disk is full/, 10_000);
    expect(primary.child.exitCode).toBe(null); // still running, holding the WAL
    execFileSync('mount', ['-o', 'remount,size=256m', small]);
    await waitForStatus(arch, (s) => s.lastLsn === String(commits + 1), 20_000);
    expect(await stopGracefully(primary)).toBe(0);
    const list = await archiveList(arch);
    expect(list.problems).toEqual([]);
    expect(list.segments.flatMap((s) => s.breaks)).toEqual([]);
    const out = join(dir, 'restored.db');
    const r = await run(['restore', '--archive', arch, '--to', out]);
    expect(r.code, r.stderr).toBe(0);
    const cmp = compareWithPrimary(db, out);
    expect(cmp.differing).toEqual([]);
    expect(cmp.rowsEqual).toBe(true);
  });

  test('restore onto a full disk: one clear error, exit code IO, no partial file', async () => {
    const dir = tempDir();
    const db = join(dir, 'app.db');
    makeDb(db);
    const arch = join(dir, 'arch');
    const primary = await startPrimary(db, arch);
    await startWorkload(db, { seed: 2, count: 300 }).result();
    await sleep(200);
    expect(await stopGracefully(primary)).toBe(0);
    const small = join(dir, 'small');
    expect(mountTmpfs(small, '64k')).toBe(true);
    const r = await run(['restore', '--archive', arch, '--to', join(small, 'out.db')]);
    expect(r.code).toBe(40);
    expect(r.stderr).toMatch(/^redoship: error: could not .*\(ENOSPC\)\n {2}hint: the disk is full/);
    expect(existsSync(join(small, 'out.db'))).toBe(false);
    expect(readdirSync(small)).toEqual([]);
  });

  test('backup onto a full disk: one clear error, no partial set, no catalog change; the next backup works', async () => {
    const dir = tempDir();
    const db = join(dir, 'app.db');
    makeDb(db);
    const arch = join(dir, 'arch');
    const small = join(dir, 'small');
    expect(mountTmpfs(small, '1m')).toBe(true);
    const repo = join(small, 'backups');
    // A first set while the database is tiny: the repository and its catalog exist before the disk fills.
    const first = await run(['backup', '--db', db, '--archive', arch, '--repo', repo, '--json']);
    expect(first.code, first.stderr).toBe(0);
    const firstName = JSON.parse(first.stdout).name as string;
    await startWorkload(db, { seed: 3, mix: 'stress', count: 300 }).result(); // MBs of pages: more than the disk holds
    const before = treeFingerprint(repo);
    const catalog = readFileSync(join(repo, 'catalog.json'));
    for (const extra of [[], ['--max-piece-size', '256KB']]) {
      const r = await run(['backup', '--db', db, '--archive', arch, '--repo', repo, '--compress', 'none', ...extra]);
      expect(r.code, r.stderr).toBe(40); // IO
      expect(r.stderr).toMatch(/^redoship: error: could not write .*\(ENOSPC\)\n {2}hint: the disk is full: free space on that file system, then run the command again\n$/);
      // Nothing of the failed set: the repository is byte for byte as it was.
      expect(treeFingerprint(repo)).toBe(before);
      expect(readdirSync(join(repo, 'sets'))).toEqual([firstName]);
      expect(readFileSync(join(repo, 'catalog.json')).equals(catalog)).toBe(true);
    }
    // With room again, the same backup works and restores to the primary.
    execFileSync('mount', ['-o', 'remount,size=256m', small]);
    const ok = await run(['backup', '--db', db, '--archive', arch, '--repo', repo, '--compress', 'none', '--json']);
    expect(ok.code, ok.stderr).toBe(0);
    const out = join(dir, 'restored.db');
    expect((await run(['restore', '--repo', repo, '--to', out])).code).toBe(0);
    const cmp = compareWithPrimary(db, out);
    expect([cmp.differing, cmp.rowsEqual, cmp.integrity]).toEqual([[], true, 'ok']);
  });

  test('restore from a repository onto a full disk: one clear error, nothing at the target (nor staged redo)', async () => {
    const dir = tempDir();
    const db = join(dir, 'app.db');
    makeDb(db);
    const arch = join(dir, 'arch');
    const repo = join(dir, 'backups');
    const primary = await startPrimary(db, arch, ['--segment-size', '64KB', '--segment-age', '300ms', '--archive-to', repo]);
    await startWorkload(db, { seed: 4, count: 100 }).result();
    const b = await run(['backup', '--db', db, '--archive', arch, '--repo', repo]);
    expect(b.code, b.stderr).toBe(0);
    await startWorkload(db, { seed: 5, count: 300 }).result(); // redo after the set, copied to the repository
    await sleep(300);
    expect(await stopGracefully(primary)).toBe(0);
    for (const size of ['64k', '1m']) {
      const small = join(dir, `small-${size}`);
      expect(mountTmpfs(small, size)).toBe(true);
      const r = await run(['restore', '--repo', repo, '--to', join(small, 'out.db')]); // redo from the repository only
      expect(r.code, r.stderr).toBe(40);
      expect(r.stderr).toMatch(/^redoship: error: could not .*\(ENOSPC\)\n {2}hint: the disk is full/);
      expect(readdirSync(small)).toEqual([]);
    }
    // The same restore with room: equal to the primary.
    const out = join(dir, 'out.db');
    const r = await run(['restore', '--repo', repo, '--to', out]);
    expect(r.code, r.stderr).toBe(0);
    const cmp = compareWithPrimary(db, out);
    expect([cmp.differing, cmp.rowsEqual, cmp.integrity]).toEqual([[], true, 'ok']);
  });
});
