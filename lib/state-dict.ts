// A layer's state under PyTorch's state_dict keys: copies out, checked loads in, safetensors files.
import { FloatArray, isFloatArray, lengthOf, sharesMemory, typedArrayKind } from './arrays';
import { BatchNormRangeError, BatchNormTypeError, describe } from './errors';
import { fromBFloat16, fromFloat16, toBFloat16, toFloat16 } from './convert';
import { readSafetensorsFile, Tensor, TensorData, TensorDType, writeSafetensorsFile } from './safetensors';
import { checkBoolean, readOptions } from './validate';

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

/** The parts of a layer its state dict reads and writes. */
export interface StatefulLayer {
  readonly numFeatures: number;
  readonly weight: FloatArray | null;
  readonly bias: FloatArray | null;
  readonly runningMean: FloatArray | null;
  readonly runningVar: FloatArray | null;
  numBatchesTracked: number;
}

export function stateDictOf(layer: StatefulLayer): BatchNormStateDict {
  const d: BatchNormStateDict = {};
  if (layer.weight && layer.bias) {
    d.weight = layer.weight.slice();
    d.bias = layer.bias.slice();
  }
  if (layer.runningMean && layer.runningVar) {
    d.running_mean = layer.runningMean.slice();
    d.running_var = layer.runningVar.slice();
    d.num_batches_tracked = BigInt64Array.of(BigInt(layer.numBatchesTracked));
  }
  return d;
}

function expectedKeys(layer: StatefulLayer): string[] {
  const keys: string[] = [];
  if (layer.weight) keys.push('weight', 'bias');
  if (layer.runningMean) keys.push('running_mean', 'running_var', 'num_batches_tracked');
  return keys;
}

function batchCount(fn: string, v: unknown): number {
  let n: number;
  const kind = typedArrayKind(v);
  if (typeof v === 'bigint') n = Number(v);
  else if (typeof v === 'number') n = v;
  else if ((kind === 'BigInt64Array' || kind === 'Float32Array' || kind === 'Float64Array') && lengthOf(v as ArrayBufferView) === 1) {
    n = Number((v as BigInt64Array | FloatArray)[0]);
  } else {
    throw new BatchNormTypeError('ERR_BN_STATE_DICT', `${fn}: num_batches_tracked must be an integer, a bigint or a 1-element BigInt64Array, received ${describe(v)}`);
  }
  if (!Number.isSafeInteger(n) || n < 0) {
    throw new BatchNormRangeError('ERR_BN_STATE_DICT', `${fn}: num_batches_tracked must be a non-negative safe integer, received ${String(v)}`);
  }
  return n;
}

/** Checks everything before writing anything: on error the layer is unchanged. Each entry is read once. */
export function loadStateDictInto(fn: string, layer: StatefulLayer, dict: unknown, options: unknown): void {
  prepareStateDictLoad(fn, layer, dict, options)();
}

/** loadStateDictInto's checks; returns the writes, which cannot fail (several layers load all or none). */
export function prepareStateDictLoad(fn: string, layer: StatefulLayer, dict: unknown, options: unknown): () => void {
  if (dict === null || typeof dict !== 'object' || Array.isArray(dict)) {
    throw new BatchNormTypeError('ERR_BN_INVALID_ARG_TYPE', `${fn}: state must be an object, received ${describe(dict)}`);
  }
  const o = readOptions(fn, options, ['strict'] as const);
  const strict = o.strict === undefined ? true : checkBoolean(fn, 'strict', o.strict);
  const expected = expectedKeys(layer);
  const entries = new Map<string, unknown>();
  for (const k of expected) entries.set(k, (dict as Record<string, unknown>)[k]);
  const missing = expected.filter((k) => entries.get(k) === undefined);
  const unexpected = Object.keys(dict).filter((k) => !expected.includes(k));
  if (missing.length || (strict && unexpected.length)) {
    const parts = [];
    if (missing.length) parts.push(`missing ${missing.join(', ')}`);
    if (strict && unexpected.length) parts.push(`unexpected ${unexpected.join(', ')}`);
    throw new BatchNormRangeError('ERR_BN_STATE_DICT', `${fn}: expected keys ${expected.join(', ')}; ${parts.join('; ')}`);
  }
  const writes: Array<() => void> = [];
  for (const key of expected) {
    const v = entries.get(key);
    if (key === 'num_batches_tracked') {
      const n = batchCount(fn, v);
      writes.push(() => { layer.numBatchesTracked = n; });
      continue;
    }
    if (!isFloatArray(v)) {
      throw new BatchNormTypeError('ERR_BN_STATE_DICT', `${fn}: ${key} must be a Float32Array or Float64Array, received ${describe(v)}`);
    }
    if (lengthOf(v) !== layer.numFeatures) {
      throw new BatchNormRangeError('ERR_BN_STATE_DICT', `${fn}: ${key} must have ${layer.numFeatures} elements, received ${describe(v)}`);
    }
    const target = { weight: layer.weight, bias: layer.bias, running_mean: layer.runningMean, running_var: layer.runningVar }[key as 'weight'] as FloatArray;
    const src = sharesMemory(v, target) ? v.slice() : v;
    writes.push(() => target.set(src));
  }
  return () => {
    for (const w of writes) w();
  };
}

