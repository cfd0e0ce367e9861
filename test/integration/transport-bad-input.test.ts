/**
 * Bad input on the redo transport (DESIGN.md Transport; src/transport/protocol.ts): every case runs real
 * `redoship primary` / `redoship standby` processes on 127.0.0.1, and where a case needs a peer that
 * misbehaves, this test plays that peer with the `ws` library, speaking the real protocol (encodeMessage,
 * clientMac, serverMac) and carrying real archive parts (SegmentReader over an archive a real primary made).
 *
 * A refused standby must
 *   (a) exit non-zero with the exit code of its error (src/error/index.ts);
 *   (b) print one clear error: one `redoship: error:` line with the key words, one `hint:` line, no stack
 *       trace; with --quiet nothing else at all;
 *   (c) change nothing: no archive directory and no database appear where there were none, and an existing
 *       archive and database keep their fingerprint.
 * A primary that refuses a peer logs the refusal and keeps serving.
 */
import Database from 'better-sqlite3';
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { WebSocket, WebSocketServer } from 'ws';
import { ERROR_CODES } from '../../src/error/index.js';
import { Archive, splitFramedParts, type Lsn } from '../../src/redo/index.js';
import { PART_HEADER_BYTES, SEGMENT_HEADER_BYTES } from '../../src/redo/segment-format.js';
import { SegmentReader } from '../../src/redo/segment-reader.js';
import {
  MAX_MESSAGE_BYTES,
  PROTOCOL_VERSION,
  clientMac,
  decodeClientMessage,
  decodeServerMessage,
  encodeMessage,
  newNonce,
  nowUs,
  serverMac,
  type ClientMessage,
  type Hello,
  type ServerMessage,
  type Welcome,
} from '../../src/transport/protocol.js';
import { RedoServer, archiveSource } from '../../src/transport/index.js';
import { BIN, ROOT, compareWithPrimary, makeDb, rowHash, sleep, startWorkload, tempDir, treeFingerprint } from '../helpers/index.js';

// ---------------------------------------------------------------------------------------------------------------
// Processes

interface Cli {
  readonly child: ChildProcess;
  stdout: string;
  stderr: string;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Resolves when stderr or stdout matches re; rejects when the process exits first or after timeoutMs. */
  until(re: RegExp, timeoutMs?: number): Promise<void>;
}

const children: ChildProcess[] = [];
afterAll(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
});

/** The CLI (or another script) as its own process, killed after the tests whatever happens. */
function spawnCli(args: string[], script = BIN): Cli {
  const child = spawn(process.execPath, [script, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let done = false;
  const p: Cli = {
    child,
    stdout: '',
    stderr: '',
    // 'close', not 'exit': it comes after the pipes are drained, so stdout/stderr are complete.
    exited: new Promise((r) =>
      child.once('close', (code, signal) => {
        done = true;
        r({ code, signal });
      }),
    ),
    until(re, timeoutMs = 20_000) {
      return new Promise((res, rej) => {
        const deadline = Date.now() + timeoutMs;
        const check = () => {
          if (re.test(p.stderr) || re.test(p.stdout)) return res();
          if (done) return rej(new Error(`exited (${child.exitCode ?? child.signalCode}) before ${re}; stderr:\n${p.stderr}`));
          if (Date.now() > deadline) return rej(new Error(`timed out waiting for ${re}; stderr:\n${p.stderr}`));
          setTimeout(check, 10);
        };
        check();
      });
    },
  };
  child.stdout!.on('data', (d) => (p.stdout += d));
  child.stderr!.on('data', (d) => (p.stderr += d));
  return p;
}

type Result = { code: number | null; stdout: string; stderr: string };

/** Runs the CLI to completion (SIGKILL after timeoutMs: a refused standby must exit by itself, quickly). */
async function run(args: string[], timeoutMs = 20_000): Promise<Result> {
  const p = spawnCli(args);
  const t = setTimeout(() => p.child.kill('SIGKILL'), timeoutMs);
  const { code, signal } = await p.exited;
  clearTimeout(t);
  if (signal) throw new Error(`redoship ${args[0]} did not exit within ${timeoutMs} ms; stderr:\n${p.stderr}`);
  return { code, stdout: p.stdout, stderr: p.stderr };
}

async function stop(p: Cli): Promise<number | null> {
  if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGTERM');
  return (await p.exited).code;
}

const LOG_LINE = /^\d{4}-\d\d-\d\dT[\d:.]+Z redoship: (?!warning)/;

/**
 * (a) and (b): the exit code; exactly one `redoship: error:` line holding every key word, followed by one
 * `hint:` line; no stack trace, no warning. Quiet: nothing else. Otherwise the other lines are info log lines.
 */
function expectRefused(r: Result, code: number, words: RegExp[], quiet: boolean): void {
  const ctx = `exit ${r.code}\nstderr:\n${r.stderr}\nstdout:\n${r.stdout}`;
  expect(r.code, ctx).toBe(code);
  expect(r.stderr, ctx).not.toMatch(/internal error|^\s+at .+:\d+:\d+\)?$|^\w*Error: /m);
  const lines = r.stderr.trimEnd().split('\n');
  const errors = lines.map((l, i) => [l, i] as const).filter(([l]) => /^redoship: error: /.test(l));
  expect(errors, ctx).toHaveLength(1);
  const i = errors[0]![1];
  expect(lines[i + 1], ctx).toMatch(/^\s+hint: \S/);
  if (quiet) expect(lines, ctx).toHaveLength(2);
  else for (const [j, l] of lines.entries()) if (j !== i && j !== i + 1) expect(l, ctx).toMatch(LOG_LINE);
  for (const w of words) expect(lines[i], ctx).toMatch(w);
}

/** The names in dir, sorted; [] when dir does not exist. */
function listing(dir: string): string[] {
  return existsSync(dir) ? readdirSync(dir).sort() : [];
}

/**
 * treeFingerprint of a standby's archive, except the content of standby.status.json: the running standby
 * rewrites it every 500 ms (pid, updatedAt, lastError) whatever happens; it holds nothing durable. Its presence
 * still counts.
 */
function archiveFingerprint(dir: string): string {
  const h = createHash('sha256');
  const walk = (d: string) => {
    for (const name of readdirSync(d).sort()) {
      const p = join(d, name);
      h.update(`${p}\0`);
      if (statSync(p).isDirectory()) walk(p);
      else if (name !== 'standby.status.json') h.update(readFileSync(p));
    }
  };
  walk(dir);
  return h.digest('hex');
}

function writeSecret(path: string): string {
  writeFileSync(path, randomBytes(32).toString('base64') + '\n');
  return path;
}

function secretOf(path: string): Buffer {
  return Buffer.from(readFileSync(path, 'utf8').trim(), 'utf8');
}

interface Listening {
  readonly p: Cli;
  readonly port: number;
  readonly url: string;
}

/** `redoship primary --listen` on a random high port of 127.0.0.1 (another one when it is taken). */
async function startPrimary(db: string, arch: string, tokenFile: string, extra: string[] = [], scheme = 'ws'): Promise<Listening> {
  for (let attempt = 0; ; attempt++) {
    const port = 20_000 + Math.floor(Math.random() * 12_000);
    const p = spawnCli(['primary', '--db', db, '--archive', arch, '--listen', `127.0.0.1:${port}`, '--token-file', tokenFile, ...extra]);
    try {
      await p.until(/primary: capturing .* serving redo on/, 15_000);
      return { p, port, url: `${scheme}://127.0.0.1:${port}` };
    } catch (e) {
      await stop(p);
      if (attempt < 5 && /EADDRINUSE|port is in use/.test(p.stderr)) continue;
      throw e;
    }
  }
}

function startStandby(db: string | null, arch: string, url: string, tokenFile: string, extra: string[] = []): Cli {
  return spawnCli(['standby', ...(db ? ['--db', db] : []), '--archive', arch, '--from', url, '--token-file', tokenFile, ...extra]);
}

/** The last complete LSN of an archive (null: no archive, or empty). */
function archiveLsn(arch: string): bigint | null {
  try {
    return Archive.open(arch).tail()?.lsn ?? null;
  } catch {
    return null;
  }
}

/** p, or a rejection naming what did not happen within ms. */
function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: NodeJS.Timeout;
  return Promise.race([p, new Promise<never>((_, rej) => (t = setTimeout(() => rej(new Error(`${what} did not happen within ${ms} ms`)), ms)))]).finally(() => clearTimeout(t));
}

