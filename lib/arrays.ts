// Facts about typed arrays read through the built-in getters of %TypedArray%.prototype, never
// through the object's own properties: they see the real kind and length of arrays from any realm
// (a vm context, Jest), and a subclass or a fake cannot lie to them.

export type FloatArray = Float32Array | Float64Array;
export type DType = 'float32' | 'float64';

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

export function dtypeOf(a: FloatArray): DType {
  return typedArrayKind(a) === 'Float64Array' ? 'float64' : 'float32';
}

export function arrayType(dtype: DType): typeof Float32Array | typeof Float64Array {
  return dtype === 'float64' ? Float64Array : Float32Array;
}

export function arrayName(dtype: DType): string {
  return dtype === 'float64' ? 'Float64Array' : 'Float32Array';
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
