// The BatchNorm layer: parameters, running statistics, train/eval modes, gradients, async calls
// ordered per layer, folding, and PyTorch-compatible state dicts.
import { BatchNormError, BatchNormRangeError, BatchNormTypeError, describe } from './errors';
import {
  _runAsync, _runSync, prepareBackward, prepareInference, prepareTraining,
} from './functional';
import { computeScaleShift, ConvFoldOptions, foldConv, foldLinear, FoldedLayer } from './fold';
import { readSafetensorsFile, TensorData, writeSafetensorsFile } from './safetensors';
import {
  arrayName, arrayType, checkArray, checkBoolean, checkDType, checkEps, checkMomentum, checkOptions,
  DType, FloatArray, isFloatArray, parseShape, sharesMemory,
} from './validate';

export interface BatchNormOptions {
  /** Added to the variance. Default 1e-5. */
  eps?: number;
  /** PyTorch convention: running = (1 - momentum) * running + momentum * batch. null: cumulative average. Default 0.1. */
  momentum?: number | null;
  /** Learnable per-channel weight (gamma) and bias (beta). Default true. */
  affine?: boolean;
  /** Keep running statistics; without them evaluation mode uses batch statistics. Default true. */
  trackRunningStats?: boolean;
  dtype?: DType;
}

/** PyTorch's state_dict keys. num_batches_tracked is a 1-element BigInt64Array (an int64 scalar). */
export interface BatchNormStateDict {
  weight?: FloatArray;
  bias?: FloatArray;
  running_mean?: FloatArray;
  running_var?: FloatArray;
  num_batches_tracked?: BigInt64Array;
}

export interface LoadStateDictOptions {
  /** Refuse unexpected keys (default true). Missing keys are always an error. */
  strict?: boolean;
}

/** Per-call options of forward (the third argument may also be just the output array). */
export interface ForwardOptions {
  /** Output (layer dtype, x's length); may be x itself (in place). */
  out?: FloatArray;
  /** x is stored channels-last ([N, ...spatial, C], e.g. NHWC); shape stays logical [N, C, ...spatial]. */
  channelsLast?: boolean;
}

/** What backward needs from the forward it differentiates. */
interface SavedForward {
  x: FloatArray;
  shape: { n: number; c: number; s: number; total: number; dims: number[] };
  useBatchStats: boolean;
  mean: Float64Array;
  invstd: Float64Array;
  /** Evaluation mode: a copy of the running variance the forward used (backward recomputes invstd from it). */
  runningVar: FloatArray | null;
  weight: FloatArray | null; // the weight as it was at that forward
  inPlace: boolean;
  channelsLast: boolean;
}

const STATE_KEYS = ['weight', 'bias', 'running_mean', 'running_var', 'num_batches_tracked'] as const;

export class BatchNorm {
  readonly numFeatures: number;
  readonly eps: number;
  readonly momentum: number | null;
  readonly affine: boolean;
  readonly trackRunningStats: boolean;
  readonly dtype: DType;

  /** gamma [C], or null without affine. Mutable in place. */
  readonly weight: FloatArray | null;
  /** beta [C], or null without affine. */
  readonly bias: FloatArray | null;
  readonly runningMean: FloatArray | null;
  readonly runningVar: FloatArray | null;
  numBatchesTracked = 0;
  /** Accumulated by backward until zeroGrad(). null without affine. */
  readonly gradWeight: FloatArray | null;
  readonly gradBias: FloatArray | null;
  training = true;

