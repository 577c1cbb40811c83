// The BatchNorm layer: parameters, running statistics, train/eval modes, gradients, async calls
// ordered per layer, folding, and PyTorch-compatible state dicts.
//
// A call takes what it needs when it is made: the shape (copied), the mode, the weight and bias
// (copied), the options. Async calls run in call order on one layer, so running statistics,
// numBatchesTracked and the gradients change in the order of the calls, exactly as the same
// sequence of sync calls would. Only the data arrays (x, out, dy) stay live until the call settles.
import { Activation, checkActivation, checkResidual, checkResidualGrad, sameValues, spotSample } from './activation';
import { arrayType, DType, FloatArray, isTensorArray, paramDType, SameKind, TensorArray } from './arrays';
import { BatchNormError, BatchNormRangeError, BatchNormTypeError, describe } from './errors';
import {
  BackwardCallOptions, BatchNormOptions, ForwardOptions, LAYER_KEYS, readBackwardOptions, readForwardOptions,
} from './layer-options';
import { computeScaleShift, ConvFoldOptions, foldConv, foldLinear, FoldedLayer } from './fold';
import { checkTooFewValues } from './functional';
import { freshOutput, OpCall, runAsync, runSync, smallCopy } from './native-call';
import { backwardCall, checkOutputs, inferenceCall, trainingCall } from './ops';
import {
  BatchNormStateDict, LoadStateDictOptions, loadSafetensorsInto, loadStateDictInto, SaveSafetensorsOptions, saveSafetensorsOf,
  stateDictOf,
} from './state-dict';
import {
  checkBoolean, checkDType, checkEps, checkFixedLength, checkMomentum, checkOptionalBoolean, checkTensor, ParsedShape,
  parseShape, readOptions,
} from './validate';

export type { BatchNormStateDict, LoadStateDictOptions, SaveSafetensorsOptions } from './state-dict';
export type { BackwardCallOptions, BatchNormOptions, ForwardOptions } from './layer-options';


/** What backward needs from the forward it differentiates. */
interface ForwardRecord {
  x: TensorArray;
  sh: ParsedShape;
  channelsLast: boolean;
  training: boolean; // batch statistics (their invstd) or fixed ones (running variance and eps)
  mean: Float64Array;
  invstd: Float64Array | null;
  runningVar: FloatArray | null; // a copy, as the forward used it
  weight: FloatArray | null; // a copy, as the forward used it
  inPlace: boolean;
  y: TensorArray; // the output: the fused ReLU's mask in backward (y > 0), so it must stay unchanged
  ySample: number[] | null; // with an activation: spotSample(y) when the forward finished
}

/** One forward call: its record once it has run, or why it has not. */
interface Ticket {
  sh: ParsedShape; // known when the call is made
  record: ForwardRecord | null;
  /** Ran while another forward on the layer was in flight (async chains interleaved). */
  concurrent: boolean;
  /** The layer's window when this forward was called (backwards and releaseSaved() calls so far):
   * it is one of the forwards "since the last backward" while that count has not moved. */
  window: number;
  /** The forward added a residual before the ReLU: its backward writes dL/dresidual. */
  residual: boolean;
}

const layers = new WeakSet<object>();

/** "BatchNorm2d.forward", after checking that `self` really is a layer. */
function methodName(self: unknown, method: string): string {
  if (typeof self !== 'object' || self === null || !layers.has(self)) {
    throw new BatchNormTypeError('ERR_BN_INVALID_ARG_TYPE', `BatchNorm.${method}: must be called on a BatchNorm layer, received this = ${describe(self)}`);
  }
  return `${(self as object).constructor.name}.${method}`;
}

/** A rejected Promise for any error thrown while an async method takes its arguments. */
function rejecting<R>(start: () => Promise<R>): Promise<R> {
  try {
    return start();
  } catch (e) {
    return Promise.reject(e);
  }
}

