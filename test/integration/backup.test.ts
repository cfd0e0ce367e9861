/**
 * Backup sets with writers running: level 0, differential and cumulative level 1s through a running primary,
 * restores to the end and to every set's LSN (compared page for page with the archive's own restore at the
 * same LSN, which the capture tests compare with the primary), the size of an incremental after ~1% of pages
 * change, point-in-time to just before a DROP TABLE, a backup without a running primary, and bad input.
 */
import Database from 'better-sqlite3';
import { createHash } from 'node:crypto';
import { readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { describe, expect, test } from 'vitest';
import { decodePiece } from '../../src/backup/piece.js';
import { maskPage1 } from '../../src/sqlite/index.js';
import { compareWithPrimary, differingPages, integrityCheck, makeDb, run, sleep, startPrimary, startWorkload, stopGracefully, tempDir } from '../helpers/index.js';

async function backup(db: string, arch: string, repo: string, extra: string[] = []) {
  const r = await run(['backup', '--db', db, '--archive', arch, '--repo', repo, '--json', ...extra]);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as { name: string; level: number; endLsn: string; pages: number; sizePages: number; parent: string | null };
}

let restores = 0;
async function sameAsArchiveAt(dir: string, arch: string, repo: string, lsn: string, useArchive: boolean) {
  const n = restores++; // two sets may share an LSN (no write between them)
  const a = join(dir, `a-${n}-${lsn}.db`);
  const b = join(dir, `b-${n}-${lsn}.db`);
  const ra = await run(['restore', '--archive', arch, '--to', a, '--until-lsn', lsn]);
  expect(ra.code, ra.stderr).toBe(0);
  const r = await run(['restore', '--repo', repo, ...(useArchive ? ['--archive', arch] : []), '--to', b, '--until-lsn', lsn]);
  expect(r.code, r.stderr).toBe(0);
  expect(differingPages(readFileSync(a), readFileSync(b), 4096), `LSN ${lsn}`).toEqual([]);
  expect(integrityCheck(b)).toBe('ok');
}

describe('backup sets', () => {
  test('level 0, differential and cumulative level 1 under writers; restores equal the primary', async () => {
    const dir = tempDir();
    const db = join(dir, 'app.db');
    const arch = join(dir, 'arch');
    const repo = join(dir, 'backups');
    makeDb(db);
    const primary = await startPrimary(db, arch);
    const writer = startWorkload(db, { seed: 4, mix: 'stress', rate: 200, 'duration-ms': 9000 });
    await sleep(800);
    const l0 = await backup(db, arch, repo, ['--level', '0', '--max-piece-size', '1MB']);
    await sleep(800);
    const d1 = await backup(db, arch, repo, ['--level', '1']);
    await sleep(800);
    const d2 = await backup(db, arch, repo, ['--level', '1']);
    await sleep(800);
    const c1 = await backup(db, arch, repo, ['--level', '1', '--cumulative', '--compress', 'none']);
    await writer.result();
    // Writes after the last backup, whatever the timing (on a loaded machine the writer may be done by now).
    await startWorkload(db, { seed: 9, count: 30 }).result();
    await sleep(300);
    expect(await stopGracefully(primary)).toBe(0);
    expect(l0.level).toBe(0);
    expect(l0.pages).toBe(l0.sizePages);
    expect(d1.parent).toBe(l0.name);
    expect(d2.parent).toBe(d1.name);
    expect(c1.parent).toBe(l0.name);
    expect(readdirSync(join(repo, 'sets', l0.name)).filter((n) => n.startsWith('piece-')).length).toBeGreaterThan(1);

    const out = join(dir, 'end.db');
    const r = await run(['restore', '--repo', repo, '--archive', arch, '--to', out, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const plan = JSON.parse(r.stdout).plan;
    // The cumulative set reaches furthest; writes came after it, so archived redo ends the plan.
    expect(plan.steps.map((s: { kind: string; name?: string }) => s.name ?? s.kind)).toEqual([l0.name, c1.name, 'redo']);
    const cmp = compareWithPrimary(db, out);
    expect(cmp.differing).toEqual([]);
    expect(cmp.rowsEqual).toBe(true);
    expect(cmp.integrity).toBe('ok');
    for (const s of [l0, d1, d2, c1]) await sameAsArchiveAt(dir, arch, repo, s.endLsn, false); // the repository alone
    const between = String((BigInt(d1.endLsn) + BigInt(d2.endLsn)) / 2n);
    await sameAsArchiveAt(dir, arch, repo, between, true); // a set, then redo
  });

  test('an incremental after ~1% of pages change holds about that many pages', async () => {
    const dir = tempDir();
    const db = join(dir, 'app.db');
    const arch = join(dir, 'arch');
    const repo = join(dir, 'backups');
    const app = new Database(db);
    app.pragma('journal_mode = WAL');
    app.exec('CREATE TABLE big (id INTEGER PRIMARY KEY, v BLOB NOT NULL)');
    const ins = app.prepare('INSERT INTO big (v) VALUES (?)');
    app.transaction(() => {
      for (let i = 0; i < 8000; i++) ins.run(Buffer.alloc(3000, i & 0xff));
    })();
    app.close();
    const l0 = await backup(db, arch, repo); // no primary running: the backup runs one in its own process
    const w = new Database(db);
    const upd = w.prepare('UPDATE big SET v = ? WHERE id = ?');
    for (let i = 0; i < 80; i++) upd.run(Buffer.alloc(3000, 0xaa), 1 + i * 100); // 80 rows, one per page, spread out
    w.close();
    const l1 = await backup(db, arch, repo, ['--level', '1']);
    expect(l0.pages).toBe(l0.sizePages);
    expect(l1.pages).toBeGreaterThanOrEqual(80);
    expect(l1.pages).toBeLessThanOrEqual(90); // the 80 leaves, plus page 1 and interior pages at most
    const out = join(dir, 'r.db');
    expect((await run(['restore', '--repo', repo, '--to', out])).code).toBe(0);
    expect(compareWithPrimary(db, out).differing).toEqual([]);
  });

  test('point in time to the transaction just before a DROP TABLE', async () => {
    const dir = tempDir();
    const db = join(dir, 'app.db');
    const arch = join(dir, 'arch');
    const repo = join(dir, 'backups');
    makeDb(db);
    const primary = await startPrimary(db, arch);
    await startWorkload(db, { seed: 1, count: 200 }).result();
    await backup(db, arch, repo);
    await startWorkload(db, { seed: 2, count: 100 }).result();
    const app = new Database(db);
    const rowsBefore = app.prepare('SELECT count(*) FROM t').pluck().get() as number;
    app.exec('DROP TABLE t');
    app.close();
    await startWorkload(db, { seed: 3, count: 20 }).result().catch(() => undefined); // writes on (it recreates t)
    await sleep(300);
    expect(await stopGracefully(primary)).toBe(0);
    // LSN 1 base, 1..200 +1, the backup, 100 more: the DROP is LSN 302; just before it is 301.
    const out = join(dir, 'before-drop.db');
    const r = await run(['restore', '--repo', repo, '--archive', arch, '--to', out, '--until-lsn', '301']);
    expect(r.code, r.stderr).toBe(0);
    const check = new Database(out, { readonly: true });
    expect(check.prepare('SELECT count(*) FROM t').pluck().get()).toBe(rowsBefore);
    check.close();
    const drop = join(dir, 'at-drop.db');
    expect((await run(['restore', '--repo', repo, '--archive', arch, '--to', drop, '--until-lsn', '302'])).code).toBe(0);
    const c2 = new Database(drop, { readonly: true });
    expect(c2.prepare("SELECT count(*) FROM sqlite_schema WHERE name = 't'").pluck().get()).toBe(0);
    c2.close();
  });

  test('--copy writes identical sets to every destination; each restores alone', async () => {
    const dir = tempDir();
    const db = join(dir, 'app.db');
    const arch = join(dir, 'arch');
    const [repo, c1, c2] = ['backups', 'copy1', 'copy2'].map((n) => join(dir, n)) as [string, string, string];
    makeDb(db);
    await startWorkload(db, { seed: 1, count: 100 }).result();
    const l0 = await backup(db, arch, repo, ['--copy', c1, '--copy', c2]);
    await startWorkload(db, { seed: 2, count: 50 }).result();
    const l1 = await backup(db, arch, repo, ['--level', '1', '--copy', c1, '--copy', c2]);
    for (const r of [c1, c2]) {
      for (const s of [l0, l1]) {
        const names = readdirSync(join(repo, 'sets', s.name)).sort();
        expect(readdirSync(join(r, 'sets', s.name)).sort()).toEqual(names);
        for (const n of names) expect(readFileSync(join(r, 'sets', s.name, n)).equals(readFileSync(join(repo, 'sets', s.name, n)))).toBe(true);
      }
      const out = join(dir, `from-${r.split('/').pop()}.db`);
      expect((await run(['restore', '--repo', r, '--to', out])).code).toBe(0);
      expect(compareWithPrimary(db, out).differing).toEqual([]);
    }
  });

  test('encrypted sets (AES-256-GCM): restore and validate with the key; no key or a wrong key is one clear error', async () => {
    const dir = tempDir();
    const db = join(dir, 'app.db');
    const arch = join(dir, 'arch');
    const repo = join(dir, 'backups');
    const key = join(dir, 'backup.key');
    const wrong = join(dir, 'wrong.key');
    writeFileSync(key, 'correct horse battery staple\n');
    writeFileSync(wrong, 'incorrect horse\n');
    makeDb(db);
    const marker = Buffer.from('PLAINTEXT-MARKER-'.repeat(20));
    const app = new Database(db);
    app.prepare('INSERT INTO t (k, v) VALUES (?, ?)').run(1, marker);
    app.close();
    const l0 = await backup(db, arch, repo, ['--encrypt-key-file', key, '--compress', 'none']);
    await startWorkload(db, { seed: 1, count: 40 }).result();
    await backup(db, arch, repo, ['--level', '1', '--encrypt-key-file', key]);
    const piece = readFileSync(join(repo, 'sets', l0.name, 'piece-00000'));
    expect(piece.includes(marker.subarray(0, 40))).toBe(false); // not stored in the clear, even uncompressed
    const out = join(dir, 'out.db');
    let r = await run(['restore', '--repo', repo, '--to', out]);
    expect(r.code).toBe(33);
    expect(r.stderr).toMatch(/backup set \d+-L0-\w+ is encrypted\n {2}hint: give the key file/);
    r = await run(['restore', '--repo', repo, '--to', out, '--encrypt-key-file', wrong]);
    expect(r.code).toBe(33);
    expect(r.stderr).toMatch(/does not open backup set/);
    expect(readdirSync(dir).filter((n) => n.startsWith('out.db'))).toEqual([]);
    r = await run(['restore', '--repo', repo, '--to', out, '--encrypt-key-file', key]);
    expect(r.code, r.stderr).toBe(0);
    const cmp = compareWithPrimary(db, out);
    expect(cmp.differing).toEqual([]);
    expect(cmp.rowsEqual).toBe(true);
    const v = await run(['validate', '--repo', repo, '--restore-test', '--encrypt-key-file', key]);
    expect(v.code, v.stdout).toBe(0);
    // merge: refused without the key; with it, an encrypted level 0 that restores to the same file.
    r = await run(['backup', 'merge', '--repo', repo]);
    expect(r.code).toBe(33);
    const m = await run(['backup', 'merge', '--repo', repo, '--encrypt-key-file', key, '--json']);
    expect(m.code, m.stderr).toBe(0);
    const merged = JSON.parse(m.stdout) as { manifest: { name: string; encryption: unknown } };
    expect(merged.manifest.encryption).not.toBeNull();
    const viaMerged = join(dir, 'merged.db');
    r = await run(['restore', '--repo', repo, '--to', viaMerged, '--encrypt-key-file', key, '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).plan.steps.map((s: { name: string }) => s.name)).toEqual([merged.manifest.name]);
    expect(differingPages(readFileSync(out), readFileSync(viaMerged), 4096)).toEqual([]);
  });

  test('bad input: level 1 with no level 0, another database, a damaged piece, a bad --compress', async () => {
    const dir = tempDir();
    const db = join(dir, 'app.db');
    const arch = join(dir, 'arch');
    const repo = join(dir, 'backups');
    makeDb(db);
    await startWorkload(db, { seed: 1, count: 30 }).result();
    let r = await run(['backup', '--db', db, '--archive', arch, '--repo', repo, '--level', '1']);
    expect(r.code).toBe(31);
    expect(r.stderr).toMatch(/no backup at or before LSN \d+ to base a level 1 on\n {2}hint: take a level 0 first/);
    r = await run(['backup', '--db', db, '--archive', arch, '--repo', repo, '--compress', 'lz4']);
    expect(r.code).toBe(2);
    const l0 = await backup(db, arch, repo);
    const other = join(dir, 'other.db');
    makeDb(other);
    r = await run(['backup', '--db', other, '--archive', join(dir, 'other-arch'), '--repo', repo]);
    expect(r.code).toBe(20);
    expect(r.stderr).toMatch(/holds backups of database [0-9a-f]{32}; this is [0-9a-f]{32}/);
    const piece = join(repo, 'sets', l0.name, 'piece-00000');
    const bytes = readFileSync(piece);
    bytes[bytes.length >> 1] ^= 0x40;
    writeFileSync(piece, bytes);
    r = await run(['restore', '--repo', repo, '--to', join(dir, 'out.db')]);
    expect(r.code).toBe(22);
    expect(r.stderr).toMatch(new RegExp(`backup piece ${l0.name}/piece-00000 is damaged`));
    expect(readdirSync(dir).filter((n) => n.startsWith('out.db'))).toEqual([]);
  });
});

describe('restore checks every byte of a piece', () => {
  // Restore does not take a piece's SHA-256 (validate does): the header's fields, the chunk framing and
  // CRCs, the page hashes and the page order must between them catch damage anywhere. One flipped byte in
  // each kind of place of an uncompressed piece (where nothing but those checks stands between the stored
  // bytes and the file), and a truncated and a lengthened piece: each is refused and leaves no file.
  test('a flipped byte in the header, a chunk header, a page number or an image; a truncated or longer piece', async () => {
    const dir = tempDir();
    const db = join(dir, 'app.db');
    const arch = join(dir, 'arch');
    const repo = join(dir, 'backups');
    makeDb(db);
    await startWorkload(db, { seed: 3, mix: 'stress', count: 60 }).result();
    const l0 = await backup(db, arch, repo, ['--compress', 'none']);
    const piece = join(repo, 'sets', l0.name, 'piece-00000');
    const good = readFileSync(piece);
    const count = good.readUInt32BE(16 + 8);
    expect(count).toBeGreaterThan(2);
    const places: Array<[string, (b: Buffer) => Buffer]> = [
      ['magic', (b) => flip(b, 1)],
      ['version', (b) => flip(b, 7)],
      ['compression', (b) => flip(b, 11, 0x02)],
      ['flags', (b) => flip(b, 15)],
      ['chunk length', (b) => flip(b, 16 + 3)],
      ['chunk crc', (b) => flip(b, 16 + 5)],
      ['chunk page count', (b) => flip(b, 16 + 11)],
      ['first page number', (b) => flip(b, 28 + 3)],
      ['a middle page number, still ascending', (b) => flip(b, 28 + 4 * (count >> 1) + 3, 0x00, 1)],
      ['an image byte', (b) => flip(b, 28 + 4 * count + 4096 + 100)],
      ['the last byte', (b) => flip(b, b.length - 1)],
      ['truncated', (b) => b.subarray(0, b.length - 1)],
      ['lengthened', (b) => Buffer.concat([b, Buffer.alloc(1)])],
    ];
    for (const [what, damage] of places) {
      writeFileSync(piece, damage(Buffer.from(good)));
      const r = await run(['restore', '--repo', repo, '--to', join(dir, 'out.db')]);
      expect(r.code, `${what}: ${r.stderr}`).toBe(22);
      expect(r.stderr, what).toMatch(new RegExp(`backup piece ${l0.name}/piece-00000 is damaged|${l0.name}.* holds`));
      expect(readdirSync(dir).filter((n) => n.startsWith('out.db')), what).toEqual([]);
    }
    writeFileSync(piece, good);
    const r = await run(['restore', '--repo', repo, '--to', join(dir, 'out.db')]);
    expect(r.code, r.stderr).toBe(0);
    expect(integrityCheck(join(dir, 'out.db'))).toBe('ok');
  });

  test('a set written in piece format 1 (the CRC over every stored byte) still restores and validates', async () => {
    // Format 1 is made here from a format 2 set: each chunk's CRC taken over all its stored bytes, the
    // version set to 1, the manifest's piece checksum updated. Uncompressed and zstd.
    const dir = tempDir();
    const db = join(dir, 'app.db');
    const arch = join(dir, 'arch');
    makeDb(db);
    await startWorkload(db, { seed: 8, mix: 'stress', count: 80 }).result();
    for (const compress of ['none', 'zstd']) {
      const repo = join(dir, `backups-${compress}`);
      const set = await backup(db, arch, repo, ['--compress', compress, '--max-piece-size', '64KB']);
      const manifestPath = join(repo, 'sets', set.name, 'manifest.json');
      const manifest = JSON.parse(readFileSync(manifestPath, 'utf8')) as { pieces: Array<{ name: string; sha256: string }> };
      for (const p of manifest.pieces) {
        const path = join(repo, 'sets', set.name, p.name);
        const b = readFileSync(path);
        expect(b.readUInt32BE(4)).toBe(2);
        b.writeUInt32BE(1, 4);
        for (let off = 16; off < b.length; ) {
          const len = b.readUInt32BE(off);
          b.writeUInt32BE(crc32(b.subarray(off + 12, off + 12 + len)), off + 4);
          off += 12 + len;
        }
        writeFileSync(path, b);
        p.sha256 = createHash('sha256').update(b).digest('hex');
      }
      writeFileSync(manifestPath, JSON.stringify(manifest, null, 2));
      const v = await run(['validate', '--repo', repo]);
      expect(v.code, v.stdout + v.stderr).toBe(0);
      const out = join(dir, `v1-${compress}.db`);
      const r = await run(['restore', '--repo', repo, '--to', out]);
      expect(r.code, r.stderr).toBe(0);
      const cmp = compareWithPrimary(db, out);
      expect(cmp.differing).toEqual([]);
      expect(cmp.rowsEqual).toBe(true);
      expect(cmp.integrity).toBe('ok');
    }
  });

  test('a level 0 whose page hashes are SHA-256 (written before manifests named the algorithm) under a new level 1: restore, validate, merge; an unknown algorithm is refused', async () => {
    // Such a set is made here from a new one: its page-hash file rewritten with the first 16 bytes of SHA-256
    // of each image, the manifest's checksum of that file updated and its algorithm field removed. The level 0
    // (uncompressed) is made old, the level 1 (zstd) on it stays new, as after an upgrade: restore, validate
    // --restore-test and merge read each set with its own algorithm.
    const dir = tempDir();
    const db = join(dir, 'app.db');
    const arch = join(dir, 'arch');
    const repo = join(dir, 'backups');
    makeDb(db);
    await startWorkload(db, { seed: 11, mix: 'stress', count: 60 }).result();
    const sets = [await backup(db, arch, repo, ['--compress', 'none', '--max-piece-size', '64KB'])];
    await startWorkload(db, { seed: 12, count: 40 }).result();
    sets.push(await backup(db, arch, repo, ['--level', '1', '--max-piece-size', '64KB']));
    for (const set of sets.slice(0, 1)) {
      const manifestPath = join(repo, 'sets', set.name, 'manifest.json');
      const manifest = JSON.parse(readFileSync(manifestPath, 'utf8')) as {
        pageSize: number;
        pieces: Array<{ name: string; pages: number }>;
        pageHashes: { name: string; sha256: string; algorithm?: string };
      };
      expect(manifest.pageHashes.algorithm).toBe('xxh3-128');
      const hashFile = join(repo, 'sets', set.name, manifest.pageHashes.name);
      const current = readFileSync(hashFile);
      const legacy: Buffer[] = [];
      let at = 0;
      for (const p of manifest.pieces) {
        const body = readFileSync(join(repo, 'sets', set.name, p.name));
        for (const [pgno, image] of decodePiece(p.name, body, manifest.pageSize, undefined, current.subarray(at * 16, (at + p.pages) * 16), 'xxh3-128'))
          legacy.push(createHash('sha256').update(pgno === 1 ? maskPage1(image) : image).digest().subarray(0, 16));
        at += p.pages;
      }
      const body = Buffer.concat(legacy);
      expect(body.length).toBe(current.length);
      expect(body.equals(current)).toBe(false);
      writeFileSync(hashFile, body);
      manifest.pageHashes = { name: manifest.pageHashes.name, sha256: createHash('sha256').update(body).digest('hex') };
      writeFileSync(manifestPath, JSON.stringify(manifest, null, 2));
    }
    const v = await run(['validate', '--repo', repo, '--restore-test']);
    expect(v.code, v.stdout + v.stderr).toBe(0);
    const out = join(dir, 'legacy.db');
    const r = await run(['restore', '--repo', repo, '--to', out]);
    expect(r.code, r.stderr).toBe(0);
    const cmp = compareWithPrimary(db, out);
    expect(cmp.differing).toEqual([]);
    expect(cmp.rowsEqual).toBe(true);
    expect(cmp.integrity).toBe('ok');
    // A merge of the two writes a set of today's algorithm, which restores to the same file.
    expect((JSON.parse(readFileSync(join(repo, 'sets', sets[1]!.name, 'manifest.json'), 'utf8')) as { pageHashes: { algorithm?: string } }).pageHashes.algorithm).toBe('xxh3-128');
    const m = await run(['backup', 'merge', '--repo', repo, '--json']);
    expect(m.code, m.stderr).toBe(0);
    const merged = (JSON.parse(m.stdout) as { manifest: { name: string; pageHashes: { algorithm: string } } }).manifest;
    expect(merged.pageHashes.algorithm).toBe('xxh3-128');
    const out2 = join(dir, 'merged.db');
    expect((await run(['restore', '--repo', repo, '--to', out2])).code).toBe(0);
    expect(differingPages(readFileSync(out), readFileSync(out2), 4096)).toEqual([]);
    // A manifest naming an algorithm this version does not know: one clear error, nothing written.
    const manifestPath = join(repo, 'sets', merged.name, 'manifest.json');
    writeFileSync(manifestPath, readFileSync(manifestPath, 'utf8').replace('"xxh3-128"', '"blake9-128"'));
    const out3 = join(dir, 'unknown.db');
    const bad = await run(['restore', '--repo', repo, '--to', out3]);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/names page hashes "blake9-128", which this redoship does not know/);
    expect(readdirSync(dir).filter((f) => f.startsWith('unknown.db'))).toEqual([]);
  });

  test('merge checks every image against its page hash: a damaged set is refused, no new set is written', async () => {
    // The chunk CRC of an uncompressed piece covers its page numbers only (piece.ts): a merge that did not
    // compare images with their hashes would copy damage into a new set and give it new, matching hashes.
    const dir = tempDir();
    const db = join(dir, 'app.db');
    const arch = join(dir, 'arch');
    const repo = join(dir, 'backups');
    makeDb(db);
    await startWorkload(db, { seed: 5, mix: 'stress', count: 60 }).result();
    const l0 = await backup(db, arch, repo, ['--compress', 'none']);
    await startWorkload(db, { seed: 6, count: 40 }).result();
    await backup(db, arch, repo, ['--level', '1', '--compress', 'none']);
    const piece = join(repo, 'sets', l0.name, 'piece-00000');
    const good = readFileSync(piece);
    const count = good.readUInt32BE(16 + 8);
    writeFileSync(piece, flip(Buffer.from(good), 28 + 4 * count + 2 * 4096 + 300));
    const before = readdirSync(join(repo, 'sets')).sort();
    const m = await run(['backup', 'merge', '--repo', repo]);
    expect(m.code, m.stderr).toBe(22);
    expect(m.stderr).toMatch(new RegExp(`backup piece ${l0.name}/piece-00000 is damaged at byte \\d+: page 3 does not match its recorded hash`));
    expect(readdirSync(join(repo, 'sets')).sort()).toEqual(before);
    writeFileSync(piece, good);
    expect((await run(['backup', 'merge', '--repo', repo])).code).toBe(0);
  });
});

/** b with byte at ^= mask (or, with add, the byte increased by add: a page number that still ascends). */
function flip(b: Buffer, at: number, mask = 0x40, add = 0): Buffer {
  b[at] = add ? b[at]! + add : b[at]! ^ mask;
  return b;
}

describe('validate, crosscheck, catalog', () => {
  test('validate and crosscheck find a flipped byte, a truncated piece and a deleted piece; catalog rebuild; restore-test', async () => {
    const dir = tempDir();
    const db = join(dir, 'app.db');
    const arch = join(dir, 'arch');
    const repo = join(dir, 'backups');
    makeDb(db);
    await startWorkload(db, { seed: 1, mix: 'stress', count: 150 }).result();
    const l0 = await backup(db, arch, repo, ['--max-piece-size', '256KB']);
    await startWorkload(db, { seed: 2, count: 100 }).result();
    const l1 = await backup(db, arch, repo, ['--level', '1']);
    let v = await run(['validate', '--repo', repo, '--restore-test', '--json']);
    expect(v.code, v.stdout + v.stderr).toBe(0);
    const ok = JSON.parse(v.stdout);
    expect(ok.restoreTest.integrity).toBe('ok');
    expect(ok.restoreTest.mismatches).toEqual([]);
    expect(ok.restoreTest.lsn).toBe(l1.endLsn);

    const pieces = readdirSync(join(repo, 'sets', l0.name)).filter((n) => n.startsWith('piece-')).sort();
    expect(pieces.length).toBeGreaterThan(2);
    const [p0, p1, p2] = pieces.map((p) => join(repo, 'sets', l0.name, p));
    const flip = readFileSync(p0!);
    flip[100] ^= 1;
    writeFileSync(p0!, flip);
    writeFileSync(p1!, readFileSync(p1!).subarray(0, 1000));
    rmSync(p2!);
    v = await run(['validate', '--repo', repo]);
    expect(v.code).toBe(22);
    expect(v.stdout).toMatch(/DAMAGED 0+\d+-L0-/);
    expect(v.stdout).toMatch(/piece-00000: SHA-256 mismatch/);
    expect(v.stdout).toMatch(/piece-00001: 1000 bytes, the manifest says \d+ \(truncated\?\)/);
    expect(v.stdout).toMatch(/piece-00002: .*is not in/);
    expect(v.stdout).toMatch(/^ok +0+\d+-L1-/m);

    const c = await run(['crosscheck', '--repo', repo, '--json']);
    expect(c.code).toBe(0);
    const cat = JSON.parse(c.stdout);
    expect(cat.sets.map((s: { status: string }) => s.status)).toEqual(['expired', 'available']);
    expect(cat.sets[0].missing).toEqual([`sets/${l0.name}/piece-00001`, `sets/${l0.name}/piece-00002`]);
    // An expired level 0 is never planned with: the repository alone reaches nothing now.
    const r = await run(['restore', '--repo', repo, '--to', join(dir, 'x.db')]);
    expect(r.code).toBe(31);
    expect(r.stderr).toMatch(/no level 0 backup at or before/);

    rmSync(join(repo, 'catalog.json'));
    const rb = await run(['catalog', 'rebuild', '--repo', repo, '--json']);
    expect(rb.code).toBe(0);
    expect(JSON.parse(rb.stdout).sets.map((s: { name: string }) => s.name)).toEqual([l0.name, l1.name]);
  });
});

describe('merge, archived redo in the repository, remote archiving', () => {
  test('merge gives a level 0 that restores identically; backup archive + --archive-to let the repository restore alone', async () => {
    const dir = tempDir();
    const db = join(dir, 'app.db');
    const arch = join(dir, 'arch');
    const repo = join(dir, 'backups');
    const dr = join(dir, 'dr-bucket');
    makeDb(db);
    const primary = await startPrimary(db, arch, ['--segment-size', '64KB', '--segment-age', '300ms', '--archive-to', dr]);
    await startWorkload(db, { seed: 1, mix: 'stress', count: 150 }).result();
    const l0 = await backup(db, arch, repo);
    await startWorkload(db, { seed: 2, count: 100 }).result();
    const l1 = await backup(db, arch, repo, ['--level', '1']);
    await startWorkload(db, { seed: 3, count: 100 }).result();
    const l1b = await backup(db, arch, repo, ['--level', '1']);
    await startWorkload(db, { seed: 4, count: 50 }).result();
    await sleep(500);
    expect(await stopGracefully(primary)).toBe(0);

    // Synthetic full: equal, page for page, to the chain it replaces.
    const m = await run(['backup', 'merge', '--repo', repo, '--json']);
    expect(m.code, m.stderr).toBe(0);
    const merged = JSON.parse(m.stdout);
    expect(merged.from).toEqual([l0.name, l1.name, l1b.name]);
    expect(merged.manifest.endLsn).toBe(l1b.endLsn);
    expect(merged.manifest.synthetic).toBe(true);
    const viaChain = join(dir, 'chain.db');
    const viaMerged = join(dir, 'merged.db');
    const p1 = await run(['restore', '--repo', repo, '--to', viaChain, '--until-lsn', l1b.endLsn, '--json']);
    expect(JSON.parse(p1.stdout).plan.steps.map((s: { name: string }) => s.name)).toEqual([merged.manifest.name]); // the merged set is preferred
    await run(['validate', '--repo', repo]).then((v) => expect(v.code, v.stdout).toBe(0));
    rmSync(join(repo, 'sets', merged.manifest.name), { recursive: true }); // restore the same point without it
    await run(['catalog', 'rebuild', '--repo', repo]);
    expect((await run(['restore', '--repo', repo, '--to', viaMerged, '--until-lsn', l1b.endLsn])).code).toBe(0);
    expect(differingPages(readFileSync(viaChain), readFileSync(viaMerged), 4096)).toEqual([]);

    // Archived redo copied into the repository: it then restores to the end alone (no --archive).
    const a = await run(['backup', 'archive', '--archive', arch, '--repo', repo, '--json']);
    expect(a.code, a.stderr).toBe(0);
    expect(JSON.parse(a.stdout).copied.length).toBeGreaterThan(3);
    const alone = join(dir, 'alone.db');
    const r = await run(['restore', '--repo', repo, '--to', alone, '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).plan.steps.at(-1).kind).toBe('redo');
    const cmp = compareWithPrimary(db, alone);
    expect(cmp.differing).toEqual([]);
    expect(cmp.rowsEqual).toBe(true);

    // --archive-to kept a DR copy of every sealed segment as it went: byte-identical to the archive's.
    const local = readdirSync(join(arch, 'segments')).filter((n) => n.endsWith('.seg')).sort();
    const remote = readdirSync(join(dr, 'archive', 'segments')).sort();
    expect(remote).toEqual(local);
    for (const n of local) expect(readFileSync(join(dr, 'archive', 'segments', n)).equals(readFileSync(join(arch, 'segments', n)))).toBe(true);
  });
});
