// toBFloat16 / fromBFloat16 / toFloat16 / fromFloat16 at every SIMD level, against the
// independent IEEE reference of test/helpers/half-reference.ts: every 16-bit value decoded, the
// float32 inputs around every rounding boundary and random bit patterns encoded, tails inside
// NaN-poisoned guards at unaligned offsets, the multithreaded path, and the argument checks.
import { expect } from 'chai';
import { spawnSync } from 'child_process';
import * as path from 'path';
import * as vm from 'vm';
import * as bn from '../lib';
import { BF16, bitsOfF32, decodeHalfBits, encodeHalf, F16, f32FromBits, HalfFormat } from './helpers/half-reference';
import { Rng } from './helpers/random';

const encode = (f: HalfFormat) => (f === BF16 ? bn.toBFloat16 : bn.toFloat16);
const decode = (f: HalfFormat) => (f === BF16 ? bn.fromBFloat16 : bn.fromFloat16);

/** float32 bit patterns just below, at and above every rounding boundary of the format, plus
 * specials and random patterns (NaNs with payloads, subnormals, ties, overflow). */
function encodeInputs(f: HalfFormat): Uint32Array {
  const out: number[] = [];
  const drop = 23 - f.mant; // float32 mantissa bits the format drops (normal range)
  const half = 2 ** (drop - 1);
  for (let e = 0; e < 256; e++) {
    for (let m = 0; m < 2 ** f.mant; m++) {
      const base = e * 2 ** 23 + m * 2 ** drop;
      for (const d of [0, 1, half - 1, half, half + 1, 2 * half - 1]) {
        out.push(base + d, (0x80000000 + base + d) >>> 0);
      }
    }
  }
  if (f === F16) {
    // Subnormal float16 results: k * 2^-24 and the ties (k + 1/2) * 2^-24, one float32 ulp around.
    for (let k = 0; k <= 1024; k++) {
      for (const v of [k * 2 ** -24, (k + 0.5) * 2 ** -24]) {
        const b = bitsOfF32(v);
        out.push(b, b + 1, Math.max(b - 1, 0), (b | 0x80000000) >>> 0);
      }
    }
  }
  const rng = new Rng(f.mant);
  for (let i = 0; i < 200000; i++) out.push(rng.nextU32());
  out.push(0x7fc00000, 0xffc00000, 0x7f800001, 0xffbfffff, 0x7f800000, 0xff800000, 0x7f7fffff, 0x00000001, 0x807fffff);
  return Uint32Array.from(out);
}

function firstMismatch(got: Uint16Array | Uint32Array, want: Uint16Array | Uint32Array, input?: Uint32Array): string | null {
  for (let i = 0; i < want.length; i++) {
    if (got[i] !== want[i]) {
      const at = input ? ` (input 0x${input[i].toString(16)})` : '';
      return `element ${i}${at}: 0x${got[i].toString(16)}, want 0x${want[i].toString(16)}`;
    }
  }
  return null;
}