async function waitFor(what: string, ok: () => boolean, timeoutMs = 20_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!ok()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/** Waits until the standby has applied (and so received) lsn, as its status file says. */
async function waitApplied(standbyArch: string, lsn: bigint, timeoutMs = 20_000): Promise<void> {
  await waitFor(`the standby ${standbyArch} to apply LSN ${lsn}`, () => {
    try {
      const s = JSON.parse(readFileSync(join(standbyArch, 'standby.status.json'), 'utf8')) as { appliedLsn: string | null };
      return s.appliedLsn !== null && BigInt(s.appliedLsn) >= lsn;
    } catch {
      return false;
    }
  }, timeoutMs);
}

/** The application: one connection of this process, writing rows of a few hundred bytes. */
function openApp(db: string): { app: Database.Database; commit: (n?: number) => void } {
  const app = new Database(db);
  app.pragma('journal_mode = WAL');
  const ins = app.prepare('INSERT INTO t (k, v) VALUES (?, ?)');
  let k = 0;
  return {
    app,
    commit(n = 1) {
      for (let i = 0; i < n; i++) ins.run(k++, randomBytes(300 + (k % 7) * 100));
    },
  };
}

/** A database with a primary that archived it (base + n transactions), stopped: its archive is sealed. */
async function archivedDatabase(dir: string, tokenFile: string, n: number): Promise<{ db: string; arch: string }> {
  const db = join(dir, 'app.db');
  const arch = join(dir, 'arch');
  makeDb(db);
  const { app, commit } = openApp(db);
  const P = await startPrimary(db, arch, tokenFile);
  commit(n);
  app.close();
  await waitFor('the archive', () => archiveLsn(arch) === BigInt(n + 1));
  expect(await stop(P.p)).toBe(0);
  return { db, arch };
}

// ---------------------------------------------------------------------------------------------------------------
// Fake peers

/** Decoded messages of one WebSocket, in order; raw frames that do not decode are kept as errors. */
class Inbox<M> {
  private readonly queue: Array<M | Error> = [];
  private waiting: ((m: M | Error) => void) | null = null;
  readonly closed: Promise<{ code: number; reason: string }>;

  constructor(
    readonly ws: WebSocket,
    decode: (b: Uint8Array) => M,
  ) {
    ws.on('message', (data, isBinary) => {
      let m: M | Error;
      try {
        if (!isBinary) throw new Error('text frame');
        m = decode(data as Buffer);
      } catch (e) {
        m = e as Error;
      }
      if (this.waiting) {
        const w = this.waiting;
        this.waiting = null;
        w(m);
      } else this.queue.push(m);
    });
    ws.on('error', () => {});
    this.closed = new Promise((r) => ws.once('close', (code, reason) => r({ code, reason: reason.toString() })));
  }

  /** The next message; rejects when the connection closes first or after timeoutMs. */
  next(timeoutMs = 10_000): Promise<M> {
    const m = this.queue.shift();
    if (m !== undefined) return m instanceof Error ? Promise.reject(m) : Promise.resolve(m);
    return new Promise((res, rej) => {
      const t = setTimeout(() => rej(new Error('no message within timeout')), timeoutMs);
      void this.closed.then(({ code }) => {
        clearTimeout(t);
        rej(new Error(`closed (${code}) before a message`));
      });
      this.waiting = (x) => {
        clearTimeout(t);
        if (x instanceof Error) rej(x);
        else res(x);
      };
    });
  }
}

/** A fake standby: connects and collects the server's messages. */
async function fakeClient(url: string): Promise<Inbox<ServerMessage>> {
  const ws = new WebSocket(url, { perMessageDeflate: false, maxPayload: MAX_MESSAGE_BYTES });
  const inbox = new Inbox(ws, decodeServerMessage);
  await new Promise<void>((res, rej) => {
    ws.once('open', () => res());
    ws.once('error', rej);
  });
  return inbox;
}

function hello(nonce: Uint8Array, secret: Uint8Array, o: Partial<Hello> = {}): Hello {
  const cnonce = newNonce();
  return {
    t: 'hello',
    v: PROTOCOL_VERSION,
    mac: clientMac(secret, nonce, cnonce),
    cnonce,
    databaseId: null,
    incarnation: 1,
    lastLsn: 0n,
    lastCommitTimeUs: 0n,
    confirmedLsn: 0n,
    confirmedCommitTimeUs: 0n,
    name: 'fake standby',
    ...o,
  };
}

/** A fake primary: a ws server on a port of 127.0.0.1 chosen by the system; onConnection per connection. */
async function fakeServer(onConnection: (inbox: Inbox<ClientMessage>, n: number) => void | Promise<void>): Promise<{ url: string; close(): Promise<void>; errors: unknown[] }> {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false });
  await new Promise<void>((r) => wss.once('listening', () => r()));
  const errors: unknown[] = [];
  let n = 0;
  wss.on('connection', (ws) => {
    const inbox = new Inbox(ws, decodeClientMessage);
    Promise.resolve(onConnection(inbox, n++)).catch((e) => {
      errors.push(e);
      ws.terminate();
    });
  });
  return {
    url: `ws://127.0.0.1:${(wss.address() as AddressInfo).port}`,
    errors,
    close: () =>
      new Promise<void>((r) => {
        for (const c of wss.clients) c.terminate();
        wss.close(() => r());
      }),
  };
}

