export { promoteFiles } from './promote.js';
export type { PromoteOptions, PromoteResult } from './promote.js';
export { pageImagesAt, overlay, lockForRepair } from './repair.js';
export type { RepairTarget } from './repair.js';