describe('float32 <-> bfloat16 / float16 helpers', function () {
  this.timeout(300000);
  const levels = bn.supportedSimdLevels();
  const original = bn.simdLevel();
  after(() => bn.setSimdLevel(original));

  // The expectations do not depend on the level: computed once, when the suite runs.
  interface Case { f: HalfFormat; all16: Uint16Array; decoded: Uint32Array; inputBits: Uint32Array; inputs: Float32Array; encoded: Uint16Array }
  const cases: Case[] = [BF16, F16].map((f) => ({ f }) as Case);
  before(() => {
    for (const c of cases) {
      c.all16 = new Uint16Array(65536).map((_, i) => i);
      c.decoded = new Uint32Array(65536).map((_, h) => decodeHalfBits(c.f, h));
      c.inputBits = encodeInputs(c.f);
      c.inputs = new Float32Array(c.inputBits.buffer);
      c.encoded = new Uint16Array(c.inputs.length);
      for (let i = 0; i < c.inputs.length; i++) c.encoded[i] = encodeHalf(c.f, f32FromBits(c.inputBits[i]));
    }
  });

  it('the reference agrees with hand-checked values', () => {
    expect(encodeHalf(BF16, 1)).to.equal(0x3f80);
    expect(encodeHalf(BF16, f32FromBits(0x3f808000))).to.equal(0x3f80); // tie to even
    expect(encodeHalf(BF16, f32FromBits(0x3f818000))).to.equal(0x3f82);
    expect(encodeHalf(BF16, f32FromBits(0x00008001))).to.equal(0x0001); // subnormal kept
    expect(encodeHalf(BF16, 3.4028234663852886e38)).to.equal(0x7f80);
    expect(encodeHalf(F16, 65504)).to.equal(0x7bff);
    expect(encodeHalf(F16, 65520)).to.equal(0x7c00);
    expect(encodeHalf(F16, -65519.99609375)).to.equal(0xfbff);
    expect(encodeHalf(F16, 2 ** -24)).to.equal(0x0001);
    expect(encodeHalf(F16, 2 ** -25)).to.equal(0x0000);
    expect(encodeHalf(F16, 0.1)).to.equal(0x2e66);
    expect(encodeHalf(F16, NaN)).to.equal(0x7e00);
    expect(decodeHalfBits(F16, 0x0001)).to.equal(bitsOfF32(2 ** -24));
    expect(decodeHalfBits(F16, 0x7c01)).to.equal(0x7fc02000); // signaling NaN quieted, payload kept
    expect(decodeHalfBits(BF16, 0xff81)).to.equal(0xff810000);
  });

  for (const level of levels) {
    describe(`SIMD level ${level}`, () => {
      before(() => bn.setSimdLevel(level));

      for (const c of cases) {
        it(`${c.f.name}: all 65,536 values decode exactly`, () => {
          const got = new Uint32Array(decode(c.f)(c.all16).buffer);
          expect(firstMismatch(got, c.decoded)).to.equal(null);
        });

        it(`${c.f.name}: float32 inputs round to nearest even, NaN ${c.f.nan.toString(16)}, subnormals and infinities kept`, () => {
          expect(firstMismatch(encode(c.f)(c.inputs), c.encoded, c.inputBits)).to.equal(null);
        });

        it(`${c.f.name}: tails (1, w-1, w, w+1, 2w+3 for w = 4, 8, 16) at unaligned offsets, guards intact`, () => {
          const POISON16 = 0x7e01;
          const POISON32 = 0x7fa5a5a5;
          for (const n of [0, 1, 3, 4, 5, 7, 8, 9, 11, 15, 16, 17, 19, 35]) {
            for (const off of [0, 1, 3]) {
              const src = new Float32Array(off + n).subarray(off);
              src.set(c.inputs.subarray(1000 + n, 1000 + 2 * n));
              const whole = new Uint16Array(off + n + 8).fill(POISON16);
              const out = whole.subarray(off, off + n);
              expect(encode(c.f)(src, out)).to.equal(out);
              const want = c.encoded.subarray(1000 + n, 1000 + 2 * n);
              expect(firstMismatch(out, want), `encode n=${n} off=${off}`).to.equal(null);
              whole.forEach((v, i) => {
                if (i < off || i >= off + n) expect(v, `encode guard ${i - off}`).to.equal(POISON16);
              });
              // 16-bit inputs spread over every class (zeros, subnormals, normals, infinities, NaNs).
              const h = new Uint16Array(off + n).subarray(off);
              for (let i = 0; i < n; i++) h[i] = (i * 4099 + n * 31 + off) & 0xffff;
              const whole32 = new Uint32Array(off + n + 8).fill(POISON32);
              const out32 = new Float32Array(whole32.buffer, off * 4, n);
              expect(decode(c.f)(h, { out: out32 })).to.equal(out32);
              const wantDec = Uint32Array.from(h, (v) => c.decoded[v]);
              expect(firstMismatch(new Uint32Array(out32.buffer, off * 4, n), wantDec), `decode n=${n} off=${off}`).to.equal(null);
              whole32.forEach((v, i) => {
                if (i < off || i >= off + n) expect(v, `decode guard ${i - off}`).to.equal(POISON32);
              });
            }
          }
        });

        it(`${c.f.name}: large arrays (several threads) convert like small ones`, () => {
          const n = 4 * 65536 + 3;
          const src = new Float32Array(n);
          const want = new Uint16Array(n);
          for (let i = 0; i < n; i++) {
            src[i] = c.inputs[(i * 7919) % c.inputs.length];
            want[i] = c.encoded[(i * 7919) % c.inputs.length];
          }
          const enc = encode(c.f)(src);
          expect(firstMismatch(enc, want)).to.equal(null);
          const dec = new Uint32Array(decode(c.f)(enc).buffer);
          const wantDec = new Uint32Array(n).map((_, i) => c.decoded[enc[i]]);
          expect(firstMismatch(dec, wantDec)).to.equal(null);
        });
      }
    });
  }
});

