import { fileURLToPath } from 'node:url';

/** Path of the workload script (run it with process.execPath). */
export const WORKLOAD_SCRIPT = fileURLToPath(new URL('./workload.js', import.meta.url));
export { createSchema } from './workload.js';
