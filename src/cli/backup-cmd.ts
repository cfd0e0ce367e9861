/**
 * `backup`, `list --repo`, and the request channel between `backup` and a running primary.
 *
 * A backup is taken by the process that captures the database (DESIGN.md Capture 3 and 7: one process owns
 * the database's file descriptors, and only it knows which LSN a snapshot is at). When a primary runs on
 * the database, `backup` asks it through a request file in its archive directory and waits for the answer:
 *
 *   <archive>/requests/<id>.backup.json    { repo, level, cumulative, compression, level, maxPieceBytes }
 *   <archive>/requests/<id>.progress.json  { pages, total, bytes }, rewritten while the set is written
 *   <archive>/requests/<id>.result.json    { ok: true, manifest } | { ok: false, code, message, hint }
 *
 * When none runs, `backup` starts one in its own process (capture catches up first), takes the backup, stops.
 */
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import { Repo, copyArchive, copySegment, copySet, readKeyFile, crosscheck, mergeChain, rebuildCatalog, takeBackupSet, validateRepo, type BackupManifest, type BackupProgress, type CompressionSpec } from '../backup/index.js';
import { RedoshipError, isRedoshipError } from '../error/index.js';
import { startPrimary, type PrimaryHandle } from '../primary/index.js';
import { Archive, isProcessAlive } from '../redo/index.js';
import { formatBytes, parseSize, toJson } from './units.js';
import { resolveLocation } from '../storage/index.js';
import { log } from './primary-cmd.js';
import { progressLine, type Progress } from './progress.js';

interface BackupRequest {
  readonly repo: string;
  readonly level: 0 | 1;
  readonly cumulative: boolean;
  readonly compression: CompressionSpec;
  readonly maxPieceBytes: number;
  /** More repositories that get an identical copy of the set. */
  readonly copies?: readonly string[];
  /** Path of the key file: the primary reads it (the secret itself never goes through the request file). */
  readonly encryptKeyFile?: string;
}

type BackupResult = { ok: true; manifest: BackupManifest } | { ok: false; code: string; message: string; hint: string };

export function parseCompression(s: string): CompressionSpec {
  const [alg, lvl] = s.split(':');
  if (alg !== 'zstd' && alg !== 'gzip' && alg !== 'none') throw new RedoshipError('USAGE', `--compress ${s}: unknown`, 'use zstd[:1-19], gzip[:1-9] or none');
  const level = lvl === undefined ? 1 : Number(lvl);
  const max = alg === 'zstd' ? 19 : 9;
  if (alg !== 'none' && !(Number.isInteger(level) && level >= 1 && level <= max))
    throw new RedoshipError('USAGE', `--compress ${s}: ${alg} levels are 1..${max}`, `for example --compress ${alg}:3`);
  return { algorithm: alg, level: alg === 'none' ? 0 : level };
}

/** Runs one backup inside the process that captures. */
export async function backupInPrimary(handle: PrimaryHandle, req: BackupRequest, onProgress?: (p: BackupProgress) => void): Promise<BackupManifest> {
  const repo = await Repo.openFor(req.repo, handle.archive.identity.databaseId, handle.archive.identity.pageSize);
  const snap = handle.backupSnapshot();
  let manifest: BackupManifest;
  try {
    manifest = await takeBackupSet(repo, handle.archive, snap, {
      level: req.level,
      cumulative: req.cumulative,
      compression: req.compression,
      maxPieceBytes: req.maxPieceBytes,
      ...(req.encryptKeyFile ? { encryptionSecret: readKeyFile(req.encryptKeyFile) } : {}),
      ...(onProgress ? { onProgress } : {}),
    });
  } finally {
    snap.release();
  }
  for (const c of req.copies ?? []) await copySet(repo, await Repo.openFor(c, repo.identity.databaseId, repo.identity.pageSize), manifest.name);
  return manifest;
}

