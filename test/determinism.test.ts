// The same bits for any thread count: every output of forward training (y, saved and float64
// statistics, running statistics), inference and backward (dx, gradWeight, gradBias) hashes the
// same for 1, 2, 3, 4, 7 and 16 threads, sync and async, on shapes whose partition over threads
// differs (fused channels, groups of short maps, waves, pipelined waves, long runs cut in pieces,
// rows and channels-last). Golden hashes at the scalar SIMD level catch drift between versions.
import { expect } from 'chai';
import { createHash } from 'crypto';
import * as bn from '../lib';

type DType = 'float32' | 'float64';
type Arr = Float32Array | Float64Array;

interface Case {
  shape: number[];
  channelsLast?: boolean;
  why: string;
}

const THREADS = [1, 2, 3, 4, 7, 16];

const CASES: Case[] = [
  { shape: [8, 3, 61, 67], why: 'few channels: waves, pipelined, parts differ per thread count' },
  { shape: [3, 1024, 7, 7], why: 'short maps, many channels: groups whose size depends on the threads' },
  { shape: [64, 32, 7, 7], why: 'short maps, many chunks per channel: groups or single channels' },
  { shape: [512, 4, 196], why: 'short runs, whole channels that never group: pipelined' },
  { shape: [2, 3, 100, 100], why: 'long runs cut in pieces, waves' },
  { shape: [4096, 37], why: '[N, C]: rows layout' },
  { shape: [32, 64, 56, 56], why: 'large: whole channels per thread, pipelined' },
  { shape: [1, 16, 128, 128], channelsLast: true, why: 'N = 1, channels-last: rows layout' },
];

const product = (s: number[]): number => s.reduce((a, b) => a * b, 1);

/** A stable pseudo-random fill (its own generator: golden hashes must not move with helpers). */
function fill(n: number, dtype: DType, seed: number, offset: number, scale: number): Arr {
  const a = dtype === 'float64' ? new Float64Array(n) : new Float32Array(n);
  let s = (seed * 2654435761) >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    a[i] = Math.fround(offset + scale * (s / 4294967296 - 0.5));
  }
  return a;
}

function sha(a: Arr): string {
  return createHash('sha256').update(Buffer.from(a.buffer, a.byteOffset, a.byteLength)).digest('hex');
}

interface Inputs {
  x: Arr;
  dy: Arr;
  weight: Arr;
  bias: Arr;
  runningMean: Arr;
  runningVar: Arr;
}

function inputs(c: Case, dtype: DType): Inputs {
  const n = product(c.shape);
  const C = c.shape[1];
  return {
    x: fill(n, dtype, 1, 3.25, 4),  // a mean far from 0: the shifts and chunk sums matter
    dy: fill(n, dtype, 2, 0.125, 2),
    weight: fill(C, dtype, 3, 1, 1),
    bias: fill(C, dtype, 4, 0, 1),
    runningMean: fill(C, dtype, 5, 0, 0.5),
    runningVar: fill(C, dtype, 6, 1, 0.5),
  };
}

