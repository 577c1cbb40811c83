// What every sync group (worker threads or Gloo) offers: collectives in call order on each rank,
// checked across ranks (every rank states what it calls; a disagreement is reported on every
// rank), a timeout, and a broken state after any failure. Backends only move bytes (exchange).
import { dtypeOf, FloatArray, isFloatArray } from '../arrays';
import { BatchNormError, BatchNormErrorCode, BatchNormRangeError, BatchNormTypeError, describe } from '../errors';
import { sumInRankOrder } from './merge';

/** What a collective is, as every rank states it before any data moves. */
export enum CollectiveOp {
  BatchStats = 1,
  BackwardSums = 2,
  AllGather = 3,
  AllReduce = 4,
}

const OP_NAMES: Record<number, string> = {
  [CollectiveOp.BatchStats]: 'SyncBatchNorm forward (batch statistics)',
  [CollectiveOp.BackwardSums]: 'SyncBatchNorm backward (gradient sums)',
  [CollectiveOp.AllGather]: 'allGather',
  [CollectiveOp.AllReduce]: 'allReduce',
};

/** [op, channels (the whole array's length for allGather and allReduce), dtype code (0 float32, 1 float64, -1 none), payload length]. */
export const HEADER_LENGTH = 4;

export interface Collective {
  op: CollectiveOp;
  channels: number;
  dtype: 'float32' | 'float64' | null;
  payload: Float64Array;
}

function header(c: Collective): Float64Array {
  return Float64Array.of(c.op, c.channels, c.dtype === null ? -1 : c.dtype === 'float64' ? 1 : 0, c.payload.length);
}

function describeHeader(h: Float64Array): string {
  const dtype = h[2] === -1 ? '' : h[2] === 1 ? ' float64' : ' float32';
  const what = h[0] === CollectiveOp.AllGather || h[0] === CollectiveOp.AllReduce ? `${h[1]}${dtype} values` : `${h[1]}${dtype} channels`;
  return `${OP_NAMES[h[0]] ?? `op ${h[0]}`} of ${what}`;
}

/** The transport of one backend: every rank's header and payload, index = rank. */
export interface Exchanged {
  headers: Float64Array[];
  payloads: Float64Array[];
}

export type SyncBackend = 'threads' | 'gloo';

export function syncError(code: BatchNormErrorCode, message: string, cause?: unknown): BatchNormError {
  const e = new BatchNormError(code, message);
  if (cause !== undefined) Object.defineProperty(e, 'cause', { value: cause, configurable: true, writable: true });
  return e;
}

/** A rank's membership of a sync group. Collectives must be called in the same order on every
 * rank; on one rank they run one at a time, in call order (sync calls refuse while async ones are
 * in flight). After a failure (timeout, a lost rank, a mismatch) the group is broken for good. */
export abstract class SyncGroup {
  abstract readonly backend: SyncBackend;
  abstract readonly rank: number;
  abstract readonly worldSize: number;
  /** How long a collective waits for the other ranks before ERR_BN_SYNC_TIMEOUT. */
  abstract readonly timeoutMs: number;
  /** Largest payload (float64 values) of one exchange; longer all-reduces go in pieces. */
  abstract readonly maxPayload: number;

  private failure: BatchNormError | null = null;
  private destroyed = false;
  private pending = 0;
  private queue: Promise<unknown> = Promise.resolve();

  protected abstract exchangeSync(header: Float64Array, payload: Float64Array): Exchanged;
  protected abstract exchangeAsync(header: Float64Array, payload: Float64Array): Promise<Exchanged>;
  /** Backend-specific release (sockets, threads); the group is unusable afterwards. */
  protected abstract release(): void;

  /** Whether a collective has failed on this rank (every later one throws ERR_BN_SYNC_BROKEN). */
  get broken(): boolean {
    return this.failure !== null;
  }

  /** Marks the group broken with `e` (also used by backends that learn of a failure themselves). */
  protected fail(e: BatchNormError): BatchNormError {
    if (!this.failure) this.failure = e;
    return e;
  }

  private assertUsable(fn: string): void {
    if (this.failure) {
      throw syncError(
        'ERR_BN_SYNC_BROKEN',
        `${fn}: this sync group (rank ${this.rank} of ${this.worldSize}) is broken by an earlier failure: ${this.failure.message}. ` +
          'Every rank must create a new group',
        this.failure,
      );
    }
  }

  /** The other ranks' view of the same call; a disagreement breaks the group on every rank. */
  private check(fn: string, x: Exchanged, mine: Float64Array): Float64Array[] {
    const differs = x.headers.some((h) => h.some((v, i) => v !== mine[i]));
    if (differs) {
      const lines = x.headers.map((h, r) => `rank ${r}: ${describeHeader(h)}`).join('; ');
      throw this.fail(syncError('ERR_BN_SYNC_MISMATCH', `${fn}: the ranks called different collectives (${lines}); every rank must make the same calls in the same order with the same channel count and dtype`));
    }
    return x.payloads;
  }

