// A sync group of the worker threads of one process: a SharedArrayBuffer that every rank maps,
// one slot per rank for what it contributes, and a generation counter as the barrier
// (Atomics.wait / Atomics.waitAsync, with the group's timeout). Slots alternate between two sets
// on even and odd rounds: a rank can be at most one round ahead of the slowest (it cannot finish
// round r + 1 before everyone has arrived there, i.e. finished reading round r), so one barrier per
// collective suffices.
import * as os from 'os';
import { BatchNormRangeError, BatchNormTypeError, describe } from '../errors';
import { Exchanged, HEADER_LENGTH, SyncGroup, syncError } from './group';

// Int32 control words.
const GEN = 0; // collectives completed by every rank
const ARRIVED = 1; // ranks arrived at the current one
const BROKEN = 2; // 0; 1 + the rank that timed out; -(1 + the rank) that left
const JOINED = 4; // JOINED + rank: 1 once a thread has joined as that rank
const BRAND = 'node-batchnorm ThreadGroup';

export interface ThreadGroupOptions {
  /** How long a collective waits for the other ranks (ms). Default 60000. */
  timeoutMs?: number;
  /** Largest exchange per rank, in float64 values (a SyncBatchNorm of C channels needs 2C + 1;
   * longer all-reduces go in pieces). Default 65536; the group's shared memory, 2 x worldSize x
   * capacity values, must fit the machine's memory (else ERR_BN_OUT_OF_MEMORY). */
  capacity?: number;
}

/** What ThreadGroup.create returns: plain data that survives structured cloning, so it can be
 * passed to each worker in workerData (or postMessage) and joined there. */
export interface ThreadGroupHandle {
  readonly brand: typeof BRAND;
  readonly buffer: SharedArrayBuffer;
  readonly worldSize: number;
  readonly timeoutMs: number;
  readonly capacity: number;
}

type WaitResult = 'ok' | 'not-equal' | 'timed-out';
// Atomics.waitAsync (Node >= 16) is newer than this project's TypeScript lib target.
const waitAsync = (Atomics as unknown as {
  waitAsync(a: Int32Array, i: number, v: number, ms: number): { async: false; value: WaitResult } | { async: true; value: Promise<WaitResult> };
}).waitAsync.bind(Atomics);

/** A pending Atomics.waitAsync does not keep Node's event loop alive (a worker would exit while
 * waiting): a timer as long as the wait does. */
async function keepingAlive<R>(p: Promise<R>, ms: number): Promise<R> {
  const t = setTimeout(() => undefined, ms + 1000);
  try {
    return await p;
  } finally {
    clearTimeout(t);
  }
}

function controlInts(worldSize: number): number {
  return (JOINED + worldSize + 1) & ~1; // even: the float64 slots after it stay 8-aligned
}

function checkInt(fn: string, name: string, v: unknown, lo: number, hi: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < lo || v > hi) {
    const E = typeof v === 'number' ? BatchNormRangeError : BatchNormTypeError;
    throw new E(typeof v === 'number' ? 'ERR_BN_OUT_OF_RANGE' : 'ERR_BN_INVALID_ARG_TYPE', `${fn}: ${name} must be an integer in [${lo}, ${hi}], received ${describe(v)}`);
  }
  return v;
}

export class ThreadGroup extends SyncGroup {
  readonly backend = 'threads' as const;
  readonly rank: number;
  readonly worldSize: number;
  readonly timeoutMs: number;
  readonly maxPayload: number;
  private readonly ctrl: Int32Array;
  private readonly slots: Float64Array;
  private round = 0;

