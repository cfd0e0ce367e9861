/**
 * Storage in an S3 bucket (AWS S3 or any S3-compatible service), at a location `s3://bucket[/prefix]`.
 *
 * Configuration comes from the standard AWS environment variables, as every AWS tool reads them:
 *   AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL   another S3-compatible service (then path-style addressing:
 *                                             http://host:port/bucket/key, which every such service accepts)
 *   AWS_REGION (or AWS_DEFAULT_REGION)        default us-east-1
 *   AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY  (and AWS_SESSION_TOKEN); without them the SDK's default chain
 *                                             (AWS_PROFILE and ~/.aws files, SSO, container and instance roles)
 *
 * How the contract (storage.ts) is kept:
 *  - put(): S3 makes one PutObject visible whole or not at all, and durable when it returns. A streamed
 *    body is buffered up to PART_BYTES; when it ends within that, it is one PutObject. A longer one is a
 *    multipart upload: its parts are invisible until CompleteMultipartUpload, which is as atomic as
 *    PutObject, and any failure aborts the upload, so neither leaves a visible partial object. At most one
 *    part is held in memory. (A bucket lifecycle rule AbortIncompleteMultipartUpload is the usual backstop
 *    for uploads a killed process could not abort: their parts cost storage, though never visible.)
 *  - get(): GetObject with a Range header; NoSuchKey is RedoshipError NOT_FOUND, like a missing file.
 *  - list(): ListObjectsV2 page by page (1000 keys a page), then sorted in byte order (S3 returns that order,
 *    not every S3-compatible service does).
 *  - remove(): DeleteObjects, 1000 keys a request (DeleteObject one by one where a service lacks it); S3
 *    does not report absent keys as errors.
 *  - A bucket that does not exist reads like a repository directory that does not exist (NOT_FOUND, an
 *    empty list); put() fails with a hint to create it. Buckets are never created here: that is the
 *    owner's decision (region, policy, versioning, lifecycle).
 * The SDK retries throttling, 5xx and dropped connections (3 attempts, standard mode); nothing else retries.
 * The SDK is loaded on first use (it adds ~140 ms to a process start), so commands that never touch S3
 * do not pay for it.
 */
import type { S3Client, S3ClientConfig } from '@aws-sdk/client-s3';
import { RedoshipError } from '../error/index.js';
import { checkKey, type Storage, type StorageObject } from './storage.js';

/** A streamed put longer than this becomes a multipart upload (S3's minimum part is 5 MiB). */
export const PART_BYTES = 16 * 1024 * 1024;
/** S3 allows 10,000 parts; parts grow by PART_BYTES every 1,000 so an object may reach ~880 GiB. */
const MAX_PARTS = 10_000;

type Sdk = typeof import('@aws-sdk/client-s3');
let sdkLoading: Promise<Sdk> | null = null;
const loadSdk = (): Promise<Sdk> => {
  // The SDK warns on every start under Node < 22 that *future* SDK releases will need 22. redoship supports
  // Node 20 with the SDK its lock file pins; the warning would only be noise on the CLI's stderr.
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  return (sdkLoading ??= import('@aws-sdk/client-s3'));
};

export function isS3Location(location: string): boolean {
  return /^s3:\/\//i.test(location);
}

/** Splits `s3://bucket/prefix` into the bucket and the key prefix ('' or ending in '/'). */
export function parseS3Location(location: string): { bucket: string; prefix: string } {
  const m = /^s3:\/\/([^/]*)(?:\/(.*))?$/i.exec(location);
  const bucket = m?.[1] ?? '';
  const path = (m?.[2] ?? '').replace(/\/+$/, '');
  if (!m || !/^[a-z0-9][a-z0-9.\-_]{1,254}$/i.test(bucket))
    throw new RedoshipError('USAGE', `${location} is not an S3 location`, 'write it as s3://bucket or s3://bucket/prefix');
  if (path !== '' && path.split('/').some((p) => p === '' || p === '.' || p === '..'))
    throw new RedoshipError('USAGE', `${location}: the prefix may not hold empty, '.' or '..' parts`, 'write it as s3://bucket/some/prefix');
  return { bucket, prefix: path === '' ? '' : `${path}/` };
}

