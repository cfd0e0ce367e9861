/**
 * Where a restore from a repository reads archived redo: a local archive (--archive) and the repository's
 * own copy (<repo>/archive/, archive-copy.ts), read through the repository's Storage, so an S3 repository
 * restores with no local archive at all, and a local archive that lost old segments (backup archive
 * --delete-input) is completed from the repository.
 *
 * Planning reads no segment: the repository's segments are known from their names (sealed segments only are
 * copied there, and a sealed segment's name says its LSN range: `<incarnation, 8 hex>-<first LSN, 16 hex>-
 * <last LSN, 16 hex>.seg`, src/redo/segment-format.ts), the local archive's from its directory. [from, to]
 * is covered LSN by LSN, by the local archive where it holds the LSN (nothing to fetch), else by the
 * repository's segment reaching furthest. A hole in both is ARCHIVE_GAP naming the missing LSNs and the
 * latest LSN the restore can reach.
 *
 * Applying a repository segment fetches it whole into a staging directory laid out as an archive (the
 * repository's archive.json, then segments/), reads it there with the archive's own reader (every record's
 * CRC checked), and removes it again: at most one segment is staged at a time.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { RedoshipError, ioError } from '../error/index.js';
import { Archive, applyRecords, type ArchiveIdentity, type Lsn } from '../redo/index.js';
import type { Repo } from './repo.js';

const SEGMENTS = 'archive/segments/';
const IDENTITY = 'archive/archive.json';
const SEALED_NAME = /^([0-9a-f]{8})-([0-9a-f]{16})-([0-9a-f]{16})\.seg$/;

/** One sealed segment of the repository's copy of archived redo. */
export interface RepoSegment {
  readonly key: string;
  readonly name: string;
  readonly incarnation: number;
  readonly firstLsn: Lsn;
  readonly lastLsn: Lsn;
  readonly bytes: number;
}

