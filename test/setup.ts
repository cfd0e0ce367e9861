/**
 * Kills processes a test file left running, and removes the temporary directories it made (tests keep them while they run: a failing test's
 * files are what one looks at). Set REDOSHIP_KEEP_TEST_DIRS=1 to keep them.
 */
import { rmSync } from 'node:fs';
import { afterAll } from 'vitest';
import { createdTempDirs, startedProcesses } from './helpers/index.js';

afterAll(() => {
  // A test that failed half way may leave its daemons running: they must not outlive the file.
  for (const c of startedProcesses.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  if (process.env.REDOSHIP_KEEP_TEST_DIRS === '1') return;
  for (const d of createdTempDirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
