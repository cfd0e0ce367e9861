export { Archive, ArchiveWriter, archivedPageHashes } from './archive.js';
export type { ArchiveTail, ArchiveWriterOptions, SegmentReport, VerifyReport } from './archive.js';
export { acquirePidLock, isProcessAlive, lockInfo } from './lock.js';
export type { PidLock } from './lock.js';
export { fsyncDir, framedRecord } from './segment-writer.js';
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
export { restoreFromArchive, buildFile, applyRecords } from './materialize.js';
export type { RestoreOptions, RestoreResult } from './materialize.js';
export { ArchiveCursor, ArchiveRecordReader, LARGE_RECORD_BYTES } from './cursor.js';
export type { CursorPart, ReadRecord } from './cursor.js';
export { splitFramedParts, checkFramedPart } from './segment-reader.js';
export { binHeadBytes, putBigint, putBinHead } from './msgpack-put.js';
export type { RecordPart } from './segment-format.js';
export {
  FIRST_INCARNATION,
  compareHistories,
  currentIncarnation,
  describeIncarnation,
  incarnationOf,
  isPrefix,
  readHistory,
  checkHistory,
  historyToJson,
  historyFromJson,
  readFence,
  writeFence,
  removeFence,
} from './history.js';
export type { History, Incarnation, Fence } from './history.js';
export type { SetAside } from './archive.js';
export { CONFIRMED_WRITE_MS, readConfirmed, removeConfirmed, writeConfirmed, writeConfirmedAsync } from './confirmed.js';
