/**
 * Multi-process stress (issue: Foundation): 3 writer processes (random inserts/updates/deletes, transactions
 * of hundreds of pages, VACUUM, the application's own PASSIVE checkpoints, default autocheckpoint) beside a
 * running `redoship primary`. Afterwards the restore equals the primary page for page and by row hash, and
 * the archive holds exactly as many transactions as the writers committed.
 */
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { archiveList, compareWithPrimary, makeDb, run, startPrimary, startWorkload, stopGracefully, tempDir } from '../helpers/index.js';

describe('capture under three concurrent writers', () => {
  test('restore equals the primary and every commit is archived once', async () => {
    const dir = tempDir();
    const db = join(dir, 'app.db');
    const arch = join(dir, 'arch');
    makeDb(db);
    const primary = await startPrimary(db, arch, ['--segment-size', '4MB']);
    const writers = [1, 2, 3].map((seed) => startWorkload(db, { seed, mix: 'stress', 'duration-ms': 6000 }));
    const results = await Promise.all(writers.map((w) => w.result()));
    expect(await stopGracefully(primary)).toBe(0);
    const committed = results.reduce((n, r) => n + r.commits, 0);
    expect(results.reduce((n, r) => n + r.vacuums, 0)).toBeGreaterThan(0);
    expect(results.reduce((n, r) => n + r.checkpoints, 0)).toBeGreaterThan(0);

    const list = await archiveList(arch);
    expect(list.problems).toEqual([]);
    expect(list.segments.flatMap((s) => s.breaks)).toEqual([]);
    expect(list.segments.length).toBeGreaterThan(1); // sealed by size along the way
    // LSN 1 is the base; every later LSN is one committed transaction.
    expect(BigInt(list.lastLsn!) - 1n).toBe(BigInt(committed));

    const out = join(dir, 'restored.db');
    const r = await run(['restore', '--archive', arch, '--to', out]);
    expect(r.code, r.stderr).toBe(0);
    const cmp = compareWithPrimary(db, out);
    expect(cmp.differing).toEqual([]);
    expect(cmp.rowsEqual).toBe(true);
    expect(cmp.integrity).toBe('ok');
    expect(cmp.pages).toBeGreaterThan(100);
  });
});
