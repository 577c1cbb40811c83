// The three ops as validated specs, their output-aliasing rules, and the addon calls built from
// them. Shared by the functional API and the layer, which validate user arguments first.
import { DType, FloatArray, isHalf, paramDType, TensorArray } from './arrays';
import { freshOutput, OpCall, smallArray } from './native-call';
import { checkFixedLength, checkNoOverlap, ParsedShape } from './validate';

interface SpecBase {
  fn: string;
  x: TensorArray;
  /** The storage dtype of x, out and dy; parameters and statistics are paramDType(dtype). */
  dtype: DType;
  sh: ParsedShape;
  channelsLast: boolean;
  /** null: a fresh output. */
  out: TensorArray | null;
}

/** The fused activation (lib/activation.ts validated it): absent is none. */
interface ActivationSpec {
  activation?: 'relu' | null;
  /** With activation 'relu': y = relu(BN(x) + residual). out may be residual itself. */
  residual?: TensorArray | null;
}

export interface TrainingSpec extends SpecBase, ActivationSpec {
  weight: FloatArray | null;
  bias: FloatArray | null;
  runningMean: FloatArray | null;
  runningVar: FloatArray | null;
  eps: number;
  momentum: number;
}

export interface InferenceSpec extends SpecBase, ActivationSpec {
  weight: FloatArray | null;
  bias: FloatArray | null;
  runningMean: FloatArray;
  runningVar: FloatArray;
  eps: number;
}

export interface BackwardSpec extends SpecBase {
  /** Through the forward's fused ReLU: its output y, and dL/dresidual's array after a residual. */
  activation?: 'relu' | null;
  y?: TensorArray | null;
  residualGrad?: TensorArray | null;
  dy: TensorArray;
  weight: FloatArray | null;
  training: boolean;
  mean: Float64Array;
  invstd: Float64Array | null;
  runningVar: FloatArray | null;
  eps: number;
  gradWeight: FloatArray | null;
  gradBias: FloatArray | null;
  accumulate: boolean;
}

export interface TrainingResult<Y extends TensorArray = TensorArray> {
  y: Y;
  /** Batch mean and 1/sqrt(biased var + eps), in the parameters' dtype (PyTorch's save_mean /
   * save_invstd): x's dtype, float32 for 16-bit x. */
  saveMean: FloatArray;
  saveInvstd: FloatArray;
  /** The same in float64: pass these to batchNormBackward for the most exact gradients. */
  batchMean: Float64Array;
  batchInvstd: Float64Array;
}

export interface BackwardResult<D extends TensorArray = TensorArray> {
  dx: D;
  gradWeight: FloatArray;
  gradBias: FloatArray;
}

type Named = ReadonlyArray<readonly [string, TensorArray | null]>;

function checkDisjoint(fn: string, outs: Named, ins: Named): void {
  for (const [oname, o] of outs) {
    if (!o) continue;
    for (const [iname, i] of ins) if (i) checkNoOverlap(fn, oname, o, iname, i, false);
  }
}

/** What each op may write over: forward's out may be x (in place), backward's out may be dy; no
 * output may share memory with anything else of the call. */
export function checkOutputs(spec: TrainingSpec | InferenceSpec | BackwardSpec): void {
  const { fn, out, x } = spec;
  if ('dy' in spec) {
    if (out) {
      checkNoOverlap(fn, 'out', out, 'dy', spec.dy, true);
      checkNoOverlap(fn, 'out', out, 'x', x, false);
    }
    const grads = [['gradWeight', spec.gradWeight], ['gradBias', spec.gradBias]] as const;
    checkDisjoint(fn, grads, [['x', x], ['dy', spec.dy], ['out', out], ['weight', spec.weight], ['runningVar', spec.runningVar]]);
    if (spec.gradWeight && spec.gradBias) checkNoOverlap(fn, 'gradWeight', spec.gradWeight, 'gradBias', spec.gradBias, false);
    if (out && spec.y) checkNoOverlap(fn, 'out', out, 'y', spec.y, true);
    checkDisjoint(fn, grads, [['y', spec.y ?? null]]);
    checkDisjoint(fn, [['residualGrad', spec.residualGrad ?? null]], [
      ['x', x], ['dy', spec.dy], ['y', spec.y ?? null], ['out', out], ['weight', spec.weight], ['runningVar', spec.runningVar],
      ['gradWeight', spec.gradWeight], ['gradBias', spec.gradBias],
    ]);
    return;
  }
  if (out && spec.residual) checkNoOverlap(fn, 'out', out, 'residual', spec.residual, true);
  if (out) checkNoOverlap(fn, 'out', out, 'x', x, true);
  const params = [['weight', spec.weight], ['bias', spec.bias], ['runningMean', spec.runningMean], ['runningVar', spec.runningVar]] as const;
  checkDisjoint(fn, [['out', out]], params);
  if ('momentum' in spec) checkDisjoint(fn, [['runningMean', spec.runningMean], ['runningVar', spec.runningVar]], [['x', x], ['weight', spec.weight], ['bias', spec.bias]]);
  if ('momentum' in spec) checkDisjoint(fn, [['runningMean', spec.runningMean], ['runningVar', spec.runningVar]], [['residual', spec.residual ?? null]]);
  if ('momentum' in spec && spec.runningMean && spec.runningVar) {
    checkNoOverlap(fn, 'runningMean', spec.runningMean, 'runningVar', spec.runningVar, false);
  }
}