  protected readonly minRank: number = 2;
  protected readonly maxRank: number = 5;
  private saved: SavedForward | null = null;
  private pending = 0;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(numFeatures: number, options: BatchNormOptions = {}) {
    const fn = `${new.target.name}`;
    if (typeof numFeatures !== 'number' || !Number.isInteger(numFeatures) || numFeatures < 1 || numFeatures > 2 ** 31) {
      throw new BatchNormRangeError('ERR_BN_OUT_OF_RANGE', `${fn}: numFeatures must be an integer in [1, 2^31], received ${describe(numFeatures)}`);
    }
    const o = checkOptions(fn, options) as BatchNormOptions;
    this.numFeatures = numFeatures;
    this.eps = checkEps(fn, o.eps ?? 1e-5);
    this.momentum = checkMomentum(fn, o.momentum === undefined ? 0.1 : o.momentum);
    this.affine = checkBoolean(fn, 'affine', o.affine ?? true);
    this.trackRunningStats = checkBoolean(fn, 'trackRunningStats', o.trackRunningStats ?? true);
    this.dtype = checkDType(fn, o.dtype ?? 'float32');
    const T = arrayType(this.dtype);
    this.weight = this.affine ? new T(numFeatures).fill(1) : null;
    this.bias = this.affine ? new T(numFeatures) : null;
    this.gradWeight = this.affine ? new T(numFeatures) : null;
    this.gradBias = this.affine ? new T(numFeatures) : null;
    this.runningMean = this.trackRunningStats ? new T(numFeatures) : null;
    this.runningVar = this.trackRunningStats ? new T(numFeatures).fill(1) : null;
  }

  /** Sets training mode (batch statistics, running statistics updated). */
  train(mode = true): this {
    this.training = checkBoolean(`${this.constructor.name}.train`, 'mode', mode);
    return this;
  }

  /** Sets evaluation mode (running statistics, if tracked). */
  eval(): this {
    return this.train(false);
  }

  zeroGrad(): void {
    this.assertIdle(this.name('zeroGrad'));
    this.gradWeight?.fill(0);
    this.gradBias?.fill(0);
  }

  /** Clears the input kept for backward (so it can be garbage-collected). */
  releaseSaved(): void {
    this.saved = null;
  }

  private name(method: string): string {
    return `${this.constructor.name}.${method}`;
  }

  private parseInput(fn: string, x: unknown, shape: unknown): SavedForward['shape'] {
    const sh = parseShape(fn, shape, this.minRank, this.maxRank);
    if (sh.c !== this.numFeatures) {
      throw new BatchNormRangeError('ERR_BN_BAD_SHAPE', `${fn}: shape[1] must be ${this.numFeatures} (numFeatures), received shape [${sh.dims.join(', ')}]`);
    }
    checkArray(fn, 'x', x, this.dtype, sh.total);
    return sh;
  }

  /** Validates everything and returns the native call plus what to commit after it succeeds. */
  private forwardOptions(fn: string, v: unknown): { out: FloatArray | undefined; channelsLast: boolean } {
    if (v === undefined || v === null) return { out: undefined, channelsLast: false };
    if (isFloatArray(v)) return { out: v, channelsLast: false };
    if (ArrayBuffer.isView(v) || Array.isArray(v)) {
      // Not an options object: an output array of the wrong kind (would otherwise be ignored).
      throw new BatchNormTypeError(
        'ERR_BN_INVALID_ARG_TYPE',
        `${fn}: out must be a ${arrayName(this.dtype)} (or an options object { out, channelsLast }), received ${describe(v)}`,
      );
    }
    const o = checkOptions(fn, v) as ForwardOptions;
    const channelsLast = o.channelsLast === undefined ? false : checkBoolean(fn, 'channelsLast', o.channelsLast);
    return { out: o.out ?? undefined, channelsLast };
  }

  private planForward(fn: string, x: unknown, shape: unknown, outOrOptions: unknown) {
    const { out, channelsLast } = this.forwardOptions(fn, outOrOptions);
    const sh = this.parseInput(fn, x, shape);
    const xa = x as FloatArray;
    const useBatchStats = this.training || !this.trackRunningStats;
    const weightSnapshot = this.weight ? this.weight.slice() : null;
    if (useBatchStats) {
      const updating = this.training && this.trackRunningStats;
      const n = updating ? this.numBatchesTracked + 1 : this.numBatchesTracked;
      const factor = this.momentum === null ? 1 / n : this.momentum;
      const p = prepareTraining(fn, xa, sh.dims, {
        weight: this.weight,
        bias: this.bias,
        runningMean: updating ? this.runningMean : null,
        runningVar: updating ? this.runningVar : null,
        momentum: updating ? factor : 0,
        eps: this.eps,
        out,
        channelsLast,
      });
      return {
        call: p.call,
        y: p.result.y,
        commit: () => {
          if (updating) this.numBatchesTracked = n;
          this.saved = {
            x: xa, shape: sh, useBatchStats: true, mean: p.result.batchMean, invstd: p.result.batchInvstd, runningVar: null,
            weight: weightSnapshot, inPlace: p.result.y === xa, channelsLast,
          };
        },
      };
    }
    const rm = this.runningMean as FloatArray;
    const rv = this.runningVar as FloatArray;
    const p = prepareInference(fn, xa, sh.dims, { weight: this.weight, bias: this.bias, runningMean: rm, runningVar: rv, eps: this.eps, out, channelsLast });
    const mean = Float64Array.from(rm);
    const invstd = Float64Array.from(rv, (v) => 1 / Math.sqrt(v + this.eps));
    const runningVar = rv.slice();
    return {
      call: p.call,
      y: p.y,
      commit: () => {
        this.saved = { x: xa, shape: sh, useBatchStats: false, mean, invstd, runningVar, weight: weightSnapshot, inPlace: p.y === xa, channelsLast };
      },
    };
  }

