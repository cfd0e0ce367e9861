/**
 * Memory for the framed records the redo server's ring keeps (recent.ts), carved from 1 MiB slabs that are
 * used again once every record in them has left the ring.
 *
 * Why: V8 counts every new ArrayBuffer as external memory, and enough of it starts a full (mark-compact)
 * collection whatever the size of the heap. Framing each captured record into a buffer of its own was
 * ~20 MB/s at 1,000 commits/s, half of what made the primary collect ~3 times a second, a pause of 1-12 ms
 * on the event loop that captures and ships each time (buffer-pool.ts is the other half).
 *
 * Invariants: a buffer from take() is a view of one slab, counted in that slab until give(); a slab is reused
 * only when its count is 0 and it is not the one being carved. A buffer larger than a quarter slab is
 * allocated alone and never reused. give() of a buffer this arena did not make is ignored. Slabs are found
 * from their ArrayBuffer through a WeakMap: a slab whose buffers are dropped without give() is collected
 * like any other memory.
 */
const SLAB_BYTES = 1024 * 1024;
const LARGEST_CARVED = SLAB_BYTES / 4;
/** Free slabs kept for reuse: the ring holds 16 MiB by default, and this is headroom beyond it. */
const KEEP_FREE = 24;

interface Slab {
  readonly buf: Buffer;
  used: number;
  refs: number;
}

export class SlabArena {
  private readonly slabs = new WeakMap<ArrayBufferLike, Slab>();
  private readonly free: Slab[] = [];
  private current: Slab | null = null;

  /** size bytes for a framed record, valid until give(). */
  readonly take = (size: number): Buffer => {
    if (size > LARGEST_CARVED) return Buffer.allocUnsafe(size);
    let s = this.current;
    if (!s || s.used + size > SLAB_BYTES) {
      if (s) this.retire(s);
      s = this.free.pop() ?? this.newSlab();
      this.current = s;
    }
    const at = s.used;
    s.used += (size + 7) & ~7; // 8-byte aligned starts
    s.refs++;
    return s.buf.subarray(at, at + size);
  };

  /**
   * Gives back a buffer from take(); its bytes must not be used after this. Exactly once per buffer: a second
   * give() would count against the slab's other buffers (the ring drops each entry once).
   */
  give(b: Uint8Array): void {
    const s = this.slabs.get(b.buffer);
    if (!s || s.refs === 0) return;
    s.refs--;
    if (s.refs === 0 && s !== this.current) this.recycle(s);
  }

  private newSlab(): Slab {
    const s: Slab = { buf: Buffer.allocUnsafe(SLAB_BYTES), used: 0, refs: 0 };
    this.slabs.set(s.buf.buffer, s);
    return s;
  }

  /** The slab being carved is full: it is free again once its last buffer is given back (or now). */
  private retire(s: Slab): void {
    if (s.refs === 0) this.recycle(s);
  }

  private recycle(s: Slab): void {
    s.used = 0;
    if (this.free.length < KEEP_FREE) this.free.push(s);
    else this.slabs.delete(s.buf.buffer);
  }
}