/** In a running primary: serve backup requests found in <archive>/requests. Returns a stop function. */
export function serveBackupRequests(handle: PrimaryHandle): () => void {
  const dir = join(handle.archive.dir, 'requests');
  let busy = false;
  const timer = setInterval(() => {
    if (busy || !existsSync(dir)) return;
    const next = readdirSync(dir).find((n) => n.endsWith('.backup.json'));
    if (!next) return;
    busy = true;
    const id = next.slice(0, -'.backup.json'.length);
    let req: BackupRequest | null = null;
    try {
      req = JSON.parse(readFileSync(join(dir, next), 'utf8')) as BackupRequest;
    } catch {
      req = null;
    }
    unlinkSync(join(dir, next));
    const progressPath = join(dir, `${id}.progress.json`);
    let progressAt = 0;
    // For the requesting process's progress line; written a few times a second, a lost write costs nothing.
    const onProgress = (p: BackupProgress) => {
      const now = Date.now();
      if (now - progressAt < 250) return;
      progressAt = now;
      try {
        writeFileSync(`${progressPath}.tmp`, JSON.stringify(p));
        renameSync(`${progressPath}.tmp`, progressPath);
      } catch {
        /* progress is a courtesy */
      }
    };
    const answer = (r: BackupResult) => {
      rmSync(progressPath, { force: true });
      const p = join(dir, `${id}.result.json`);
      writeFileSync(`${p}.tmp`, JSON.stringify(r));
      renameSync(`${p}.tmp`, p);
      busy = false;
    };
    if (!req) return answer({ ok: false, code: 'USAGE', message: 'unreadable backup request', hint: 'run redoship backup again' });
    log(`backup requested: level ${req.level}${req.cumulative ? ' cumulative' : ''} into ${req.repo}`);
    backupInPrimary(handle, req, onProgress).then(
      (manifest) => {
        log(`backup ${manifest.name} done: ${manifest.pages} pages at LSN ${manifest.endLsn}`);
        answer({ ok: true, manifest });
      },
      (e: unknown) => answer(isRedoshipError(e) ? { ok: false, code: e.code, message: e.message, hint: e.hint } : { ok: false, code: 'ASSERT', message: String((e as Error)?.stack ?? e), hint: 'a bug: please report it' }),
    );
  }, 200);
  return () => clearInterval(timer);
}

export interface BackupFlags {
  db?: string;
  archive?: string;
  repo?: string;
  level: string;
  cumulative?: boolean;
  compress: string;
  maxPieceSize: string;
  json?: boolean;
  deleteInput?: boolean;
  copy?: string[];
  encryptKeyFile?: string;
  quiet?: boolean;
}

/** The progress line of a command that writes a backup set. */
function setProgress(f: BackupFlags, verb: string): Progress {
  return progressLine(verb, 'pages', { quiet: !!(f.json || f.quiet) });
}

async function mergeCommand(f: BackupFlags): Promise<void> {
  if (!f.repo) throw new RedoshipError('USAGE', 'backup merge needs --repo', 'example: redoship backup merge --repo ./backups');
  const progress = setProgress(f, 'merge');
  let merged;
  try {
    merged = await mergeChain(f.repo, {
      compression: parseCompression(f.compress),
      maxPieceBytes: parseSize(f.maxPieceSize, '--max-piece-size'),
      ...(f.encryptKeyFile ? { encryptionSecret: readKeyFile(f.encryptKeyFile) } : {}),
      onProgress: (p) => progress.update({ done: p.pages, total: p.total, bytes: p.bytes }),
    });
  } finally {
    progress.done();
  }
  const { manifest, from } = merged;
  if (f.json) process.stdout.write(toJson({ manifest, from }) + '\n');
  else process.stdout.write(`synthetic level 0 ${manifest.name} at LSN ${manifest.endLsn}, ${manifest.pages} pages, merged from ${from.join(' + ')}\n`);
}

async function archiveCopyCommand(f: BackupFlags): Promise<void> {
  if (!f.archive || !f.repo) throw new RedoshipError('USAGE', 'backup archive needs --archive and --repo', 'example: redoship backup archive --archive ./arch --repo ./backups');
  const archive = Archive.open(f.archive);
  const repo = await Repo.openFor(f.repo, archive.identity.databaseId, archive.identity.pageSize);
  const r = await copyArchive(repo, archive, { deleteInput: !!f.deleteInput });
  if (f.json) process.stdout.write(toJson(r) + '\n');
  else process.stdout.write(`archived redo: ${r.copied.length} segment(s) copied, ${r.present.length} already there${f.deleteInput ? `, ${r.deleted.length} deleted from ${archive.dir}` : ''}\n`);
}

