export { Archive, ArchiveWriter, archivedPageHashes } from './archive.js';
export type { ArchiveTail, ArchiveWriterOptions, SegmentReport, VerifyReport } from './archive.js';
export { acquirePidLock } from './lock.js';
export type { PidLock } from './lock.js';
export { fsyncDir } from './segment-writer.js';
export { lsn } from './types.js';
export type {
  Lsn,
  Pgno,
  Position,
  RecordKind,
  RedoRecord,
  WalPosition,
  ArchiveIdentity,
  SegmentInfo,
} from './types.js';
export type { RecordMeta } from './segment-writer.js';
