/**
 * Retention through the real CLI: level 0 and level 1 sets taken by `backup` from a running primary, then
 * `report obsolete` and `delete obsolete` with a redundancy (and a recovery window at its two extremes):
 * the sets listed and why, what is gone from the repository afterwards, and that restore --repo still
 * reaches the end (equal to the primary) and every kept point, and no longer reaches what was deleted.
 * And the order of deletion on a real repository directory: dependants first, each set's manifest first.
 */
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { Repo, type BackupManifest } from '../../src/backup/index.js';
import { findObsolete } from '../../src/backup/retention.js';
import { deleteObsolete } from '../../src/cli/retention-cmd.js';
import { compareWithPrimary, differingPages, integrityCheck, makeDb, run, startPrimary, startWorkload, stopGracefully, tempDir, treeFingerprint } from '../helpers/index.js';

interface SetJson {
  name: string;
  level: number;
  endLsn: string;
  parent: string | null;
}

interface ObsoleteJson {
  obsolete: Array<{ name: string; level: number; reason: string }>;
  kept: string[];
  oldestKept: string | null;
  redoFloorLsn: string | null;
  shortfall: string | null;
  redo: { segments: number; neededAfterLsn: string | null; obsolete: Array<{ name: string; firstLsn: string; lastLsn: string; reason: string }> };
  deleted?: string[];
}

/** The repository's copy of archived redo: segment names and their last LSNs (from the names). */
function repoSegments(repo: string): Array<{ name: string; lastLsn: bigint }> {
  const dir = join(repo, 'archive', 'segments');
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((n) => n.endsWith('.seg'))
    .sort()
    .map((name) => ({ name, lastLsn: BigInt('0x' + name.slice(26, 42)) }));
}

async function backup(db: string, arch: string, repo: string, extra: string[] = []): Promise<SetJson> {
  const r = await run(['backup', '--db', db, '--archive', arch, '--repo', repo, '--json', ...extra]);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as SetJson;
}

async function retention(verb: 'report' | 'delete', repo: string, policy: string[]): Promise<ObsoleteJson> {
  const r = await run([verb, 'obsolete', '--repo', repo, ...policy, '--json']);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as ObsoleteJson;
}

async function listNames(repo: string): Promise<string[]> {
  const r = await run(['list', '--repo', repo, '--json']);
  expect(r.code, r.stderr).toBe(0);
  return (JSON.parse(r.stdout).sets as SetJson[]).map((s) => s.name);
}

/** restore --repo to an LSN equals the archive's own restore at that LSN. */
async function repoRestoreMatches(dir: string, arch: string, repo: string, lsn: string) {
  const a = join(dir, `arch-${lsn}-${Date.now()}.db`);
  const b = join(dir, `repo-${lsn}-${Date.now()}.db`);
  expect((await run(['restore', '--archive', arch, '--to', a, '--until-lsn', lsn])).code).toBe(0);
  const r = await run(['restore', '--repo', repo, '--to', b, '--until-lsn', lsn]);
  expect(r.code, r.stderr).toBe(0);
  expect(differingPages(readFileSync(a), readFileSync(b), 4096), `LSN ${lsn}`).toEqual([]);
  expect(integrityCheck(b)).toBe('ok');
}

async function restoreToEndMatches(dir: string, db: string, arch: string, repo: string, label: string) {
  const out = join(dir, `end-${label}.db`);
  const r = await run(['restore', '--repo', repo, '--archive', arch, '--to', out, '--json']);
  expect(r.code, r.stderr).toBe(0);
  const cmp = compareWithPrimary(db, out);
  expect(cmp.differing, label).toEqual([]);
  expect(cmp.rowsEqual, label).toBe(true);
  expect(cmp.integrity, label).toBe('ok');
  return JSON.parse(r.stdout).plan as { steps: Array<{ kind: string; name?: string }> };
}