export async function backupCommand(action: string | undefined, f: BackupFlags): Promise<void> {
  if (action === 'merge') return mergeCommand(f);
  if (action === 'archive') return archiveCopyCommand(f);
  if (action !== undefined) throw new RedoshipError('USAGE', `unknown backup action "${action}"`, 'use: redoship backup [merge|archive] ...');
  if (!f.db || !f.archive || !f.repo)
    throw new RedoshipError('USAGE', 'backup needs --db, --archive and --repo', 'example: redoship backup --db app.db --archive ./arch --repo ./backups');
  if (f.level !== '0' && f.level !== '1') throw new RedoshipError('USAGE', `--level ${f.level}: use 0 or 1`, 'level 0 holds every page; level 1 the pages changed since its parent');
  const req: BackupRequest = {
    repo: resolveLocation(f.repo),
    level: f.level === '1' ? 1 : 0,
    cumulative: !!f.cumulative,
    compression: parseCompression(f.compress),
    maxPieceBytes: parseSize(f.maxPieceSize, '--max-piece-size'),
    copies: (f.copy ?? []).map(resolveLocation),
    ...(f.encryptKeyFile ? { encryptKeyFile: resolve(f.encryptKeyFile) } : {}),
  };
  if (f.encryptKeyFile) readKeyFile(f.encryptKeyFile); // refuse a missing or empty key file before anything
  const db = resolve(f.db);
  const lock = `${db}-redoship.lock`;
  const holder = existsSync(lock) ? parseInt(readFileSync(lock, 'utf8'), 10) : NaN;
  let manifest: BackupManifest;
  if (Number.isFinite(holder) && isProcessAlive(holder)) {
    const archive = Archive.open(f.archive);
    const dir = join(archive.dir, 'requests');
    mkdirSync(dir, { recursive: true });
    const id = `${Date.now()}-${randomBytes(4).toString('hex')}`;
    writeFileSync(join(dir, `${id}.backup.json.tmp`), JSON.stringify(req));
    renameSync(join(dir, `${id}.backup.json.tmp`), join(dir, `${id}.backup.json`));
    const resultPath = join(dir, `${id}.result.json`);
    const progressPath = join(dir, `${id}.progress.json`);
    const progress = setProgress(f, 'backup');
    try {
      for (;;) {
        await new Promise((r) => setTimeout(r, 100));
        if (existsSync(resultPath)) break;
        if (!isProcessAlive(holder)) throw new RedoshipError('PEER_UNREACHABLE', `the primary (pid ${holder}) stopped before answering the backup request`, 'run the backup again');
        try {
          const p = JSON.parse(readFileSync(progressPath, 'utf8')) as BackupProgress;
          progress.update({ done: p.pages, total: p.total, bytes: p.bytes });
        } catch {
          /* not started yet, or being replaced */
        }
      }
    } finally {
      progress.done();
    }
    const r = JSON.parse(readFileSync(resultPath, 'utf8')) as BackupResult;
    unlinkSync(resultPath);
    if (!r.ok) throw new RedoshipError(r.code as never, r.message, r.hint);
    manifest = r.manifest;
  } else {
    const handle = await startPrimary({ db, archive: f.archive });
    const progress = setProgress(f, 'backup');
    try {
      manifest = await backupInPrimary(handle, req, (p) => progress.update({ done: p.pages, total: p.total, bytes: p.bytes }));
    } finally {
      progress.done();
      await handle.stop();
    }
  }
  const bytes = manifest.pieces.reduce((n, p) => n + p.bytes, 0);
  if (f.json) process.stdout.write(toJson(manifest) + '\n');
  else
    process.stdout.write(
      `backup set ${manifest.name}: level ${manifest.level}${manifest.cumulative ? ' (cumulative)' : ''}${manifest.parent ? `, parent ${manifest.parent}` : ''}, consistent at LSN ${manifest.endLsn}, ${manifest.pages} of ${manifest.sizePages} pages, ${manifest.pieces.length} piece(s), ${formatBytes(bytes)} (${manifest.compression.algorithm})\n`,
    );
}

export async function listCommand(f: { repo: string; json?: boolean }): Promise<void> {
  const repo = await Repo.open(f.repo);
  const sets = await repo.sets();
  if (f.json) {
    process.stdout.write(toJson({ repo: repo.location, identity: repo.identity, sets }) + '\n');
    return;
  }
  const lines = [`repository ${repo.location}  database ${repo.identity.databaseId}  page size ${repo.identity.pageSize}`];
  lines.push(`${'backup set'.padEnd(48)} ${'level'.padEnd(6)} ${'LSNs'.padEnd(16)} ${'pages'.padStart(9)} ${'size'.padStart(10)}  ${'commit time at end'.padEnd(24)}  parent`);
  for (const s of sets)
    lines.push(
      `${s.name.padEnd(48)} ${(s.level === 0 ? '0' : s.cumulative ? '1 cum' : '1').padEnd(6)} ${`${s.startLsn}..${s.endLsn}`.padEnd(16)} ${String(s.pages).padStart(9)} ${formatBytes(s.pieces.reduce((n, p) => n + p.bytes, 0)).padStart(10)}  ${s.endCommitTime.padEnd(24)}  ${s.parent ?? '-'}`,
    );
  lines.push(`${sets.length} backup set(s)`);
  process.stdout.write(lines.join('\n') + '\n');
}

