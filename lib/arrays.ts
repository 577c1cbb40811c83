// Facts about typed arrays read through the built-in getters of %TypedArray%.prototype, never
// through the object's own properties: they see the real kind and length of arrays from any realm
// (a vm context, Jest), and a subclass or a fake cannot lie to them.

export type FloatArray = Float32Array | Float64Array;
/** The dtypes of float typed arrays: parameters and statistics, and float tensors. */
export type FloatDType = 'float32' | 'float64';
/** 16-bit storage: raw bits in a Uint16Array (JavaScript has no bfloat16 / float16 array). */
export type HalfDType = 'bfloat16' | 'float16';
/** A layer's or a call's storage dtype (of x, y, dy, dx). */
export type DType = FloatDType | HalfDType;
/** x, y, dy, dx: a float typed array, or raw 16-bit values in a Uint16Array. */
export type TensorArray = FloatArray | Uint16Array;
/** The kind of array an op returns for input X (y for x, dx for dy): the same kind. */
export type SameKind<X extends TensorArray> = X extends Uint16Array ? Uint16Array
  : X extends Float64Array ? Float64Array : X extends Float32Array ? Float32Array : TensorArray;

const typedArrayPrototype = Object.getPrototypeOf(Uint8Array.prototype) as object;

function intrinsicGetter(key: PropertyKey): (this: unknown) => unknown {
  const get = Object.getOwnPropertyDescriptor(typedArrayPrototype, key)?.get;
  if (!get) throw new Error(`node-batchnorm: %TypedArray%.prototype has no ${String(key)} getter`);
  return get;
}

const tagGetter = intrinsicGetter(Symbol.toStringTag);
const lengthGetter = intrinsicGetter('length');
const bufferGetter = intrinsicGetter('buffer');
const byteOffsetGetter = intrinsicGetter('byteOffset');
const byteLengthGetter = intrinsicGetter('byteLength');

/** 'Float32Array', 'Uint16Array', ... for a typed array of any realm; undefined for anything else. */
export function typedArrayKind(v: unknown): string | undefined {
  return tagGetter.call(v) as string | undefined;
}

export function isFloatArray(v: unknown): v is FloatArray {
  const kind = typedArrayKind(v);
  return kind === 'Float32Array' || kind === 'Float64Array';
}

export function isFloat64Array(v: unknown): v is Float64Array {
  return typedArrayKind(v) === 'Float64Array';
}

export function dtypeOf(a: FloatArray): FloatDType {
  return typedArrayKind(a) === 'Float64Array' ? 'float64' : 'float32';
}

export function arrayType(dtype: FloatDType): typeof Float32Array | typeof Float64Array {
  return dtype === 'float64' ? Float64Array : Float32Array;
}

export function arrayName(dtype: DType): string {
  return isHalf(dtype) ? 'Uint16Array' : dtype === 'float64' ? 'Float64Array' : 'Float32Array';
}

export function isHalf(dtype: DType): dtype is HalfDType {
  return dtype === 'bfloat16' || dtype === 'float16';
}

/** The dtype of the parameters and statistics of a layer or call on `dtype` storage: float32 for
 * the 16-bit types (PyTorch's mixed type), the storage dtype otherwise (native bn::param_t). */
export function paramDType(dtype: DType): FloatDType {
  return isHalf(dtype) ? 'float32' : dtype;
}

/** The array class holding tensors (x, y, dy, dx) of `dtype`. */
export function tensorArrayType(dtype: DType): typeof Float32Array | typeof Float64Array | typeof Uint16Array {
  return isHalf(dtype) ? Uint16Array : arrayType(dtype);
}

export function isUint16Array(v: unknown): v is Uint16Array {
  return typedArrayKind(v) === 'Uint16Array';
}

export function isTensorArray(v: unknown): v is TensorArray {
  return isFloatArray(v) || isUint16Array(v);
}

/** Element count of a typed array (0 once its buffer is detached or shrunk past it). */
export function lengthOf(a: ArrayBufferView): number {
  return lengthGetter.call(a) as number;
}

export function bufferOf(a: ArrayBufferView): ArrayBufferLike {
  return bufferGetter.call(a) as ArrayBufferLike;
}

const resizableGetter = Object.getOwnPropertyDescriptor(ArrayBuffer.prototype, 'resizable')?.get;

/** True for a view of a resizable (non-shared) ArrayBuffer, which JavaScript can shrink. */
export function isResizable(a: ArrayBufferView): boolean {
  const buffer = bufferOf(a);
  return resizableGetter !== undefined && !(buffer instanceof SharedArrayBuffer) && resizableGetter.call(buffer) === true;
}

function byteRange(a: ArrayBufferView): [number, number] {
  const begin = byteOffsetGetter.call(a) as number;
  return [begin, begin + (byteLengthGetter.call(a) as number)];
}

/** True when two typed arrays share at least one byte of the same buffer. */
export function sharesMemory(a: ArrayBufferView, b: ArrayBufferView): boolean {
  if (bufferOf(a) !== bufferOf(b)) return false;
  const [a0, a1] = byteRange(a);
  const [b0, b1] = byteRange(b);
  return a0 < a1 && b0 < b1 && a0 < b1 && b0 < a1;
}

/** True when two typed arrays are the same elements of the same buffer (an in-place call). */
export function sameView(a: ArrayBufferView, b: ArrayBufferView): boolean {
  if (bufferOf(a) !== bufferOf(b)) return false;
  const [a0, a1] = byteRange(a);
  const [b0, b1] = byteRange(b);
  return a0 === b0 && a1 === b1;
}