  private wrap(fn: string, e: unknown): BatchNormError {
    if (e instanceof BatchNormError && (e as BatchNormError).code.startsWith('ERR_BN_SYNC')) return this.fail(e as BatchNormError);
    return this.fail(syncError('ERR_BN_SYNC_BROKEN', `${fn}: the collective failed: ${(e as Error)?.message ?? String(e)}`, e));
  }

  /** One collective, blocking this thread until every rank has taken part (or the timeout). */
  runSync(fn: string, c: Collective): Float64Array[] {
    this.assertUsable(fn);
    if (this.pending > 0) {
      throw new BatchNormError('ERR_BN_BUSY', `${fn}: this sync group has ${this.pending} async collective(s) in flight on this rank; await them first (or use the async methods)`);
    }
    const h = header(c);
    let x: Exchanged;
    try {
      x = this.exchangeSync(h, c.payload);
    } catch (e) {
      throw this.wrap(fn, e);
    }
    return this.check(fn, x, h);
  }

  /** One collective after every earlier async one of this rank; the event loop keeps running. */
  runAsync(fn: string, c: Collective): Promise<Float64Array[]> {
    this.pending++;
    const op = async (): Promise<Float64Array[]> => {
      this.assertUsable(fn);
      const h = header(c);
      let x: Exchanged;
      try {
        x = await this.exchangeAsync(h, c.payload);
      } catch (e) {
        throw this.wrap(fn, e);
      }
      return this.check(fn, x, h);
    };
    const run = this.queue.then(op, op);
    this.queue = run.then(() => undefined, () => undefined);
    return run.finally(() => {
      this.pending--;
    });
  }

  private gatherArg(fn: string, data: unknown): Float64Array {
    if (!isFloatArray(data)) {
      throw new BatchNormTypeError('ERR_BN_INVALID_ARG_TYPE', `${fn}: data must be a Float64Array, received ${describe(data)}`);
    }
    if (dtypeOf(data) !== 'float64') {
      throw new BatchNormTypeError('ERR_BN_DTYPE_MISMATCH', `${fn}: data must be a Float64Array, received ${describe(data)}`);
    }
    const d = data as Float64Array;
    if (d.length > this.maxPayload) {
      throw new BatchNormRangeError('ERR_BN_OUT_OF_RANGE', `${fn}: data may have at most ${this.maxPayload} values in this group, received ${d.length}`);
    }
    return d.slice();
  }

  /** Every rank's `data` (equal lengths), index = rank. Blocks this thread. */
  allGather(data: Float64Array): Float64Array[] {
    const fn = `${this.constructor.name}.allGather`;
    return this.runSync(fn, this.gatherCollective(this.gatherArg(fn, data)));
  }

  allGatherAsync(data: Float64Array): Promise<Float64Array[]> {
    const fn = `${this.constructor.name}.allGatherAsync`;
    try {
      return this.runAsync(fn, this.gatherCollective(this.gatherArg(fn, data)));
    } catch (e) {
      return Promise.reject(e);
    }
  }

  private gatherCollective(d: Float64Array): Collective {
    return { op: CollectiveOp.AllGather, channels: d.length, dtype: 'float64', payload: d };
  }

  private reduceArg(fn: string, a: unknown): FloatArray {
    if (!isFloatArray(a)) {
      throw new BatchNormTypeError('ERR_BN_INVALID_ARG_TYPE', `${fn}: array must be a Float32Array or Float64Array, received ${describe(a)}`);
    }
    return a;
  }

  private pieces(a: FloatArray): Collective[] {
    const out: Collective[] = [];
    for (let lo = 0; lo < a.length || (lo === 0 && a.length === 0); lo += this.maxPayload) {
      out.push({ op: CollectiveOp.AllReduce, channels: a.length, dtype: dtypeOf(a), payload: Float64Array.from(a.subarray(lo, lo + this.maxPayload)) });
      if (a.length === 0) break;
    }
    return out;
  }

  /**
   * Sums `array` over the ranks, in place, for gradient all-reduce (divide by worldSize yourself
   * for an average). The sum is formed in float64, rank 0's values first, so every rank gets the
   * same bits. Blocks this thread.
   */
  allReduce(array: FloatArray): void {
    const fn = `${this.constructor.name}.allReduce`;
    const a = this.reduceArg(fn, array);
    let lo = 0;
    for (const piece of this.pieces(a)) {
      const parts = this.runSync(fn, piece);
      a.set(sumInRankOrder(parts, piece.payload.length), lo);
      lo += piece.payload.length;
    }
  }

  /** As allReduce, without blocking the event loop. Do not touch `array` until it settles. */
  async allReduceAsync(array: FloatArray): Promise<void> {
    const fn = `${this.constructor.name}.allReduceAsync`;
    const a = this.reduceArg(fn, array);
    let lo = 0;
    for (const piece of this.pieces(a)) {
      const parts = await this.runAsync(fn, piece);
      a.set(sumInRankOrder(parts, piece.payload.length), lo);
      lo += piece.payload.length;
    }
  }

  /** Leaves the group on this rank (the others' next collective times out). */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.release();
    this.fail(syncError('ERR_BN_SYNC_BROKEN', `${this.constructor.name}: destroyed on this rank`));
  }
}
