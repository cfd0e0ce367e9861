/**
 * s3rver, a real S3-protocol server, in its own process on 127.0.0.1 (a random port, storing in directory;
 * its default account is S3RVER / S3RVER), for the S3 storage and backup tests. It makes ListObjectsV2
 * continuation tokens with DES, which OpenSSL 3 keeps in its legacy provider: without
 * --openssl-legacy-provider every truncated listing fails with InternalError. Resolves to the endpoint, or to
 * why it cannot run here (the tests then skip and say so: nothing is faked).
 */
import { spawn } from 'node:child_process';
import { startedProcesses } from './index.js';

export async function startS3rver(directory: string): Promise<{ endpoint: string; stop(): Promise<void> } | string> {
  const script = `
    const S3rver = require('s3rver');
    const s = new S3rver({ address: '127.0.0.1', port: 0, silent: true, directory: process.argv[1] });
    s.run().then((a) => console.log('s3rver port ' + a.port), (e) => { console.error(e); process.exit(1); });
    process.on('SIGTERM', () => s.close().then(() => process.exit(0)));`;
  const child = spawn(process.execPath, ['--openssl-legacy-provider', '-e', script, directory], { cwd: process.cwd(), stdio: ['ignore', 'pipe', 'pipe'] });
  startedProcesses.push(child); // test/setup.ts kills it if the file ends without stopping it
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (out += d));
  const exited = new Promise<void>((r) => child.once('close', () => r()));
  const port = await new Promise<number | null>((res) => {
    const iv = setInterval(() => {
      const m = /s3rver port (\d+)/.exec(out);
      if (m) done(Number(m[1]));
    }, 20);
    const to = setTimeout(() => done(null), 20_000);
    void exited.then(() => done(null));
    function done(p: number | null) {
      clearInterval(iv);
      clearTimeout(to);
      res(p);
    }
  });
  if (port === null) {
    child.kill('SIGKILL');
    return `s3rver did not start: ${out.trim().split('\n').slice(0, 5).join(' / ') || 'no output'}`;
  }
  return {
    endpoint: `http://127.0.0.1:${port}`,
    async stop() {
      child.kill('SIGTERM');
      await exited;
    },
  };
}
