/**
 * Removes the temporary directories a test file made (tests keep them while they run: a failing test's
 * files are what one looks at). Set REDOSHIP_KEEP_TEST_DIRS=1 to keep them.
 */
import { rmSync } from 'node:fs';
import { afterAll } from 'vitest';
import { createdTempDirs } from './helpers/index.js';

afterAll(() => {
  if (process.env.REDOSHIP_KEEP_TEST_DIRS === '1') return;
  for (const d of createdTempDirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
