/**
 * S3Storage against its contract (storage.ts): the same cases as local.test.ts, then what is S3's own
 * (multipart uploads, pagination, prefixes sharing a bucket, a missing bucket, refused credentials, an
 * endpoint that does not answer), against a real S3-protocol server: s3rver on 127.0.0.1, on a random port,
 * storing in a temporary directory. Configuration comes from the AWS environment variables, as in use.
 */
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { RedoshipError } from '../error/index.js';
import { LocalStorage } from './local.js';
import { createStorage, openStorage, resolveLocation } from './open.js';
import { PART_BYTES, S3Storage, parseS3Location } from './s3.js';
import { startS3rver } from '../../test/helpers/s3rver.js';

const BUCKET = 'redoship-test';
const ENV = ['AWS_ENDPOINT_URL', 'AWS_ENDPOINT_URL_S3', 'AWS_REGION', 'AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN'] as const;
const savedEnv = Object.fromEntries(ENV.map((k) => [k, process.env[k]]));


// If s3rver cannot run here, every S3 test below is skipped and says why: nothing is faked.
const dir = mkdtempSync(join(tmpdir(), 'redoship-s3rver-'));
const started = await startS3rver(dir);
const cannotRun = typeof started === 'string' ? started : '';
const endpoint = typeof started === 'string' ? '' : started.endpoint;
if (cannotRun) console.warn(`SKIPPING the S3 storage tests: ${cannotRun}`);

let n = 0;
const fresh = () => new S3Storage(`s3://${BUCKET}/t${++n}/root`);
const all = async (s: { list(p: string): AsyncIterable<{ key: string; size: number }> }, prefix = '') => {
  const out: Array<[string, number]> = [];
  for await (const o of s.list(prefix)) out.push([o.key, o.size]);
  return out;
};