function send(ws: WebSocket, m: ServerMessage | ClientMessage): void {
  ws.send(encodeMessage(m), { binary: true });
}

/** The framed parts of an archive, one entry per part, in LSN order (read with the real segment reader). */
function archiveParts(arch: string): Array<{ lsn: bigint; part: number; last: boolean; commitTimeUs: bigint; raw: Buffer }> {
  const a = Archive.open(arch);
  const out: Array<{ lsn: bigint; part: number; last: boolean; commitTimeUs: bigint; raw: Buffer }> = [];
  for (const s of a.segments()) {
    const r = new SegmentReader(s.path, a.identityExpect);
    try {
      for (const { part, raw } of r.parts()) out.push({ lsn: part.lsn, part: part.part, last: part.last, commitTimeUs: part.commitTimeUs, raw });
    } finally {
      r.close();
    }
    r.assertUndamaged();
  }
  return out;
}

function rssKb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : 0;
}

// ---------------------------------------------------------------------------------------------------------------

describe('a standby with the wrong secret', () => {
  test('refused (PEER_REFUSED), nothing created; the primary logs the refusal and then serves a standby with the right secret', async () => {
    const dir = tempDir();
    const secret = writeSecret(join(dir, 'secret'));
    const wrong = writeSecret(join(dir, 'wrong'));
    const db = join(dir, 'app.db');
    const arch = join(dir, 'arch');
    makeDb(db);
    const { app, commit } = openApp(db);
    const P = await startPrimary(db, arch, secret);
    try {
      commit(5);
      const site = join(dir, 'dr');
      mkdirSync(site);
      for (const quiet of [true, false]) {
        const r = await run(['standby', '--db', join(site, 'dr.db'), '--archive', join(site, 'dr-arch'), '--from', P.url, '--token-file', wrong, ...(quiet ? ['--quiet'] : [])]);
        expectRefused(r, ERROR_CODES.PEER_REFUSED, [/refused/, /shared secret/], quiet);
        expect(listing(site), 'the refused standby created files').toEqual([]);
      }
      await P.p.until(/warning: refused 127\.0\.0\.1:\d+: wrong secret[^\n]*\n[^]*warning: refused 127\.0\.0\.1:\d+: wrong secret/);
      expect(P.p.child.exitCode).toBeNull();

      const S = startStandby(join(site, 'dr.db'), join(site, 'dr-arch'), P.url, secret);
      commit(5);
      await waitFor('the primary archive', () => archiveLsn(arch) === 11n);
      await waitApplied(join(site, 'dr-arch'), 11n);
      expect(await stop(S)).toBe(0);
      expect(S.stderr).not.toMatch(/error|warning/);
    } finally {
      app.close();
      expect(await stop(P.p)).toBe(0);
    }
    expect(rowHash(join(dir, 'dr', 'dr.db'))).toBe(rowHash(db));
  });
});

