import { fileURLToPath } from 'node:url';

/** Path of the workload script (run it with process.execPath). */
export const WORKLOAD_SCRIPT = fileURLToPath(new URL('./workload.js', import.meta.url));
/** Path of the reader script: an invariant query in a loop (see reader.ts). */
export const READER_SCRIPT = fileURLToPath(new URL('./reader.js', import.meta.url));
export { createSchema, LEDGER_ACCOUNTS, LEDGER_TOTAL } from './workload.js';
