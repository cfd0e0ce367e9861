export { restoreFromArchive } from './restore.js';
export type { RestoreOptions, RestoreResult } from './restore.js';