describe('a standby whose archive belongs to another database', () => {
  test('refused (WRONG_DATABASE); its archive and database are unchanged; the other primary keeps serving', async () => {
    const dir = tempDir();
    const secret = writeSecret(join(dir, 'secret'));
    const one = join(dir, 'one');
    const two = join(dir, 'two');
    const site = join(dir, 'dr');
    for (const d of [one, two, site]) mkdirSync(d);
    const db1 = join(one, 'app.db');
    const db2 = join(two, 'app.db');
    makeDb(db1);
    makeDb(db2);
    const sbDb = join(site, 'dr.db');
    const sbArch = join(site, 'dr-arch');

    // Standby A seeded from P1, then stopped.
    const app1 = openApp(db1);
    const P1 = await startPrimary(db1, join(one, 'arch'), secret);
    try {
      app1.commit(3);
      const A = startStandby(sbDb, sbArch, P1.url, secret);
      await waitApplied(sbArch, 4n);
      expect(await stop(A)).toBe(0);
    } finally {
      app1.app.close();
      expect(await stop(P1.p)).toBe(0);
    }
    const id1 = Archive.open(sbArch).identity.databaseId;

    const app2 = openApp(db2);
    const P2 = await startPrimary(db2, join(two, 'arch'), secret);
    try {
      app2.commit(3);
      const id2 = Archive.open(join(two, 'arch')).identity.databaseId;
      expect(id2).not.toBe(id1);
      const beforeArch = archiveFingerprint(sbArch);
      const beforeDb = readFileSync(sbDb);
      const files = listing(site);
      for (const quiet of [true, false]) {
        const r = await run(['standby', '--db', sbDb, '--archive', sbArch, '--from', P2.url, '--token-file', secret, ...(quiet ? ['--quiet'] : [])]);
        expectRefused(r, ERROR_CODES.WRONG_DATABASE, [new RegExp(`holds database ${id1}`), new RegExp(`serves ${id2}`)], quiet);
        expect(archiveFingerprint(sbArch), "the standby's archive changed").toBe(beforeArch);
        expect(readFileSync(sbDb).equals(beforeDb), "the standby's database changed").toBe(true);
        expect(listing(site)).toEqual(files);
      }
      await P2.p.until(/warning: refused standby .*WRONG_DATABASE/);
      expect(P2.p.child.exitCode).toBeNull();
      app2.commit(1);
      await waitFor('P2 to go on capturing', () => archiveLsn(join(two, 'arch')) === 5n);
    } finally {
      app2.app.close();
      expect(await stop(P2.p)).toBe(0);
    }
  });
});

describe('protocol violations against a real primary', () => {
  let dir: string;
  let P: Listening;
  let secret: Buffer;
  beforeAll(async () => {
    dir = tempDir();
    const tokenFile = writeSecret(join(dir, 'secret'));
    secret = secretOf(tokenFile);
    const db = join(dir, 'app.db');
    makeDb(db);
    P = await startPrimary(db, join(dir, 'arch'), tokenFile);
  });
  afterAll(async () => {
    expect(await stop(P.p)).toBe(0);
    expect(P.p.stderr).not.toMatch(/internal error|^\s+at /m);
  });

  /** The server refused with an error message of this code, then closed the connection with that reason. */
  async function expectErrorAndClose(c: Inbox<ServerMessage>, code: string, message: RegExp): Promise<void> {
    const e = await c.next();
    expect(e).toMatchObject({ t: 'error', code, message: expect.stringMatching(message) });
    const closed = await c.closed;
    expect(closed.reason).toBe(code);
    expect(closed.code).toBeGreaterThanOrEqual(4000);
  }

  test('hello with protocol version 1 (before confirmation): error VERSION, then closed', async () => {
    const c = await fakeClient(P.url);
    const ch = await c.next();
    if (ch.t !== 'challenge') throw new Error(`expected challenge, got ${ch.t}`);
    expect(ch.v).toBe(PROTOCOL_VERSION);
    send(c.ws, hello(ch.nonce, secret, { v: 1 }));
    await expectErrorAndClose(c, 'VERSION', /protocol version 1 is not 2/);
    await P.p.until(/refused standby fake standby .*VERSION/);
  });

  test('a text frame: error PROTOCOL, then closed', async () => {
    const c = await fakeClient(P.url);
    await c.next();
    c.ws.send('{"t":"hello"}');
    await expectErrorAndClose(c, 'PROTOCOL', /text message/);
  });

  test('garbage bytes, before and after authentication: error PROTOCOL, then closed', async () => {
    for (const junk of [randomBytes(1000), Buffer.from([0xc1]), encodeMessage({ t: 'error', code: 'X', message: 'y', hint: 'z' }).subarray(0, 5)]) {
      const c = await fakeClient(P.url);
      await c.next();
      c.ws.send(junk);
      await expectErrorAndClose(c, 'PROTOCOL', /does not decode|not a map/);
    }
    // A well-formed message of the wrong shape after welcome (a hello where an ack belongs), and an ack with a
    // negative LSN.
    for (const bad of [(nonce: Uint8Array) => encodeMessage(hello(nonce, secret)), () => encodeMessage({ t: 'ack', received: -1n, durable: 0n, applied: 0n, timeUs: 0n })]) {
      const c = await fakeClient(P.url);
      const ch = await c.next();
      if (ch.t !== 'challenge') throw new Error('expected challenge');
      send(c.ws, hello(ch.nonce, secret));
      expect((await c.next()).t).toBe('welcome');
      c.ws.send(bad(ch.nonce));
      for (;;) {
        const m = await c.next();
        if (m.t === 'redo' || m.t === 'heartbeat') continue;
        expect(m).toMatchObject({ t: 'error', code: 'PROTOCOL' });
        break;
      }
      expect((await c.closed).reason).toBe('PROTOCOL');
    }
  });

  /** A masked client frame header (RFC 6455 5.2) announcing `length` payload bytes, with a zero mask key. */
  function frameHeader(fin: boolean, opcode: number, length: number): Buffer {
    const h = Buffer.alloc(14);
    h[0] = (fin ? 0x80 : 0) | opcode;
    h[1] = 0x80 | 127;
    h.writeBigUInt64BE(BigInt(length), 2);
    return h; // bytes 10..13: mask key 0, so the payload goes as is
  }
  const rawSocket = (c: Inbox<ServerMessage>) => (c.ws as unknown as { _socket: { write(b: Buffer): void } })._socket;

  test('a message larger than MAX_MESSAGE_BYTES: closed with 1009', async () => {
    const c = await fakeClient(P.url);
    await c.next();
    c.ws.send(Buffer.alloc(MAX_MESSAGE_BYTES + 1));
    expect((await c.closed).code).toBe(1009);
  });

  test('refused on its length alone, before it is buffered: a frame header announcing MAX_MESSAGE_BYTES + 1, no payload; fragments adding up past it', async () => {
    // Nothing of the payload is ever sent: the server can only have refused it from the header.
    const c = await fakeClient(P.url);
    await c.next();
    rawSocket(c).write(frameHeader(true, 0x2, MAX_MESSAGE_BYTES + 1));
    expect((await within(c.closed, 5000, 'the close')).code).toBe(1009);
    // Two fragments of 40 MiB: the second header takes the message past the limit.
    const f = await fakeClient(P.url);
    await f.next();
    const frag = 40 * 2 ** 20;
    rawSocket(f).write(Buffer.concat([frameHeader(false, 0x2, frag), Buffer.alloc(frag)]));
    rawSocket(f).write(frameHeader(true, 0x0, frag));
    expect((await within(f.closed, 5000, 'the close')).code).toBe(1009);
  });

  test('after all that, the primary still serves a standby that follows the protocol', async () => {
    const c = await fakeClient(P.url);
    const ch = await c.next();
    if (ch.t !== 'challenge') throw new Error('expected challenge');
    const h = hello(ch.nonce, secret);
    send(c.ws, h);
    const w = await c.next();
    if (w.t !== 'welcome') throw new Error(`expected welcome, got ${w.t}`);
    expect(Buffer.from(w.mac).equals(serverMac(secret, ch.nonce, h.cnonce))).toBe(true);
    expect(w.startLsn).toBe(1n);
    const r = await c.next();
    expect(r.t).toBe('redo');
    c.ws.close();
    expect(P.p.child.exitCode).toBeNull();
  });
});