/** Every output of the three ops, hashed, for the current thread count. */
async function hashes(c: Case, inp: Inputs, async: boolean): Promise<Record<string, string>> {
  const channelsLast = c.channelsLast ?? false;
  const rm = inp.runningMean.slice();
  const rv = inp.runningVar.slice();
  const topts = { weight: inp.weight, bias: inp.bias, runningMean: rm, runningVar: rv, momentum: 0.1, channelsLast };
  const fwd = async
    ? await bn.batchNormTrainingAsync(inp.x, c.shape, topts)
    : bn.batchNormTraining(inp.x, c.shape, topts);
  const iopts = { weight: inp.weight, bias: inp.bias, runningMean: inp.runningMean, runningVar: inp.runningVar, channelsLast };
  const inf = async ? await bn.batchNormInferenceAsync(inp.x, c.shape, iopts) : bn.batchNormInference(inp.x, c.shape, iopts);
  // Backward from this call's own statistics: they are part of what must not change.
  const bopts = { weight: inp.weight, training: true, mean: fwd.batchMean, invstd: fwd.batchInvstd, channelsLast };
  const bwd = async
    ? await bn.batchNormBackwardAsync(inp.x, inp.dy, c.shape, bopts)
    : bn.batchNormBackward(inp.x, inp.dy, c.shape, bopts);
  const eopts = { weight: inp.weight, training: false, runningMean: inp.runningMean, runningVar: inp.runningVar, channelsLast };
  const ev = async
    ? await bn.batchNormBackwardAsync(inp.x, inp.dy, c.shape, eopts)
    : bn.batchNormBackward(inp.x, inp.dy, c.shape, eopts);
  return {
    y: sha(fwd.y),
    saveMean: sha(fwd.saveMean),
    saveInvstd: sha(fwd.saveInvstd),
    batchMean: sha(fwd.batchMean),
    batchInvstd: sha(fwd.batchInvstd),
    runningMean: sha(rm),
    runningVar: sha(rv),
    inference: sha(inf),
    dx: sha(bwd.dx),
    gradWeight: sha(bwd.gradWeight),
    gradBias: sha(bwd.gradBias),
    evalDx: sha(ev.dx),
    evalGradWeight: sha(ev.gradWeight),
    evalGradBias: sha(ev.gradBias),
  };
}

const label = (c: Case): string => `[${c.shape.join(', ')}]${c.channelsLast ? ' channels-last' : ''}`;

describe('determinism: the same bits for any thread count', function () {
  this.timeout(300000);
  const originalThreads = bn.getNumThreads();
  const originalSimd = bn.simdLevel();
  after(() => {
    bn.setNumThreads(originalThreads);
    bn.setSimdLevel(originalSimd);
  });

  // Every SIMD level this machine runs (each has its own kernels); the large shape at the
  // level chosen at load only, to keep the suite short.
  for (const level of bn.supportedSimdLevels()) {
    const active = level === originalSimd;
    for (const dtype of ['float32', 'float64'] as DType[]) {
      for (const c of CASES) {
        if (!active && product(c.shape) > 1 << 20) continue;
        it(`${level} ${dtype} ${label(c)} (${c.why}): threads ${THREADS.join(', ')}, sync and async`, async function () {
          bn.setSimdLevel(level);
          const inp = inputs(c, dtype);
          bn.setNumThreads(1);
          const want = await hashes(c, inp, false);
          for (const nt of THREADS) {
            bn.setNumThreads(nt);
            for (const async of [false, true]) {
              const got = await hashes(c, inp, async);
              expect(got, `${nt} threads, ${async ? 'async' : 'sync'}`).to.deep.equal(want);
            }
          }
        });
      }
    }
  }

  it('every output is a real result (not NaN-filled, not all equal)', async function () {
    // Guards the hashes above against comparing two equally broken outputs.
    const c = CASES[0];
    const inp = inputs(c, 'float32');
    bn.setSimdLevel(originalSimd);
    bn.setNumThreads(3);
    const fwd = bn.batchNormTraining(inp.x, c.shape, { weight: inp.weight, bias: inp.bias });
    const bwd = bn.batchNormBackward(inp.x, inp.dy, c.shape, {
      weight: inp.weight, training: true, mean: fwd.batchMean, invstd: fwd.batchInvstd,
    });
    for (const [name, a] of [['y', fwd.y], ['dx', bwd.dx], ['gradWeight', bwd.gradWeight], ['batchInvstd', fwd.batchInvstd]] as const) {
      expect(Array.from(a).every(Number.isFinite), `${name} finite`).to.equal(true);
      expect(new Set(Array.from(a)).size, `${name} distinct values`).to.be.greaterThan(1);
    }
    // The mean of channel 0 from the float64 definition, to float32-sum accuracy.
    const [N, C, H, W] = c.shape;
    let sum = 0;
    for (let n = 0; n < N; n++) for (let i = 0; i < H * W; i++) sum += inp.x[(n * C) * H * W + i];
    expect(fwd.batchMean[0]).to.be.closeTo(sum / (N * H * W), 1e-5);
  });
});

