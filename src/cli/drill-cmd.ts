/**
 * `redoship drill SCENARIO.yaml`: runs a scenario end to end with real processes and prints its report.
 * Exit status: 0 when every check passes, 4 when a check (or a step) fails, 2 when the scenario file is
 * invalid (the message names the YAML path and line).
 */
import { writeFileSync } from 'node:fs';
import { mkdirSync } from 'node:fs';
import { existsSync } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ERROR_CODES, RedoshipError } from '../error/index.js';
import { formatJson, formatMarkdown, formatText, loadScenario, runDrill } from '../drill/index.js';

/** The exit status of a drill whose checks did not all pass. */
export const DRILL_FAILED_EXIT = ERROR_CODES.CHECK_FAILED;

export interface DrillFlags {
  report?: string;
  json?: boolean;
  short?: boolean;
  scale?: string;
  set: string[];
  dir?: string;
  keep?: boolean;
  quiet?: boolean;
  check?: boolean;
}

/**
 * `scenarios/x.yaml` names the shipped scenario when no such file is here: a user who runs `npx redoship drill
 * scenarios/switchover.yaml` outside a checkout gets the one that comes with redoship.
 */
function shippedFallback(file: string): string {
  if (existsSync(file) || isAbsolute(file)) return file;
  const shipped = join(fileURLToPath(new URL('../../../', import.meta.url)), file);
  return existsSync(shipped) ? shipped : file;
}

export async function drillCommand(file: string, f: DrillFlags): Promise<void> {
  const set: Record<string, string> = {};
  for (const s of f.set) {
    const m = /^([A-Za-z_][A-Za-z0-9_-]*)=(.*)$/.exec(s);
    if (!m) throw new RedoshipError('USAGE', `--set ${s}: not NAME=VALUE`, 'write it like --set load=30s');
    set[m[1]!] = m[2]!;
  }
  const scale = f.scale === undefined ? 1 : Number(f.scale);
  if (!Number.isFinite(scale) || scale <= 0) throw new RedoshipError('USAGE', `--scale ${f.scale}: not a positive number`, 'write it like --scale 10 (every wait step 10 times as long)');
  file = shippedFallback(file);
  const scenario = loadScenario(file, { short: !!f.short, set });
  if (f.check) {
    process.stdout.write(`${file}: valid (${scenario.nodes.length} nodes, ${scenario.steps.length} steps, ${scenario.checks.length} checks)\n`);
    return;
  }
  if (f.dir) mkdirSync(f.dir, { recursive: true });
  const result = await runDrill(scenario, {
    ...(f.dir ? { dir: resolve(f.dir) } : {}),
    keep: !!f.keep,
    scale,
    ...(f.quiet ? {} : { onProgress: (line: string) => process.stderr.write(`${line}\n`) }),
  });
  if (f.report) writeFileSync(f.report, formatMarkdown(result));
  process.stdout.write(f.json ? formatJson(result) : formatText(result));
  if (!result.passed) process.exitCode = DRILL_FAILED_EXIT;
}