describe('a fake primary against a real standby', () => {
  let dir: string;
  let tokenFile: string;
  let secret: Buffer;
  /** A real archive (base + 8 transactions) and its database, made by a real primary. */
  let src: { db: string; arch: string };
  beforeAll(async () => {
    dir = tempDir();
    tokenFile = writeSecret(join(dir, 'secret'));
    secret = secretOf(tokenFile);
    mkdirSync(join(dir, 'src'));
    src = await archivedDatabase(join(dir, 'src'), tokenFile, 8);
  });

  let sites = 0;
  function site(): { dir: string; db: string; arch: string } {
    const d = join(dir, `site${sites++}`);
    mkdirSync(d);
    return { dir: d, db: join(d, 'dr.db'), arch: join(d, 'dr-arch') };
  }

  test('challenge with protocol version 3: the standby exits (PEER_REFUSED) without saying hello; nothing created', async () => {
    const got: unknown[] = [];
    const fake = await fakeServer(async (c) => {
      send(c.ws, { t: 'challenge', v: 3, nonce: newNonce() });
      got.push(await c.next().catch(() => null));
    });
    try {
      const s = site();
      const r = await run(['standby', '--db', s.db, '--archive', s.arch, '--from', fake.url, '--token-file', tokenFile]);
      expectRefused(r, ERROR_CODES.PEER_REFUSED, [/protocol version 3/, /this standby speaks 2/], false);
      expect(listing(s.dir)).toEqual([]);
      expect(got, 'the standby answered a challenge it cannot speak').toEqual([null]);
    } finally {
      await fake.close();
    }
    expect(fake.errors).toEqual([]);
  });

  test('welcome with a wrong mac: the standby exits (PEER_REFUSED); nothing created', async () => {
    const a = Archive.open(src.arch);
    const fake = await fakeServer(async (c) => {
      const nonce = newNonce();
      send(c.ws, { t: 'challenge', v: PROTOCOL_VERSION, nonce });
      const h = await c.next();
      if (h.t !== 'hello') throw new Error(`expected hello, got ${h.t}`);
      // The standby proved the secret; this server does not hold it.
      expect(Buffer.from(h.mac).equals(clientMac(secret, nonce, h.cnonce))).toBe(true);
      send(c.ws, {
        t: 'welcome',
        mac: serverMac(randomBytes(32), nonce, h.cnonce),
        databaseId: a.identity.databaseId,
        pageSize: a.identity.pageSize,
        incarnation: 1,
        startLsn: 1n,
        lastLsn: 9n,
        databasePath: a.identity.databasePath,
      });
      await c.closed;
    });
    try {
      const s = site();
      const r = await run(['standby', '--db', s.db, '--archive', s.arch, '--from', fake.url, '--token-file', tokenFile, '--quiet']);
      expectRefused(r, ERROR_CODES.PEER_REFUSED, [/did not prove the shared secret/], true);
      expect(listing(s.dir)).toEqual([]);
    } finally {
      await fake.close();
    }
    expect(fake.errors).toEqual([]);
  });

  test('redo with a flipped byte: refused as damaged, nothing of it written; the standby reconnects and asks again from the last valid LSN', async () => {
    const a = Archive.open(src.arch);
    const parts = archiveParts(src.arch);
    expect(parts.filter((p) => p.last).map((p) => p.lsn)).toEqual([1n, 2n, 3n, 4n, 5n, 6n, 7n, 8n, 9n]);
    const upTo = (from: bigint, to: bigint) => parts.filter((p) => p.lsn >= from && p.lsn <= to);
    const concat = (ps: Array<{ raw: Buffer }>) => Buffer.concat(ps.map((p) => p.raw));
    const good = upTo(1n, 3n);
    // LSN 4..9, one byte flipped in the middle of the body of LSN 5: LSN 4 before it is valid.
    const bad = upTo(4n, 9n).map((p) => {
      if (p.lsn !== 5n) return p.raw;
      const raw = Buffer.from(p.raw);
      raw[PART_HEADER_BYTES + Math.floor((raw.length - PART_HEADER_BYTES) / 2)]! ^= 0x5a;
      return raw;
    });
    const s = site();
    const hellos: Hello[] = [];
    const reports: ClientMessage[] = [];
    const seen: Array<{ tail: bigint | null; segBytes: number[] }> = [];
    const fake = await fakeServer(async (c, n) => {
      const nonce = newNonce();
      send(c.ws, { t: 'challenge', v: PROTOCOL_VERSION, nonce });
      const h = await c.next();
      if (h.t !== 'hello') throw new Error(`expected hello, got ${h.t}`);
      hellos.push(h);
      if (n > 0) {
        // What the standby holds when it comes back: exactly LSN 1..3, byte for byte.
        const sa = Archive.open(s.arch);
        seen.push({ tail: sa.tail()?.lsn ?? null, segBytes: sa.segments().map((x) => statSync(x.path).size) });
      }
      const start = h.lastLsn + 1n;
      send(c.ws, {
        t: 'welcome',
        mac: serverMac(secret, nonce, h.cnonce),
        databaseId: a.identity.databaseId,
        pageSize: a.identity.pageSize,
        incarnation: 1,
        startLsn: start,
        lastLsn: 9n,
        databasePath: a.identity.databasePath,
      });
      const redo = (ps: Buffer) => send(c.ws, { t: 'redo', parts: ps, lastLsn: 9n, timeUs: nowUs() });
      if (n === 0) {
        redo(concat(good));
        redo(Buffer.concat(bad));
      } else redo(concat(upTo(start, 9n)));
      for (;;) {
        const m = await c.next(30_000).catch(() => null);
        if (!m) break;
        if (m.t === 'error') reports.push(m);
      }
    });
    const S = startStandby(s.db, s.arch, fake.url, tokenFile);
    try {
      await S.until(/warning: damaged redo from ws:\/\/127\.0\.0\.1:\d+ in a message starting at LSN 4: part checksum mismatch/);
      await waitApplied(s.arch, 9n);
    } finally {
      expect(await stop(S)).toBe(0);
      await fake.close();
    }
    expect(fake.errors).toEqual([]);
    expect(hellos).toHaveLength(2);
    expect(hellos[0]).toMatchObject({ databaseId: null, lastLsn: 0n });
    expect(hellos[1]).toMatchObject({ databaseId: a.identity.databaseId, lastLsn: 3n, lastCommitTimeUs: good.at(-1)!.commitTimeUs });
    expect(seen).toEqual([{ tail: 3n, segBytes: [SEGMENT_HEADER_BYTES + concat(good).length] }]);
    expect(reports).toMatchObject([{ t: 'error', code: 'ARCHIVE_CORRUPT', message: expect.stringMatching(/damaged redo/) }]);
    expect(S.stderr).not.toMatch(/internal error|^\s+at |error:/m);
    // The standby archive holds exactly the primary's parts; its database equals the primary's.
    expect(concat(archiveParts(s.arch)).equals(concat(parts))).toBe(true);
    expect(rowHash(s.db)).toBe(rowHash(src.db));
  });
});