export class BatchNorm {
  readonly numFeatures: number;
  readonly eps: number;
  readonly momentum: number | null;
  readonly affine: boolean;
  readonly trackRunningStats: boolean;
  /** Storage of x, y, dy, dx; the parameters, statistics and gradients below are paramDType(dtype)
   * (float32 for the 16-bit dtypes). */
  readonly dtype: DType;
  /** The fused activation ('relu') or null. */
  readonly activation: Activation;

  /** gamma [C], or null without affine. Mutable in place. */
  readonly weight: FloatArray | null;
  /** beta [C], or null without affine. */
  readonly bias: FloatArray | null;
  readonly runningMean: FloatArray | null;
  readonly runningVar: FloatArray | null;
  /** Accumulated by backward until zeroGrad(). null without affine. */
  readonly gradWeight: FloatArray | null;
  readonly gradBias: FloatArray | null;

  protected readonly minRank: number = 2;
  protected readonly maxRank: number = 5;
  private isTraining = true;
  private batches = 0;
  private last: Ticket | null = null;
  private byOutput = new WeakMap<TensorArray, Ticket>();
  private inFlight = new Set<Ticket>();
  // Forwards since the last backward, and how many of them ran while another was in flight:
  // counts, not the tickets, so that a loop of forwards without backward (inference) keeps
  // nothing but the last forward alive.
  private backwards = 0; // windows: backwards and releaseSaved() calls so far
  private sinceBackward = 0;
  private concurrentSinceBackward = 0;
  private pending = 0;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(numFeatures: number, options: BatchNormOptions = {}) {
    const fn = `${new.target.name}`;
    if (typeof numFeatures !== 'number' || !Number.isInteger(numFeatures) || numFeatures < 1 || numFeatures > 2 ** 31) {
      throw new BatchNormRangeError('ERR_BN_OUT_OF_RANGE', `${fn}: numFeatures must be an integer in [1, 2^31], received ${describe(numFeatures)}`);
    }
    const o = readOptions(fn, options, LAYER_KEYS);
    this.numFeatures = numFeatures;
    this.eps = checkEps(fn, o.eps ?? 1e-5);
    this.momentum = checkMomentum(fn, 'momentum' in o ? o.momentum : 0.1, true);
    this.affine = checkOptionalBoolean(fn, 'affine', o.affine, true);
    this.trackRunningStats = checkOptionalBoolean(fn, 'trackRunningStats', o.trackRunningStats, true);
    this.dtype = checkDType(fn, o.dtype ?? 'float32');
    this.activation = checkActivation(fn, o.activation);
    const T = arrayType(paramDType(this.dtype));
    this.weight = this.affine ? new T(numFeatures).fill(1) : null;
    this.bias = this.affine ? new T(numFeatures) : null;
    this.gradWeight = this.affine ? new T(numFeatures) : null;
    this.gradBias = this.affine ? new T(numFeatures) : null;
    this.runningMean = this.trackRunningStats ? new T(numFeatures) : null;
    this.runningVar = this.trackRunningStats ? new T(numFeatures).fill(1) : null;
    layers.add(this);
  }

  /** Training mode (batch statistics, running statistics updated) or evaluation mode. */
  get training(): boolean {
    return this.isTraining;
  }
  set training(mode: boolean) {
    this.isTraining = checkBoolean(`${this.constructor.name}.training`, 'the new value', mode);
  }

