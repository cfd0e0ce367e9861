/**
 * Backup repositories in S3, end to end through the CLI: `--repo s3://bucket/prefix` against a real
 * S3-protocol server (s3rver on 127.0.0.1, a random port, a temporary directory; the bucket made here), with
 * the standard AWS environment variables handed to every redoship process. Level 0 and level 1 sets taken
 * without a primary and through a running primary under writers, list, validate --restore-test, restores
 * from the bucket equal to the primary page for page, refused credentials. The commands run in a temporary
 * working directory and the test checks the objects are in the bucket, so a location mistaken for a local
 * path cannot pass unnoticed.
 */
import { CreateBucketCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { cpSync, existsSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startS3rver } from '../helpers/s3rver.js';
import { compareWithPrimary, differingPages, integrityCheck, makeDb, sleep, start, startWorkload, stopGracefully, tempDir, type Proc } from '../helpers/index.js';

const BUCKET = 'redoship-backups';
const S3RVER_KEY = 'S3RVER'; // s3rver's default account


// If s3rver cannot run here, the tests are skipped and say why: nothing is faked.
const started = await startS3rver(tempDir('redoship-s3rver-'));
const cannotRun = typeof started === 'string' ? started : '';
if (cannotRun) console.warn(`SKIPPING the S3 backup tests: ${cannotRun}`);
const endpoint = typeof started === 'string' ? '' : started.endpoint;
const ENV: Record<string, string> = {
  AWS_ENDPOINT_URL: endpoint,
  AWS_ENDPOINT_URL_S3: endpoint, // it wins over AWS_ENDPOINT_URL: set so that an inherited one cannot
  AWS_REGION: 'us-east-1',
  AWS_ACCESS_KEY_ID: S3RVER_KEY,
  AWS_SECRET_ACCESS_KEY: S3RVER_KEY,
  AWS_SESSION_TOKEN: '',
};

/** Runs the CLI to completion with the AWS environment, in cwd (a temporary directory). */
async function cli(args: string[], cwd: string, env: Record<string, string> = ENV) {
  const p = start(args, { cwd, env });
  const { code } = await p.exited;
  return { code, stdout: p.stdout, stderr: p.stderr };
}

async function backup(db: string, arch: string, repo: string, cwd: string, extra: string[] = []) {
  const r = await cli(['backup', '--db', db, '--archive', arch, '--repo', repo, '--json', ...extra], cwd);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as { name: string; level: number; endLsn: string; pages: number; sizePages: number; parent: string | null; pieces: Array<{ name: string; bytes: number }> };
}

/** The keys (and sizes) under a prefix of the bucket, read with a client of our own. */
async function bucketKeys(prefix: string): Promise<Map<string, number>> {
  const c = new S3Client({ region: 'us-east-1', endpoint, forcePathStyle: true, credentials: { accessKeyId: S3RVER_KEY, secretAccessKey: S3RVER_KEY } });
  try {
    const out = new Map<string, number>();
    let token: string | undefined;
    do {
      const r = await c.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: prefix, ...(token ? { ContinuationToken: token } : {}) }));
      for (const o of r.Contents ?? []) out.set(o.Key!, o.Size ?? 0);
      token = r.IsTruncated ? r.NextContinuationToken : undefined;
    } while (token);
    return out;
  } finally {
    c.destroy();
  }
}

