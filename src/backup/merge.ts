/**
 * Synthetic full (RMAN's "incrementally updated backup", DM8's merge): a new level 0 built from the newest
 * chain (a level 0 and the level 1s a restore would apply), without reading the database. The new set is at
 * the chain's end LSN; it restores exactly what the chain restores.
 */
import { RedoshipError } from '../error/index.js';
import { PAGE_HASH_BYTES } from '../sqlite/index.js';
import { decodePiece, pieceCorrupt, type CompressionSpec } from './piece.js';
import { Repo, type BackupManifest } from './repo.js';
import { planChain } from './restore.js';
import { writeSet, type BackupProgress } from './take.js';
import { readCatalog } from './catalog.js';
import { setKey } from './key.js';

export async function mergeChain(
  location: string,
  o: { compression: CompressionSpec; maxPieceBytes: number; encryptionSecret?: Buffer; onProgress?: (p: BackupProgress) => void },
): Promise<{ manifest: BackupManifest; from: string[] }> {
  const repo = await Repo.open(location);
  const expired = new Set(((await readCatalog(repo))?.sets ?? []).filter((s) => s.status === 'expired').map((s) => s.name));
  const sets = (await repo.sets()).filter((s) => !expired.has(s.name));
  const end = sets.reduce((a, s) => (BigInt(s.endLsn) > a ? BigInt(s.endLsn) : a), 0n);
  const chain = planChain(sets, end);
  if (chain.length === 0) throw new RedoshipError('TARGET_UNREACHABLE', 'the repository has no level 0 to merge from', 'take a level 0 backup first');
  if (chain.length === 1) throw new RedoshipError('USAGE', `the newest chain is the level 0 ${chain[0]!.name} alone: nothing to merge`, 'take level 1 backups first; merge folds them into a new level 0');
  const last = chain[chain.length - 1]!;
  const readSet = async (s: BackupManifest) => {
    const out: Array<readonly [number, Buffer]> = [];
    const key = s.encryption ? setKey(s.name, s.encryption, o.encryptionSecret ?? null) : undefined;
    // Every image is checked against the set's page hashes before it goes into the new set (a new set gets
    // new hashes: damage that got in here would be certified as good).
    const hashes = await repo.pageHashes(s);
    for (const p of s.pieces) out.push(...decodePiece(`${s.name}/${p.name}`, await repo.storage.get(`sets/${s.name}/${p.name}`), s.pageSize, key, hashes.subarray(out.length * PAGE_HASH_BYTES)));
    if (out.length !== s.pages) throw pieceCorrupt(s.name, 0, `it holds ${out.length} pages, the manifest says ${s.pages}`);
    return out;
  };
  // The level 1s' pages (the newest image of each) in memory; the level 0 streamed piece by piece under them.
  const newer = new Map<number, Buffer>();
  for (const s of chain.slice(1)) for (const [pgno, page] of await readSet(s)) newer.set(pgno, page);
  const l0 = chain[0]!;
  const l0Pages: Array<readonly [number, Buffer]> = await readSet(l0);
  const size = last.sizePages;
  function* pages(): Generator<readonly [number, Uint8Array]> {
    let i = 0;
    for (let pgno = 1; pgno <= size; pgno++) {
      while (i < l0Pages.length && l0Pages[i]![0] < pgno) i++;
      const img = newer.get(pgno) ?? (l0Pages[i]?.[0] === pgno ? l0Pages[i]![1] : undefined);
      if (!img) throw new RedoshipError('ARCHIVE_CORRUPT', `the chain ending at ${last.name} has no image of page ${pgno}`, 'validate the repository');
      yield [pgno, img];
    }
  }
  const manifest = await writeSet(repo, {
    level: 0,
    cumulative: false,
    parent: null,
    endLsn: BigInt(last.endLsn),
    commitTimeUs: BigInt(new Date(last.endCommitTime).getTime()) * 1000n,
    sizePages: size,
    pageSize: last.pageSize,
    pages: pages(),
    pageCount: size,
    compression: o.compression,
    maxPieceBytes: o.maxPieceBytes,
    synthetic: true,
    ...(o.onProgress ? { onProgress: o.onProgress } : {}),
    // Encrypted sets merge into an encrypted set, with the same secret.
    ...(o.encryptionSecret && chain.some((s) => s.encryption) ? { encryptionSecret: o.encryptionSecret } : {}),
  });
  return { manifest, from: chain.map((s) => s.name) };
}
