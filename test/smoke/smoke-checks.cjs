// Checks shared by smoke.cjs (require) and smoke.mjs (import): run against the installed package,
// not the repo. Forward (training and inference), backward and folding are compared with the
// tests' float64 reference, independent of the package: scripts/pack-smoke.sh copies it here
// compiled (dist/test/helpers/reference.js as reference.js), with the tests' seeded generator
// (dist/examples/mnist/rng.js as rng.js).
//
// Environment:
//   BATCHNORM_SIMD=scalar|avx2|avx512|neon  the forced level; simdLevel() must report exactly it
//   SMOKE_EXPECT_SIMD=<level>              the level the CPU must be detected at (e.g. scalar under
//                                          qemu -cpu Nehalem)
//   SMOKE_EXPECT_BINDING=prebuild|build|env the kind of binary that must have been loaded
//   SMOKE_EXPECT_BUNDLED_GOMP=1            libgomp must be mapped from the prebuilt binary's folder
'use strict';
const fs = require('fs');
const path = require('path');

const ref = require('./reference.js');
const { Rng } = require('./rng.js');

function fill(T, len, rng, offset, scale) {
  const a = new T(len);
  for (let i = 0; i < len; i++) a[i] = offset + scale * (2 * rng.uniform() - 1);
  return a;
}

function check(what, got, want, rtol, atol) {
  if (got.length !== want.length) throw new Error(`${what}: length ${got.length}, expected ${want.length}`);
  let worst = 0;
  for (let i = 0; i < want.length; i++) {
    const err = Math.abs(got[i] - want[i]);
    const tol = atol + rtol * Math.abs(want[i]);
    if (!(err <= tol)) {
      throw new Error(`${what}[${i}] = ${got[i]}, float64 reference ${want[i]} (|error| ${err} > tolerance ${tol})`);
    }
    worst = Math.max(worst, err / tol);
  }
  return worst;
}

function mappedLibgomp() {
  try {
    return fs.readFileSync('/proc/self/maps', 'utf8').split('\n')
      .map((l) => l.split(/\s+/).slice(5).join(' ')).filter((p) => /libgomp\.so/.test(p))
      .filter((p, i, a) => a.indexOf(p) === i);
  } catch {
    return null;
  }
}