  /** On the main thread (or any one thread): the shared state of a group of `worldSize` ranks. */
  static create(worldSize: number, options: ThreadGroupOptions = {}): ThreadGroupHandle {
    const fn = 'ThreadGroup.create';
    checkInt(fn, 'worldSize', worldSize, 1, 4096);
    if (typeof options !== 'object' || options === null) {
      throw new BatchNormTypeError('ERR_BN_INVALID_ARG_TYPE', `${fn}: options must be an object, received ${describe(options)}`);
    }
    for (const k of Object.keys(options)) {
      if (k !== 'timeoutMs' && k !== 'capacity') {
        throw new BatchNormTypeError('ERR_BN_UNKNOWN_OPTION', `${fn}: unknown option '${k}' (known: timeoutMs, capacity)`);
      }
    }
    const timeoutMs = checkInt(fn, 'timeoutMs', options.timeoutMs ?? 60000, 1, 2 ** 31 - 1);
    const capacity = checkInt(fn, 'capacity', options.capacity ?? 65536, 1, 2 ** 27);
    const bytes = controlInts(worldSize) * 4 + 2 * worldSize * (HEADER_LENGTH + capacity) * 8;
    const what = `the group's ${bytes} bytes of shared memory (2 x worldSize x capacity float64 values)`;
    // Where the kernel overcommits, a buffer larger than the machine would be created and fail
    // only when touched: refuse it here, on every machine alike.
    if (bytes > os.totalmem()) {
      throw new BatchNormRangeError('ERR_BN_OUT_OF_MEMORY', `${fn}: ${what} exceed this machine's ${os.totalmem()} bytes of memory; use a smaller capacity`);
    }
    let buffer: SharedArrayBuffer;
    try {
      buffer = new SharedArrayBuffer(bytes);
    } catch (e) {
      throw new BatchNormRangeError('ERR_BN_OUT_OF_MEMORY', `${fn}: could not allocate ${what}: ${(e as Error).message}; use a smaller capacity`);
    }
    return Object.freeze({ brand: BRAND, buffer, worldSize, timeoutMs, capacity });
  }

  /** In each worker: takes part in the group as `rank` (each rank joined by exactly one thread). */
  static join(handle: ThreadGroupHandle, rank: number): ThreadGroup {
    const fn = 'ThreadGroup.join';
    if (typeof handle !== 'object' || handle === null || handle.brand !== BRAND || !(handle.buffer instanceof SharedArrayBuffer)) {
      throw new BatchNormTypeError('ERR_BN_INVALID_ARG_TYPE', `${fn}: group must be what ThreadGroup.create returned (passed through workerData), received ${describe(handle)}`);
    }
    checkInt(fn, 'rank', rank, 0, handle.worldSize - 1);
    return new ThreadGroup(handle, rank);
  }

  private constructor(h: ThreadGroupHandle, rank: number) {
    super();
    this.rank = rank;
    this.worldSize = h.worldSize;
    this.timeoutMs = h.timeoutMs;
    this.maxPayload = h.capacity;
    const ci = controlInts(h.worldSize);
    this.ctrl = new Int32Array(h.buffer, 0, ci);
    this.slots = new Float64Array(h.buffer, ci * 4);
    if (Atomics.compareExchange(this.ctrl, JOINED + rank, 0, 1) !== 0) {
      throw syncError('ERR_BN_SYNC_RANK_TAKEN', `ThreadGroup.join: rank ${rank} of this group has already been joined by another thread (or earlier by this one); each rank joins once`);
    }
  }

  private slot(round: number, rank: number): Float64Array {
    const size = HEADER_LENGTH + this.maxPayload;
    const at = ((round & 1) * this.worldSize + rank) * size;
    return this.slots.subarray(at, at + size);
  }

  /** Why the group is broken, or null. While waiting in a round, another rank's timeout is this
   * rank's timeout too (the same rank is missing); otherwise the group is simply broken. */
  private brokenError(fn: string, waiting: boolean): Error | null {
    const b = Atomics.load(this.ctrl, BROKEN);
    if (b === 0) return null;
    if (b > 0 && waiting) {
      return syncError('ERR_BN_SYNC_TIMEOUT', `rank ${this.rank} of ${this.worldSize}: rank ${b - 1} waited ${this.timeoutMs} ms for the other ranks to reach this collective and gave up (a worker died, threw before the collective, or runs different code); the group is broken`);
    }
    const why = b > 0 ? `rank ${b - 1} gave up waiting for a rank that did not take part in time` : `rank ${-b - 1} left (destroy())`;
    return syncError('ERR_BN_SYNC_BROKEN', `${fn}: this thread group is broken: ${why}`);
  }