/** The client configuration the AWS environment variables describe. */
export function s3ConfigFromEnv(env: NodeJS.ProcessEnv = process.env): S3ClientConfig & { endpoint?: string } {
  const endpoint = env.AWS_ENDPOINT_URL_S3 || env.AWS_ENDPOINT_URL || undefined;
  const cfg: S3ClientConfig & { endpoint?: string } = {
    region: env.AWS_REGION || env.AWS_DEFAULT_REGION || 'us-east-1',
    followRegionRedirects: true,
    // Fail fast on an endpoint that does not answer; a stalled transfer is cut after two idle minutes.
    requestHandler: { connectionTimeout: 10_000, socketTimeout: 120_000 },
  };
  if (endpoint) {
    cfg.endpoint = endpoint;
    cfg.forcePathStyle = true;
    // Many S3-compatible services reject the SDK's newer default checksum headers; send them only where
    // the API requires one (pieces carry their own SHA-256, checked by restore and validate).
    if (!env.AWS_REQUEST_CHECKSUM_CALCULATION) cfg.requestChecksumCalculation = 'WHEN_REQUIRED';
    if (!env.AWS_RESPONSE_CHECKSUM_VALIDATION) cfg.responseChecksumValidation = 'WHEN_REQUIRED';
  }
  if (env.AWS_ACCESS_KEY_ID && env.AWS_SECRET_ACCESS_KEY)
    cfg.credentials = {
      accessKeyId: env.AWS_ACCESS_KEY_ID,
      secretAccessKey: env.AWS_SECRET_ACCESS_KEY,
      ...(env.AWS_SESSION_TOKEN ? { sessionToken: env.AWS_SESSION_TOKEN } : {}),
    };
  return cfg;
}

interface AwsLikeError {
  name?: string;
  code?: string;
  Code?: string;
  message?: string;
  $metadata?: { httpStatusCode?: number };
  cause?: unknown;
}

const UNREACHABLE = new Set(['ECONNREFUSED', 'ECONNRESET', 'ENOTFOUND', 'EAI_AGAIN', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'EPIPE', 'TimeoutError']);
const REFUSED = new Set(['AccessDenied', 'InvalidAccessKeyId', 'SignatureDoesNotMatch', 'ExpiredToken', 'InvalidToken', 'TokenRefreshRequired', 'AllAccessDisabled', 'AccountProblem']);

function errorName(e: unknown): string {
  const x = e as AwsLikeError | undefined;
  const c = x?.code ?? x?.Code;
  if (typeof c === 'string' && c !== '') return c;
  const cause = x?.cause as AwsLikeError | undefined;
  if (typeof cause?.code === 'string') return cause.code;
  return x?.name ?? 'Error';
}

function status(e: unknown): number | undefined {
  return (e as AwsLikeError | undefined)?.$metadata?.httpStatusCode;
}

function isMissingBucket(e: unknown): boolean {
  return errorName(e) === 'NoSuchBucket';
}

export class S3Storage implements Storage {
  readonly bucket: string;
  /** The key prefix of the root: '' or ending in '/'. */
  readonly prefix: string;
  private readonly config: S3ClientConfig & { endpoint?: string };
  /** Keys a ListObjectsV2 page and a DeleteObjects request hold: S3's maximum, 1000; less only in tests. */
  private readonly batch: number;
  private client: S3Client | null = null;
  private sdk: Sdk | null = null;

  constructor(location: string, env: NodeJS.ProcessEnv = process.env, o: { batch?: number } = {}) {
    const { bucket, prefix } = parseS3Location(location);
    this.batch = Math.max(1, Math.min(1000, o.batch ?? 1000));
    this.bucket = bucket;
    this.prefix = prefix;
    this.config = s3ConfigFromEnv(env);
  }

  /** The SDK and this storage's client, made on first use. */
  private async s3(): Promise<{ c: S3Client; sdk: Sdk }> {
    if (!this.client || !this.sdk) {
      const sdk = await loadSdk();
      this.sdk ??= sdk;
      this.client ??= new sdk.S3Client(this.config);
    }
    return { c: this.client, sdk: this.sdk };
  }

  get location(): string {
    return `s3://${this.bucket}${this.prefix === '' ? '' : `/${this.prefix.slice(0, -1)}`}`;
  }

  /** Closes the client's kept-alive connections (a process that exits need not). */
  destroy(): void {
    this.client?.destroy();
  }

  private objectKey(key: string): string {
    checkKey(key);
    return this.prefix + key;
  }

