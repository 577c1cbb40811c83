// NCHW-style [N, C, S] <-> channels-last [N, S, C], for the tests that run both layouts.

type Indexed = { length: number; [i: number]: number };

/** A new array of a's kind (Float32Array, Uint16Array, ...) unless `make` says otherwise. */
function sameKind<A extends Indexed>(a: A, make?: (len: number) => A): A {
  return make ? make(a.length) : new (a.constructor as new (len: number) => A)(a.length);
}

/** [N, C, S] -> [N, S, C]. */
export function toChannelsLast<A extends Indexed>(a: A, n: number, c: number, s: number, make?: (len: number) => A): A {
  const out = sameKind(a, make);
  for (let b = 0; b < n; b++) for (let ch = 0; ch < c; ch++) for (let j = 0; j < s; j++) out[(b * s + j) * c + ch] = a[(b * c + ch) * s + j];
  return out;
}

/** [N, S, C] -> [N, C, S]. */
export function fromChannelsLast<A extends Indexed>(a: A, n: number, c: number, s: number, make?: (len: number) => A): A {
  const out = sameKind(a, make);
  for (let b = 0; b < n; b++) for (let ch = 0; ch < c; ch++) for (let j = 0; j < s; j++) out[(b * c + ch) * s + j] = a[(b * s + j) * c + ch];
  return out;
}
