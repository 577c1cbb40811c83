// Synchronized batch normalization: in training, the statistics (and backward's sums) are those of
// the whole batch spread over the ranks of a sync group (worker threads or Gloo processes).
//
// Per training forward: this rank's (count, mean, M2) per channel in float64 (native), one
// all-gather of 2C + 1 values per rank, Chan's merge in rank order (lib/sync/merge.ts), then the
// normalize with the global statistics (native). Backward: this rank's Σdy and Σdy·(x - mean),
// one all-gather of 2C values, the sums in rank order, dx with the global sums (native).
// gradWeight / gradBias get this rank's share: their sum over ranks is the whole batch's gradient
// (PyTorch's convention; all-reduce them with group.allReduce like every other parameter).
//
// A world of one rank, evaluation mode with running statistics, and backward of such a forward
// run the local BatchNorm and communicate nothing (PyTorch's SyncBatchNorm does the same).
import { FloatArray, FloatDType, isFloatArray, SameKind, TensorArray } from '../arrays';
import { BatchNorm, BatchNorm1d, BatchNorm2d, BatchNorm3d, BatchNormOptions, BackwardCallOptions, ForwardOptions } from '../batchnorm';
import type { SyncBackwardDxCall, SyncBackwardReduceCall, SyncMomentsCall, SyncNormalizeCall } from '../binding';
import { BatchNormError, BatchNormRangeError, BatchNormTypeError, describe } from '../errors';
import { native } from '../load';
import { freshOutput, smallCopy } from '../native-call';
import { checkArray, checkFixedLength, checkNoOverlap, checkOptionalBoolean, ParsedShape, parseShape, readOptions } from '../validate';
import { CollectiveOp, SyncGroup } from './group';
import { mergeMoments, packMoments, sumInRankOrder } from './merge';

export interface SyncBatchNormOptions extends BatchNormOptions {
  /** The group whose ranks share the batch (ThreadGroup.join or initProcessGroup). */
  group: SyncGroup;
}

/** What the generator steps ask their driver to do: a native op, or a collective. */
type Step =
  | { kind: 'moments'; call: SyncMomentsCall }
  | { kind: 'normalize'; call: SyncNormalizeCall }
  | { kind: 'bwdReduce'; call: SyncBackwardReduceCall }
  | { kind: 'bwdDx'; call: SyncBackwardDxCall }
  | { kind: 'collective'; fn: string; op: CollectiveOp; channels: number; dtype: 'float32' | 'float64'; payload: Float64Array };

type Steps<R> = Generator<Step, R, Float64Array[] | undefined>;

/** A synchronized forward's arguments, taken when it is called. */
interface ForwardPlan {
  xa: FloatArray;
  sh: ParsedShape;
  channelsLast: boolean;
  out: FloatArray | null;
  weight: FloatArray | null;
  bias: FloatArray | null;
  /** Training with running statistics: this forward updates them. */
  updating: boolean;
}

interface SyncRecord {
  x: FloatArray;
  sh: ParsedShape;
  channelsLast: boolean;
  mean: Float64Array;
  invstd: Float64Array;
  count: number; // values per channel over every rank
  weight: FloatArray | null;
  inPlace: boolean;
}

function runStepsSync<R>(group: SyncGroup, steps: Steps<R>): R {
  const b = native();
  let next = steps.next(undefined);
  while (!next.done) {
    const s = next.value;
    let answer: Float64Array[] | undefined;
    switch (s.kind) {
      case 'moments': b.syncMoments(s.call); break;
      case 'normalize': b.syncNormalize(s.call); break;
      case 'bwdReduce': b.syncBackwardReduce(s.call); break;
      case 'bwdDx': b.syncBackwardDx(s.call); break;
      case 'collective':
        answer = group.runSync(s.fn, { op: s.op, channels: s.channels, dtype: s.dtype, payload: s.payload });
        break;
    }
    next = steps.next(answer);
  }
  return next.value;
}

async function runStepsAsync<R>(group: SyncGroup, steps: Steps<R>): Promise<R> {
  const b = native();
  let next = steps.next(undefined);
  while (!next.done) {
    const s = next.value;
    let answer: Float64Array[] | undefined;
    switch (s.kind) {
      case 'moments': await b.syncMomentsAsync(s.call); break;
      case 'normalize': await b.syncNormalizeAsync(s.call); break;
      case 'bwdReduce': await b.syncBackwardReduceAsync(s.call); break;
      case 'bwdDx': await b.syncBackwardDxAsync(s.call); break;
      case 'collective':
        answer = await group.runAsync(s.fn, { op: s.op, channels: s.channels, dtype: s.dtype, payload: s.payload });
        break;
    }
    next = steps.next(answer);
  }
  return next.value;
}