  /** A RedoshipError for a failed request: what we were doing, where, and what to check. */
  private fail(action: string, key: string | null, e: unknown): RedoshipError {
    if (e instanceof RedoshipError) return e;
    const name = errorName(e);
    const where = key === null ? this.location : `${this.location}/${key}`;
    const msg = (e as AwsLikeError | undefined)?.message;
    const what = `could not ${action} ${where} (${name}${msg && msg !== name ? `: ${msg}` : ''})`;
    const endpoint = this.config.endpoint ? `${this.config.endpoint} (AWS_ENDPOINT_URL / AWS_ENDPOINT_URL_S3)` : `S3 in ${String(this.config.region)} (AWS_REGION)`;
    if (UNREACHABLE.has(name))
      return new RedoshipError('PEER_UNREACHABLE', what, `check that ${endpoint} is reachable from here, then run the command again`, { cause: e });
    if (name === 'CredentialsProviderError' || name === 'CredentialsError')
      return new RedoshipError('IO', what, 'no AWS credentials were found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE)', { cause: e });
    if (REFUSED.has(name) || status(e) === 403)
      return new RedoshipError('IO', what, `check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN), and that they may ${action} in bucket ${this.bucket}`, { cause: e });
    if (name === 'NoSuchBucket')
      return new RedoshipError('IO', what, `bucket ${this.bucket} does not exist: create it (for example \`aws s3 mb s3://${this.bucket}\`) or check the bucket in --repo`, { cause: e });
    if (name === 'PermanentRedirect' || name === 'AuthorizationHeaderMalformed' || name === 'IllegalLocationConstraintException')
      return new RedoshipError('IO', what, `set AWS_REGION to the region of bucket ${this.bucket}`, { cause: e });
    if (name === 'EntityTooLarge')
      return new RedoshipError('IO', what, 'the object is larger than the service accepts: use a smaller --max-piece-size', { cause: e });
    return new RedoshipError('IO', what, 'check the S3 service, the bucket and AWS_* settings, then run the command again', { cause: e });
  }

  async put(key: string, body: Uint8Array | AsyncIterable<Uint8Array>): Promise<void> {
    const k = this.objectKey(key);
    if (body instanceof Uint8Array) return this.putObject(key, k, body);
    // Buffer the stream up to one part; a stream that ends within it is a single PutObject.
    const it = body[Symbol.asyncIterator]();
    let first;
    try {
      first = await fill(it, PART_BYTES);
    } catch (e) {
      throw this.fail('write', key, e); // the source failed: nothing was sent
    }
    if (first.done) return this.putObject(key, k, first.data);
    await this.putMultipart(key, k, first.data, it);
  }

  private async putObject(key: string, k: string, data: Uint8Array): Promise<void> {
    const { c, sdk } = await this.s3();
    try {
      await c.send(new sdk.PutObjectCommand({ Bucket: this.bucket, Key: k, Body: data, ContentLength: data.length }));
    } catch (e) {
      throw this.fail('write', key, e);
    }
  }

  /** Parts are uploaded one at a time; nothing is visible until Complete; any failure aborts the upload. */
  private async putMultipart(key: string, k: string, first: Buffer, it: AsyncIterator<Uint8Array>): Promise<void> {
    const { c, sdk } = await this.s3();
    let uploadId: string | undefined;
    try {
      uploadId = (await c.send(new sdk.CreateMultipartUploadCommand({ Bucket: this.bucket, Key: k }))).UploadId;
      if (!uploadId) throw new Error('CreateMultipartUpload returned no UploadId');
    } catch (e) {
      await it.return?.().catch(() => {});
      throw this.fail('write', key, e);
    }
    const parts: Array<{ PartNumber: number; ETag: string }> = [];
    try {
      let data = first;
      let done = false;
      for (;;) {
        const n = parts.length + 1;
        if (n > MAX_PARTS) throw new RedoshipError('IO', `could not write ${this.location}/${key}: longer than ${MAX_PARTS} parts`, 'use a smaller --max-piece-size');
        let etag: string | undefined;
        try {
          etag = (await c.send(new sdk.UploadPartCommand({ Bucket: this.bucket, Key: k, UploadId: uploadId, PartNumber: n, Body: data, ContentLength: data.length }))).ETag;
        } catch (e) {
          throw this.fail('write', key, e);
        }
        if (!etag) throw this.fail('write', key, new Error(`UploadPart ${n} returned no ETag`));
        parts.push({ PartNumber: n, ETag: etag });
        if (done) break;
        const next = await fill(it, PART_BYTES * (1 + Math.floor(parts.length / 1000)));
        data = next.data;
        done = next.done;
        if (done && data.length === 0) break;
      }
      try {
        await c.send(new sdk.CompleteMultipartUploadCommand({ Bucket: this.bucket, Key: k, UploadId: uploadId, MultipartUpload: { Parts: parts } }));
      } catch (e) {
        throw this.fail('write', key, e);
      }
    } catch (e) {
      await it.return?.().catch(() => {});
      await c.send(new sdk.AbortMultipartUploadCommand({ Bucket: this.bucket, Key: k, UploadId: uploadId })).catch(() => {});
      throw this.fail('write', key, e);
    }
  }