function run(bn, entry) {
  const log = [];
  // ---- what was loaded ----
  const info = bn.runtimeInfo();
  const forced = process.env.BATCHNORM_SIMD;
  if (forced && bn.simdLevel() !== forced) {
    throw new Error(`BATCHNORM_SIMD=${forced} but simdLevel() is '${bn.simdLevel()}' (supported here: ${bn.supportedSimdLevels().join(', ')})`);
  }
  const expectSimd = process.env.SMOKE_EXPECT_SIMD;
  if (expectSimd && (bn.detectedSimdLevel() !== expectSimd || bn.simdLevel() !== expectSimd)) {
    throw new Error(`expected this CPU to be detected as '${expectSimd}', got detected '${bn.detectedSimdLevel()}', in use '${bn.simdLevel()}'`);
  }
  const expectKind = process.env.SMOKE_EXPECT_BINDING;
  if (expectKind && info.binding.kind !== expectKind) {
    throw new Error(`expected the ${expectKind} binary to be loaded, got ${info.binding.kind} (${info.binding.file})`);
  }
  if (process.env.SMOKE_EXPECT_BUNDLED_GOMP === '1') {
    const maps = mappedLibgomp();
    const want = path.join(path.dirname(info.binding.file), 'libgomp.so.1');
    if (!maps || maps.length !== 1 || fs.realpathSync(maps[0]) !== fs.realpathSync(want)) {
      throw new Error(`libgomp must be the copy bundled at ${want}; mapped: ${JSON.stringify(maps)}`);
    }
  }

  // ---- forward (training), backward, folding; float32 and float64; odd sizes for SIMD tails ----
  const [n, c, h, wd] = [5, 3, 7, 9];
  const s = h * wd;
  const eps = 1e-5, momentum = 0.1;
  for (const [dtype, T, rtol, atol] of [['float32', Float32Array, 2e-6, 2e-6], ['float64', Float64Array, 1e-12, 1e-12]]) {
    const rand = new Rng(dtype === 'float32' ? 12345 : 777);
    const x = fill(T, n * c * s, rand, 3, 2);
    const dy = fill(T, n * c * s, rand, 0.25, 1);
    const layer = new bn.BatchNorm2d(c, { dtype, eps, momentum });
    for (let ch = 0; ch < c; ch++) { layer.weight[ch] = 0.5 + ch; layer.bias[ch] = ch - 1; }
    const w = Float64Array.from(layer.weight), b = Float64Array.from(layer.bias);
    const d = ref.dimsOf([n, c, h, wd]);

    const y = layer.forward(x, [n, c, h, wd]);
    const tref = ref.forwardTraining(x, d, w, b, eps);
    let worst = check(`${dtype} forward y`, y, tref.y, rtol, atol);
    const M = n * s;
    const run = ref.runningUpdate(new Float64Array(c), new Float64Array(c).fill(1), tref, M, momentum, 1);
    const rm = run.mean, rv = run.variance;
    worst = Math.max(worst, check(`${dtype} running_mean`, layer.runningMean, rm, rtol, atol));
    worst = Math.max(worst, check(`${dtype} running_var`, layer.runningVar, rv, rtol, atol));

    const dx = layer.backward(dy);
    const g = ref.backward(x, dy, d, w, tref.mean, tref.invstd, true);
    // Reductions over n*s terms of size ~|dy|: a float32 sum is good to ~M ulps of the largest term.
    const red = dtype === 'float32' ? 1e-5 : 1e-11;
    worst = Math.max(worst, check(`${dtype} backward dx`, dx, g.dx, red, red));
    worst = Math.max(worst, check(`${dtype} backward dweight`, layer.gradWeight, g.dweight, red, red * M));
    worst = Math.max(worst, check(`${dtype} backward dbias`, layer.gradBias, g.dbias, red, red * M));

    // Functional API, float64 statistics from the forward.
    const tr = bn.batchNormTraining(x, [n, c, h, wd], { weight: layer.weight, bias: layer.bias, eps });
    worst = Math.max(worst, check(`${dtype} batchNormTraining y`, tr.y, tref.y, rtol, atol));
    const fb = bn.batchNormBackward(x, dy, [n, c, h, wd], { weight: layer.weight, training: true, mean: tr.batchMean, invstd: tr.batchInvstd, eps });
    worst = Math.max(worst, check(`${dtype} batchNormBackward dx`, fb.dx, g.dx, red, red));

    // Inference, and folding into a convolution: W' = W * scale, b' = b * scale + shift.
    layer.eval();
    const yi = layer.forward(x, [n, c, h, wd]);
    worst = Math.max(worst, check(`${dtype} inference y`, yi, ref.forwardInference(x, d, w, b, rm, rv, eps), rtol, atol));
    const { scale, shift } = ref.scaleShift(rm, rv, eps, w, b);
    const cin = 2, k = 3;
    const convW = fill(T, c * cin * k * k, rand, 0, 1), convB = fill(T, c, rand, 0, 1);
    const folded = layer.foldIntoConv(convW, [c, cin, k, k], convB);
    const fwRef = Float64Array.from(convW, (v, j) => v * scale[Math.floor(j / (cin * k * k))]);
    const fbRef = Float64Array.from(convB, (v, ch) => v * scale[ch] + shift[ch]);
    worst = Math.max(worst, check(`${dtype} folded conv weight`, folded.weight, fwRef, rtol, atol));
    worst = Math.max(worst, check(`${dtype} folded conv bias`, folded.bias, fbRef, rtol, atol));
    log.push(`${dtype} worst error/tolerance ${worst.toPrecision(2)}`);
  }

  // ---- a C++ exception from the binary becomes a JS error with a code ----
  const raw = require(info.binding.file);
  let thrown;
  try { raw.setSimdLevel('no-such-level'); } catch (e) { thrown = e; }
  if (!(thrown instanceof Error) || typeof thrown.code !== 'string') {
    throw new Error(`the addon's setSimdLevel('no-such-level') should throw an Error with a code, got ${String(thrown)}`);
  }

  console.log(`smoke ok (${entry}): simd ${bn.simdLevel()} [${bn.supportedSimdLevels().join(',')}], ` +
    `binding ${info.binding.kind} ${info.binding.file}, arch ${info.arch}, openmp ${info.openmp}, threads ${info.numThreads}; ${log.join('; ')}`);
}

module.exports = { run };