  private planBackward(fn: string, dy: unknown, out: unknown) {
    const s = this.saved;
    if (!s) {
      throw new BatchNormError('ERR_BN_NO_FORWARD', `${fn}: no forward to differentiate; call forward(x, shape) first`);
    }
    if (s.inPlace) {
      throw new BatchNormError(
        'ERR_BN_INPUT_OVERWRITTEN',
        `${fn}: the last forward wrote its output over x (out === x), so x is gone; run forward with a separate output to train`,
      );
    }
    checkArray(fn, 'dy', dy, this.dtype, s.shape.total);
    // Evaluation mode: prepareBackward takes the running statistics (as they were at the forward)
    // and eps, not mean/invstd.
    const stats = s.useBatchStats
      ? { training: true, mean: s.mean, invstd: s.invstd }
      : { training: false, runningMean: s.mean, runningVar: s.runningVar as FloatArray, eps: this.eps };
    const p = prepareBackward(fn, s.x, dy, s.shape.dims, {
      weight: s.weight,
      ...stats,
      gradWeight: this.gradWeight,
      gradBias: this.gradBias,
      accumulate: true,
      out: out as FloatArray | undefined,
      channelsLast: s.channelsLast,
    });
    return { call: p.call, dx: p.result.dx };
  }

  private assertIdle(fn: string): void {
    if (this.pending > 0) {
      throw new BatchNormError('ERR_BN_BUSY', `${fn}: this layer has ${this.pending} async call(s) in flight; await them first (or use the async methods)`);
    }
  }

  /**
   * Forward pass on x, shape [N, C, ...spatial] (stored NCHW-style, or channels-last with
   * { channelsLast: true }). In training mode uses batch statistics and updates the running
   * statistics; in evaluation mode uses the running statistics. The third argument is the output
   * array (same dtype and length; may be x itself, in place) or { out, channelsLast }.
   */
  forward(x: FloatArray, shape: readonly number[], out?: FloatArray | ForwardOptions): FloatArray {
    const fn = this.name('forward');
    this.assertIdle(fn);
    const plan = this.planForward(fn, x, shape, out);
    _runSync(plan.call);
    plan.commit();
    return plan.y;
  }

  /** dL/dx for the input of the last forward; adds dL/dweight, dL/dbias into gradWeight, gradBias. */
  backward(dy: FloatArray, out?: FloatArray): FloatArray {
    const fn = this.name('backward');
    this.assertIdle(fn);
    const plan = this.planBackward(fn, dy, out);
    _runSync(plan.call);
    return plan.dx;
  }

  /** Runs `op` after every earlier async call on this layer has settled (whatever their outcome). */
  private enqueue<R>(op: () => Promise<R>): Promise<R> {
    this.pending++;
    const run = this.queue.then(op, op);
    this.queue = run.then(
      () => undefined,
      () => undefined,
    );
    return run.finally(() => {
      this.pending--;
    });
  }

  /** As forward, on libuv's thread pool; calls on one layer run in call order. */
  forwardAsync(x: FloatArray, shape: readonly number[], out?: FloatArray | ForwardOptions): Promise<FloatArray> {
    const fn = this.name('forwardAsync');
    return this.enqueue(async () => {
      const plan = this.planForward(fn, x, shape, out);
      await _runAsync(plan.call);
      plan.commit();
      return plan.y;
    });
  }