describe.skipIf(cannotRun !== '')(`S3Storage (against s3rver)${cannotRun ? `: ${cannotRun}` : ''}`, () => {
  beforeAll(async () => {
    // As S3Storage does before it loads the SDK: no warning about Node versions of future SDK releases.
    process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
    Object.assign(process.env, {
      AWS_ENDPOINT_URL: endpoint,
      AWS_REGION: 'us-east-1',
      AWS_ACCESS_KEY_ID: 'S3RVER',
      AWS_SECRET_ACCESS_KEY: 'S3RVER',
    });
    delete process.env.AWS_ENDPOINT_URL_S3;
    delete process.env.AWS_SESSION_TOKEN;
    const admin = new S3Client({ region: 'us-east-1', endpoint, forcePathStyle: true, credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } });
    await admin.send(new CreateBucketCommand({ Bucket: BUCKET }));
    admin.destroy();
  });

  afterAll(async () => {
    for (const k of ENV) {
      if (savedEnv[k] === undefined) delete process.env[k];
      else process.env[k] = savedEnv[k];
    }
    if (typeof started !== 'string') await started.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  // The cases of local.test.ts, unchanged.

  test('put, get, ranges, overwrite', async () => {
    const s = fresh();
    await s.put('sets/a/piece-0', Buffer.from('hello world'));
    expect((await s.get('sets/a/piece-0')).toString()).toBe('hello world');
    expect((await s.get('sets/a/piece-0', [6, 11])).toString()).toBe('world');
    expect((await s.get('sets/a/piece-0', [6, 100])).toString()).toBe('world');
    await s.put('sets/a/piece-0', Buffer.from('again'));
    expect((await s.get('sets/a/piece-0')).toString()).toBe('again');
    // What a file gives for ranges HTTP cannot say directly: empty, past the end.
    expect((await s.get('sets/a/piece-0', [2, 2])).length).toBe(0);
    expect((await s.get('sets/a/piece-0', [5, 9])).length).toBe(0);
    expect((await s.get('sets/a/piece-0', [50, 60])).length).toBe(0);
    await expect(s.get('sets/a/nothing', [2, 2])).rejects.toMatchObject({ code: 'NOT_FOUND' });
  });

  test('a streamed put; list in byte order with sizes, by prefix', async () => {
    const s = fresh();
    async function* body() {
      yield Buffer.from('ab');
      yield Buffer.from('cde');
    }
    await s.put('b/2', body());
    await s.put('a', Buffer.alloc(1));
    await s.put('b/10', Buffer.alloc(3));
    await s.put('ba', Buffer.alloc(4));
    expect(await all(s)).toEqual([['a', 1], ['b/10', 3], ['b/2', 5], ['ba', 4]]);
    expect(await all(s, 'b/')).toEqual([['b/10', 3], ['b/2', 5]]);
    expect(await all(s, 'nothing')).toEqual([]);
    // Byte order, not a directory walk's: '-' (0x2d) sorts before '/' (0x2f).
    await s.put('b-x', Buffer.alloc(2));
    expect((await all(s)).map(([k]) => k)).toEqual(['a', 'b-x', 'b/10', 'b/2', 'ba']);
  });

  test('a missing key is NOT_FOUND; remove of absent keys is no error', async () => {
    const s = fresh();
    await expect(s.get('x/y')).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await expect(s.get('x/y')).rejects.toBeInstanceOf(RedoshipError);
    await s.put('x/y', Buffer.from('1'));
    await s.remove(['x/y', 'x/z']);
    expect(await all(s)).toEqual([]);
    await s.remove([]);
  });

  test('a put that fails half way leaves nothing visible', async () => {
    const s = fresh();
    async function* failing() {
      yield Buffer.alloc(1000);
      throw new Error('source broke');
    }
    await expect(s.put('sets/p', failing())).rejects.toThrow(/source broke/);
    expect(await all(s)).toEqual([]);
  });

  test('keys that would leave the root are refused', async () => {
    const s = fresh();
    for (const k of ['../x', '/abs', 'a//b', 'a/./b', '']) await expect(s.put(k, Buffer.alloc(1))).rejects.toThrow(/bad storage key/);
  });

  // S3's own.

  test('a streamed put longer than one part is a multipart upload, whole', async () => {
    const s = fresh();
    const total = 2 * PART_BYTES + 12345;
    const byteAt = (i: number) => (i * 7 + (i >> 16)) & 0xff;
    async function* body() {
      for (let off = 0; off < total; off += 1 << 20) {
        const b = Buffer.alloc(Math.min(1 << 20, total - off));
        for (let i = 0; i < b.length; i++) b[i] = byteAt(off + i);
        yield b;
      }
    }
    await s.put('big', body());
    expect(await all(s)).toEqual([['big', total]]);
    const got = await s.get('big');
    expect(got.length).toBe(total);
    for (const i of [0, 1, PART_BYTES - 1, PART_BYTES, PART_BYTES + 1, 2 * PART_BYTES, total - 1]) expect(got[i], `byte ${i}`).toBe(byteAt(i));
    const across = await s.get('big', [PART_BYTES - 3, PART_BYTES + 3]); // a range across the part boundary
    expect([...across]).toEqual([-3, -2, -1, 0, 1, 2].map((d) => byteAt(PART_BYTES + d)));
  });

  test('a multipart upload that fails after a part leaves nothing visible, and the old object intact', async () => {
    const s = fresh();
    await s.put('p', Buffer.from('old'));
    async function* failing() {
      yield Buffer.alloc(PART_BYTES + 10, 1); // the first part is uploaded...
      yield Buffer.alloc(1000, 2);
      throw new Error('source broke'); // ...then the source fails
    }
    await expect(s.put('p', failing())).rejects.toThrow(/source broke/);
    await expect(s.put('q', failing())).rejects.toMatchObject({ code: 'IO' });
    expect(await all(s)).toEqual([['p', 3]]);
    expect((await s.get('p')).toString()).toBe('old');
  });

  test('list pages through the listing, in order; remove takes keys in batches', async () => {
    // Pages of 7 keys (S3's are 1000: the same code, without a thousand puts).
    const s = new S3Storage(`s3://${BUCKET}/paged/root`, process.env, { batch: 7 });
    const keys = Array.from({ length: 30 }, (_, i) => `sets/k${String(i).padStart(4, '0')}`);
    await Promise.all(keys.map((k) => s.put(k, Buffer.from(k))));
    await s.put('other', Buffer.from('x'));
    const listed = await all(s, 'sets/');
    expect(listed.map(([k]) => k)).toEqual(keys);
    expect(listed.every(([k, size]) => size === k.length)).toBe(true);
    await s.remove([...keys, 'sets/absent']);
    expect(await all(s)).toEqual([['other', 1]]);
  });

  test('prefixes sharing a bucket are separate roots', async () => {
    const a = new S3Storage(`s3://${BUCKET}/share/r`);
    const ab = new S3Storage(`s3://${BUCKET}/share/r2/`);
    const top = new S3Storage(`s3://${BUCKET}/share`);
    await a.put('k', Buffer.from('a'));
    await ab.put('k', Buffer.from('ab'));
    expect(await all(a)).toEqual([['k', 1]]);
    expect(await all(ab)).toEqual([['k', 2]]);
    expect(await all(top)).toEqual([['r/k', 1], ['r2/k', 2]]);
    expect(a.location).toBe(`s3://${BUCKET}/share/r`);
    expect(ab.location).toBe(`s3://${BUCKET}/share/r2`);
    await a.remove(['k']);
    expect(await all(top)).toEqual([['r2/k', 2]]);
  });

  test('a bucket that does not exist reads as empty; writing to it says to create it', async () => {
    const s = new S3Storage('s3://no-such-bucket/x');
    await expect(s.get('a')).rejects.toMatchObject({ code: 'NOT_FOUND' });
    expect(await all(s)).toEqual([]);
    await s.remove(['a']);
    const e = await s.put('a', Buffer.from('1')).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(RedoshipError);
    expect(e).toMatchObject({ code: 'IO', message: expect.stringMatching(/NoSuchBucket/) });
    expect((e as RedoshipError).hint).toMatch(/create it/);
  });

  test('refused credentials are an IO error whose hint names them', async () => {
    const s = new S3Storage(`s3://${BUCKET}/creds`, { ...process.env, AWS_ACCESS_KEY_ID: 'NOT-A-KEY' });
    const e = await s.put('a', Buffer.from('1')).catch((x: unknown) => x);
    expect(e).toMatchObject({ code: 'IO', message: expect.stringMatching(/InvalidAccessKeyId/) });
    expect((e as RedoshipError).hint).toMatch(/AWS_ACCESS_KEY_ID/);
  });

  test('an endpoint that does not answer is PEER_UNREACHABLE, and the hint names it', async () => {
    const port = await new Promise<number>((res) => {
      const l = createServer().listen(0, '127.0.0.1', () => {
        const p = (l.address() as { port: number }).port;
        l.close(() => res(p));
      });
    });
    const s = new S3Storage(`s3://${BUCKET}/x`, { ...process.env, AWS_ENDPOINT_URL: `http://127.0.0.1:${port}` });
    const e = await s.get('a').catch((x: unknown) => x);
    expect(e).toMatchObject({ code: 'PEER_UNREACHABLE' });
    expect((e as RedoshipError).hint).toContain(`http://127.0.0.1:${port}`);
    // AWS_ENDPOINT_URL_S3 wins over AWS_ENDPOINT_URL.
    const s2 = new S3Storage(`s3://${BUCKET}/y`, { ...process.env, AWS_ENDPOINT_URL: `http://127.0.0.1:${port}`, AWS_ENDPOINT_URL_S3: endpoint });
    await s2.put('a', Buffer.from('1'));
    expect((await s2.get('a')).toString()).toBe('1');
  });

  test('openStorage and createStorage choose by location', async () => {
    const s = openStorage(`s3://${BUCKET}/via-open`);
    expect(s).toBeInstanceOf(S3Storage);
    await createStorage(`s3://${BUCKET}/via-open`).put('k', Buffer.from('v'));
    expect((await s.get('k')).toString()).toBe('v');
    const d = join(mkdtempSync(join(tmpdir(), 'storage-')), 'made');
    expect(openStorage(d)).toBeInstanceOf(LocalStorage);
    expect(LocalStorage.exists(d)).toBe(false);
    expect(createStorage(d)).toBeInstanceOf(LocalStorage);
    expect(LocalStorage.exists(d)).toBe(true);
    expect(resolveLocation('s3://b/p')).toBe('s3://b/p');
    expect(resolveLocation('rel/dir')).toBe(join(process.cwd(), 'rel/dir'));
  });
});

describe('S3 locations', () => {
  test('s3://bucket[/prefix] parses; anything else is a USAGE error', () => {
    expect(parseS3Location('s3://bkt')).toEqual({ bucket: 'bkt', prefix: '' });
    expect(parseS3Location('s3://bkt/')).toEqual({ bucket: 'bkt', prefix: '' });
    expect(parseS3Location('s3://bkt/a/b')).toEqual({ bucket: 'bkt', prefix: 'a/b/' });
    expect(parseS3Location('s3://bkt/a/b/')).toEqual({ bucket: 'bkt', prefix: 'a/b/' });
    for (const bad of ['s3://', 's3:///x', 's3://bkt/a//b', 's3://bkt/../x', 's3://b'])
      expect(() => parseS3Location(bad), bad).toThrow(expect.objectContaining({ code: 'USAGE' }));
    expect(new S3Storage('s3://bkt/a/b/', {}).location).toBe('s3://bkt/a/b');
    expect(new S3Storage('s3://bkt', {}).location).toBe('s3://bkt');
  });
});