/** Every array of the call, by the user's name for it. */
export function arraysOf(spec: TrainingSpec | InferenceSpec | BackwardSpec): Array<readonly [string, TensorArray | null]> {
  const common = [['x', spec.x], ['out', spec.out], ['weight', spec.weight]] as const;
  if ('dy' in spec) {
    return [
      ...common, ['dy', spec.dy], ['runningVar', spec.runningVar], ['gradWeight', spec.gradWeight], ['gradBias', spec.gradBias],
      ['y', spec.y ?? null], ['residualGrad', spec.residualGrad ?? null],
    ];
  }
  return [...common, ['bias', spec.bias], ['runningMean', spec.runningMean], ['runningVar', spec.runningVar], ['residual', spec.residual ?? null]];
}

/** What an async call checks beyond a sync one. */
export function checkAsync(spec: TrainingSpec | InferenceSpec | BackwardSpec): void {
  checkFixedLength(spec.fn, arraysOf(spec));
}

function shapeFields(spec: SpecBase) {
  return { n: spec.sh.n, c: spec.sh.c, s: spec.sh.s, channelsLast: spec.channelsLast, ...dtypeField(spec.dtype) };
}

/** The call's dtype key: a Uint16Array does not say which 16-bit format it holds. */
function dtypeField(dtype: DType): { dtype?: 'bfloat16' | 'float16' } {
  return isHalf(dtype) ? { dtype } : {};
}

export function trainingCall(spec: TrainingSpec): { call: OpCall; result: TrainingResult } {
  const C = spec.sh.c;
  const P = paramDType(spec.dtype);
  const result: TrainingResult = {
    y: spec.out ?? freshOutput(spec.dtype, spec.sh.total),
    saveMean: smallArray(P, C),
    saveInvstd: smallArray(P, C),
    batchMean: smallArray('float64', C) as Float64Array,
    batchInvstd: smallArray('float64', C) as Float64Array,
  };
  const args = {
    fn: spec.fn, x: spec.x, out: result.y, ...shapeFields(spec), weight: spec.weight, bias: spec.bias,
    saveMean: result.saveMean, saveInvstd: result.saveInvstd, batchMean: result.batchMean, batchInvstd: result.batchInvstd,
    runningMean: spec.runningMean, runningVar: spec.runningVar, eps: spec.eps, momentum: spec.momentum,
    activation: spec.activation ?? null, residual: spec.residual ?? null,
  };
  return { result, call: { op: 'forwardTraining', args } };
}

export function inferenceCall(spec: InferenceSpec): { call: OpCall; y: TensorArray } {
  const y = spec.out ?? freshOutput(spec.dtype, spec.sh.total);
  const args = {
    fn: spec.fn, x: spec.x, out: y, ...shapeFields(spec), weight: spec.weight, bias: spec.bias,
    runningMean: spec.runningMean, runningVar: spec.runningVar, eps: spec.eps,
    activation: spec.activation ?? null, residual: spec.residual ?? null,
  };
  return { y, call: { op: 'forwardInference', args } };
}

export function backwardCall(spec: BackwardSpec): { call: OpCall; result: BackwardResult } {
  const P = paramDType(spec.dtype);
  const result: BackwardResult = {
    dx: spec.out ?? freshOutput(spec.dtype, spec.sh.total),
    gradWeight: spec.gradWeight ?? smallArray(P, spec.sh.c),
    gradBias: spec.gradBias ?? smallArray(P, spec.sh.c),
  };
  const args = {
    fn: spec.fn, x: spec.x, dy: spec.dy, out: result.dx, ...shapeFields(spec), weight: spec.weight,
    training: spec.training, mean: spec.mean, invstd: spec.invstd, runningVar: spec.runningVar, eps: spec.eps,
    gradWeight: result.gradWeight, gradBias: result.gradBias, accumulate: spec.accumulate,
    activation: spec.activation ?? null, y: spec.y ?? null, residualGrad: spec.residualGrad ?? null,
  };
  return { result, call: { op: 'backward', args } };
}