describe('float32 <-> 16-bit helpers: arguments', () => {
  type Loose = never;
  function expectCode(f: () => unknown, code: string, text: string): void {
    let err: (Error & { code?: string }) | undefined;
    try {
      f();
    } catch (e) {
      err = e as Error & { code?: string };
    }
    expect(err, 'expected an error').to.not.equal(undefined);
    expect(err).to.be.instanceOf(bn.BatchNormError);
    expect(err!.code).to.equal(code);
    expect(err!.message).to.contain(text);
  }

  it('refuses a wrong source with a coded error naming the function and the argument', () => {
    expectCode(() => bn.toBFloat16(new Float64Array(3) as Loose), 'ERR_BN_INVALID_ARG_TYPE', 'toBFloat16: src must be a Float32Array, received a Float64Array of length 3');
    expectCode(() => bn.toFloat16([1, 2] as Loose), 'ERR_BN_INVALID_ARG_TYPE', 'toFloat16: src must be a Float32Array, received an Array of length 2');
    expectCode(() => bn.fromBFloat16(new Int16Array(2) as Loose), 'ERR_BN_INVALID_ARG_TYPE', 'fromBFloat16: src must be a Uint16Array, received an Int16Array');
    expectCode(() => bn.fromFloat16(new Float32Array(2) as Loose), 'ERR_BN_INVALID_ARG_TYPE', 'fromFloat16: src must be a Uint16Array');
    const fake = { [Symbol.toStringTag]: 'Float32Array', length: 4 };
    expectCode(() => bn.toBFloat16(fake as Loose), 'ERR_BN_INVALID_ARG_TYPE', 'received an object');
  });

  it('refuses a wrong, short, or overlapping out, and unknown option keys', () => {
    const x = new Float32Array(8);
    expectCode(() => bn.toBFloat16(x, new Int16Array(8) as Loose), 'ERR_BN_INVALID_ARG_TYPE', 'toBFloat16: out must be a Uint16Array, received an Int16Array');
    expectCode(() => bn.toFloat16(x, new Uint16Array(7)), 'ERR_BN_BAD_LENGTH', 'toFloat16: out must have 8 elements');
    expectCode(() => bn.fromFloat16(new Uint16Array(8), { out: new Float32Array(9) }), 'ERR_BN_BAD_LENGTH', 'must have 8 elements');
    expectCode(() => bn.toBFloat16(x, new Uint16Array(x.buffer, 4, 8)), 'ERR_BN_OVERLAP', 'toBFloat16: out shares memory with src');
    expectCode(() => bn.toBFloat16(x, { output: new Uint16Array(8) } as Loose), 'ERR_BN_UNKNOWN_OPTION', "unknown options key 'output'");
    expectCode(() => bn.toBFloat16(x, 5 as Loose), 'ERR_BN_INVALID_ARG_TYPE', 'toBFloat16: options must be an object');
  });

  it('the addon re-checks what memory safety needs', () => {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const b = require('../lib/load').native();
    expect(() => b.convertF32ToBF16({ fn: 'f', src: new Float32Array(4), out: new Uint16Array(3) })).to.throw(/out must have 4 elements/);
    expect(() => b.convertBF16ToF32({ fn: 'f', src: new Float32Array(4), out: new Float32Array(4) })).to.throw(/src must be a Uint16Array/);
    const buf = new ArrayBuffer(64);
    expect(() => b.convertF32ToF16({ fn: 'f', src: new Float32Array(buf, 0, 8), out: new Uint16Array(buf, 16, 8) })).to.throw(/must not share memory/);
  });

  it('the first call of each conversion checks its keys (in a child: this process made them already)', () => {
    const load = path.resolve(__dirname, '..', 'lib', 'load');
    const script = `
      const b = require(${JSON.stringify(load)}).native();
      for (const op of ['convertF32ToBF16', 'convertBF16ToF32', 'convertF32ToF16', 'convertF16ToF32']) {
        const f32 = op.startsWith('convertF32');
        const call = { fn: 'raw', src: f32 ? new Float32Array(2) : new Uint16Array(2), out: f32 ? new Uint16Array(2) : new Float32Array(2) };
        try { b[op]({ ...call, extra: 1 }); process.exit(3); } catch (e) {
          if (e.code !== 'ERR_BN_UNKNOWN_OPTION' || !e.message.includes("raw: the native call has an unknown field 'extra'")) throw e;
        }
        b[op](call);
      }
      process.stdout.write('alive');`;
    const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8' });
    expect(r.stderr).to.equal('');
    expect(r.status).to.equal(0);
    expect(r.stdout).to.equal('alive');
  });

  it('takes arrays of another realm, subclasses, shared memory; empty and detached arrays give empty results', () => {
    const other = vm.runInNewContext('new Float32Array([1.5, -2, 65520])') as Float32Array;
    expect(Array.from(bn.toFloat16(other))).to.deep.equal([0x3e00, 0xc000, 0x7c00]);
    const otherOut = vm.runInNewContext('new Float32Array(3)') as Float32Array;
    expect(Array.from(bn.fromFloat16(Uint16Array.of(0x3e00, 0xc000, 0x7c00), otherOut))).to.deep.equal([1.5, -2, Infinity]);
    class Mine extends Float32Array {}
    expect(Array.from(bn.toBFloat16(Mine.of(1, 2)))).to.deep.equal([0x3f80, 0x4000]);
    const shared = new Float32Array(new SharedArrayBuffer(8)).fill(0.5);
    expect(Array.from(bn.toBFloat16(shared))).to.deep.equal([0x3f00, 0x3f00]);
    expect(bn.toBFloat16(new Float32Array(0)).length).to.equal(0);
    const detached = new Float32Array(4);
    structuredClone(detached.buffer, { transfer: [detached.buffer] });
    expect(bn.toBFloat16(detached).length).to.equal(0);
    expect(bn.fromBFloat16(new Uint16Array(0), new Float32Array(0)).length).to.equal(0);
  });
});