// Golden hashes, at the scalar SIMD level (BATCHNORM_SIMD=scalar / setSimdLevel('scalar')) on
// x86-64: other SIMD levels round differently (wider partial sums, FMA), and other architectures
// may contract differently. A change here is a change of the numbers users get: update on purpose.
const GOLDEN: Record<string, Record<string, string>> = {
  'float32 0': {
    y: 'fa043e84ce5506c9a5aca4c464564dbde6363454afa9740d1cbb3c65f4f1a825',
    saveMean: '4296ad9acc685c98f44548c557a602a9c0d8631c3b0ef007f87db53c4c3be9dc',
    saveInvstd: '7c83c6f1d65bc1b2a846855f99b50d8277cd4e50c41e4d13d3254ce01d3e2b27',
    batchMean: 'c25c319e793e82310c0ab125d3481c3c562eb2ee9f13795daf8f946bc1fe73a5',
    batchInvstd: 'a31f918ebdb2726e477f1013bd94c0794a9bf1ab1347af9e35fccc324649013a',
    runningMean: '7c23231af0bc6cad3714a73d3d399957461773956dc9f57569230cebb9a112d9',
    runningVar: '766fc60125d341ea411444560694ea09bb7e18c32eba36d1457bb3b4ff2cd4c3',
    inference: '30155faea5b3eb4bcd0c8ca286f21b340174c9d18993831f38ec2e2ab9b64d2e',
    dx: 'a6a93829ee214d62f93a12c852a24c79e75f68fc7e2eee81d96db859e06ccd73',
    gradWeight: 'ec690c3d912694d74fde07325aec0528303be9bed380fdd49d3825e3bc285e9d',
    gradBias: '799855841aa87c65d79f0364e1412c3597681850164932b2f917915e364b45e5',
    evalDx: '3a2d4a4e802653adebcca2f1180b2fda2f3169438aa6369845b1b246b5a980e9',
    evalGradWeight: 'f13a5e1b32383803b5e0d2fd8156a82e4b8f69550b7d0ed0cc7dcec1d6c2e909',
    evalGradBias: '799855841aa87c65d79f0364e1412c3597681850164932b2f917915e364b45e5',
  },
  'float64 1': {
    y: 'c7a0273b317de73616e4491060a1e6688598155200b7d85b5fde582d23884aa2',
    saveMean: '998b9e2b1d52657d3df6aaa06cbdfab3a12277aea978d349d91fc83dc78ece28',
    saveInvstd: 'f4dcc17fef9caa03977d8372f21342e80175672148811da788da51bfe6ad17c0',
    batchMean: '998b9e2b1d52657d3df6aaa06cbdfab3a12277aea978d349d91fc83dc78ece28',
    batchInvstd: 'f4dcc17fef9caa03977d8372f21342e80175672148811da788da51bfe6ad17c0',
    runningMean: '0bf20347848a3ec1c20339af2ba6d6018c09f12b1fa700143b499c9a32058710',
    runningVar: 'e1a25900d08564bd2c73f9597ae6917945262bb5d6ca930633ebee9e15201e54',
    inference: '22125a7915ce4dd8aa83fd65de94fea65a4259fc1117961eeb0bda18f6a9e6b1',
    dx: '34393bfecdfd0a35d1dab449a2341b0971e22006239f5595cf5923c384b7b771',
    gradWeight: '1834f22771cee21889c2b5825650c8d2027ae77b0ea247a12907612a3e445fce',
    gradBias: '75d0c3438c978abced0b963c5c9dc3cd680b68bfc1a8bd48250c102f9529b245',
    evalDx: 'f8335825f8794e8cada6d7795444cee93a8286c4f74d18964117874ec7aa69ef',
    evalGradWeight: 'e0fc643fd2e8856e3a835e08d1ecd4f9df0d6bd026a97a512cdb8f271b3e0b50',
    evalGradBias: '75d0c3438c978abced0b963c5c9dc3cd680b68bfc1a8bd48250c102f9529b245',
  },
  'float32 4': {
    y: 'd263cad7559d659b28bc5030f5c265ce2decdd34399a5854bfd4cf79f7c02b98',
    saveMean: '2ab160237c8255490b7495b8864192a722d54b4fe9258df5392b541751dc20fa',
    saveInvstd: 'd026721c293cd0b7a5cb65e35a61103f0f601b7bedf6992cbf1926fdaf311d38',
    batchMean: 'a74b1f738c90054533a36d579254ad5defa434ca3cf260c33efde6c523f00043',
    batchInvstd: '6343800cb09cce173d62780cad7c903c8f930ca949c5dc148c6b7807561fb222',
    runningMean: '57fa2144efcc5c0e30245af7345dbdbab2f8e2dc37c70b78deda96db6a459ed4',
    runningVar: '123a0f18e8663b5303f9fdaee7611df3b52370e281d4182e02af7ffb891a68be',
    inference: 'f1dfc96d29f4f93cf6fb87dd332f2b8f192b9e88dde1851f3fb104f0fa687657',
    dx: '808e197f8fef9d6206124a37937e38dc8883bb75c9b626141c912c3d7d38c641',
    gradWeight: '7c258ac9add6f5bc1cd9016c55ede69e14e84d82797d86cb5f250172e7fabf1f',
    gradBias: '9b5c47d2b21f3891d17b60f3d9f8f1d01a3d9b89a9089a3b2862af3f81d64d89',
    evalDx: '1e944768895e8df24f38f6788a87adc0aa662fafaad524a568a8fbe6d2f7aafc',
    evalGradWeight: 'cb1e4410b58868ec64868115b4428fbd47439ca5380e8c173a5d2721a273f1a9',
    evalGradBias: '9b5c47d2b21f3891d17b60f3d9f8f1d01a3d9b89a9089a3b2862af3f81d64d89',
  },
  'float32 5': {
    y: 'e1a067a043272a15c3d5f13d0f1d02d80d6603821f70a915521aedaf32c6e376',
    saveMean: '69a2180e6edea641f74223c280a18317b2f7792aa6ff3950b96a35462287d6bd',
    saveInvstd: '0b07782a15b8619621f460ad2222f06314f6c057ec2f8617025a2d2e26e9f25f',
    batchMean: 'fddba76d14c65ff29b6f89faac02a8c280c50a15e87d0818a4f4d2ea693857f8',
    batchInvstd: '6792b86989e0a9e840c348beca4f4910f2ba75e75600fcee90ce45cd037519b3',
    runningMean: 'ffdce6bce39cd28e6080c9317adbb6defd1a735f5b1fdd57697b4beaa546dc86',
    runningVar: 'ee79bc31e4c2a8ff2c8613989b372f1a2ca6c6fd1e000405f6c8be75ae10293f',
    inference: 'd5ef250c6e6b77ffe25129b5d60a9c2b8061fb8bc56807456d81dc06507931b9',
    dx: 'cd18f5ef2b5ec9b2fb919375d5c5ff89de915bd32292c6b3a1bb44f1aeb2d28d',
    gradWeight: '6fc4a31312863542260e350f7db99427f3ffe1ac1ac1eba46766ffd5cb089bbd',
    gradBias: '1acc516ba1dfd3f9fc0415c06459754068f90a9d707e96acf30d092632cb3ecf',
    evalDx: '147bad7e40a1a2a95c8125c4e506667005336885d2377027481625e1126fb982',
    evalGradWeight: 'b34252cd7e4e46a1058d4055f10dd38cf142dbc259e1f02e4f83248b5e54983d',
    evalGradBias: '1acc516ba1dfd3f9fc0415c06459754068f90a9d707e96acf30d092632cb3ecf',
  },
  'float64 7': {
    y: '8983a3bdd16e62e0e67fe1014768be740d02870efdf93585790c5de5002a9e6b',
    saveMean: 'b2e1f31e7e04b85e1be6d8ed6c5192bcaa75c317098078ae9cf802661ddc4a17',
    saveInvstd: 'abff257e33bc01ce069980f11e1729aa1c629d004c4ce38ecdaf9a1413148507',
    batchMean: 'b2e1f31e7e04b85e1be6d8ed6c5192bcaa75c317098078ae9cf802661ddc4a17',
    batchInvstd: 'abff257e33bc01ce069980f11e1729aa1c629d004c4ce38ecdaf9a1413148507',
    runningMean: '9b141fad464196668550e09cff48940e5e5bf9aa45ddd48983f74a8378ff70d7',
    runningVar: '5c12a2fa2c4f675986d455f8c5b5fdcea58c25297fe4a5f9c13bb36c7582fd1e',
    inference: '1d3de40153bc347e9fe66be35fd475d6aa82d9a7abe1620bcb0ad93e4ad6cbff',
    dx: '06cafdfdf2bb7e4ae15677033dcf88470435ab9b0dff10aa3e2637cca65a47a3',
    gradWeight: '6cc03dd266d976b7c6c5994356126720fbd202a775e48e37bd42c9412dc0a7ae',
    gradBias: '132c5c3411c97f9a6bff34a5dc71082ae9fece1f5e334a83465c66ad856caebe',
    evalDx: '2f807fa1cbb794157091eac7bf478f58130d0433c983d1004565d05a77d57260',
    evalGradWeight: '0ecf30a3c8031cb75e9f7203df55b900033bf18cdbadd8ab1c3646f0352dcf18',
    evalGradBias: '132c5c3411c97f9a6bff34a5dc71082ae9fece1f5e334a83465c66ad856caebe',
  },
};