/** parseShape, also accepting a batch of 0 samples (a rank with no data still takes part). */
function parseSyncShape(fn: string, shape: unknown, minRank: number, maxRank: number): ParsedShape {
  if (Array.isArray(shape) && shape.length >= 1 && shape[0] === 0) {
    const sh = parseShape(fn, [1, ...shape.slice(1)], minRank, maxRank);
    return { ...sh, dims: [0, ...sh.dims.slice(1)], n: 0, total: 0 };
  }
  return parseShape(fn, shape, minRank, maxRank);
}

const FORWARD_KEYS = ['out', 'channelsLast'] as const;
const BACKWARD_KEYS = ['out', 'output'] as const;

const syncLayers = new WeakSet<object>();

/** "SyncBatchNorm2d.forward", after checking that `self` really is a SyncBatchNorm. */
function syncMethod(self: unknown, method: string): string {
  if (typeof self !== 'object' || self === null || !syncLayers.has(self)) {
    throw new BatchNormTypeError('ERR_BN_INVALID_ARG_TYPE', `SyncBatchNorm.${method}: must be called on a SyncBatchNorm layer, received this = ${describe(self)}`);
  }
  return `${(self as object).constructor.name}.${method}`;
}

export class SyncBatchNorm extends BatchNorm {
  declare readonly dtype: FloatDType; // layerOptions refuses the 16-bit dtypes
  readonly group: SyncGroup;
  private lastSync: SyncRecord | null = null;
  private syncByOutput = new WeakMap<FloatArray, SyncRecord>();
  private syncPending = 0;
  private syncQueue: Promise<unknown> = Promise.resolve();

  constructor(numFeatures: number, options: SyncBatchNormOptions) {
    super(numFeatures, SyncBatchNorm.layerOptions(new.target.name, options));
    const group = (options as { group?: unknown }).group;
    if (!(group instanceof SyncGroup)) {
      throw new BatchNormTypeError('ERR_BN_INVALID_ARG_TYPE', `${new.target.name}: options.group must be a sync group (ThreadGroup.join(...) or await initProcessGroup(...)), received ${describe(group)}`);
    }
    if (2 * numFeatures + 1 > group.maxPayload) {
      throw new BatchNormRangeError('ERR_BN_OUT_OF_RANGE', `${new.target.name}: ${numFeatures} channels need exchanges of ${2 * numFeatures + 1} values, more than this group's capacity of ${group.maxPayload}; create the group with a larger capacity`);
    }
    this.group = group;
    syncLayers.add(this);
  }

  private static layerOptions(fn: string, options: unknown): BatchNormOptions {
    if (typeof options !== 'object' || options === null) {
      throw new BatchNormTypeError('ERR_BN_INVALID_ARG_TYPE', `${fn}: options must be an object with a group, received ${describe(options)}`);
    }
    const o = readOptions(fn, options, ['group', 'eps', 'momentum', 'affine', 'trackRunningStats', 'dtype'] as const);
    if (o.dtype === 'bfloat16' || o.dtype === 'float16') {
      throw new BatchNormTypeError('ERR_BN_DTYPE_MISMATCH', `${fn}: synchronized batch norm takes dtype 'float32' or 'float64', received '${o.dtype}'`);
    }
    const rest: Record<string, unknown> = {};
    for (const k of ['eps', 'momentum', 'affine', 'trackRunningStats', 'dtype'] as const) if (k in o) rest[k] = o[k];
    return rest as BatchNormOptions;
  }

  /**
   * PyTorch's convert_sync_batchnorm for one layer: a SyncBatchNorm (1d/2d/3d as `bn`) with bn's
   * options, parameters, running statistics, numBatchesTracked and mode (copied).
   */
  static from(bn: BatchNorm, group: SyncGroup): SyncBatchNorm {
    if (!(bn instanceof BatchNorm)) {
      throw new BatchNormTypeError('ERR_BN_INVALID_ARG_TYPE', `SyncBatchNorm.from: bn must be a BatchNorm layer, received ${describe(bn)}`);
    }
    const Kind = bn instanceof SyncBatchNorm ? (bn.constructor as typeof SyncBatchNorm)
      : bn instanceof BatchNorm1d ? SyncBatchNorm1d
        : bn instanceof BatchNorm2d ? SyncBatchNorm2d
          : bn instanceof BatchNorm3d ? SyncBatchNorm3d : SyncBatchNorm;
    const s = new Kind(bn.numFeatures, {
      group, eps: bn.eps, momentum: bn.momentum, affine: bn.affine, trackRunningStats: bn.trackRunningStats, dtype: bn.dtype,
    });
    copyState(bn, s);
    return s;
  }

