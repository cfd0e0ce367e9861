export { startStandby, STANDBY_STATUS_FILE } from './service.js';
export type { StandbyOptions, StandbyHandle, StandbyStatus } from './service.js';
export { readControl, writeControl, CONTROL_FILE } from './control.js';
export type { StandbyControl } from './control.js';
export { Applier, STANDBY_STATE_FILE } from './applier.js';