describe.skipIf(cannotRun !== '')(`backup repositories in S3 (s3rver)${cannotRun ? `: ${cannotRun}` : ''}`, () => {
  beforeAll(async () => {
    process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true'; // as S3Storage does
    const c = new S3Client({ region: 'us-east-1', endpoint, forcePathStyle: true, credentials: { accessKeyId: S3RVER_KEY, secretAccessKey: S3RVER_KEY } });
    await c.send(new CreateBucketCommand({ Bucket: BUCKET }));
    c.destroy();
  });

  afterAll(async () => {
    if (typeof started !== 'string') await started.stop();
  });

  test('backup level 0 and 1 into s3://, list, validate, restore: equal to the primary', async () => {
    const dir = tempDir();
    const db = join(dir, 'app.db');
    const arch = join(dir, 'arch');
    const repo = `s3://${BUCKET}/prod/app`;
    makeDb(db);
    await startWorkload(db, { seed: 1, mix: 'stress', count: 150 }).result();
    const l0 = await backup(db, arch, repo, dir, ['--max-piece-size', '256KB']); // no primary: backup runs one
    await startWorkload(db, { seed: 2, count: 100 }).result();
    const l1 = await backup(db, arch, repo, dir, ['--level', '1']);
    expect(l0.level).toBe(0);
    expect(l0.pages).toBe(l0.sizePages);
    expect(l0.pieces.length).toBeGreaterThan(1);
    expect(l1.parent).toBe(l0.name);

    // The repository is in the bucket, under the prefix, object for object; nothing was written locally.
    const keys = await bucketKeys('prod/app/');
    expect(keys.has('prod/app/redoship-repo.json')).toBe(true);
    for (const s of [l0, l1]) {
      expect(keys.has(`prod/app/sets/${s.name}/manifest.json`), s.name).toBe(true);
      expect(keys.has(`prod/app/sets/${s.name}/page-hashes`), s.name).toBe(true);
      for (const p of s.pieces) expect(keys.get(`prod/app/sets/${s.name}/${p.name}`), p.name).toBe(p.bytes);
    }
    expect(existsSync(join(dir, 's3:')), 'an s3:// location was taken for a local path').toBe(false);

    const list = await cli(['list', '--repo', repo, '--json'], dir);
    expect(list.code, list.stderr).toBe(0);
    const listed = JSON.parse(list.stdout);
    expect(listed.repo).toBe(repo);
    expect(listed.sets.map((s: { name: string }) => s.name)).toEqual([l0.name, l1.name]);

    const v = await cli(['validate', '--repo', repo, '--restore-test', '--json'], dir);
    expect(v.code, v.stdout + v.stderr).toBe(0);
    expect(JSON.parse(v.stdout).restoreTest).toMatchObject({ integrity: 'ok', mismatches: [], lsn: l1.endLsn });

    // From the bucket alone, to the end: the primary page for page.
    const out = join(dir, 'restored.db');
    const r = await cli(['restore', '--repo', repo, '--to', out, '--json'], dir);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).plan.steps.map((s: { name?: string; kind: string }) => s.name ?? s.kind)).toEqual([l0.name, l1.name]);
    const cmp = compareWithPrimary(db, out);
    expect(cmp.differing).toEqual([]);
    expect(cmp.rowsEqual).toBe(true);
    expect(cmp.integrity).toBe('ok');

    // To the level 0's LSN: the same as the archive's own restore there.
    const a = join(dir, 'from-archive.db');
    const b = join(dir, 'from-bucket.db');
    expect((await cli(['restore', '--archive', arch, '--to', a, '--until-lsn', l0.endLsn], dir)).code).toBe(0);
    const rb = await cli(['restore', '--repo', repo, '--to', b, '--until-lsn', l0.endLsn], dir);
    expect(rb.code, rb.stderr).toBe(0);
    expect(differingPages(readFileSync(a), readFileSync(b), 4096)).toEqual([]);
    expect(integrityCheck(b)).toBe('ok');

    // merge in the bucket (its pieces staged to a temporary directory, removed after): restores from the
    // merged set alone to the same file as the chain.
    const m = await cli(['backup', 'merge', '--repo', repo, '--json'], dir);
    expect(m.code, m.stderr).toBe(0);
    const merged = JSON.parse(m.stdout).manifest as { name: string };
    const c = join(dir, 'from-merged.db');
    const rm = await cli(['restore', '--repo', repo, '--to', c, '--json'], dir);
    expect(rm.code, rm.stderr).toBe(0);
    expect(JSON.parse(rm.stdout).plan.steps.map((s: { name?: string }) => s.name)).toEqual([merged.name]);
    expect(differingPages(readFileSync(out), readFileSync(c), 4096)).toEqual([]);
  });

  test('backups through a running primary under writers, then restore with redo: equal to the primary', async () => {
    const dir = tempDir();
    const db = join(dir, 'app.db');
    const arch = join(dir, 'arch');
    const repo = `s3://${BUCKET}/through-primary`;
    makeDb(db);
    const primary: Proc = start(['primary', '--db', db, '--archive', arch], { cwd: dir, env: ENV });
    await Promise.race([
      primary.waitFor(/primary: capturing/),
      primary.exited.then(({ code }) => {
        throw new Error(`primary exited with ${code}:\n${primary.stderr}`);
      }),
    ]);
    const writer = startWorkload(db, { seed: 4, mix: 'stress', rate: 200, 'duration-ms': 5000 });
    await sleep(800);
    const l0 = await backup(db, arch, repo, dir, ['--level', '0']);
    await sleep(800);
    const c1 = await backup(db, arch, repo, dir, ['--level', '1', '--cumulative']);
    await writer.result();
    await startWorkload(db, { seed: 5, count: 50 }).result(); // redo past the last set, for certain
    await sleep(300);
    expect(await stopGracefully(primary)).toBe(0);
    expect(primary.stderr).toMatch(new RegExp(`backup requested: level 0 into ${repo}`));
    expect(c1.parent).toBe(l0.name);
    expect((await bucketKeys('through-primary/')).has(`through-primary/sets/${c1.name}/manifest.json`)).toBe(true);

    const out = join(dir, 'end.db');
    const r = await cli(['restore', '--repo', repo, '--archive', arch, '--to', out, '--json'], dir);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).plan.steps.map((s: { name?: string; kind: string }) => s.name ?? s.kind)).toEqual([l0.name, c1.name, 'redo']);
    const cmp = compareWithPrimary(db, out);
    expect(cmp.differing).toEqual([]);
    expect(cmp.rowsEqual).toBe(true);
    expect(cmp.integrity).toBe('ok');
  });

  test('restore from the bucket alone, with redo from its own copy (--archive-to): equal to the primary at each LSN', async () => {
    const dir = tempDir();
    const db = join(dir, 'app.db');
    const arch = join(dir, 'arch');
    const repo = `s3://${BUCKET}/redo-copy`;
    makeDb(db);
    // Small, young segments: redo is sealed and copied to the bucket within moments of its commit.
    const primary: Proc = start(['primary', '--db', db, '--archive', arch, '--segment-size', '64KB', '--segment-age', '300ms', '--archive-to', repo], { cwd: dir, env: ENV });
    await Promise.race([
      primary.waitFor(/primary: capturing/),
      primary.exited.then(({ code }) => {
        throw new Error(`primary exited with ${code}:\n${primary.stderr}`);
      }),
    ]);
    await startWorkload(db, { seed: 6, mix: 'stress', count: 120 }).result();
    const l0 = await backup(db, arch, repo);
    await startWorkload(db, { seed: 7, count: 150 }).result();
    await sleep(500);
    expect(await stopGracefully(primary), primary.stderr).toBe(0); // seals the last segment and copies it
    const segs = [...(await bucketKeys('redo-copy/archive/segments/')).keys()];
    expect(segs.length).toBeGreaterThan(3);

    // Every LSN of the redo, from a working directory that holds no archive: preview first (it writes nothing).
    const elsewhere = tempDir();
    const end = Number(JSON.parse((await cli(['archive', 'list', '--archive', arch, '--json'], dir)).stdout).lastLsn);
    const mid = String(Math.floor((Number(l0.endLsn) + end) / 2));
    const pv = await cli(['restore', '--repo', repo, '--to', join(elsewhere, 'p.db'), '--until-lsn', mid, '--preview', '--json'], elsewhere);
    expect(pv.code, pv.stderr).toBe(0);
    expect(JSON.parse(pv.stdout).plan.steps).toEqual([
      expect.objectContaining({ kind: 'set', name: l0.name }),
      { kind: 'redo', source: 'repository', fromLsn: String(Number(l0.endLsn) + 1), toLsn: mid, records: Number(mid) - Number(l0.endLsn) },
    ]);
    expect(readdirSync(elsewhere)).toEqual([]);
    for (const lsn of [mid, String(end)]) {
      const fromArchive = join(dir, `archive-${lsn}.db`);
      const fromBucket = join(elsewhere, `bucket-${lsn}.db`);
      expect((await cli(['restore', '--archive', arch, '--to', fromArchive, '--until-lsn', lsn], dir)).code).toBe(0);
      const r = await cli(['restore', '--repo', repo, '--to', fromBucket, '--until-lsn', lsn, '--json'], elsewhere);
      expect(r.code, r.stderr).toBe(0);
      expect(JSON.parse(r.stdout).plan.steps.map((s: { name?: string; source?: string }) => s.name ?? s.source)).toEqual([l0.name, 'repository']);
      expect(differingPages(readFileSync(fromArchive), readFileSync(fromBucket), 4096), `LSN ${lsn}`).toEqual([]);
      expect(integrityCheck(fromBucket)).toBe('ok');
    }
    // At the end: the primary itself, page for page, row for row; no staged redo left beside the target.
    const cmp = compareWithPrimary(db, join(elsewhere, `bucket-${end}.db`));
    expect(cmp.differing).toEqual([]);
    expect(cmp.rowsEqual).toBe(true);
    expect(readdirSync(elsewhere).filter((n) => !/^bucket-\d+\.db(-wal|-shm)?$/.test(n))).toEqual([]);

    // A local archive that lost segments after the backup: restore completes it from the bucket.
    const partial = join(dir, 'partial-arch');
    cpSync(arch, partial, { recursive: true });
    // (two sealed segments after the level 0: names are <incarnation>-<first LSN>-<last LSN>.seg, in hex)
    const lost = readdirSync(join(partial, 'segments'))
      .filter((n) => n.endsWith('.seg') && BigInt('0x' + n.slice(9, 25)) > BigInt(l0.endLsn))
      .slice(0, 2);
    expect(lost.length).toBe(2);
    for (const n of lost) rmSync(join(partial, 'segments', n));
    const mixed = join(elsewhere, 'mixed.db');
    const r = await cli(['restore', '--repo', repo, '--archive', partial, '--to', mixed, '--json'], elsewhere);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).plan.steps.some((s: { source?: string }) => s.source === 'repository')).toBe(true);
    expect(differingPages(readFileSync(join(elsewhere, `bucket-${end}.db`)), readFileSync(mixed), 4096)).toEqual([]);

    // validate --restore-test restores through the bucket's redo too.
    const v = await cli(['validate', '--repo', repo, '--restore-test', '--json'], elsewhere);
    expect(v.code, v.stdout + v.stderr).toBe(0);
    expect(JSON.parse(v.stdout).restoreTest).toMatchObject({ integrity: 'ok', mismatches: [], redoToLsn: String(end) });
  });

  test('refused credentials and a missing repository: clear errors, nothing written', async () => {
    const dir = tempDir();
    const db = join(dir, 'app.db');
    makeDb(db);
    const repo = `s3://${BUCKET}/refused`;
    const r = await cli(['backup', '--db', db, '--archive', join(dir, 'arch'), '--repo', repo], dir, { ...ENV, AWS_ACCESS_KEY_ID: 'NOT-A-KEY' });
    expect(r.code).toBe(40); // IO
    expect(r.stderr).toMatch(/InvalidAccessKeyId/);
    expect(r.stderr).toMatch(/hint: .*AWS_ACCESS_KEY_ID/);
    expect((await bucketKeys('refused/')).size).toBe(0);
    const m = await cli(['restore', '--repo', `s3://${BUCKET}/nothing-here`, '--to', join(dir, 'x.db')], dir);
    expect(m.code).toBe(21); // ARCHIVE_MISSING
    expect(m.stderr).toMatch(new RegExp(`no redoship backup repository at s3://${BUCKET}/nothing-here`));
  });
});
