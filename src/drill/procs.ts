/**
 * The processes a drill starts: redoship daemons and commands (`node bin/redoship ...`), the workload and the
 * fence. Each one's output goes to a log file in the drill's working directory (appended across restarts)
 * and is kept in memory so that the runner can wait for a line. Nothing here is mocked: these are the same
 * commands a user runs.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** bin/redoship of this package (dist/src/drill/ is three levels below the package root). */
export const REDOSHIP_BIN = fileURLToPath(new URL('../../../bin/redoship', import.meta.url));
/** The workload script (run it with process.execPath): the application of demos, tests and drills. */
export const WORKLOAD_SCRIPT = fileURLToPath(new URL('./workload.js', import.meta.url));
/** The fence script: holds a database's write lock, as a dead site's file would be out of reach. */
export const FENCE_SCRIPT = fileURLToPath(new URL('./fence.js', import.meta.url));

export class Proc {
  stdout = '';
  stderr = '';
  /** Set when the drill itself ends the process (stop, kill): its exit is then expected. */
  stopping = false;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private readonly child: ChildProcess;

  constructor(
    readonly label: string,
    script: string,
    args: readonly string[],
    opts: { cwd: string; log: string },
  ) {
    this.child = spawn(process.execPath, [script, ...args], { cwd: opts.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    appendFileSync(opts.log, `\n=== ${new Date().toISOString()} ${label}: ${[script.replace(/.*\//, ''), ...args].join(' ')}\n`);
    this.child.stdout!.on('data', (d: Buffer) => {
      this.stdout += d;
      appendFileSync(opts.log, d);
    });
    this.child.stderr!.on('data', (d: Buffer) => {
      this.stderr += d;
      appendFileSync(opts.log, d);
    });
    // 'close' comes after the pipes are drained, so the output is complete when it resolves.
    this.exited = new Promise((r) => this.child.once('close', (code, signal) => r({ code, signal })));
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  signal(sig: NodeJS.Signals): void {
    if (this.running) this.child.kill(sig);
  }

  /** Resolves when the output matches re; rejects when the process exits first or after timeoutMs. */
  async waitFor(re: RegExp, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (re.test(this.stderr) || re.test(this.stdout)) return;
      if (!this.running) {
        await this.exited;
        if (re.test(this.stderr) || re.test(this.stdout)) return;
        throw new Error(`${this.label} exited before ${re}: ${lastLines(this.stderr || this.stdout)}`);
      }
      if (Date.now() > deadline) throw new Error(`${this.label}: no ${re} within ${timeoutMs} ms: ${lastLines(this.stderr || this.stdout)}`);
      await sleep(10);
    }
  }

  /** SIGTERM, then SIGKILL if it has not exited within graceMs. */
  async stop(graceMs = 10_000): Promise<number | null> {
    this.stopping = true;
    if (!this.running) return (await this.exited).code;
    this.child.kill('SIGTERM');
    const t = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
    const { code } = await this.exited;
    clearTimeout(t);
    return code;
  }
}

/** Runs a command to its end. */
export async function runToEnd(label: string, script: string, args: readonly string[], opts: { cwd: string; log: string; timeoutMs?: number }): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const p = new Proc(label, script, args, opts);
  const t = setTimeout(() => p.signal('SIGKILL'), opts.timeoutMs ?? 120_000);
  const { code } = await p.exited;
  clearTimeout(t);
  return { code, stdout: p.stdout, stderr: p.stderr };
}

export function lastLines(s: string, n = 4): string {
  return s.trim().split('\n').slice(-n).join(' | ');
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** The first JSON object printed on stdout (commands print one with --json), or null. */
export function firstJson(stdout: string): Record<string, unknown> | null {
  const start = stdout.indexOf('{');
  if (start < 0) return null;
  let depth = 0;
  let inStr = false;
  for (let i = start; i < stdout.length; i++) {
    const c = stdout[i];
    if (inStr) {
      if (c === '\\') i++;
      else if (c === '"') inStr = false;
    } else if (c === '"') inStr = true;
    else if (c === '{') depth++;
    else if (c === '}' && --depth === 0) {
      try {
        return JSON.parse(stdout.slice(start, i + 1)) as Record<string, unknown>;
      } catch {
        return null;
      }
    }
  }
  return null;
}