  /** As backward, on libuv's thread pool, after every earlier async call on this layer. */
  backwardAsync(dy: FloatArray, out?: FloatArray): Promise<FloatArray> {
    const fn = this.name('backwardAsync');
    return this.enqueue(async () => {
      const plan = this.planBackward(fn, dy, out);
      await _runAsync(plan.call);
      return plan.dx;
    });
  }

  private requireRunningStats(fn: string): { rm: FloatArray; rv: FloatArray } {
    if (!this.runningMean || !this.runningVar) {
      throw new BatchNormError('ERR_BN_NO_RUNNING_STATS', `${fn}: the layer has no running statistics (trackRunningStats = false), so it cannot be folded`);
    }
    return { rm: this.runningMean, rv: this.runningVar };
  }

  /** Inference-mode BN as y = x * scale + shift per channel (float64 maths, layer dtype). */
  scaleShift(): { scale: FloatArray; shift: FloatArray } {
    const { rm, rv } = this.requireRunningStats(this.name('scaleShift'));
    const ss = computeScaleShift(rm, rv, this.eps, this.weight, this.bias);
    const T = arrayType(this.dtype);
    return { scale: T.from(ss.scale), shift: T.from(ss.shift) };
  }

  /**
   * Folds this BN (in evaluation mode) into the convolution before it. weight is
   * [O, I/groups, ...k] (or [I, O/groups, ...k] with transposed), O = numFeatures; bias may be null.
   * Returns new arrays in the weight's dtype.
   */
  foldIntoConv(weight: FloatArray, weightShape: readonly number[], bias: FloatArray | null = null, options: ConvFoldOptions = {}): FoldedLayer {
    const fn = this.name('foldIntoConv');
    const { rm, rv } = this.requireRunningStats(fn);
    return foldConv(fn, computeScaleShift(rm, rv, this.eps, this.weight, this.bias), weight, weightShape, bias, checkOptions(fn, options) as ConvFoldOptions);
  }

  /** Folds this BN into the linear layer before it: weight [numFeatures, in] row-major, bias [numFeatures] or null. */
  foldIntoLinear(weight: FloatArray, bias: FloatArray | null = null): FoldedLayer {
    const fn = this.name('foldIntoLinear');
    const { rm, rv } = this.requireRunningStats(fn);
    return foldLinear(fn, computeScaleShift(rm, rv, this.eps, this.weight, this.bias), weight, bias);
  }

  /** Copies of the layer's state under PyTorch's key names (entries the layer lacks are omitted). */
  stateDict(): BatchNormStateDict {
    const d: BatchNormStateDict = {};
    if (this.weight && this.bias) {
      d.weight = this.weight.slice();
      d.bias = this.bias.slice();
    }
    if (this.runningMean && this.runningVar) {
      d.running_mean = this.runningMean.slice();
      d.running_var = this.runningVar.slice();
      d.num_batches_tracked = BigInt64Array.of(BigInt(this.numBatchesTracked));
    }
    return d;
  }

  private expectedKeys(): string[] {
    const keys: string[] = [];
    if (this.affine) keys.push('weight', 'bias');
    if (this.trackRunningStats) keys.push('running_mean', 'running_var', 'num_batches_tracked');
    return keys;
  }

