/**
 * Buffers for outgoing redo messages, used again once the socket has taken their bytes.
 *
 * Why: V8 counts every new ArrayBuffer as external memory, and each 64 MiB of it starts a full (mark-compact)
 * collection, whatever the size of the heap. At 1,000 commits/s the redo server wrote ~20 MB/s of messages into
 * new buffers, one of the two causes of ~3 full collections a second in the primary, each a pause of 1-12 ms
 * on the event loop that captures and ships (bench/README.md, standby run 6). A message is built into a
 * buffer from here, and give() returns it when ws calls back from the write.
 *
 * Sizes are powers of two from 64 KiB (a message of n bytes gets the smallest class >= n, then a subarray);
 * each class keeps at most KEEP_PER_CLASS free buffers, and all classes together at most KEEP_BYTES, so what
 * a catch-up of large messages leaves behind stays bounded. A buffer larger than the largest class is
 * allocated and dropped as before.
 */
const MIN_CLASS_BITS = 16; // 64 KiB
const MAX_CLASS_BITS = 23; // 8 MiB: a redo message is at most MAX_REDO_MESSAGE_BYTES (4 MiB) plus its fields
const KEEP_PER_CLASS = 8;
const KEEP_BYTES = 24 * 1024 * 1024;

export class BufferPool {
  private readonly free: Buffer[][] = Array.from({ length: MAX_CLASS_BITS - MIN_CLASS_BITS + 1 }, () => []);
  /** Bytes of the buffers in the free lists. */
  private freeBytes = 0;

  /** A buffer of exactly size bytes (a view of a pooled one when size fits a class). */
  take(size: number): Buffer {
    const k = classOf(size);
    if (k < 0) return Buffer.allocUnsafe(size);
    const pooled = this.free[k]!.pop();
    if (pooled) this.freeBytes -= pooled.length;
    const whole = pooled ?? Buffer.allocUnsafe(1 << (k + MIN_CLASS_BITS));
    return whole.subarray(0, size);
  }

  /**
   * Gives back a buffer from take(); its bytes must not be used after this. A buffer that is not a view at
   * the start of a whole class-sized one (not from take(), or larger than every class) is ignored, and so is
   * one given twice (two takers would then share it).
   */
  give(buf: Buffer): void {
    const ab = buf.buffer;
    const k = classOf(ab.byteLength);
    if (k < 0 || buf.byteOffset !== 0 || ab.byteLength !== 1 << (k + MIN_CLASS_BITS)) return;
    const list = this.free[k]!;
    if (list.length >= KEEP_PER_CLASS || this.freeBytes + ab.byteLength > KEEP_BYTES || list.some((b) => b.buffer === ab)) return;
    list.push(Buffer.from(ab));
    this.freeBytes += ab.byteLength;
  }
}

/** The class index for size bytes, or -1 when it is larger than the largest class. */
function classOf(size: number): number {
  let bits = MIN_CLASS_BITS;
  while (bits <= MAX_CLASS_BITS && 1 << bits < size) bits++;
  return bits > MAX_CLASS_BITS ? -1 : bits - MIN_CLASS_BITS;
}