describe('retention: report obsolete / delete obsolete', () => {
  test('redundancy: the listed sets and redo, deletion, and restore --repo still reaching the end and every kept point', async () => {
    const dir = tempDir();
    const db = join(dir, 'app.db');
    const arch = join(dir, 'arch');
    const repo = join(dir, 'backups');
    makeDb(db);
    // Small, young segments, copied into the repository as they seal: retention judges that redo too.
    const primary = await startPrimary(db, arch, ['--segment-size', '64KB', '--segment-age', '300ms', '--archive-to', repo]);
    let seed = 1;
    const write = () => startWorkload(db, { seed: seed++, count: 40 }).result();
    await write();
    const a0 = await backup(db, arch, repo, ['--level', '0']);
    await write();
    const a1 = await backup(db, arch, repo, ['--level', '1']);
    await write();
    const b0 = await backup(db, arch, repo, ['--level', '0']);
    await write();
    const b1 = await backup(db, arch, repo, ['--level', '1', '--cumulative']);
    await write();
    const b2 = await backup(db, arch, repo, ['--level', '1']);
    await write();
    const c0 = await backup(db, arch, repo, ['--level', '0']);
    await write();
    const c1 = await backup(db, arch, repo, ['--level', '1']);
    await write(); // redo after the last set
    expect(await stopGracefully(primary)).toBe(0);
    expect([a1.parent, b1.parent, b2.parent, c1.parent]).toEqual([a0.name, b0.name, b1.name, c0.name]);
    const all = [a0, a1, b0, b1, b2, c0, c1].map((s) => s.name);
    expect(await listNames(repo)).toEqual(all);

    // report changes nothing, and lists the oldest chain with its reasons.
    const before = treeFingerprint(repo);
    let r = await retention('report', repo, ['--redundancy', '2']);
    expect(r.obsolete.map((o) => o.name)).toEqual([a0.name, a1.name]);
    expect(r.obsolete[0]!.reason).toMatch(/level 0 beyond redundancy 2/);
    expect(r.obsolete[1]!.reason).toMatch(new RegExp(`level 1 of ${a0.name}, which is obsolete`));
    expect(r.kept).toEqual([b0, b1, b2, c0, c1].map((s) => s.name));
    expect(r.oldestKept).toBe(b0.name);
    expect(r.redoFloorLsn).toBe(b0.endLsn);
    expect(r.shortfall).toBeNull();
    // Redo: obsolete exactly when all of it is at or before b0's end; what b0 and later need stays.
    const segsBefore = repoSegments(repo);
    expect(segsBefore.length).toBeGreaterThan(5);
    const obsoleteRedo2 = segsBefore.filter((g) => g.lastLsn <= BigInt(b0.endLsn)).map((g) => g.name);
    expect(obsoleteRedo2.length).toBeGreaterThan(0);
    expect(obsoleteRedo2.length).toBeLessThan(segsBefore.length);
    expect(r.redo.obsolete.map((g) => g.name)).toEqual(obsoleteRedo2);
    expect(r.redo.segments).toBe(segsBefore.length);
    r = await retention('report', repo, ['--redundancy', '1']);
    expect(r.obsolete.map((o) => o.name)).toEqual([a0, a1, b0, b1, b2].map((s) => s.name));
    r = await retention('report', repo, ['--redundancy', '3']);
    expect(r.obsolete).toEqual([]);
    // A window of 0: the newest level 0 restores "now"; a window of an hour reaches back before every level 0.
    r = await retention('report', repo, ['--recovery-window', '0s']);
    expect(r.obsolete.map((o) => o.name)).toEqual([a0, a1, b0, b1, b2].map((s) => s.name));
    r = await retention('report', repo, ['--recovery-window', '1h']);
    expect(r.obsolete).toEqual([]);
    expect(r.shortfall).toMatch(/before the oldest usable level 0/);
    const human = await run(['report', 'obsolete', '--repo', repo, '--redundancy', '2']);
    expect(human.code, human.stderr).toBe(0);
    expect(human.stdout).toMatch(/retention policy: redundancy 2\nobsolete backup sets \(2, .*\):\n/);
    expect(human.stdout).toMatch(new RegExp(`kept: 5 backup set\\(s\\); the oldest level 0 the policy keeps is ${b0.name} \\(LSN ${b0.endLsn}`));
    expect(human.stdout).toMatch(new RegExp(`obsolete archived redo: ${obsoleteRedo2.length} of ${segsBefore.length} segment\\(s\\), .*: the kept backups need redo from LSN ${BigInt(b0.endLsn) + 1n} on`));

    // Bad usage deletes nothing.
    for (const args of [
      ['delete', 'obsolete', '--repo', repo],
      ['delete', 'obsolete', '--repo', repo, '--redundancy', '1', '--recovery-window', '7d'],
      ['delete', 'obsolete', '--repo', repo, '--redundancy', '0'],
      ['delete', 'obsolete', '--repo', repo, '--redundancy', 'two'],
      ['delete', 'obsolete', '--repo', repo, '--recovery-window', '7x'],
      ['delete', 'expired', '--repo', repo, '--redundancy', '1'],
    ]) {
      const u = await run(args);
      expect(u.code, args.join(' ')).toBe(2);
      expect(u.stderr, args.join(' ')).toMatch(/redoship: error: .*\n {2}hint: /);
    }
    expect(treeFingerprint(repo)).toBe(before);

    // delete --redundancy 2: the level 1 before its level 0, both gone whole.
    r = await retention('delete', repo, ['--redundancy', '2']);
    expect(r.deleted).toEqual([a1.name, a0.name, ...obsoleteRedo2]);
    expect(repoSegments(repo).map((g) => g.name)).toEqual(segsBefore.filter((g) => !obsoleteRedo2.includes(g.name)).map((g) => g.name));
    for (const s of [a0, a1]) expect(existsSync(join(repo, 'sets', s.name)), s.name).toBe(false);
    expect(readdirSync(join(repo, 'sets')).sort()).toEqual([b0, b1, b2, c0, c1].map((s) => s.name));
    expect(await listNames(repo)).toEqual([b0, b1, b2, c0, c1].map((s) => s.name));
    if (existsSync(join(repo, 'catalog.json'))) {
      const cat = readFileSync(join(repo, 'catalog.json'), 'utf8');
      expect(cat).not.toContain(a0.name);
      expect(cat).not.toContain(a1.name);
    }
    // Restore still reaches the end (sets + redo), equal to the primary; and every kept set's point, from the repository alone.
    let plan = await restoreToEndMatches(dir, db, arch, repo, 'after-redundancy-2');
    expect(plan.steps.map((s) => s.name ?? s.kind)).toEqual([c0.name, c1.name, 'redo']);
    for (const s of [b0, b1, b2, c0, c1]) await repoRestoreMatches(dir, arch, repo, s.endLsn);
    // The oldest kept level 0 restores points after it with redo: between b0 and b1.
    const between = String((BigInt(b0.endLsn) + BigInt(b1.endLsn)) / 2n);
    const mid = join(dir, 'between.db');
    // (from the repository's own redo alone: what b0 needs was kept)
    const m = await run(['restore', '--repo', repo, '--to', mid, '--until-lsn', between, '--json']);
    expect(m.code, m.stderr).toBe(0);
    expect(JSON.parse(m.stdout).plan.steps.map((s: { source?: string; name?: string }) => s.name ?? s.source)).toEqual([b0.name, 'repository']);
    const midArch = join(dir, 'between-archive.db');
    expect((await run(['restore', '--archive', arch, '--to', midArch, '--until-lsn', between])).code).toBe(0);
    expect(differingPages(readFileSync(midArch), readFileSync(mid), 4096)).toEqual([]);
    // What was deleted cannot be restored from the repository any more.
    const gone = await run(['restore', '--repo', repo, '--to', join(dir, 'gone.db'), '--until-lsn', a1.endLsn]);
    expect(gone.code).toBe(31);
    expect(gone.stderr).toMatch(/no level 0 backup at or before LSN/);

    // Again: nothing more is obsolete.
    r = await retention('delete', repo, ['--redundancy', '2']);
    expect([r.obsolete, r.redo.obsolete, r.deleted]).toEqual([[], [], []]);

    // delete --redundancy 1: b's chain, dependants first (b2's parent is b1, b1's is b0).
    // Listed before the deletion removes them: all of the repository's redo at or before c0, the oldest kept level 0.
    const obsoleteRedo1 = repoSegments(repo).filter((g) => g.lastLsn <= BigInt(c0.endLsn)).map((g) => g.name);
    const human2 = await run(['delete', 'obsolete', '--repo', repo, '--redundancy', '1']);
    expect(human2.code, human2.stderr).toBe(0);
    expect(human2.stderr).toBe([b2.name, b1.name, b0.name, ...obsoleteRedo1].map((n) => `deleted ${n}\n`).join(''));
    expect(human2.stdout).toMatch(new RegExp(`deleted 3 backup set\\(s\\) and ${obsoleteRedo1.length} redo segment\\(s\\), `));
    expect(await listNames(repo)).toEqual([c0.name, c1.name]);
    plan = await restoreToEndMatches(dir, db, arch, repo, 'after-redundancy-1');
    expect(plan.steps.map((s) => s.name ?? s.kind)).toEqual([c0.name, c1.name, 'redo']);
    await repoRestoreMatches(dir, arch, repo, c0.endLsn);
    await repoRestoreMatches(dir, arch, repo, c1.endLsn);
    // From the repository alone (its kept redo), to the end: the primary.
    const alone = join(dir, 'alone.db');
    const ra = await run(['restore', '--repo', repo, '--to', alone, '--json']);
    expect(ra.code, ra.stderr).toBe(0);
    expect(JSON.parse(ra.stdout).plan.steps.map((s: { source?: string; name?: string }) => s.name ?? s.source)).toEqual([c0.name, c1.name, 'repository']);
    const cmp = compareWithPrimary(db, alone);
    expect([cmp.differing, cmp.rowsEqual, cmp.integrity]).toEqual([[], true, 'ok']);
  });

  test('report and delete have --help with an example', async () => {
    for (const verb of ['report', 'delete']) {
      const r = await run([verb, '--help']);
      expect(r.code, verb).toBe(0);
      expect(r.stdout, verb).toMatch(new RegExp(`Example:\\n {2}npx redoship ${verb} obsolete --repo ./backups --recovery-window 7d`));
      expect(r.stdout, verb).toMatch(/--redundancy <n>/);
    }
    const missing = await run(['report', 'obsolete', '--repo', join(tempDir(), 'none'), '--redundancy', '1']);
    expect(missing.code).toBe(21);
  });

  test('delete removes each set manifest first, level 1s before their parents, and leaves no directory', async () => {
    const dir = join(tempDir(), 'backups');
    const repo = await Repo.openFor(dir, 'ab'.repeat(16), 4096);
    const put = async (name: string, level: 0 | 1, parent: string | null, base: string, endLsn: number, cumulative = false) => {
      const m = {
        format: 1, databaseId: repo.identity.databaseId, pageSize: 4096, name, level, cumulative, parent, base,
        startLsn: '1', endLsn: String(endLsn), endCommitTime: new Date(Date.UTC(2026, 0, endLsn)).toISOString(), createdAt: new Date().toISOString(),
        sizePages: 1, pages: 1, compression: { algorithm: 'none', level: 0 }, encryption: null,
        pieces: [{ name: 'piece-00000', bytes: 3, sha256: '', pages: 1, firstPgno: 1, lastPgno: 1 }], pageHashes: { name: 'page-hashes', sha256: '' },
      } as BackupManifest;
      await repo.storage.put(`sets/${name}/piece-00000`, Buffer.from('abc'));
      await repo.storage.put(`sets/${name}/page-hashes`, Buffer.alloc(16));
      await repo.storage.put(`sets/${name}/manifest.json`, Buffer.from(JSON.stringify(m)));
    };
    await put('s01-L0', 0, null, 's01-L0', 1);
    await put('s02-L1c', 1, 's01-L0', 's01-L0', 2, true);
    await put('s03-L1', 1, 's02-L1c', 's01-L0', 3);
    await put('s04-L0', 0, null, 's04-L0', 4);
    const removed: string[] = [];
    const remove = repo.storage.remove.bind(repo.storage);
    repo.storage.remove = async (keys: readonly string[]) => {
      removed.push(...keys);
      await remove(keys);
    };
    const report = findObsolete({ sets: await repo.sets(), now: new Date(), policy: { redundancy: 1 } });
    expect(await deleteObsolete(repo, report)).toEqual(['s03-L1', 's02-L1c', 's01-L0']);
    const keys = (set: string) => ['manifest.json', 'page-hashes', 'piece-00000'].map((k) => `sets/${set}/${k}`);
    expect(removed).toEqual([...keys('s03-L1'), ...keys('s02-L1c'), ...keys('s01-L0')]);
    expect(readdirSync(join(dir, 'sets'))).toEqual(['s04-L0']);
    expect((await repo.sets()).map((s) => s.name)).toEqual(['s04-L0']);
  });
});