  /** Writes this rank's part and arrives; true when this rank completed the round (the last one). */
  private arrive(header: Float64Array, payload: Float64Array): boolean {
    const s = this.slot(this.round, this.rank);
    s.set(header, 0);
    s.set(payload, HEADER_LENGTH);
    if (Atomics.add(this.ctrl, ARRIVED, 1) + 1 < this.worldSize) return false;
    Atomics.store(this.ctrl, ARRIVED, 0); // before the generation moves: nobody arrives at the next round earlier
    Atomics.add(this.ctrl, GEN, 1);
    Atomics.notify(this.ctrl, GEN);
    return true;
  }

  /** The timeout error, or null when the round completed between the wait's end and now. */
  private timedOut(): Error | null {
    if (Atomics.load(this.ctrl, GEN) !== (this.round | 0)) return null;
    Atomics.compareExchange(this.ctrl, BROKEN, 0, this.rank + 1);
    Atomics.notify(this.ctrl, GEN);
    return syncError(
      'ERR_BN_SYNC_TIMEOUT',
      `rank ${this.rank} of ${this.worldSize}: the other ranks did not all reach this collective within ${this.timeoutMs} ms ` +
        '(a worker died, threw before the collective, or runs different code); the group is broken',
    );
  }

  private collect(): Exchanged {
    const headers: Float64Array[] = [];
    const payloads: Float64Array[] = [];
    for (let r = 0; r < this.worldSize; ++r) {
      const s = this.slot(this.round, r);
      const h = s.slice(0, HEADER_LENGTH);
      headers.push(h);
      payloads.push(s.slice(HEADER_LENGTH, HEADER_LENGTH + Math.min(h[3], this.maxPayload)));
    }
    this.round++;
    return { headers, payloads };
  }

  protected exchangeSync(header: Float64Array, payload: Float64Array): Exchanged {
    const fn = 'ThreadGroup';
    const broken = this.brokenError(fn, false);
    if (broken) throw broken;
    if (!this.arrive(header, payload)) {
      const deadline = Date.now() + this.timeoutMs;
      const gen = this.round | 0;
      while (Atomics.load(this.ctrl, GEN) === gen) {
        const b = this.brokenError(fn, true);
        if (b) throw b;
        const left = deadline - Date.now();
        if (left <= 0 || Atomics.wait(this.ctrl, GEN, gen, left) === 'timed-out') {
          const e = this.timedOut();
          if (e) throw e;
        }
      }
    }
    return this.collect();
  }

  protected async exchangeAsync(header: Float64Array, payload: Float64Array): Promise<Exchanged> {
    const fn = 'ThreadGroup';
    const broken = this.brokenError(fn, false);
    if (broken) throw broken;
    if (!this.arrive(header, payload)) {
      const deadline = Date.now() + this.timeoutMs;
      const gen = this.round | 0;
      while (Atomics.load(this.ctrl, GEN) === gen) {
        const b = this.brokenError(fn, true);
        if (b) throw b;
        const left = deadline - Date.now();
        const w = left > 0 ? waitAsync(this.ctrl, GEN, gen, left) : { async: false as const, value: 'timed-out' as const };
        const result = w.async ? await keepingAlive(w.value, left) : w.value;
        if (result === 'timed-out') {
          const e = this.timedOut();
          if (e) throw e;
        }
      }
    }
    return this.collect();
  }

  /** Leaves: frees the rank's seat; the group is broken for the others (their next wait breaks). */
  protected release(): void {
    Atomics.compareExchange(this.ctrl, BROKEN, 0, -(this.rank + 1));
    Atomics.notify(this.ctrl, GEN);
  }
}
