/** LocalStorage against its contract (storage.ts), on the real file system. */
import { mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { RedoshipError } from '../error/index.js';
import { LocalStorage } from './local.js';

const fresh = () => new LocalStorage(mkdtempSync(join(tmpdir(), 'storage-')));
const all = async (s: LocalStorage, prefix = '') => {
  const out: Array<[string, number]> = [];
  for await (const o of s.list(prefix)) out.push([o.key, o.size]);
  return out;
};

describe('LocalStorage', () => {
  test('put, get, ranges, overwrite', async () => {
    const s = fresh();
    await s.put('sets/a/piece-0', Buffer.from('hello world'));
    expect((await s.get('sets/a/piece-0')).toString()).toBe('hello world');
    expect((await s.get('sets/a/piece-0', [6, 11])).toString()).toBe('world');
    expect((await s.get('sets/a/piece-0', [6, 100])).toString()).toBe('world');
    await s.put('sets/a/piece-0', Buffer.from('again'));
    expect((await s.get('sets/a/piece-0')).toString()).toBe('again');
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
  });

  test('a missing key is NOT_FOUND; remove of absent keys is no error', async () => {
    const s = fresh();
    await expect(s.get('x/y')).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await expect(s.get('x/y')).rejects.toBeInstanceOf(RedoshipError);
    await s.put('x/y', Buffer.from('1'));
    await s.remove(['x/y', 'x/z']);
    expect(await all(s)).toEqual([]);
  });

  test('a put that fails half way leaves nothing visible, and no temporary file', async () => {
    const s = fresh();
    async function* failing() {
      yield Buffer.alloc(1000);
      throw new Error('source broke');
    }
    await expect(s.put('sets/p', failing())).rejects.toThrow();
    expect(await all(s)).toEqual([]);
    expect(readdirSync(join(s.root, 'sets'))).toEqual([]);
  });

  test('keys that would leave the root are refused', async () => {
    const s = fresh();
    for (const k of ['../x', '/abs', 'a//b', 'a/./b', '']) await expect(s.put(k, Buffer.alloc(1))).rejects.toThrow(/bad storage key/);
  });
});
