/*
 * A BACKUP REPOSITORY (a directory, later also an S3 prefix), self-describing: the catalog is the list of
 * manifests, so it can always be rebuilt from the repository alone.
 *
 *   redoship-repo.json                 { format: 1, databaseId, pageSize, createdAt }
 *   sets/<name>/manifest.json          one backup set (below); written LAST: a set without it is incomplete
 *   sets/<name>/piece-NNNNN            pieces (piece.ts format)
 *   sets/<name>/page-hashes            16-byte page hashes (page-hash.ts) of the set's pages, in pgno order
 *
 * <name> = <end LSN, 20 digits>-L<level>[c]-<UTC time yyyymmddThhmmssZ>: names sort by LSN.
 *
 * manifest.json:
 *   format 1, databaseId, pageSize, name, level (0|1), cumulative, parent (name|null), base (the level 0 of its
 *   chain), startLsn (first LSN whose changes it holds: 1 for a level 0), endLsn (the LSN it is consistent
 *   at), endCommitTime, createdAt, sizePages (database size at endLsn), pages (page images held),
 *   compression { algorithm, level }, encryption (null), pieces [{ name, bytes, sha256, pages, firstPgno,
 *   lastPgno }], pageHashes { name, sha256 (of the file), algorithm (page-hash.ts; absent in sets written
 *   before it was recorded, which hold sha256-128) }.
 */
import { RedoshipError } from '../error/index.js';
import { createStorage, openStorage, type Storage } from '../storage/index.js';
import { createHash } from 'node:crypto';
import { PAGE_HASH_BYTES, pageHashAlgorithmNamed, type PageHashAlgorithm } from '../sqlite/index.js';
import { pieceCorrupt, type Compression } from './piece.js';
import type { SetEncryption } from './key.js';

export interface PieceInfo {
  readonly name: string;
  readonly bytes: number;
  readonly sha256: string;
  readonly pages: number;
  readonly firstPgno: number;
  readonly lastPgno: number;
}

export interface BackupManifest {
  readonly format: 1;
  readonly databaseId: string;
  readonly pageSize: number;
  readonly name: string;
  readonly level: 0 | 1;
  readonly cumulative: boolean;
  /** A level 0 made by merging a chain (backup merge), not read from the database. */
  readonly synthetic?: boolean;
  readonly parent: string | null;
  readonly base: string;
  readonly startLsn: string;
  readonly endLsn: string;
  readonly endCommitTime: string;
  readonly createdAt: string;
  readonly sizePages: number;
  readonly pages: number;
  readonly compression: { readonly algorithm: Compression; readonly level: number };
  /** null, or how the set's pieces are encrypted (key.ts). */
  readonly encryption: SetEncryption | null;
  readonly pieces: readonly PieceInfo[];
  readonly pageHashes: { readonly name: string; readonly sha256: string; readonly algorithm?: PageHashAlgorithm };
}

/** A set's page hashes, PAGE_HASH_BYTES per page it holds in the order its pieces hold them, and how they were taken. */
export interface SetPageHashes {
  readonly hashes: Buffer;
  readonly algorithm: PageHashAlgorithm;
}

export interface RepoIdentity {
  readonly format: 1;
  readonly databaseId: string;
  readonly pageSize: number;
  readonly createdAt: string;
}

const IDENTITY = 'redoship-repo.json';

export class Repo {
  private constructor(
    readonly storage: Storage,
    readonly identity: RepoIdentity,
  ) {}

  get location(): string {
    return this.storage.location;
  }

  /** Opens a repository; REPO_MISSING-style ARCHIVE_MISSING when there is none. */
  static async open(location: string): Promise<Repo> {
    const storage = openStorage(location);
    let raw: Buffer;
    try {
      raw = await storage.get(IDENTITY);
    } catch (e) {
      if ((e as RedoshipError).code === 'NOT_FOUND')
        throw new RedoshipError('ARCHIVE_MISSING', `no redoship backup repository at ${storage.location}`, 'check --repo; `redoship backup` creates one');
      throw e;
    }
    const id = JSON.parse(raw.toString('utf8')) as RepoIdentity;
    if (id.format !== 1 || !/^[0-9a-f]{32}$/.test(id.databaseId ?? ''))
      throw new RedoshipError('ARCHIVE_CORRUPT', `${storage.location}/${IDENTITY} is not a repository identity`, 'check --repo');
    return new Repo(storage, id);
  }

  /** Opens the repository for this database, creating it when absent; WRONG_DATABASE for another's. */
  static async openFor(location: string, databaseId: string, pageSize: number): Promise<Repo> {
    try {
      const r = await Repo.open(location);
      if (r.identity.databaseId !== databaseId)
        throw new RedoshipError('WRONG_DATABASE', `the repository ${r.location} holds backups of database ${r.identity.databaseId}; this is ${databaseId}`, 'give each database its own repository (--repo)');
      return r;
    } catch (e) {
      if ((e as RedoshipError).code !== 'ARCHIVE_MISSING') throw e;
    }
    const storage = createStorage(location);
    const id: RepoIdentity = { format: 1, databaseId, pageSize, createdAt: new Date().toISOString() };
    await storage.put(IDENTITY, Buffer.from(JSON.stringify(id, null, 2) + '\n'));
    return new Repo(storage, id);
  }

  /**
   * A set's page hashes, checked against the manifest's SHA-256 and page count: what every reader of its
   * pieces compares their images with, hashed the way the manifest names.
   */
  async pageHashes(set: BackupManifest): Promise<SetPageHashes> {
    const name = `${set.name}/${set.pageHashes.name}`;
    const algorithm = pageHashAlgorithmNamed(set.pageHashes.algorithm);
    if (!algorithm)
      throw new RedoshipError('ARCHIVE_CORRUPT', `${set.name}/manifest.json names page hashes "${String(set.pageHashes.algorithm)}", which this redoship does not know`, 'a newer redoship wrote this set: restore it with that version');
    const hashes = await this.storage.get(`sets/${name}`);
    if (createHash('sha256').update(hashes).digest('hex') !== set.pageHashes.sha256) throw pieceCorrupt(name, 0, 'checksum mismatch');
    if (hashes.length !== set.pages * PAGE_HASH_BYTES) throw pieceCorrupt(name, 0, `${hashes.length} bytes for ${set.pages} pages`);
    return { hashes, algorithm };
  }

  /** Every complete backup set (with a manifest), in LSN order. */
  async sets(): Promise<BackupManifest[]> {
    const out: BackupManifest[] = [];
    for await (const o of this.storage.list('sets/')) {
      if (!o.key.endsWith('/manifest.json')) continue;
      out.push(JSON.parse((await this.storage.get(o.key)).toString('utf8')) as BackupManifest);
    }
    return out.sort((a, b) => (BigInt(a.endLsn) < BigInt(b.endLsn) ? -1 : BigInt(a.endLsn) > BigInt(b.endLsn) ? 1 : a.level - b.level));
  }
}