/** The repository's redo segments, in name order (incarnation, then LSN, as an archive orders them). */
export async function listRepoSegments(repo: Repo): Promise<RepoSegment[]> {
  const out: RepoSegment[] = [];
  for await (const o of repo.storage.list(SEGMENTS)) {
    const name = o.key.slice(SEGMENTS.length);
    const m = SEALED_NAME.exec(name);
    if (!m) continue;
    out.push({ key: o.key, name, incarnation: parseInt(m[1]!, 16), firstLsn: BigInt('0x' + m[2]!) as Lsn, lastLsn: BigInt('0x' + m[3]!) as Lsn, bytes: o.size });
  }
  return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/** One run of redo to apply: from the local archive, or one repository segment. */
export type RedoStep =
  | { readonly source: 'archive'; readonly fromLsn: Lsn; readonly toLsn: Lsn }
  | { readonly source: 'repository'; readonly fromLsn: Lsn; readonly toLsn: Lsn; readonly segment: RepoSegment };

export class RedoSources {
  private constructor(
    private readonly repo: Repo,
    readonly archive: Archive | null,
    private readonly local: ReadonlyArray<{ firstLsn: Lsn; lastLsn: Lsn }>,
    readonly remote: readonly RepoSegment[],
  ) {}

  /** The local archive (if any) and the repository's segments; WRONG_DATABASE when either is another's. */
  static async open(repo: Repo, archive: Archive | null): Promise<RedoSources> {
    if (archive && archive.identity.databaseId !== repo.identity.databaseId)
      throw new RedoshipError('WRONG_DATABASE', `the archive ${archive.dir} is of database ${archive.identity.databaseId}; the repository is of ${repo.identity.databaseId}`, 'give the archive of the same database');
    const remote = await listRepoSegments(repo);
    const local = archive ? archive.segments().filter((s) => s.lastLsn >= s.firstLsn) : [];
    return new RedoSources(repo, archive, local, remote);
  }

  /** True when neither place holds any redo. */
  get empty(): boolean {
    return this.local.length === 0 && this.remote.length === 0;
  }

  /** The last LSN any redo reaches (not necessarily without a hole from a given point: plan() says). */
  get lastLsn(): bigint {
    return [...this.local, ...this.remote].reduce((a, s) => (s.lastLsn > a ? s.lastLsn : a), 0n);
  }

  /**
   * Steps covering [from, to] exactly, local archive first where it holds an LSN. ARCHIVE_GAP naming the
   * first missing LSNs and the last LSN reachable without them when the redo has a hole.
   */
  plan(from: bigint, to: bigint): RedoStep[] {
    const steps: RedoStep[] = [];
    let expect = from;
    while (expect <= to) {
      const l = this.local.find((s) => s.firstLsn <= expect && expect <= s.lastLsn);
      if (l) {
        const end = (l.lastLsn < to ? l.lastLsn : to) as Lsn;
        const prev = steps[steps.length - 1];
        if (prev?.source === 'archive') steps[steps.length - 1] = { source: 'archive', fromLsn: prev.fromLsn, toLsn: end };
        else steps.push({ source: 'archive', fromLsn: expect as Lsn, toLsn: end });
        expect = end + 1n;
        continue;
      }
      const r = this.remote.filter((s) => s.firstLsn <= expect && expect <= s.lastLsn).sort((a, b) => (b.lastLsn > a.lastLsn ? 1 : -1))[0];
      if (!r) {
        const next = [...this.local, ...this.remote].filter((s) => s.firstLsn > expect).reduce<bigint | null>((a, s) => (a === null || s.firstLsn < a ? s.firstLsn : a), null);
        const missing = next === null ? `LSN ${expect} and after` : `LSN ${expect}..${next - 1n}`;
        throw new RedoshipError(
          'ARCHIVE_GAP',
          `no archived redo holds ${missing} (looked in ${[this.archive ? `the archive ${this.archive.dir}` : null, `the repository's copy ${this.repo.location}/archive`].filter(Boolean).join(' and ')}); the latest LSN this restore can reach is ${expect - 1n}`,
          `restore with --until-lsn ${expect - 1n}, or give --archive holding that redo (a standby's archive, another copy), or copy it into the repository with \`redoship backup archive\``,
        );
      }
      const end = (r.lastLsn < to ? r.lastLsn : to) as Lsn;
      steps.push({ source: 'repository', fromLsn: expect as Lsn, toLsn: end, segment: r });
      expect = end + 1n;
    }
    return steps;
  }

  /**
   * The last LSN after `after` whose commit time is at or before timeUs, or null when none is. The local
   * archive's record headers are read in place; the repository's segments after `after` are fetched one by
   * one (into a staging directory under stagingParent) until one starts after timeUs.
   */
  async lsnAtTime(timeUs: bigint, after: bigint, stagingParent: string): Promise<bigint | null> {
    let found: bigint | null = null;
    const byArchive = this.archive?.lsnAtTime(timeUs) ?? null;
    if (byArchive !== null && byArchive > after) found = byArchive;
    const coveredLocally = (s: RepoSegment) => this.local.some((l) => l.firstLsn <= s.firstLsn && s.lastLsn <= l.lastLsn);
    const todo = this.remote.filter((s) => s.lastLsn > after && !coveredLocally(s));
    if (todo.length === 0) return found;
    await this.staged(stagingParent, async (stage) => {
      for (const s of todo) {
        const t = (await stage(s)).lsnAtTime(timeUs);
        if (t === null || t < s.firstLsn) break; // this segment starts after timeUs: so do the later ones
        if (found === null || t > found) found = t;
        if (t < s.lastLsn) break;
      }
    });
    return found;
  }

  /**
   * Applies the steps to the file at fd (startSize pages before). Repository segments are staged under
   * stagingParent one at a time. Returns the database size in pages after the last record.
   */
  async apply(
    fd: number,
    steps: readonly RedoStep[],
    pageSize: number,
    startSize: number,
    stagingParent: string,
    onRecord?: (lsn: Lsn, pagesWritten: number) => void,
  ): Promise<number> {
    let size = startSize;
    let pages = 0;
    const progress = (lsn: Lsn, p: number) => onRecord?.(lsn, pages + p);
    const run = (archive: Archive, s: RedoStep) => {
      let last = 0;
      size = applyRecords(fd, archive, s.fromLsn, s.toLsn, pageSize, size, (lsn, p) => {
        last = p;
        progress(lsn, p);
      }).sizePages;
      pages += last;
    };
    if (steps.every((s) => s.source === 'archive')) {
      for (const s of steps) run(this.archive!, s);
      return size;
    }
    await this.staged(stagingParent, async (stage) => {
      for (const s of steps) run(s.source === 'archive' ? this.archive! : await stage(s.segment), s);
    });
    return size;
  }

  /** Runs f with a function that stages one repository segment (replacing the one before) as an archive. */
  private async staged(parent: string, f: (stage: (s: RepoSegment) => Promise<Archive>) => Promise<void>): Promise<void> {
    let dir: string;
    try {
      dir = mkdtempSync(join(parent, '.redoship-redo-'));
    } catch (e) {
      throw ioError('create a staging directory for archived redo in', parent, e);
    }
    try {
      const identity = await this.identity();
      mkdirSync(join(dir, 'segments'));
      writeFileSync(join(dir, 'archive.json'), JSON.stringify(identity));
      let current: string | null = null;
      await f(async (s) => {
        if (current) rmSync(current, { force: true });
        const body = await this.repo.storage.get(s.key);
        if (body.length !== s.bytes) throw new RedoshipError('ARCHIVE_CORRUPT', `${this.repo.location}/${s.key} is ${body.length} bytes, listed as ${s.bytes}`, 'it changed while it was read: run the restore again');
        current = join(dir, 'segments', s.name);
        try {
          writeFileSync(current, body);
        } catch (e) {
          throw ioError('stage archived redo in', current, e);
        }
        return Archive.open(dir);
      });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }

  private async identity(): Promise<ArchiveIdentity> {
    let id: ArchiveIdentity;
    try {
      id = JSON.parse((await this.repo.storage.get(IDENTITY)).toString('utf8')) as ArchiveIdentity;
    } catch (e) {
      if ((e as { code?: string }).code === 'NOT_FOUND')
        throw new RedoshipError('ARCHIVE_CORRUPT', `the repository ${this.repo.location} holds redo segments but no ${IDENTITY}`, 'copy the redo again with `redoship backup archive`');
      throw e;
    }
    if (id.databaseId !== this.repo.identity.databaseId)
      throw new RedoshipError('WRONG_DATABASE', `the repository's archived redo is of database ${id.databaseId}; its backups are of ${this.repo.identity.databaseId}`, 'give each database its own repository');
    return id;
  }
}
