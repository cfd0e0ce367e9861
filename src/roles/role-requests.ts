/**
 * The primary's side of role changes: in a primary daemon, the control requests (transport/control.ts) that
 * `switchover` (switchover.ts), `reinstate` and `repair` send it: describe, freeze, thaw, demote, rewind and
 * page-images.
 */
import { RedoshipError } from '../error/index.js';
import { historyToJson } from '../redo/index.js';
import { type PrimaryHandle } from '../primary/index.js';
import { pageHash, pageHashAlgorithmNamed, PAGE_HASH_BYTES } from '../sqlite/index.js';
import { pageImagesReply } from './repair.js';

type Obj = Record<string, unknown>;

/** In a primary daemon: answers describe / freeze / thaw / demote / rewind / page-images; resolves when demotion is asked. */
export function serveRoleRequests(handle: PrimaryHandle, db: string, archive: string): { demoteRequested: Promise<{ newPrimary: string }>; stop(): void } {
  let resolveDemote!: (v: { newPrimary: string }) => void;
  const demoteRequested = new Promise<{ newPrimary: string }>((r) => (resolveDemote = r));
  const server = handle.server;
  if (server)
    server.controlHandler = async (op, args, partial) => {
      if (op === 'describe')
        return { role: 'primary', databaseId: handle.archive.identity.databaseId, lastLsn: String(handle.capturer.lastLsn), db, archive, fenced: server.fencedBy, history: historyToJson(handle.writer.history) };
      if (op === 'freeze') {
        const f = handle.freeze(typeof args.autoThawMs === 'number' ? args.autoThawMs : 30_000);
        return { lastLsn: String(f.lastLsn), commitTimeUs: String(f.commitTimeUs) };
      }
      if (op === 'thaw') {
        handle.thaw();
        return { thawed: true };
      }
      if (op === 'demote') {
        if (typeof args.newPrimary !== 'string' || !/^wss?:\/\//.test(args.newPrimary)) throw new RedoshipError('USAGE', 'demote needs newPrimary, a ws:// URL', 'this is a bug in switchover');
        setImmediate(() => resolveDemote({ newPrimary: args.newPrimary as string }));
        return { accepted: true };
      }
      if (op === 'rewind') return rewind(handle, args, partial);
      if (op === 'page-images') return pageImagesReply(archive, args);
      throw new RedoshipError('ROLE', `a primary does not take "${op}"`, 'see `redoship switchover --help`');
    };
  return { demoteRequested, stop: () => server && (server.controlHandler = null) };
}

/**
 * For reinstate: compares the caller's page hashes with a consistent snapshot of this primary and sends
 * the pages that differ (and those past the caller's size), then the snapshot's LSN and size.
 */
async function rewind(handle: PrimaryHandle, args: Obj, partial: (body: unknown) => void): Promise<unknown> {
  const theirs = Buffer.from(String(args.hashes ?? ''), 'base64');
  if (theirs.length % PAGE_HASH_BYTES !== 0) throw new RedoshipError('USAGE', 'rewind: hashes are not whole page hashes', 'this is a bug in reinstate');
  // Hashed the way the caller did (an older one names no algorithm: sha256-128), or every page would differ.
  const algorithm = pageHashAlgorithmNamed(args.hashAlgorithm);
  if (!algorithm) throw new RedoshipError('PEER_REFUSED', `rewind: page hashes "${String(args.hashAlgorithm)}" are unknown to this redoship`, 'reinstate with the same redoship version on both ends');
  const snap = handle.backupSnapshot();
  try {
    let chunk: Array<[number, string]> = [];
    let bytes = 0;
    let differing = 0;
    for (const [pgno, page] of snap.pages()) {
      const h = pageHash(pgno, page, algorithm);
      const at = (pgno - 1) * PAGE_HASH_BYTES;
      if (at + PAGE_HASH_BYTES <= theirs.length && h.equals(theirs.subarray(at, at + PAGE_HASH_BYTES))) continue;
      differing++;
      chunk.push([pgno, Buffer.from(page).toString('base64')]);
      bytes += page.length;
      if (bytes >= 4 * 1024 * 1024) {
        partial({ pages: chunk });
        chunk = [];
        bytes = 0;
        // Let the socket drain between chunks.
        await new Promise((r) => setImmediate(r));
      }
    }
    if (chunk.length) partial({ pages: chunk });
    return { lsn: String(snap.lsn), commitTimeUs: String(snap.commitTimeUs), sizePages: snap.sizePages, pageSize: snap.pageSize, differing, history: historyToJson(handle.writer.history) };
  } finally {
    snap.release();
  }
}