describe('determinism: golden hashes (scalar level, x86-64)', function () {
  this.timeout(120000);
  const onX64 = process.arch === 'x64';
  const originalThreads = bn.getNumThreads();
  const originalSimd = bn.simdLevel();
  before(function () {
    if (onX64) bn.setSimdLevel('scalar');
  });
  after(() => {
    bn.setNumThreads(originalThreads);
    bn.setSimdLevel(originalSimd);
  });
  for (const key of Object.keys(GOLDEN)) {
    const [dtype, idx] = key.split(' ');  // 'dtype index-in-CASES'
    const c = CASES[Number(idx)];
    const title = `${dtype} ${label(c)} matches the committed hashes at 1 and 7 threads`;
    if (!onX64) {
      // The goldens pin x86-64's scalar kernels (GCC's code for that ISA); another architecture's
      // scalar code may round differently, which issue 17 allows. CI runs on x86-64, where every
      // golden test runs; this file is not in the arm64 slice. The skip shows as pending, by name.
      it.skip(`${title} (golden hashes are for x86-64; this is ${process.arch})`);
      continue;
    }
    it(title, async function () {
      const inp = inputs(c, dtype as DType);
      for (const nt of [1, 7]) {
        bn.setNumThreads(nt);
        const got = await hashes(c, inp, false);
        // BN_PRINT_GOLDEN=1 prints the hashes to commit after a deliberate change of the numbers.
        if (process.env.BN_PRINT_GOLDEN) console.log(`  '${key}': ${JSON.stringify(got, null, 2)},`);
        expect(got, `${nt} threads`).to.deep.equal(GOLDEN[key]);
      }
    });
  }
});
