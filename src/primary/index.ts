export { startPrimary, STATUS_FILE } from './service.js';
export type { PrimaryOptions, PrimaryHandle, PrimaryStatus, BackupSnapshot } from './service.js';
export { DEFAULT_CAPTURE_OPTIONS } from './capture.js';
export type { CaptureOptions, CaptureStats, CaptureEvent } from './capture.js';
