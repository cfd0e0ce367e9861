export { promoteFiles } from './promote.js';
export type { PromoteOptions, PromoteResult } from './promote.js';
export { pageImagesAt, pageImagesReply, overlay, lockForRepair } from './repair.js';
export { serveRoleRequests } from './role-requests.js';
export { switchover } from './switchover.js';
export type { SwitchoverOptions, SwitchoverResult } from './switchover.js';
export type { RepairTarget } from './repair.js';
export { reinstate } from './reinstate.js';
export type { ReinstateOptions, ReinstateResult } from './reinstate.js';
