/**
 * Storage in a local directory. put() writes a temporary file beside the target, fsyncs it, renames it into
 * place and fsyncs the directory: whole or nothing, durable on return. Temporary files are named
 * '.<name>.tmp-<pid>-<random>' and never listed.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, statSync, existsSync } from 'node:fs';
import { open, readdir, rename, rm, stat } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { RedoshipError, ioError } from '../error/index.js';
import { checkKey, type Storage, type StorageObject } from './storage.js';
import { Writeback } from './writeback.js';

export class LocalStorage implements Storage {
  readonly root: string;

  constructor(root: string) {
    this.root = resolve(root);
  }

  get location(): string {
    return this.root;
  }

  private path(key: string): string {
    checkKey(key);
    return join(this.root, ...key.split('/'));
  }

  async put(key: string, body: Uint8Array | AsyncIterable<Uint8Array>): Promise<void> {
    const target = this.path(key);
    const dir = dirname(target);
    const tmp = join(dir, `.${target.slice(dir.length + 1)}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
    try {
      // The first directory this call created, if any: its entry (and those below it) must be made durable
      // too, or a crash could lose the new folder with the file in it.
      const created = mkdirSync(dir, { recursive: true });
      const fh = await open(tmp, 'wx');
      try {
        if (body instanceof Uint8Array) await fh.writeFile(body);
        else {
          // A large streamed body (a backup piece) is written back while the next bytes are produced.
          const wb = new Writeback(() => fh.datasync());
          try {
            for await (const chunk of body) {
              await fh.write(chunk);
              wb.wrote(chunk.length);
            }
          } catch (e) {
            await wb.settle().catch(() => undefined); // the first failure is the one to report
            throw e;
          }
          await wb.settle();
        }
        await fh.sync();
      } finally {
        await fh.close();
      }
      await rename(tmp, target);
      const dirs = [dir];
      if (created) for (let d = dir; d !== dirname(created) && d !== dirname(d); ) dirs.push((d = dirname(d)));
      for (const d of dirs) {
        const dfh = await open(d, 'r');
        try {
          await dfh.sync();
        } finally {
          await dfh.close();
        }
      }
    } catch (e) {
      await rm(tmp, { force: true }).catch(() => {});
      throw e instanceof RedoshipError ? e : ioError('write', target, e);
    }
  }

  async get(key: string, range?: readonly [number, number]): Promise<Buffer> {
    const p = this.path(key);
    let fh;
    try {
      fh = await open(p, 'r');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT')
        throw new RedoshipError('NOT_FOUND', `${key} is not in ${this.root}`, 'run `redoship crosscheck` to find what the repository lost');
      throw ioError('read', p, e);
    }
    try {
      if (!range) return await fh.readFile();
      const [start, end] = range;
      const buf = Buffer.alloc(Math.max(0, end - start));
      const { bytesRead } = await fh.read(buf, 0, buf.length, start);
      return buf.subarray(0, bytesRead);
    } catch (e) {
      throw ioError('read', p, e);
    } finally {
      await fh.close();
    }
  }

  async *list(prefix: string): AsyncIterable<StorageObject> {
    const out: StorageObject[] = [];
    const walk = async (dir: string, rel: string): Promise<void> => {
      let names: string[];
      try {
        names = await readdir(dir);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
        throw ioError('list', dir, e);
      }
      for (const name of names) {
        if (name.startsWith('.') && name.includes('.tmp-')) continue;
        const key = rel ? `${rel}/${name}` : name;
        const p = join(dir, name);
        const st = await stat(p);
        if (st.isDirectory()) {
          if (prefix.startsWith(`${key}/`) || key.startsWith(prefix) || prefix === '') await walk(p, key);
        } else if (key.startsWith(prefix)) out.push({ key, size: st.size });
      }
    };
    await walk(this.root, '');
    out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    yield* out;
  }

  async remove(keys: readonly string[]): Promise<void> {
    for (const k of keys) {
      try {
        await rm(this.path(k), { force: true });
      } catch (e) {
        throw ioError('remove', this.path(k), e);
      }
    }
  }

  /** True when the root exists (a repository that was never written has no directory). */
  static exists(root: string): boolean {
    return existsSync(root) && statSync(root).isDirectory();
  }

  /** Creates the root directory. */
  static create(root: string): LocalStorage {
    try {
      mkdirSync(root, { recursive: true });
    } catch (e) {
      throw ioError('create', root, e);
    }
    return new LocalStorage(root);
  }
}
