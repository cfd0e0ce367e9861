export {
  DB_HEADER_BYTES,
  parseDbHeader,
  isValidPageSize,
  maskPage1,
  STANDBY_HEADER_RANGES,
} from './db-header.js';
export type { DbHeader } from './db-header.js';
export {
  WAL_HEADER_BYTES,
  WAL_FRAME_HEADER_BYTES,
  parseWalHeader,
  walChecksum,
  walFrameOffset,
  checkWalFrame,
  scanWalFrames,
} from './wal.js';
export type { WalHeader, WalChecksum, WalFrame, WalTransaction, WalScan } from './wal.js';
export { WAL_INDEX_HEADER_BYTES, parseWalIndexHeader } from './wal-index.js';
export type { WalIndexHeader } from './wal-index.js';
export { pageHash, pageHashInto, pageHashAlgorithmNamed, PAGE_HASH_BYTES, PAGE_HASH_ALGORITHM, PAGE_HASH_ALGORITHMS } from './page-hash.js';
export type { PageHashAlgorithm } from './page-hash.js';
export { buildJournal, journalChecksum, journalHeader, journalRecordBytes, putJournalRecord, JOURNAL_MAGIC, JOURNAL_SECTOR_SIZE } from './journal.js';
