/**
 * Synchronous mode for applications that embed redoship: after its commit, the application awaits
 * waitForStandbys(n), which resolves only once n standbys hold that commit durably. The primary runs in
 * this process through the library API (as an embedding application would); the standby is a real process.
 */
import Database from 'better-sqlite3';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { startPrimary } from '../../src/index.js';
import { Archive, lsn } from '../../src/redo/index.js';
import { freePort, makeDb, startStandbyProc, stopGracefully, tempDir, tokenFile } from '../helpers/index.js';

describe('synchronous commit', () => {
  test('waitForStandbys resolves only when the standby archive holds the commit; rejects on timeout', async () => {
    const dir = tempDir();
    const db = join(dir, 'app.db');
    makeDb(db);
    const token = tokenFile(dir);
    const port = await freePort();
    const primary = await startPrimary({ db, archive: join(dir, 'arch'), listen: { host: '127.0.0.1', port }, secret: Buffer.from(readFileSync(token, 'utf8').trim()) });
    const app = new Database(db);
    app.pragma('journal_mode = WAL');
    const ins = app.prepare('INSERT INTO t (k, v) VALUES (?, ?)');
    try {
      // No standby yet: the promise cannot resolve.
      ins.run(1, Buffer.alloc(10));
      await expect(primary.waitForStandbys(1, 300)).rejects.toThrow(/not durable on 1 standby/);

      const standbyArchive = join(dir, 'dr-arch');
      const sp = await startStandbyProc({ archive: standbyArchive, from: `ws://127.0.0.1:${port}`, token });
      for (let i = 0; i < 50; i++) {
        ins.run(i, Buffer.alloc(100, i));
        const l = await primary.waitForStandbys(1, 5000);
        // Resolved: the standby's archive on disk holds this commit now (its own files, not its word).
        expect(Archive.open(standbyArchive).tail()!.lsn >= l).toBe(true);
        expect(Archive.open(standbyArchive).commitTimeOf(lsn(l))).not.toBeNull();
      }
      expect(await stopGracefully(sp)).toBe(0);
    } finally {
      app.close();
      await primary.stop();
    }
  });
});