  /** The way back: a local BatchNorm (1d/2d/3d as this layer) with this layer's state (copied). */
  toBatchNorm(): BatchNorm {
    const Kind = this instanceof SyncBatchNorm1d ? BatchNorm1d : this instanceof SyncBatchNorm2d ? BatchNorm2d
      : this instanceof SyncBatchNorm3d ? BatchNorm3d : BatchNorm;
    const b = new Kind(this.numFeatures, { eps: this.eps, momentum: this.momentum, affine: this.affine, trackRunningStats: this.trackRunningStats, dtype: this.dtype });
    copyState(this, b);
    return b;
  }

  private usesBatchStats(): boolean {
    return this.training || !this.trackRunningStats;
  }

  /** Whether this call synchronizes (else it is the local BatchNorm's). */
  private synchronizes(): boolean {
    return this.usesBatchStats() && this.group.worldSize > 1;
  }

  private assertSyncIdle(fn: string): void {
    if (this.syncPending > 0) {
      throw new BatchNormError('ERR_BN_BUSY', `${fn}: this layer has ${this.syncPending} async call(s) in flight; await them first (or use the async methods)`);
    }
  }

  private enqueueSync<R>(op: () => Promise<R>): Promise<R> {
    this.syncPending++;
    const run = this.syncQueue.then(op, op);
    this.syncQueue = run.then(() => undefined, () => undefined);
    return run.finally(() => {
      this.syncPending--;
    });
  }

  private forwardArgs(fn: string, x: unknown, shape: unknown, v: unknown): ForwardPlan {
    let out: FloatArray | null = null;
    let channelsLast = false;
    if (isFloatArray(v)) {
      out = checkArray(fn, 'out', v, this.dtype);
    } else if (v !== undefined && v !== null) {
      const o = readOptions(fn, v, FORWARD_KEYS);
      out = o.out === undefined || o.out === null ? null : checkArray(fn, 'out', o.out, this.dtype);
      channelsLast = checkOptionalBoolean(fn, 'channelsLast', o.channelsLast, false);
    }
    const sh = parseSyncShape(fn, shape, this.minRank, this.maxRank);
    if (sh.c !== this.numFeatures) {
      throw new BatchNormRangeError('ERR_BN_BAD_SHAPE', `${fn}: shape[1] must be ${this.numFeatures} (numFeatures), received shape [${sh.dims.join(', ')}]`);
    }
    const xa = checkArray(fn, 'x', x, this.dtype, sh.total);
    if (out) {
      checkArray(fn, 'out', out, this.dtype, sh.total);
      checkNoOverlap(fn, 'out', out, 'x', xa, true);
      for (const [name, p] of [['weight', this.weight], ['bias', this.bias], ['runningMean', this.runningMean], ['runningVar', this.runningVar]] as const) {
        if (p) checkNoOverlap(fn, 'out', out, name, p, false);
      }
    }
    // Taken when the call is made (as BatchNorm's calls do): parameters and mode.
    const weight = this.weight ? smallCopy(this.weight) : null;
    const bias = this.bias ? smallCopy(this.bias) : null;
    return { xa, sh, channelsLast, out, weight, bias, updating: this.trackRunningStats && this.training };
  }