/**
 * A fake standby that proves the secret, then checks every redo message as the real receiver does (whole parts,
 * in LSN order from welcome.startLsn, each length, CRC and body valid), keeping only counts.
 */
class CheckingClient {
  readonly ws: WebSocket;
  readonly welcome: Promise<Welcome>;
  readonly problems: string[] = [];
  next = { lsn: 0n as Lsn, part: 0 };
  bytes = 0;
  /** Cumulative part bytes received through each LSN. */
  readonly bytesThrough = new Map<bigint, number>();

  constructor(url: string, secret: Uint8Array, name: string) {
    this.ws = new WebSocket(url, { perMessageDeflate: false, maxPayload: MAX_MESSAGE_BYTES });
    let pageSize = 0;
    this.welcome = new Promise<Welcome>((resolve, reject) => {
      this.ws.on('error', (e) => {
        this.problems.push(String(e));
        reject(e);
      });
      this.ws.on('message', (data) => {
        const m = decodeServerMessage(data as Buffer);
        if (m.t === 'challenge') send(this.ws, hello(m.nonce, secret, { name }));
        else if (m.t === 'welcome') {
          pageSize = m.pageSize;
          this.next = { lsn: m.startLsn as Lsn, part: 0 };
          resolve(m);
        } else if (m.t === 'redo') {
          const parts = splitFramedParts(m.parts, pageSize, this.next);
          if (typeof parts === 'string') return void this.problems.push(`at LSN ${this.next.lsn}: ${parts}`);
          for (const { part, raw } of parts) {
            this.bytes += raw.length;
            if (part.last) this.bytesThrough.set(part.lsn, this.bytes);
            this.next = part.last ? { lsn: (part.lsn + 1n) as Lsn, part: 0 } : { lsn: part.lsn, part: part.part + 1 };
          }
        } else if (m.t === 'error') this.problems.push(`${m.code}: ${m.message}`);
      });
    });
  }

  /** Stops reading the socket: what the server sends fills the socket buffers, then must stay with the server. */
  pause(): void {
    (this.ws as unknown as { _socket: { pause(): void } })._socket.pause();
  }

  resume(): void {
    (this.ws as unknown as { _socket: { resume(): void } })._socket.resume();
  }
}

