/**
 * A TCP proxy in the drill runner's process, put on the link a standby receives redo on, so that a scenario
 * can cut or stall that link: `cut` destroys every connection and refuses new ones (accepted, then
 * destroyed at once: the peer sees a reset, as after a network failure), `stall` stops forwarding bytes in
 * both directions while connections stay open (a black hole), `heal` forwards again and lets stalled bytes
 * through. The target can be changed (a standby re-pointed after a role change).
 */
import { createServer, connect, type Server, type Socket } from 'node:net';

export type LinkState = 'pass' | 'cut' | 'stall';

export class LinkProxy {
  private state: LinkState = 'pass';
  private readonly pairs = new Set<[Socket, Socket]>();
  private constructor(
    private readonly server: Server,
    readonly port: number,
    private target: { host: string; port: number },
  ) {
    server.on('connection', (down) => this.accept(down));
  }

  static async start(target: { host: string; port: number }): Promise<LinkProxy> {
    const server = createServer();
    await new Promise<void>((res, rej) => {
      server.once('error', rej);
      server.listen(0, '127.0.0.1', () => res());
    });
    return new LinkProxy(server, (server.address() as { port: number }).port, target);
  }

  get linkState(): LinkState {
    return this.state;
  }

  retarget(target: { host: string; port: number }): void {
    this.target = target;
  }

  private accept(down: Socket): void {
    if (this.state === 'cut') {
      down.resetAndDestroy();
      return;
    }
    const up = connect(this.target.port, this.target.host);
    const pair: [Socket, Socket] = [down, up];
    this.pairs.add(pair);
    const end = () => {
      this.pairs.delete(pair);
      down.destroy();
      up.destroy();
    };
    down.on('error', end).on('close', end);
    up.on('error', end).on('close', end);
    if (this.state === 'pass') flow(pair);
  }

  set(state: LinkState): void {
    this.state = state;
    for (const [down, up] of [...this.pairs]) {
      if (state === 'cut') {
        down.resetAndDestroy();
        up.destroy();
      } else if (state === 'stall') {
        down.unpipe(up);
        up.unpipe(down);
        down.pause();
        up.pause();
      } else flow([down, up]);
    }
  }

  async close(): Promise<void> {
    for (const [down, up] of this.pairs) {
      down.destroy();
      up.destroy();
    }
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}

/** Forwards both ways (pipe resumes a paused source). */
function flow([down, up]: [Socket, Socket]): void {
  down.pipe(up);
  up.pipe(down);
}
