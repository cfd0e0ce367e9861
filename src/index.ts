/**
 * redoship as a library, for applications that embed it (for example to wait until a commit is durable on
 * N standbys before answering a client). The CLI is built on the same functions.
 *
 *   import Database from 'better-sqlite3';
 *   import { startPrimary } from 'redoship';
 *
 *   const primary = await startPrimary({ db: 'app.db', archive: './arch',
 *     listen: { host: '0.0.0.0', port: 7400 }, secret: readFileSync('secret') });
 *   const db = new Database('app.db');
 *   db.prepare('INSERT INTO orders (item) VALUES (?)').run('book');
 *   const lsn = await primary.waitForStandbys(1, 5_000); // the insert is durable on one standby
 */
export { startPrimary } from './primary/index.js';
export type { PrimaryOptions, PrimaryHandle, PrimaryStatus, CaptureEvent } from './primary/index.js';
export { startStandby } from './standby/index.js';
export type { StandbyOptions, StandbyHandle, StandbyStatus } from './standby/index.js';
export { restoreFromArchive } from './backup/index.js';
export type { RestoreOptions, RestoreResult } from './backup/index.js';
export { Archive } from './redo/index.js';
export type { Lsn, RedoRecord, VerifyReport } from './redo/index.js';
export { RedoshipError, ERROR_CODES } from './error/index.js';
export type { ErrorCode } from './error/index.js';
export { reinstate, switchover } from './roles/index.js';
export type { ReinstateOptions, ReinstateResult, SwitchoverOptions, SwitchoverResult } from './roles/index.js';
