/**
 * Point-in-time restore: this test process is the application (one writer, better-sqlite3); `redoship primary`
 * runs as its own process. Every 100th commit the test takes the database's logical image (serialize()); then
 * it restores the archive to each of those LSNs and compares page for page, and restores to a time.
 */
import Database from 'better-sqlite3';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { archiveList, differingPages, integrityCheck, makeDb, run, sleep, startPrimary, stopGracefully, tempDir } from '../helpers/index.js';

async function waitForLsn(arch: string, lsn: bigint): Promise<void> {
  for (let i = 0; i < 500; i++) {
    const r = await run(['status', '--archive', arch, '--json']);
    if (r.code === 0 && BigInt(JSON.parse(r.stdout).lastLsn ?? 0) >= lsn) return;
    await sleep(20);
  }
  throw new Error(`LSN ${lsn} never archived`);
}

describe('point-in-time restore', () => {
  test('restore to every 100th LSN equals the database as it was then; --until-time stops at a time', async () => {
    const dir = tempDir();
    const db = join(dir, 'app.db');
    const arch = join(dir, 'arch');
    makeDb(db);
    const primary = await startPrimary(db, arch);
    const app = new Database(db);
    app.pragma('journal_mode = WAL');
    const ins = app.prepare('INSERT INTO t (k, v) VALUES (?, ?)');
    const del = app.prepare('DELETE FROM t WHERE id % 7 = ?');
    const snapshots = new Map<bigint, Buffer>();
    let timeTarget: { at: string; lsn: bigint } | null = null;
    const commits = 1000;
    for (let i = 1; i <= commits; i++) {
      if (i % 250 === 0) app.exec('VACUUM');
      else if (i % 97 === 0)
        app.transaction(() => {
          for (let j = 0; j < 150; j++) ins.run(j, Buffer.alloc(2000, i & 0xff));
        })();
      else if (i % 13 === 0) del.run(i % 7);
      else ins.run(i, Buffer.alloc(100 + (i % 300), i & 0xff));
      const lsn = BigInt(i) + 1n; // LSN 1 is the base
      if (i % 100 === 0) snapshots.set(lsn, app.serialize());
      if (i === 500) {
        // The archive stamps commits with the time it captured them: wait for it, then mark a time.
        await waitForLsn(arch, lsn);
        await sleep(30);
        timeTarget = { at: new Date().toISOString(), lsn };
        await sleep(30);
      }
    }
    app.close();
    expect(await stopGracefully(primary)).toBe(0);
    const list = await archiveList(arch);
    expect(BigInt(list.lastLsn!)).toBe(BigInt(commits) + 1n);

    for (const [lsn, image] of snapshots) {
      const out = join(dir, `at-${lsn}.db`);
      const r = await run(['restore', '--archive', arch, '--to', out, '--until-lsn', String(lsn), '--json']);
      expect(r.code, r.stderr).toBe(0);
      expect(JSON.parse(r.stdout).lsn).toBe(String(lsn));
      const restored = readFileSync(out);
      expect(restored.length, `size at LSN ${lsn}`).toBe(image.length);
      expect(differingPages(image, restored, 4096), `pages at LSN ${lsn}`).toEqual([]);
      expect(integrityCheck(out)).toBe('ok');
    }

    const out = join(dir, 'at-time.db');
    const r = await run(['restore', '--archive', arch, '--to', out, '--until-time', timeTarget!.at, '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).lsn).toBe(String(timeTarget!.lsn));
    expect(differingPages(snapshots.get(timeTarget!.lsn)!, readFileSync(out), 4096)).toEqual([]);
  });
});