export async function validateCommand(f: { repo: string; restoreTest?: boolean; json?: boolean; quiet?: boolean; encryptKeyFile?: string }): Promise<void> {
  const progress = progressLine('restore test', 'pages', { quiet: !!(f.json || f.quiet) });
  let v;
  try {
    v = await validateRepo(f.repo, {
      restoreTest: !!f.restoreTest,
      ...(f.encryptKeyFile ? { encryptionSecret: readKeyFile(f.encryptKeyFile) } : {}),
      onRestoreProgress: (p) => {
        progress.step(p.step);
        progress.update(p);
      },
    });
  } finally {
    progress.done();
  }
  if (f.json) process.stdout.write(toJson(v) + '\n');
  else {
    const lines: string[] = [];
    for (const s of v.sets) lines.push(`${s.ok ? 'ok     ' : 'DAMAGED'} ${s.name}: ${s.pages} pages, ${formatBytes(s.bytes)}${s.ok ? '' : `\n        ${s.problems.join('\n        ')}`}`);
    if (v.restoreTest)
      lines.push(
        `restore test at LSN ${v.restoreTest.lsn}: integrity_check ${v.restoreTest.integrity}; ${v.restoreTest.pagesChecked} pages against their recorded hashes, ${v.restoreTest.mismatches.length} differ`,
      );
    if (v.restoreTest?.redoToLsn) lines.push(`restore test through the repository's archived redo to LSN ${v.restoreTest.redoToLsn}: integrity_check ok`);
    if (v.restoreTest?.redoProblem) lines.push(`restore test through the repository's archived redo FAILED: ${v.restoreTest.redoProblem}`);
    lines.push(v.ok ? `ok: ${v.sets.length} backup set(s), every piece, chunk and page checked` : `DAMAGE found\n  hint: restore from another copy of the repository, or take a new level 0`);
    process.stdout.write(lines.join('\n') + '\n');
  }
  if (!v.ok) process.exitCode = 22;
}

export async function crosscheckCommand(f: { repo: string; json?: boolean }): Promise<void> {
  const c = await crosscheck(await Repo.open(f.repo));
  const expired = c.sets.filter((s) => s.status === 'expired');
  if (f.json) process.stdout.write(toJson(c) + '\n');
  else {
    for (const s of c.sets) process.stdout.write(`${s.status.padEnd(9)} ${s.name}${s.missing.length ? `  missing: ${s.missing.join(', ')}` : ''}\n`);
    process.stdout.write(`${c.sets.length - expired.length} available, ${expired.length} expired${expired.length ? ' (restore no longer plans with them)' : ''}\n`);
  }
}

export async function catalogRebuildCommand(f: { repo: string; json?: boolean }): Promise<void> {
  const c = await rebuildCatalog(await Repo.open(f.repo));
  if (f.json) process.stdout.write(toJson(c) + '\n');
  else process.stdout.write(`catalog rebuilt from ${c.sets.length} manifest(s)\n`);
}

/** Copies sealed segments to a repository as they are sealed (primary --archive-to). */
export async function startRemoteArchiving(handle: PrimaryHandle, location: string): Promise<{ enqueue(path: string): void; drain(): Promise<void> }> {
  const repo = await Repo.openFor(location, handle.archive.identity.databaseId, handle.archive.identity.pageSize);
  const queue: string[] = [];
  let running: Promise<void> | null = null;
  let backoffMs = 0;
  const pump = async (): Promise<void> => {
    while (queue.length) {
      const p = queue[0]!;
      try {
        if (existsSync(p)) await copySegment(repo, handle.archive, p);
        queue.shift();
        backoffMs = 0;
      } catch (e) {
        backoffMs = Math.min(30_000, backoffMs ? backoffMs * 2 : 1000);
        log(`warning: could not copy ${p} to ${repo.location}: ${(e as Error).message}; retrying in ${backoffMs / 1000} s`);
        await new Promise((r) => setTimeout(r, backoffMs));
      }
    }
  };
  const kick = () => {
    if (!running) running = pump().finally(() => (running = null));
  };
  // Catch up what was sealed before this start.
  for (const s of handle.archive.segments()) if (s.sealed) queue.push(s.path);
  kick();
  return {
    enqueue(path: string) {
      queue.push(path);
      kick();
    },
    async drain() {
      while (running) await running;
    },
  };
}
