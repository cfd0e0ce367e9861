/** A RedoSource over an archive on this machine that one process appends to and announces. */
import { ArchiveCursor, type Archive, type History, type Lsn } from '../redo/index.js';
import { RecentOrArchiveCursor, type RecentRedo } from './recent.js';
import type { RedoSource } from './server.js';

export interface ArchiveSourceOptions {
  readonly archive: Archive;
  readonly incarnation: number;
  /** Last LSN that may be sent (the writer knows it without reading files). */
  readonly lastLsn: () => bigint;
  /** Last LSN durable where it comes from (RedoSource.confirmedLsn). Default: lastLsn. */
  readonly confirmedLsn?: () => bigint;
  /** Last LSN the archive holds (RedoSource.heldLsn). Default: lastLsn. */
  readonly heldLsn?: () => bigint;
  readonly subscribe: (fn: () => void) => () => void;
  /** The records just written, kept by the writer: standbys close behind are streamed from it. */
  readonly recent?: RecentRedo;
  /** The archive's history as its writer holds it (default: read from the archive). */
  readonly history?: () => History;
}

export function archiveSource(o: ArchiveSourceOptions): RedoSource {
  const a = o.archive;
  return {
    databaseId: a.identity.databaseId,
    pageSize: a.identity.pageSize,
    incarnation: o.incarnation,
    databasePath: a.identity.databasePath,
    history: o.history ?? (() => a.history()),
    lastLsn: o.lastLsn,
    confirmedLsn: o.confirmedLsn ?? o.lastLsn,
    heldLsn: o.heldLsn ?? o.lastLsn,
    latestBaseLsn: () => a.latestBaseAtOrBefore(o.lastLsn() as Lsn),
    firstLsn: () => a.segments().find((s) => s.lastLsn >= s.firstLsn)?.firstLsn ?? null,
    commitTimeOf: (lsn) => a.commitTimeOf(lsn as Lsn),
    cursor: (fromLsn) => {
      const recent = o.recent;
      return recent
        ? new RecentOrArchiveCursor(recent, (l) => new ArchiveCursor(a, l as Lsn), o.lastLsn, fromLsn)
        : new ArchiveCursor(a, fromLsn as Lsn, o.lastLsn);
    },
    subscribe: o.subscribe,
  };
}
