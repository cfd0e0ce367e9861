/**
 * One node of a drill: a site with its own directory (<work>/<name>/: <name>.db and arch/), a listen port
 * picked free once and kept across restarts (so other nodes' --from stays right), its daemon, and what the
 * scenario did to it (a proxy on its upstream link, a fence, a small disk). Its role follows the role
 * changes the drill runs: primary, standby (of `upstream`), failed (a primary that died or was failed over
 * from), none (not made yet).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import type { NodeSpec } from './scenario.js';
import { LinkProxy } from './proxy.js';
import { FENCE_SCRIPT, Proc, REDOSHIP_BIN, lastLines } from './procs.js';

export type Role = 'primary' | 'standby' | 'failed' | 'none';

export class Site {
  role: Role;
  upstream: string | null;
  proc: Proc | null = null;
  fence: Proc | null = null;
  proxy: LinkProxy | null = null;
  /** Why the disk faults are skipped for this node (no root, mount refused), or null. */
  diskSkipped: string | null = null;
  diskMounted = false;
  readonly dir: string;
  readonly db: string | null;
  readonly archive: string;
  readonly log: string;

  constructor(
    readonly spec: NodeSpec,
    readonly work: string,
    readonly port: number,
  ) {
    this.role = spec.role;
    this.upstream = spec.from;
    this.dir = join(work, spec.name);
    this.db = spec.db ? join(this.dir, `${spec.name}.db`) : null;
    this.archive = join(this.dir, 'arch');
    this.log = join(work, `${spec.name}.log`);
  }

  get name(): string {
    return this.spec.name;
  }

  get url(): string {
    return `ws://127.0.0.1:${this.port}`;
  }

  get running(): boolean {
    return this.proc !== null && this.proc.running;
  }

  /** Makes the directory; with disk:, mounts a tmpfs there when this process may (root), else says why not. */
  prepare(): void {
    mkdirSync(this.dir, { recursive: true });
    if (!this.spec.disk) return;
    if (process.getuid?.() !== 0) {
      this.diskSkipped = 'needs root to mount a tmpfs';
      return;
    }
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${this.spec.disk}`, 'tmpfs', this.dir], { stdio: 'ignore' });
      this.diskMounted = true;
    } catch (e) {
      this.diskSkipped = `mount -t tmpfs refused: ${(e as Error).message.split('\n')[0]}`;
    }
  }

  /** The daemon's arguments in its current role. */
  daemonArgs(token: string, upstreamPort: number | null): string[] {
    const common = ['--archive', this.archive, '--listen', `127.0.0.1:${this.port}`, '--token-file', token];
    if (this.role === 'primary') return ['primary', '--db', this.db!, ...common];
    if (this.role === 'standby') {
      if (upstreamPort === null) throw new Error(`${this.name} has no upstream to receive from`);
      return [
        'standby',
        ...(this.db ? ['--db', this.db] : []),
        ...common,
        '--from', `ws://127.0.0.1:${this.proxy ? this.proxy.port : upstreamPort}`,
        '--name', this.name,
        ...(this.spec.delayMs > 0 ? ['--delay', `${this.spec.delayMs}ms`] : []),
      ];
    }
    throw new Error(`${this.name} is ${this.role}: it has no daemon to start${this.role === 'failed' ? ' (reinstate it first)' : ''}`);
  }

  /** Called when the daemon exits while the drill did not stop or kill it. */
  onUnexpectedExit: (site: Site, how: string) => void = () => {};

  async startDaemon(token: string, upstreamPort: number | null): Promise<Proc> {
    if (this.running) throw new Error(`${this.name} is already running`);
    await this.unfence();
    const args = this.daemonArgs(token, upstreamPort);
    const p = new Proc(`${this.name} (${this.role})`, REDOSHIP_BIN, args, { cwd: this.work, log: this.log });
    this.proc = p;
    void p.exited.then(({ code, signal }) => {
      if (!p.stopping) this.onUnexpectedExit(this, `exit ${code ?? signal}: ${lastLines(p.stderr, 2)}`);
    });
    try {
      await p.waitFor(this.role === 'primary' ? /primary: capturing/ : /standby: receiving/, 30_000);
    } catch (e) {
      p.signal('SIGKILL');
      throw e;
    }
    return p;
  }

  /**
   * The site dies: kill -9 of the daemon, and the application there can no longer write (a fence process
   * holds the database's write lock, taken right after the kill, waiting out a transaction in progress).
   */
  async killSite(fenceDb: boolean): Promise<{ killedAtMs: number; fencedAtMs: number | null }> {
    let fence: Proc | null = null;
    if (fenceDb && this.db && existsSync(this.db)) {
      fence = new Proc(`${this.name} fence`, FENCE_SCRIPT, ['--db', this.db], { cwd: this.work, log: this.log });
      await fence.waitFor(/ready/, 10_000);
    }
    // Both in the same instant: the daemon dies and the application there stops writing.
    const killedAtMs = Date.now();
    if (this.proc) this.proc.stopping = true;
    this.proc?.signal('SIGKILL');
    fence?.signal('SIGUSR1');
    if (this.proc) await this.proc.exited;
    let fencedAtMs: number | null = null;
    if (fence) {
      await fence.waitFor(/locked at \d+/, 15_000);
      fencedAtMs = Number(/locked at (\d+)/.exec(fence.stdout)![1]);
      this.fence = fence;
    }
    return { killedAtMs, fencedAtMs };
  }

  async unfence(): Promise<void> {
    if (this.fence) await this.fence.stop();
    this.fence = null;
  }

  async shutdown(): Promise<void> {
    await Promise.all([this.proc?.stop(5000), this.unfence(), this.proxy?.close()]);
    this.proxy = null;
    if (this.diskMounted) {
      try {
        execFileSync('umount', ['-l', this.dir], { stdio: 'ignore' });
      } catch {
        /* already unmounted */
      }
      this.diskMounted = false;
    }
  }
}

/** A free TCP port on 127.0.0.1, distinct from those in `taken` (the kernel picks; a short window remains). */
export async function freePort(taken: Set<number>): Promise<number> {
  for (;;) {
    const port = await new Promise<number>((res, rej) => {
      const s = createServer();
      s.once('error', rej);
      s.listen(0, '127.0.0.1', () => {
        const p = (s.address() as { port: number }).port;
        s.close(() => res(p));
      });
    });
    if (!taken.has(port)) {
      taken.add(port);
      return port;
    }
  }
}
