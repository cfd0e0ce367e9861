/**
 * The drill module: scenario files (scenario.ts), the runner (runner.ts), reports (report.ts), and the
 * processes drills, demos, tests and benchmarks run: the workload (the application) and the reader.
 */
import { fileURLToPath } from 'node:url';

/** Path of the workload script (run it with process.execPath). */
export { WORKLOAD_SCRIPT } from './procs.js';
/** Path of the reader script: an invariant query in a loop (see reader.ts). */
export const READER_SCRIPT = fileURLToPath(new URL('./reader.js', import.meta.url));
export { createSchema, headerJournalMode, LEDGER_ACCOUNTS, LEDGER_TOTAL } from './workload.js';
export { loadScenario, parseScenario, STEPS, CHECKS } from './scenario.js';
export type { Scenario, Step, Check, NodeSpec, WorkloadSpec, LoadOptions } from './scenario.js';
export { runDrill } from './runner.js';
export type { DrillOptions, DrillResult, TimelineEntry } from './runner.js';
export type { CheckResult } from './checks.js';
export type { Figures } from './figures.js';
export { formatText, formatMarkdown, formatJson } from './report.js';