  /** Training forwards counted into the running statistics (momentum null: their average). */
  get numBatchesTracked(): number {
    return this.batches;
  }
  set numBatchesTracked(n: number) {
    if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0) {
      throw new BatchNormRangeError('ERR_BN_OUT_OF_RANGE', `${this.constructor.name}.numBatchesTracked must be a non-negative safe integer, received ${describe(n)}`);
    }
    this.batches = n;
  }

  /** Sets training mode (batch statistics, running statistics updated). */
  train(mode = true): this {
    this.isTraining = checkBoolean(methodName(this, 'train'), 'mode', mode);
    return this;
  }

  /** Sets evaluation mode (running statistics, if tracked). */
  eval(): this {
    methodName(this, 'eval');
    this.isTraining = false;
    return this;
  }

  zeroGrad(): void {
    this.assertIdle(methodName(this, 'zeroGrad'));
    this.gradWeight?.fill(0);
    this.gradBias?.fill(0);
  }

  /** Drops every input kept for backward (so it can be garbage-collected). */
  releaseSaved(): void {
    methodName(this, 'releaseSaved');
    this.last = null;
    this.startWindow();
    this.byOutput = new WeakMap();
  }

  /** A backward (or releaseSaved) starts a new window of "forwards since the last backward". */
  private startWindow(): void {
    this.backwards++;
    this.sinceBackward = 0;
    this.concurrentSinceBackward = 0;
  }

  private markConcurrent(t: Ticket): void {
    if (t.concurrent) return;
    t.concurrent = true;
    if (t.window === this.backwards) this.concurrentSinceBackward++;
  }

  private assertIdle(fn: string): void {
    if (this.pending > 0) {
      throw new BatchNormError('ERR_BN_BUSY', `${fn}: this layer has ${this.pending} async call(s) in flight; await them first (or use the async methods)`);
    }
  }

  /**
   * Validates a forward call and takes everything it depends on now. Returns `bind`, which builds
   * the native call from the layer's state when the call runs (after every earlier call), and
   * `commit`, which records it once it has succeeded.
   */
  private planForward(fn: string, x: unknown, shape: unknown, outOrOptions: unknown) {
    const { out, channelsLast, residual: r } = readForwardOptions(fn, this.dtype, outOrOptions);
    const sh = parseShape(fn, shape, this.minRank, this.maxRank);
    if (sh.c !== this.numFeatures) {
      throw new BatchNormRangeError('ERR_BN_BAD_SHAPE', `${fn}: shape[1] must be ${this.numFeatures} (numFeatures), received shape [${sh.dims.join(', ')}]`);
    }
    const xa = checkTensor(fn, 'x', x, this.dtype, sh.total);
    if (out) checkTensor(fn, 'out', out, this.dtype, sh.total);
    const fused = { activation: this.activation, residual: checkResidual(fn, r, this.activation, this.dtype, sh.total) };
    const useBatchStats = this.isTraining || !this.trackRunningStats;
    const updating = this.isTraining && this.trackRunningStats;
    if (useBatchStats) checkTooFewValues(fn, sh);
    const weight = this.weight ? smallCopy(this.weight) : null;
    const bias = this.bias ? smallCopy(this.bias) : null;
    checkOutputs({
      fn, x: xa, dtype: this.dtype, sh, channelsLast, out, weight: this.weight, bias: this.bias, eps: this.eps,
      runningMean: this.runningMean, runningVar: this.runningVar, momentum: 0, ...fused,
    });
    const y = out ?? freshOutput(this.dtype, sh.total);
    const base = { fn, x: xa, dtype: this.dtype, sh, channelsLast, out: y, weight, bias, eps: this.eps, ...fused };
    const ticket: Ticket = { sh, record: null, concurrent: false, window: this.backwards, residual: fused.residual !== null };
    const bind = (): { call: OpCall; commit: () => void } => {
      if (useBatchStats) {
        const n = updating ? this.batches + 1 : this.batches;
        const momentum = this.momentum === null ? 1 / n : this.momentum;
        const p = trainingCall({
          ...base,
          runningMean: updating ? this.runningMean : null,
          runningVar: updating ? this.runningVar : null,
          momentum: updating ? momentum : 0,
        });
        return {
          call: p.call,
          commit: () => {
            if (updating) this.batches = n;
            ticket.record = {
              x: xa, sh, channelsLast, training: true, mean: p.result.batchMean, invstd: p.result.batchInvstd,
              runningVar: null, weight, inPlace: y === xa, y, ySample: this.activation ? spotSample(y) : null,
            };
          },
        };
      }
      const runningMean = smallCopy(this.runningMean as FloatArray);
      const runningVar = smallCopy(this.runningVar as FloatArray);
      const p = inferenceCall({ ...base, runningMean, runningVar });
      return {
        call: p.call,
        commit: () => {
          ticket.record = {
            x: xa, sh, channelsLast, training: false, mean: smallCopy(runningMean, 'float64') as Float64Array, invstd: null,
            runningVar, weight, inPlace: y === xa, y, ySample: this.activation ? spotSample(y) : null,
          };
        },
      };
    };
    return { ticket, y, bind, residual: fused.residual };
  }

  private remember(ticket: Ticket, y: TensorArray): void {
    this.last = ticket;
    this.sinceBackward++;
    this.byOutput.set(y, ticket);
  }

  /**
   * Forward pass on x, shape [N, C, ...spatial] (stored NCHW-style, or channels-last with
   * { channelsLast: true }). In training mode uses batch statistics and updates the running
   * statistics; in evaluation mode uses the running statistics. The third argument is the output
   * array (same dtype and length; may be x itself, in place) or { out, channelsLast }.
   */
  forward<X extends TensorArray>(x: X, shape: readonly number[], out?: TensorArray | ForwardOptions): SameKind<X> {
    const fn = methodName(this, 'forward');
    this.assertIdle(fn);
    const { ticket, y, bind } = this.planForward(fn, x, shape, out);
    const b = bind();
    runSync(b.call);
    b.commit();
    this.remember(ticket, y);
    return y as SameKind<X>;
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
  forwardAsync<X extends TensorArray>(x: X, shape: readonly number[], out?: TensorArray | ForwardOptions): Promise<SameKind<X>> {
    return rejecting(() => {
      const fn = methodName(this, 'forwardAsync');
      const { ticket, y, bind, residual } = this.planForward(fn, x, shape, out);
      checkFixedLength(fn, [['x', x], ['out', y], ['residual', residual]]);
      if (this.inFlight.size > 0) {
        for (const t of this.inFlight) this.markConcurrent(t);
        this.markConcurrent(ticket);
      }
      this.inFlight.add(ticket);
      const previous = this.last;
      this.remember(ticket, y); // a backward called before this settles can name it already
      return this.enqueue(async () => {
        try {
          const b = bind();
          await runAsync(b.call);
          b.commit();
          return y as SameKind<X>;
        } catch (e) {
          this.forget(ticket, y, previous); // a failed forward leaves the layer as it was
          throw e;
        } finally {
          this.inFlight.delete(ticket);
        }
      });
    });
  }

  private forget(ticket: Ticket, y: TensorArray, previous: Ticket | null): void {
    if (this.last === ticket) this.last = previous;
    if (this.byOutput.get(y) === ticket) this.byOutput.delete(y);
    if (ticket.window === this.backwards) {
      this.sinceBackward--;
      if (ticket.concurrent) this.concurrentSinceBackward--;
    }
  }

  /** The forward a backward differentiates: named by its output, or the last one. */
  private ticketFor(fn: string, output: TensorArray | null): Ticket {
    const t = output ? this.byOutput.get(output) : this.last;
    if (!t) {
      throw new BatchNormError(
        'ERR_BN_NO_FORWARD',
        output
          ? `${fn}: output is not the output of a forward on this layer (or releaseSaved() was called since)`
          : `${fn}: no forward to differentiate; call forward(x, shape) first`,
      );
    }
    return t;
  }

  private planBackward(fn: string, dy: unknown, outOrOptions: unknown, async: boolean) {
    const { out, output, residualGrad: rg } = readBackwardOptions(fn, this.dtype, outOrOptions);
    const ticket = this.ticketFor(fn, output);
    // Interleaved async chains (forward A, forward B, backward meant for A): "the last forward"
    // then depends on timing, so an unnamed backward after overlapping forwards is refused.
    if (async && !output && this.sinceBackward > 1 && this.concurrentSinceBackward > 0) {
      throw new BatchNormError(
        'ERR_BN_AMBIGUOUS_BACKWARD',
        `${fn}: ${this.sinceBackward} forwards were called on this layer since the last backward, some of them while ` +
          'another was in flight, so which one is "the last" depends on timing; name the forward to differentiate with ' +
          '{ output: y } (the y it returned)',
      );
    }
    const dya = checkTensor(fn, 'dy', dy, this.dtype, ticket.sh.total);
    if (out) checkTensor(fn, 'out', out, this.dtype, ticket.sh.total);
    const residualGrad = checkResidualGrad(fn, rg, ticket.residual, this.dtype, ticket.sh.total);
    const spec = () => {
      const r = ticket.record;
      if (!r) {
        throw new BatchNormError('ERR_BN_NO_FORWARD', `${fn}: the forward it would differentiate failed, so there is nothing to differentiate`);
      }
      if (r.inPlace) {
        throw new BatchNormError(
          'ERR_BN_INPUT_OVERWRITTEN',
          `${fn}: the last forward wrote its output over x (out === x), so x is gone; run forward with a separate output to train`,
        );
      }
      if (r.ySample && !sameValues(r.ySample, spotSample(r.y))) {
        throw new BatchNormError(
          'ERR_BN_INPUT_OVERWRITTEN',
          `${fn}: the forward's output y changed since the forward (a spot check of ${r.ySample.length} values), and the fused ReLU's ` +
            'gradient is masked by it; keep y unchanged until backward (pass another array as the next call\'s out)',
        );
      }
      const sp = {
        fn, x: r.x, dy: dya, dtype: this.dtype, sh: r.sh, channelsLast: r.channelsLast, out, weight: r.weight,
        training: r.training, mean: r.mean, invstd: r.invstd, runningVar: r.runningVar, eps: this.eps,
        gradWeight: this.gradWeight, gradBias: this.gradBias, accumulate: true,
        activation: this.activation, y: this.activation ? r.y : null, residualGrad,
      };
      checkOutputs(sp);
      return sp;
    };
    const checked = ticket.record ? spec() : null; // a forward that has run: everything can be checked now
    this.startWindow();
    return Object.assign(
      (): { call: OpCall; dx: TensorArray } => {
        const p = backwardCall(checked ?? spec());
        return { call: p.call, dx: p.result.dx };
      },
      { residualGrad },
    );
  }

  /** dL/dx for the input of a forward (the last one, or { output: y }); adds dL/dweight, dL/dbias
   * into gradWeight, gradBias. The second argument is dx's array or { out, output }. */
  backward<D extends TensorArray>(dy: D, out?: TensorArray | BackwardCallOptions): SameKind<D> {
    const fn = methodName(this, 'backward');
    this.assertIdle(fn);
    const b = this.planBackward(fn, dy, out, false)();
    runSync(b.call);
    return b.dx as SameKind<D>;
  }

  /** As backward, on libuv's thread pool, after every earlier async call on this layer. With
   * interleaved async forwards, name the forward: { output: y }. */
  backwardAsync<D extends TensorArray>(dy: D, out?: TensorArray | BackwardCallOptions): Promise<SameKind<D>> {
    return rejecting(() => {
      const fn = methodName(this, 'backwardAsync');
      const bind = this.planBackward(fn, dy, out, true);
      checkFixedLength(fn, [['dy', dy], ['out', isTensorArray(out) ? out : (out?.out ?? null)], ['residualGrad', bind.residualGrad]]);
      return this.enqueue(async () => {
        const b = bind();
        await runAsync(b.call);
        return b.dx as SameKind<D>;
      });
    });
  }

  private requireRunningStats(fn: string): { rm: FloatArray; rv: FloatArray } {
    if (!this.runningMean || !this.runningVar) {
      throw new BatchNormError('ERR_BN_NO_RUNNING_STATS', `${fn}: the layer has no running statistics (trackRunningStats = false), so it cannot be folded`);
    }
    return { rm: this.runningMean, rv: this.runningVar };
  }

  /** Inference-mode BN as y = x * scale + shift per channel (float64 maths, in the parameters'
   * dtype: float32 for the 16-bit layers). */
  scaleShift(): { scale: FloatArray; shift: FloatArray } {
    const { rm, rv } = this.requireRunningStats(methodName(this, 'scaleShift'));
    const ss = computeScaleShift(rm, rv, this.eps, this.weight, this.bias);
    const T = arrayType(paramDType(this.dtype));
    return { scale: T.from(ss.scale), shift: T.from(ss.shift) };
  }

  /**
   * Folds this BN (in evaluation mode) into the convolution before it. weight is
   * [O, I/groups, ...k] (or [I, O/groups, ...k] with transposed), O = numFeatures; bias may be null.
   * Returns new arrays in the weight's dtype.
   */
  foldIntoConv(weight: FloatArray, weightShape: readonly number[], bias: FloatArray | null = null, options: ConvFoldOptions = {}): FoldedLayer {
    const fn = methodName(this, 'foldIntoConv');
    const { rm, rv } = this.requireRunningStats(fn);
    const o = readOptions(fn, options, ['groups', 'transposed'] as const) as ConvFoldOptions;
    return foldConv(fn, computeScaleShift(rm, rv, this.eps, this.weight, this.bias), weight, weightShape, bias, o);
  }

  /** Folds this BN into the linear layer before it: weight [numFeatures, in] row-major, bias [numFeatures] or null. */
  foldIntoLinear(weight: FloatArray, bias: FloatArray | null = null): FoldedLayer {
    const fn = methodName(this, 'foldIntoLinear');
    const { rm, rv } = this.requireRunningStats(fn);
    return foldLinear(fn, computeScaleShift(rm, rv, this.eps, this.weight, this.bias), weight, bias);
  }

  /** Copies of the layer's state under PyTorch's key names (entries the layer lacks are omitted). */
  stateDict(): BatchNormStateDict {
    methodName(this, 'stateDict');
    return stateDictOf(this);
  }

  /** Loads a state dict (values copied, float32/float64 converted to the layer's dtype). Everything
   * is checked before anything is written: on error the layer is unchanged. */
  loadStateDict(dict: Record<string, unknown>, options: LoadStateDictOptions = {}): void {
    const fn = methodName(this, 'loadStateDict');
    this.assertIdle(fn); // an async call in flight reads and writes these arrays
    loadStateDictInto(fn, this, dict, options);
  }

  /** Writes stateDict() as a safetensors file (PyTorch key names, F32/F64 and I64; a 16-bit layer
   * writes F32 parameters, PyTorch's mixed-type layout, unless options.dtype asks for 'BF16' / 'F16'). */
  saveSafetensors(path: string, metadata: Record<string, string> = {}, options: SaveSafetensorsOptions = {}): void {
    saveSafetensorsOf(methodName(this, 'saveSafetensors'), this, path, metadata, options);
  }

  /** Reads a safetensors checkpoint (e.g. from PyTorch's state_dict) into the layer. An optional
   * `prefix` ("layer1.bn.") selects one module's entries from a whole-model file. */
  loadSafetensors(path: string, options: LoadStateDictOptions & { prefix?: string } = {}): void {
    const fn = methodName(this, 'loadSafetensors');
    this.assertIdle(fn);
    loadSafetensorsInto(fn, this, path, options);
  }
}

/** `v` as a layer to load state into (lib/checkpoint.ts): a BatchNorm with no async call in flight. */
export function idleLayer(fn: string, what: string, v: unknown): BatchNorm {
  if (typeof v !== 'object' || v === null || !layers.has(v)) {
    throw new BatchNormTypeError('ERR_BN_INVALID_ARG_TYPE', `${fn}: ${what} must be a BatchNorm layer, received ${describe(v)}`);
  }
  (v as BatchNorm)['assertIdle'](fn);
  return v as BatchNorm;
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
