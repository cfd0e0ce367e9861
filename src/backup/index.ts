// Restore from an archive alone is part of the redo module (standbys seed with it too); backup sets, catalog
// and restore planning over them come here.
export { restoreFromArchive } from '../redo/index.js';
export type { RestoreOptions, RestoreResult } from '../redo/index.js';
