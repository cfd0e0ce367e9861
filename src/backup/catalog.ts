/*
 * THE CATALOG: catalog.json at the repository's root, the record of every backup set the repository was
 * given, with what crosscheck last found of it:
 *
 *   { format: 1, rebuiltAt: ISO | null, sets: [{ name, level, endLsn, status: 'available' | 'expired',
 *     checkedAt: ISO | null, missing: [keys] }] }
 *
 * The manifests are the truth and the catalog is derived from them: `catalog rebuild` writes it from the
 * manifests alone (a lost catalog costs nothing). What only the catalog knows is that a set existed: a set
 * whose manifest or pieces are gone is EXPIRED (RMAN: listed, but missing), found by crosscheck, and
 * restore never plans with it. OBSOLETE (not needed under a retention policy) is retention.ts's business.
 */
import type { Repo, BackupManifest } from './repo.js';

export interface CatalogEntry {
  readonly name: string;
  readonly level: 0 | 1;
  readonly endLsn: string;
  readonly status: 'available' | 'expired';
  readonly checkedAt: string | null;
  readonly missing: readonly string[];
}

export interface Catalog {
  readonly format: 1;
  readonly rebuiltAt: string | null;
  readonly sets: readonly CatalogEntry[];
}

const CATALOG = 'catalog.json';

export async function readCatalog(repo: Repo): Promise<Catalog | null> {
  try {
    return JSON.parse((await repo.storage.get(CATALOG)).toString('utf8')) as Catalog;
  } catch (e) {
    if ((e as { code?: string }).code === 'NOT_FOUND') return null;
    throw e;
  }
}

async function writeCatalog(repo: Repo, c: Catalog): Promise<void> {
  await repo.storage.put(CATALOG, Buffer.from(JSON.stringify(c, null, 2) + '\n'));
}

const entryOf = (m: BackupManifest): CatalogEntry => ({ name: m.name, level: m.level, endLsn: m.endLsn, status: 'available', checkedAt: null, missing: [] });

/** Records a new set (called after its manifest is written). */
export async function catalogAdd(repo: Repo, m: BackupManifest): Promise<void> {
  const c = (await readCatalog(repo)) ?? { format: 1 as const, rebuiltAt: null, sets: [] };
  await writeCatalog(repo, { ...c, sets: [...c.sets.filter((s) => s.name !== m.name), entryOf(m)] });
}

/** Forgets sets (after they were deleted on purpose). */
export async function catalogRemove(repo: Repo, names: readonly string[]): Promise<void> {
  const c = await readCatalog(repo);
  if (c) await writeCatalog(repo, { ...c, sets: c.sets.filter((s) => !names.includes(s.name)) });
}

/** Writes the catalog from the manifests alone. Returns it. */
export async function rebuildCatalog(repo: Repo): Promise<Catalog> {
  const c: Catalog = { format: 1, rebuiltAt: new Date().toISOString(), sets: (await repo.sets()).map(entryOf) };
  await writeCatalog(repo, c);
  return c;
}

/**
 * Checks that every catalogued set still has its manifest and every piece at its recorded size, and marks
 * each available or expired. Sets found in the repository but not in the catalog are added.
 */
export async function crosscheck(repo: Repo): Promise<Catalog> {
  const present = new Map<string, number>();
  for await (const o of repo.storage.list('sets/')) present.set(o.key, o.size);
  const manifests = new Map((await repo.sets()).map((m) => [m.name, m]));
  const known = (await readCatalog(repo))?.sets ?? [];
  const names = [...new Set([...known.map((s) => s.name), ...manifests.keys()])];
  const now = new Date().toISOString();
  const sets: CatalogEntry[] = names.map((name) => {
    const m = manifests.get(name);
    const prior = known.find((s) => s.name === name);
    if (!m) return { name, level: prior?.level ?? 0, endLsn: prior?.endLsn ?? '0', status: 'expired', checkedAt: now, missing: [`sets/${name}/manifest.json`] };
    const missing: string[] = [];
    for (const p of m.pieces) if (present.get(`sets/${name}/${p.name}`) !== p.bytes) missing.push(`sets/${name}/${p.name}`);
    if (!present.has(`sets/${name}/${m.pageHashes.name}`)) missing.push(`sets/${name}/${m.pageHashes.name}`);
    return { ...entryOf(m), status: missing.length ? 'expired' : 'available', checkedAt: now, missing };
  });
  sets.sort((a, b) => (BigInt(a.endLsn) < BigInt(b.endLsn) ? -1 : BigInt(a.endLsn) > BigInt(b.endLsn) ? 1 : 0));
  const c: Catalog = { format: 1, rebuiltAt: (await readCatalog(repo))?.rebuiltAt ?? null, sets };
  await writeCatalog(repo, c);
  return c;
}

/**
 * Copies a backup set, object by object, to another repository of the same database (RMAN: backup copies;
 * DM8: backups of backups). The manifest goes last, so the copy counts only once it is whole.
 */
export async function copySet(from: Repo, to: Repo, name: string): Promise<void> {
  const manifestKey = `sets/${name}/manifest.json`;
  const keys: string[] = [];
  for await (const o of from.storage.list(`sets/${name}/`)) if (o.key !== manifestKey) keys.push(o.key);
  for (const k of keys) await to.storage.put(k, await from.storage.get(k));
  const manifest = await from.storage.get(manifestKey);
  await to.storage.put(manifestKey, manifest);
  await catalogAdd(to, JSON.parse(manifest.toString('utf8')) as BackupManifest);
}
