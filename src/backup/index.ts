// Restore from an archive alone is part of the redo module (standbys seed with it too); backup sets, the
// repository and restore planning over them are here.
export { restoreFromArchive } from '../redo/index.js';
export type { RestoreOptions, RestoreResult } from '../redo/index.js';
export { Repo } from './repo.js';
export type { BackupManifest, PieceInfo, RepoIdentity } from './repo.js';
export { takeBackupSet } from './take.js';
export type { BackupSource, TakeOptions, BackupProgress } from './take.js';
export { restoreFromRepo, planChain } from './restore.js';
export type { RepoRestoreOptions, RepoRestoreResult, RestorePlan, PlanStep, RestoreProgress } from './restore.js';
export type { Compression, CompressionSpec } from './piece.js';
export { crosscheck, rebuildCatalog, readCatalog, catalogRemove, copySet } from './catalog.js';
export type { Catalog, CatalogEntry } from './catalog.js';
export { validateRepo } from './validate.js';
export type { Validation, SetValidation } from './validate.js';
export { mergeChain } from './merge.js';
export { readKeyFile } from './key.js';
export { copyArchive, copySegment } from './archive-copy.js';
export type { ArchiveCopyResult } from './archive-copy.js';
export { listRepoSegments, RedoSources } from './repo-redo.js';
export type { RepoSegment, RedoStep } from './repo-redo.js';