/** A checkpoint tensor as a layer loads it: BF16 / F16 widened to float32 (exact), others as they are. */
export function widened(t: Tensor): TensorData {
  if (t.dtype === 'BF16') return fromBFloat16(t.data as Uint16Array);
  if (t.dtype === 'F16') return fromFloat16(t.data as Uint16Array);
  return t.data;
}

export interface SaveSafetensorsOptions {
  /** The file dtype of weight, bias and the running statistics. Default: the layer's parameter
   * dtype (F32 for the 16-bit layers: PyTorch's mixed-type layout, a float32 module on bf16
   * activations). 'BF16' / 'F16': what `model.to(torch.bfloat16 | torch.float16).state_dict()`
   * holds, float32 parameters rounded once (a float64 layer cannot: it would round twice). */
  dtype?: 'F32' | 'F64' | 'BF16' | 'F16';
}

const PARAM_FILE_DTYPES = ['F32', 'F64', 'BF16', 'F16'] as const;

/** A layer's float parameter array as the file dtype `to` stores it. */
function asFileDType(fn: string, v: FloatArray, to: TensorDType): TensorData {
  if (to === 'F32') return Float32Array.from(v);
  if (to === 'F64') return Float64Array.from(v);
  if (typedArrayKind(v) !== 'Float32Array') {
    throw new BatchNormTypeError('ERR_BN_DTYPE_MISMATCH', `${fn}: dtype '${to}' needs float32 parameters (a float64 layer would round twice); save F64 or F32`);
  }
  return to === 'BF16' ? toBFloat16(v as Float32Array) : toFloat16(v as Float32Array);
}

export function saveSafetensorsOf(fn: string, layer: StatefulLayer, path: unknown, metadata: unknown, options?: unknown): void {
  if (typeof path !== 'string' || path.length === 0) {
    throw new BatchNormTypeError('ERR_BN_INVALID_ARG_TYPE', `${fn}: path must be a non-empty string, received ${describe(path)}`);
  }
  const o = readOptions(fn, options, ['dtype'] as const);
  const to = o.dtype;
  if (to !== undefined && !(PARAM_FILE_DTYPES as readonly unknown[]).includes(to)) {
    throw new BatchNormTypeError('ERR_BN_INVALID_ARG_TYPE', `${fn}: dtype must be one of ${PARAM_FILE_DTYPES.join(', ')}, received ${describe(to)}`);
  }
  const tensors: Record<string, { shape: number[]; data: TensorData; dtype?: TensorDType }> = {};
  for (const [k, v] of Object.entries(stateDictOf(layer))) {
    if (k === 'num_batches_tracked') {
      tensors[k] = { shape: [], data: v as TensorData };
      continue;
    }
    const data = to === undefined ? (v as TensorData) : asFileDType(fn, v as FloatArray, to as TensorDType);
    tensors[k] = { shape: [layer.numFeatures], data, ...(to === 'BF16' || to === 'F16' ? { dtype: to } : {}) };
  }
  writeSafetensorsFile(path, tensors, metadata as Record<string, string>);
}

/** Reads a checkpoint's entries under `prefix` ("layer1.bn.") into the layer. */
export function loadSafetensorsInto(fn: string, layer: StatefulLayer, path: unknown, options: unknown): void {
  const o = readOptions(fn, options, ['strict', 'prefix'] as const);
  const prefix = o.prefix ?? '';
  if (typeof prefix !== 'string') {
    throw new BatchNormTypeError('ERR_BN_INVALID_ARG_TYPE', `${fn}: prefix must be a string, received ${describe(prefix)}`);
  }
  if (typeof path !== 'string' || path.length === 0) {
    throw new BatchNormTypeError('ERR_BN_INVALID_ARG_TYPE', `${fn}: path must be a non-empty string, received ${describe(path)}`);
  }
  const file = readSafetensorsFile(path);
  const dict: Record<string, unknown> = {};
  for (const [k, t] of Object.entries(file.tensors)) {
    if (k.startsWith(prefix)) dict[k.slice(prefix.length)] = widened(t);
  }
  loadStateDictInto(fn, layer, dict, o.strict === undefined ? {} : { strict: o.strict });
}