  /** The synchronized training forward as steps; commits the layer's state only at the end. */
  private *forwardSteps(fn: string, a: ForwardPlan): Steps<FloatArray> {
    const { xa, sh, channelsLast, out, weight, bias, updating } = a;
    const C = sh.c;
    const base = { fn, x: xa, n: sh.n, c: C, s: sh.s, channelsLast };
    const mean = new Float64Array(C);
    const variance = new Float64Array(C);
    const count = sh.n * sh.s;
    yield { kind: 'moments', call: { ...base, mean, variance } };
    const parts = (yield {
      kind: 'collective', fn, op: CollectiveOp.BatchStats, channels: C, dtype: this.dtype, payload: packMoments(count, mean, variance),
    }) as Float64Array[];
    const g = mergeMoments(parts, C);
    if (g.count < 2) {
      throw new BatchNormRangeError(
        'ERR_BN_TOO_FEW_VALUES',
        `${fn}: expected more than 1 value per channel when training, received ${g.count} over all ${this.group.worldSize} ranks of the group ` +
          `(this rank: input of shape [${sh.dims.join(', ')}])`,
      );
    }
    const y = out ?? (freshOutput(this.dtype, sh.total) as FloatArray);
    // The core computes invstd (its one rule, also on a rank without data: a 0-sample call).
    const invstd = new Float64Array(C);
    yield {
      kind: 'normalize',
      call: { ...base, out: y, weight, bias, mean: g.mean, variance: g.variance, eps: this.eps, invstd },
    };
    // Commit: running statistics (PyTorch's update, unbiased variance), then the record.
    if (updating) {
      const n = this.numBatchesTracked + 1;
      const f = this.momentum === null ? 1 / n : this.momentum;
      const rm = this.runningMean as FloatArray;
      const rv = this.runningVar as FloatArray;
      for (let c = 0; c < C; ++c) {
        rm[c] = (1 - f) * rm[c] + f * g.mean[c];
        rv[c] = (1 - f) * rv[c] + f * g.unbiasedVariance[c];
      }
      this.numBatchesTracked = n;
    }
    const rec: SyncRecord = { x: xa, sh, channelsLast, mean: g.mean, invstd, count: g.count, weight, inPlace: y === xa };
    this.lastSync = rec;
    this.syncByOutput.set(y, rec);
    return y;
  }

  /** Training: synchronized over the group (blocks this thread until every rank has called it:
   * use it in workers, or forwardAsync). Evaluation with running statistics: the local forward. */
  forward<X extends TensorArray>(x: X, shape: readonly number[], out?: TensorArray | ForwardOptions): SameKind<X> {
    const fn = syncMethod(this, 'forward');
    this.assertSyncIdle(fn);
    if (!this.synchronizes()) {
      const y = super.forward(x, shape, out);
      this.lastSync = null;
      return y;
    }
    const a = this.forwardArgs(fn, x, shape, out);
    return runStepsSync(this.group, this.forwardSteps(fn, a)) as SameKind<X>;
  }

  forwardAsync<X extends TensorArray>(x: X, shape: readonly number[], out?: TensorArray | ForwardOptions): Promise<SameKind<X>> {
    let fn: string;
    try {
      fn = syncMethod(this, 'forwardAsync');
    } catch (e) {
      return Promise.reject(e);
    }
    if (!this.synchronizes()) {
      return this.enqueueSync(async () => {
        const y = await super.forwardAsync(x, shape, out);
        this.lastSync = null;
        return y;
      });
    }
    try {
      const a = this.forwardArgs(fn, x, shape, out);
      checkFixedLength(fn, [['x', a.xa], ['out', a.out]]);
      return this.enqueueSync(async () => (await runStepsAsync(this.group, this.forwardSteps(fn, a))) as SameKind<X>);
    } catch (e) {
      return Promise.reject(e);
    }
  }

  private backwardArgs(fn: string, dy: unknown, v: unknown): { rec: SyncRecord | null; dya: FloatArray | null; out: FloatArray | null } {
    let out: FloatArray | null = null;
    let output: FloatArray | null = null;
    if (isFloatArray(v)) {
      out = checkArray(fn, 'out', v, this.dtype);
    } else if (v !== undefined && v !== null) {
      const o = readOptions(fn, v, BACKWARD_KEYS);
      out = o.out === undefined || o.out === null ? null : checkArray(fn, 'out', o.out, this.dtype);
      output = o.output === undefined || o.output === null ? null : checkArray(fn, 'output', o.output, this.dtype);
    }
    const rec = output ? (this.syncByOutput.get(output) ?? null) : this.lastSync;
    if (!rec) return { rec: null, dya: null, out: null }; // a local forward: the local backward
    const dya = checkArray(fn, 'dy', dy, this.dtype, rec.sh.total);
    if (rec.inPlace) {
      throw new BatchNormError('ERR_BN_INPUT_OVERWRITTEN', `${fn}: the forward wrote its output over x (out === x), so x is gone; run forward with a separate output to train`);
    }
    if (out) {
      checkArray(fn, 'out', out, this.dtype, rec.sh.total);
      checkNoOverlap(fn, 'out', out, 'dy', dya, true);
      checkNoOverlap(fn, 'out', out, 'x', rec.x, false);
    }
    return { rec, dya, out };
  }