describe('standbys that stop reading', () => {
  /**
   * Eight standbys stop reading while the archive grows by GROWTH. A primary that kept for each what it could
   * not send would hold 8 x GROWTH = 2 GiB; one that keeps its in-flight bound (16 MiB + a message) per standby
   * stays far under RSS_BOUND. (The primary's RSS without any standby reaches a few hundred MB under this
   * workload: V8 collects the capture's buffers lazily. Hence several standbys, to make the difference plain.)
   */
  const STALLED = 8;
  const GROWTH = 256 * 2 ** 20;
  const RSS_BOUND_KB = 1280 * 1024;
  /** What the primary may take from its archive for a standby that reads nothing: in flight + socket buffers. */
  const SENT_BOUND = 48 * 2 ** 20;

  test('the primary does not buffer for them: bounded RSS while the archive grows; a standby that resumes receives everything in order', async () => {
    const dir = tempDir();
    const tokenFile = writeSecret(join(dir, 'secret'));
    const secret = secretOf(tokenFile);
    const db = join(dir, 'app.db');
    const arch = join(dir, 'arch');
    makeDb(db);
    const P = await startPrimary(db, arch, tokenFile);
    const pid = P.p.child.pid!;
    const archiveBytes = () => {
      let n = 0;
      for (const name of readdirSync(join(arch, 'segments')))
        try {
          n += statSync(join(arch, 'segments', name)).size;
        } catch {
          /* sealed (renamed) meanwhile */
        }
      return n;
    };
    const primaryStatus = () => JSON.parse(readFileSync(join(arch, 'primary.status.json'), 'utf8')) as { updatedAt: string; standbys: Array<{ name: string; sentLsn: string }> };

    const clients = Array.from({ length: STALLED }, (_, i) => new CheckingClient(P.url, secret, `stalled-${i}`));
    let W: ReturnType<typeof startWorkload> | null = null;
    try {
      for (const c of clients) {
        expect((await c.welcome).startLsn).toBe(1n);
        c.pause();
      }
      const arch0 = archiveBytes();
      let peakRss = rssKb(pid);
      const sampler = setInterval(() => (peakRss = Math.max(peakRss, rssKb(pid))), 20);
      /** Fails at once when the bound is crossed (a primary that buffers may also fall far behind capturing). */
      const withinBound = () => {
        if (peakRss >= RSS_BOUND_KB) throw new Error(`the primary's RSS reached ${peakRss} kB with ${STALLED} standbys not reading`);
        return true;
      };
      W = startWorkload(db, { mix: 'stress', 'duration-ms': 60_000, seed: 7 });
      let last: bigint;
      try {
        await waitFor(`the archive to grow by ${GROWTH} bytes`, () => withinBound() && archiveBytes() - arch0 >= GROWTH, 40_000);
        W.child.kill('SIGTERM');
        const commits = (await W.result()).commits;
        last = BigInt(commits + 1);
        await waitFor('the primary to archive every commit', () => withinBound() && archiveLsn(arch) === last);
        // A status written after that, for sentLsn.
        const t = Date.now();
        await waitFor('a fresh primary status', () => {
          try {
            return Date.parse(primaryStatus().updatedAt) > t;
          } catch {
            return false;
          }
        });
      } finally {
        clearInterval(sampler);
      }
      expect(P.p.child.exitCode).toBeNull();
      expect(peakRss, `primary peak RSS ${peakRss} kB`).toBeLessThan(RSS_BOUND_KB);
      const sent = primaryStatus().standbys.filter((s) => s.name.startsWith('stalled-'));
      expect(sent).toHaveLength(STALLED);

      // One resumes: it receives everything, in order, every part intact. The others go away.
      const [c, ...others] = clients as [CheckingClient, ...CheckingClient[]];
      for (const o of others) o.ws.terminate();
      c.resume();
      await waitFor('the resumed standby to receive everything', () => c.next.lsn > last || c.problems.length > 0, 30_000);
      expect(c.problems).toEqual([]);
      expect(c.next).toEqual({ lsn: last + 1n, part: 0 });
      expect(c.bytes).toBeGreaterThan(GROWTH);
      // What the primary had taken from its archive for each stalled standby: within its in-flight bound.
      for (const s of sent) {
        const bytes = c.bytesThrough.get(BigInt(s.sentLsn));
        expect(bytes, `sent LSN ${s.sentLsn}`).toBeDefined();
        expect(bytes!, `${s.name}: the primary took ${bytes} bytes from its archive for a standby that read nothing`).toBeLessThan(SENT_BOUND);
      }
    } finally {
      W?.child.kill('SIGKILL');
      for (const c of clients) c.ws.terminate();
      expect(await stop(P.p)).toBe(0);
      await W?.exited;
      rmSync(dir, { recursive: true, force: true }); // hundreds of MB
    }
  });
});

describe('wss:// with a self-signed certificate', () => {
  let dir: string;
  let tokenFile: string;
  let cert: string;
  let key: string;
  beforeAll(() => {
    dir = tempDir();
    tokenFile = writeSecret(join(dir, 'secret'));
    cert = join(dir, 'cert.pem');
    key = join(dir, 'key.pem');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1', '-days', '1'], { stdio: 'ignore' });
  });

  test('a standby with --tls-ca reaches the same LSN and the same rows; one without it is refused (certificate), nothing created', async () => {
    const db = join(dir, 'app.db');
    const arch = join(dir, 'arch');
    makeDb(db);
    const { app, commit } = openApp(db);
    const P = await startPrimary(db, arch, tokenFile, ['--tls-cert', cert, '--tls-key', key], 'wss');
    const site = join(dir, 'dr');
    mkdirSync(site);
    try {
      expect(P.p.stderr).toMatch(/serving redo on wss:\/\/127\.0\.0\.1:\d+/);
      commit(5);

      // Without --tls-ca: the certificate is not trusted.
      const r = await run(['standby', '--db', join(site, 'dr.db'), '--archive', join(site, 'dr-arch'), '--from', P.url, '--token-file', tokenFile, '--quiet']);
      expectRefused(r, ERROR_CODES.PEER_REFUSED, [/certificate/, new RegExp(P.url.replace(/[/.]/g, '\\$&'))], true);
      expect(listing(site)).toEqual([]);
      // With --tls-ca, but by a name the certificate does not hold (it names IP 127.0.0.1).
      const byName = P.url.replace('127.0.0.1', 'localhost');
      const n = await run(['standby', '--db', join(site, 'dr.db'), '--archive', join(site, 'dr-arch'), '--from', byName, '--token-file', tokenFile, '--tls-ca', cert, '--quiet']);
      expectRefused(n, ERROR_CODES.PEER_REFUSED, [/certificate/, /localhost/], true);
      expect(listing(site)).toEqual([]);
      expect(P.p.child.exitCode).toBeNull();

      // With --tls-ca.
      const S = startStandby(join(site, 'dr.db'), join(site, 'dr-arch'), P.url, tokenFile, ['--tls-ca', cert]);
      try {
        commit(5);
        await waitFor('the primary archive', () => archiveLsn(arch) === 11n);
        await waitApplied(join(site, 'dr-arch'), 11n);
        expect(archiveLsn(join(site, 'dr-arch'))).toBe(11n);
      } finally {
        expect(await stop(S)).toBe(0);
      }
      expect(S.stderr).toMatch(/connected to wss:\/\/127\.0\.0\.1:\d+/);
      expect(S.stderr).not.toMatch(/error|warning/);
    } finally {
      app.close();
      expect(await stop(P.p)).toBe(0);
    }
    const cmp = compareWithPrimary(db, join(site, 'dr.db'));
    expect(cmp.rowsEqual).toBe(true);
    expect(cmp.differing).toEqual([]);
    expect(cmp.integrity).toBe('ok');
  });
});