  async get(key: string, range?: readonly [number, number]): Promise<Buffer> {
    const k = this.objectKey(key);
    const { c, sdk } = await this.s3();
    const notFound = () => new RedoshipError('NOT_FOUND', `${key} is not in ${this.location}`, 'run `redoship crosscheck` to find what the repository lost');
    try {
      if (range && range[1] <= range[0]) {
        // HTTP cannot ask for zero bytes; the object must still exist, as with a file.
        await c.send(new sdk.HeadObjectCommand({ Bucket: this.bucket, Key: k }));
        return Buffer.alloc(0);
      }
      const res = await c.send(
        new sdk.GetObjectCommand({ Bucket: this.bucket, Key: k, ...(range ? { Range: `bytes=${range[0]}-${range[1] - 1}` } : {}) }),
      );
      if (!res.Body) return Buffer.alloc(0);
      const bytes = await res.Body.transformToByteArray();
      return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    } catch (e) {
      const name = errorName(e);
      if (name === 'NoSuchKey' || name === 'NotFound' || isMissingBucket(e) || (status(e) === 404 && name !== 'NoSuchUpload')) throw notFound();
      if (range && (name === 'InvalidRange' || status(e) === 416)) return Buffer.alloc(0); // start at or past the end
      throw this.fail('read', key, e);
    }
  }

  async *list(prefix: string): AsyncIterable<StorageObject> {
    const { c, sdk } = await this.s3();
    // S3 itself returns keys in UTF-8 byte order, but not every S3-compatible service does (s3rver walks its
    // directories); the whole listing is gathered and sorted so the contract holds on all of them. A
    // repository holds thousands of objects, not millions, and LocalStorage gathers its listing too.
    const out: StorageObject[] = [];
    let token: string | undefined;
    do {
      let page;
      try {
        page = await c.send(new sdk.ListObjectsV2Command({ Bucket: this.bucket, Prefix: this.prefix + prefix, MaxKeys: this.batch, ...(token ? { ContinuationToken: token } : {}) }));
      } catch (e) {
        if (isMissingBucket(e)) return;
        throw this.fail('list', prefix === '' ? null : prefix, e);
      }
      for (const o of page.Contents ?? []) {
        if (o.Key === undefined || !o.Key.startsWith(this.prefix + prefix)) continue;
        out.push({ key: o.Key.slice(this.prefix.length), size: o.Size ?? 0 });
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    out.sort((a, b) => Buffer.compare(Buffer.from(a.key), Buffer.from(b.key)));
    yield* out;
  }

  async remove(keys: readonly string[]): Promise<void> {
    const all = keys.map((k) => this.objectKey(k));
    if (all.length === 0) return;
    const { c, sdk } = await this.s3();
    for (let i = 0; i < all.length; i += this.batch) {
      const batch = all.slice(i, i + this.batch);
      let res;
      try {
        res = await c.send(new sdk.DeleteObjectsCommand({ Bucket: this.bucket, Delete: { Objects: batch.map((Key) => ({ Key })), Quiet: true } }));
      } catch (e) {
        if (isMissingBucket(e)) return;
        const name = errorName(e);
        if (name === 'NotImplemented' || name === 'MissingContentMD5') {
          // A service without DeleteObjects (or wanting MD5 where the SDK sends CRC32): one at a time.
          for (const [j, Key] of batch.entries())
            await c.send(new sdk.DeleteObjectCommand({ Bucket: this.bucket, Key })).catch((e2: unknown) => {
              if (errorName(e2) !== 'NoSuchKey' && !isMissingBucket(e2)) throw this.fail('remove', keys[i + j]!, e2);
            });
          continue;
        }
        throw this.fail('remove', batch.length === 1 ? keys[i]! : `${keys[i]!} (and ${batch.length - 1} more)`, e);
      }
      const errs = (res.Errors ?? []).filter((x) => x.Code !== 'NoSuchKey');
      if (errs.length > 0) {
        const x = errs[0]!;
        throw this.fail('remove', x.Key?.slice(this.prefix.length) ?? null, Object.assign(new Error(`${x.Message ?? x.Code}${errs.length > 1 ? ` (and ${errs.length - 1} more)` : ''}`), { code: x.Code }));
      }
    }
  }
}

/** Reads from it until at least max bytes are held or it ends; returns the bytes and whether it ended. */
async function fill(it: AsyncIterator<Uint8Array>, max: number): Promise<{ data: Buffer; done: boolean }> {
  const chunks: Uint8Array[] = [];
  let n = 0;
  while (n < max) {
    const r = await it.next();
    if (r.done) return { data: Buffer.concat(chunks, n), done: true };
    chunks.push(r.value);
    n += r.value.length;
  }
  return { data: Buffer.concat(chunks, n), done: false };
}