  private *backwardSteps(fn: string, rec: SyncRecord, dy: FloatArray, out: FloatArray | null): Steps<FloatArray> {
    const { sh } = rec;
    const C = sh.c;
    const base = { fn, x: rec.x, n: sh.n, c: C, s: sh.s, channelsLast: rec.channelsLast };
    const sumDy = new Float64Array(C);
    const sumDyXmu = new Float64Array(C);
    yield { kind: 'bwdReduce', call: { ...base, dy, mean: rec.mean, sumDy, sumDyXmu } };
    const payload = new Float64Array(2 * C);
    payload.set(sumDy, 0);
    payload.set(sumDyXmu, C);
    const parts = (yield { kind: 'collective', fn, op: CollectiveOp.BackwardSums, channels: C, dtype: this.dtype, payload }) as Float64Array[];
    const total = sumInRankOrder(parts, 2 * C);
    const dx = out ?? (freshOutput(this.dtype, sh.total) as FloatArray);
    yield {
      kind: 'bwdDx',
      call: { ...base, dy, out: dx, weight: rec.weight, mean: rec.mean, invstd: rec.invstd, sumDy: total.subarray(0, C), sumDyXmu: total.subarray(C), count: rec.count },
    };
    // This rank's share of the parameter gradients (their sum over ranks is the batch's).
    const gw = this.gradWeight;
    const gb = this.gradBias;
    if (gw && gb) {
      for (let c = 0; c < C; ++c) {
        gw[c] = gw[c] + (rec.invstd[c] === 0 ? 0 : rec.invstd[c] * sumDyXmu[c]); // as the core: xhat = 0
        gb[c] = gb[c] + sumDy[c];
      }
    }
    return dx;
  }

  /** dL/dx of the last (or named) forward; adds this rank's share into gradWeight and gradBias.
   * After a synchronized forward it blocks until every rank has called it (use backwardAsync on
   * a thread that must stay responsive). */
  backward<D extends TensorArray>(dy: D, out?: TensorArray | BackwardCallOptions): SameKind<D> {
    const fn = syncMethod(this, 'backward');
    this.assertSyncIdle(fn);
    const a = this.backwardArgs(fn, dy, out);
    if (!a.rec) return super.backward(dy, out);
    return runStepsSync(this.group, this.backwardSteps(fn, a.rec, a.dya as FloatArray, a.out)) as SameKind<D>;
  }

  backwardAsync<D extends TensorArray>(dy: D, out?: TensorArray | BackwardCallOptions): Promise<SameKind<D>> {
    try {
      const fn = syncMethod(this, 'backwardAsync');
      const a = this.backwardArgs(fn, dy, out);
      if (!a.rec) return this.enqueueSync(() => super.backwardAsync(dy, out));
      const rec = a.rec;
      checkFixedLength(fn, [['dy', a.dya], ['out', a.out]]);
      return this.enqueueSync(async () => (await runStepsAsync(this.group, this.backwardSteps(fn, rec, a.dya as FloatArray, a.out))) as SameKind<D>);
    } catch (e) {
      return Promise.reject(e);
    }
  }

  zeroGrad(): void {
    this.assertSyncIdle(syncMethod(this, 'zeroGrad'));
    super.zeroGrad();
  }

  releaseSaved(): void {
    super.releaseSaved();
    this.lastSync = null;
    this.syncByOutput = new WeakMap();
  }
}

/** SyncBatchNorm over [N, C] or [N, C, L]. */
export class SyncBatchNorm1d extends SyncBatchNorm {
  protected readonly minRank = 2;
  protected readonly maxRank = 3;
}

/** SyncBatchNorm over [N, C, H, W]. */
export class SyncBatchNorm2d extends SyncBatchNorm {
  protected readonly minRank = 4;
  protected readonly maxRank = 4;
}

/** SyncBatchNorm over [N, C, D, H, W]. */
export class SyncBatchNorm3d extends SyncBatchNorm {
  protected readonly minRank = 5;
  protected readonly maxRank = 5;
}

function copyState(from: BatchNorm, to: BatchNorm): void {
  if (from.weight && to.weight) to.weight.set(from.weight);
  if (from.bias && to.bias) to.bias.set(from.bias);
  if (from.runningMean && to.runningMean) to.runningMean.set(from.runningMean);
  if (from.runningVar && to.runningVar) to.runningVar.set(from.runningVar);
  if (from.gradWeight && to.gradWeight) to.gradWeight.set(from.gradWeight);
  if (from.gradBias && to.gradBias) to.gradBias.set(from.gradBias);
  to.numBatchesTracked = from.numBatchesTracked;
  to.training = from.training;
}