  /**
   * Loads a state dict (values copied, float32/float64 converted to the layer's dtype). Everything
   * is checked before anything is written: on error the layer is unchanged.
   */
  loadStateDict(dict: Record<string, unknown>, options: LoadStateDictOptions = {}): void {
    const fn = this.name('loadStateDict');
    if (dict === null || typeof dict !== 'object' || Array.isArray(dict)) {
      throw new BatchNormTypeError('ERR_BN_INVALID_ARG_TYPE', `${fn}: state must be an object, received ${describe(dict)}`);
    }
    const strict = checkBoolean(fn, 'strict', checkOptions(fn, options).strict ?? true);
    this.assertIdle(fn); // an async call in flight reads and writes these arrays
    const expected = this.expectedKeys();
    const missing = expected.filter((k) => !(k in dict) || dict[k] === undefined);
    const unexpected = Object.keys(dict).filter((k) => !expected.includes(k));
    if (missing.length || (strict && unexpected.length)) {
      const parts = [];
      if (missing.length) parts.push(`missing ${missing.join(', ')}`);
      if (strict && unexpected.length) parts.push(`unexpected ${unexpected.join(', ')}`);
      throw new BatchNormRangeError('ERR_BN_STATE_DICT', `${fn}: expected keys ${expected.join(', ')}; ${parts.join('; ')}`);
    }
    const writes: Array<() => void> = [];
    for (const key of expected) {
      const v = dict[key];
      if (key === 'num_batches_tracked') {
        let n: number;
        if (typeof v === 'bigint') n = Number(v);
        else if (typeof v === 'number') n = v;
        else if ((v instanceof BigInt64Array || v instanceof Float32Array || v instanceof Float64Array) && v.length === 1) n = Number(v[0]);
        else {
          throw new BatchNormTypeError('ERR_BN_STATE_DICT', `${fn}: num_batches_tracked must be an integer, a bigint or a 1-element BigInt64Array, received ${describe(v)}`);
        }
        if (!Number.isSafeInteger(n) || n < 0) {
          throw new BatchNormRangeError('ERR_BN_STATE_DICT', `${fn}: num_batches_tracked must be a non-negative safe integer, received ${String(v)}`);
        }
        writes.push(() => { this.numBatchesTracked = n; });
        continue;
      }
      if (!isFloatArray(v)) {
        throw new BatchNormTypeError('ERR_BN_STATE_DICT', `${fn}: ${key} must be a Float32Array or Float64Array, received ${describe(v)}`);
      }
      if (v.length !== this.numFeatures) {
        throw new BatchNormRangeError('ERR_BN_STATE_DICT', `${fn}: ${key} must have ${this.numFeatures} elements, received ${describe(v)}`);
      }
      const target = { weight: this.weight, bias: this.bias, running_mean: this.runningMean, running_var: this.runningVar }[key as 'weight'] as FloatArray;
      const src = sharesMemory(v, target) ? v.slice() : v;
      writes.push(() => target.set(src));
    }
    for (const w of writes) w();
  }

  /** Writes stateDict() as a safetensors file (PyTorch key names, F32/F64 and I64). */
  saveSafetensors(path: string, metadata: Record<string, string> = {}): void {
    const tensors: Record<string, { shape: number[]; data: TensorData }> = {};
    for (const [k, v] of Object.entries(this.stateDict())) {
      tensors[k] = { shape: k === 'num_batches_tracked' ? [] : [this.numFeatures], data: v as TensorData };
    }
    writeSafetensorsFile(path, tensors, metadata);
  }

  /** Reads a safetensors checkpoint (e.g. from PyTorch's state_dict) into the layer. An optional
   * `prefix` ("layer1.bn.") selects one module's entries from a whole-model file. */
  loadSafetensors(path: string, options: LoadStateDictOptions & { prefix?: string } = {}): void {
    const fn = this.name('loadSafetensors');
    const o = checkOptions(fn, options) as LoadStateDictOptions & { prefix?: string };
    const prefix = o.prefix ?? '';
    if (typeof prefix !== 'string') {
      throw new BatchNormTypeError('ERR_BN_INVALID_ARG_TYPE', `${fn}: prefix must be a string, received ${describe(prefix)}`);
    }
    if (typeof path !== 'string' || path.length === 0) {
      throw new BatchNormTypeError('ERR_BN_INVALID_ARG_TYPE', `${fn}: path must be a non-empty string, received ${describe(path)}`);
    }
    this.assertIdle(fn);
    const file = readSafetensorsFile(path);
    const dict: Record<string, unknown> = {};
    for (const [k, t] of Object.entries(file.tensors)) {
      if (k.startsWith(prefix)) dict[k.slice(prefix.length)] = t.data;
    }
    this.loadStateDict(dict, { strict: o.strict });
  }
}

/** BatchNorm over [N, C] or [N, C, L]. */
export class BatchNorm1d extends BatchNorm {
  protected readonly minRank = 2;
  protected readonly maxRank = 3;
}

/** BatchNorm over [N, C, H, W]. */
export class BatchNorm2d extends BatchNorm {
  protected readonly minRank = 4;
  protected readonly maxRank = 4;
}

/** BatchNorm over [N, C, D, H, W]. */
export class BatchNorm3d extends BatchNorm {
  protected readonly minRank = 5;
  protected readonly maxRank = 5;
}