describe.concurrent('token file problems', () => {
  type Make = (dir: string) => string | null;
  const cases: Array<[string, Make, RegExp[]]> = [
    ['no --token-file', () => null, [/needs --token-file/]],
    ['a missing file', (d) => join(d, 'nope'), [/cannot read the token file .*nope: ENOENT/]],
    ['a directory', (d) => (mkdirSync(join(d, 'adir')), join(d, 'adir')), [/cannot read the token file .*adir: EISDIR/]],
    ['an empty file', (d) => (writeFileSync(join(d, 'empty'), ''), join(d, 'empty')), [/holds 0 bytes: there is no secret in it/]],
    ['whitespace only', (d) => (writeFileSync(join(d, 'blank'), ' \n\t\n'), join(d, 'blank')), [/holds 0 bytes: there is no secret in it/]],
  ];

  test.each(cases)('standby with %s: usage error (exit 2), nothing created', async (_what, make, words) => {
    const d = tempDir();
    const tf = make(d);
    const before = treeFingerprint(d);
    const files = listing(d);
    const r = await run(['standby', '--db', join(d, 'dr.db'), '--archive', join(d, 'dr-arch'), '--from', 'ws://127.0.0.1:1', ...(tf ? ['--token-file', tf] : [])]);
    expectRefused(r, ERROR_CODES.USAGE, words, true);
    expect(listing(d)).toEqual(files);
    expect(treeFingerprint(d)).toBe(before);
  });

  test.each(cases)('primary --listen with %s: usage error (exit 2), no archive, the database unchanged', async (_what, make, words) => {
    const d = tempDir();
    const db = join(d, 'app.db');
    makeDb(db);
    const tf = make(d);
    const before = treeFingerprint(d);
    const files = listing(d);
    const r = await run(['primary', '--db', db, '--archive', join(d, 'arch'), '--listen', '127.0.0.1:1', ...(tf ? ['--token-file', tf] : [])]);
    expectRefused(r, ERROR_CODES.USAGE, words, true);
    expect(listing(d)).toEqual(files);
    expect(treeFingerprint(d)).toBe(before);
  });
});

describe('a standby that holds records its primary never confirmed (protocol.ts, confirmation)', () => {
  // The server stands for a primary that lost the last 10 records of this archive before it synced them.
  let dir: string;
  let secret: Buffer;
  let archive: Archive;
  let server: RedoServer;
  let last: bigint;
  beforeAll(async () => {
    dir = tempDir();
    const tokenFile = writeSecret(join(dir, 'secret'));
    secret = secretOf(tokenFile);
    const { arch } = await archivedDatabase(dir, tokenFile, 40);
    archive = Archive.open(arch);
    last = archive.tail()!.lsn;
    const kept = () => last - 10n;
    server = await RedoServer.start(archiveSource({ archive, incarnation: 1, lastLsn: kept, subscribe: () => () => {} }), { host: '127.0.0.1', port: 0, secret });
  });
  afterAll(async () => {
    await server.close();
  });
  const url = () => `ws://127.0.0.1:${server.address.port}`;
  const at = (l: bigint) => archive.commitTimeOf(l as Lsn)!;

  async function helloFrom(o: Partial<Hello>): Promise<{ c: Inbox<ServerMessage>; answer: ServerMessage }> {
    const c = await fakeClient(url());
    const ch = await c.next();
    if (ch.t !== 'challenge') throw new Error(`expected challenge, got ${ch.t}`);
    send(c.ws, hello(ch.nonce, secret, { databaseId: archive.identity.databaseId, lastLsn: last, lastCommitTimeUs: at(last), ...o }));
    return { c, answer: await c.next() };
  }

  test('welcomed after its last confirmed record, and counted as holding only that much until it acks more', async () => {
    const confirmed = last - 15n;
    const { c, answer } = await helloFrom({ confirmedLsn: confirmed, confirmedCommitTimeUs: at(confirmed) });
    expect(answer).toMatchObject({ t: 'welcome', startLsn: confirmed + 1n, lastLsn: last - 10n });
    const info = server.standbys().find((s) => s.state === 'streaming')!;
    expect(info.durableLsn).toBe(String(confirmed));
    // A synchronous commit of a record it set aside must wait for the record sent again.
    await expect(server.waitForDurable(confirmed + 1n, 1, 300)).rejects.toThrow(/not durable/);
    const waiting = server.waitForDurable(confirmed + 1n, 1, 5000);
    send(c.ws, { t: 'ack', received: confirmed + 1n, durable: confirmed + 1n, applied: 0n, timeUs: nowUs() });
    await waiting;
    c.ws.close();
  });

  test("refused (STANDBY_AHEAD) when everything it holds was confirmed, or its confirmed record is not the server's, or past it", async () => {
    const all = await helloFrom({ confirmedLsn: last, confirmedCommitTimeUs: at(last) });
    expect(all.answer).toMatchObject({ t: 'error', code: 'STANDBY_AHEAD' });
    const other = await helloFrom({ confirmedLsn: last - 15n, confirmedCommitTimeUs: at(last - 15n) + 1n });
    expect(other.answer).toMatchObject({ t: 'error', code: 'STANDBY_AHEAD' });
    const past = await helloFrom({ confirmedLsn: last - 5n, confirmedCommitTimeUs: at(last - 5n) });
    expect(past.answer).toMatchObject({ t: 'error', code: 'STANDBY_AHEAD' });
  });
});
