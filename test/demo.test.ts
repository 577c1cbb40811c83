// The MNIST demo (examples/mnist, `npm run demo`): a short run of the paper's section 4.1
// experiment must show BN ahead of the plain network, the folded BN network must agree with the
// unfolded one, and the Figure 1 SVG must be written and well-formed. Also: the example's own
// network code against float64 references and finite differences.
import { expect } from 'chai';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as zlib from 'zlib';
import { figure1Svg, niceTicks, writeFigure1 } from '../examples/mnist/chart';
import { Dataset, DataUnavailableError, loadFashionMnist, loadMnistPackage } from '../examples/mnist/data';
import { evaluationSteps, ExperimentResult, makeInitialWeights, percentile, runExperiment } from '../examples/mnist/experiment';
import { gemm, SparseMatrix, sparseTimesDense } from '../examples/mnist/linalg';
import { accuracyTable, parseArgs, sweepTable, UsageError } from '../examples/mnist/main';
import { argmaxRows, initialWeights, Mlp, softmaxCrossEntropy } from '../examples/mnist/network';
import { Rng } from '../examples/mnist/rng';
import { forwardInference } from './helpers/reference';

// ---------------------------------------------------------------------------------------------
// A minimal XML well-formedness check (no dependency): every '<' opens a valid tag or the
// declaration, tags balance, one root, attributes unique and quoted, text has no stray '&'.
interface XmlElement {
  name: string;
  attrs: Record<string, string>;
  children: XmlElement[];
  parent: XmlElement | null;
}

function parseXml(text: string): XmlElement {
  let pos = 0;
  const decl = /^<\?xml[^?]*\?>\s*/.exec(text);
  if (decl) pos = decl[0].length;
  const root: XmlElement = { name: '#document', attrs: {}, children: [], parent: null };
  let cur = root;
  const tagRe = /<(\/?)([A-Za-z_][\w:.-]*)((?:\s+[A-Za-z_][\w:.-]*\s*=\s*"[^"<]*")*)\s*(\/?)>/y;
  const attrRe = /([A-Za-z_][\w:.-]*)\s*=\s*"([^"<]*)"/g;
  const checkText = (s: string) => {
    const amp = /&(?!(?:amp|lt|gt|quot|apos|#\d+|#x[0-9a-fA-F]+);)/.exec(s);
    if (amp) throw new Error(`bare '&' at ${pos + amp.index}`);
    if (cur === root && s.trim() !== '') throw new Error(`text outside the root element: ${JSON.stringify(s.slice(0, 40))}`);
  };
  while (pos < text.length) {
    const lt = text.indexOf('<', pos);
    if (lt < 0) {
      checkText(text.slice(pos));
      break;
    }
    checkText(text.slice(pos, lt));
    tagRe.lastIndex = lt;
    const m = tagRe.exec(text);
    if (!m) throw new Error(`malformed tag at ${lt}: ${JSON.stringify(text.slice(lt, lt + 60))}`);
    const [whole, closing, name, attrText, selfClosing] = m;
    if (closing) {
      if (attrText.trim() || selfClosing) throw new Error(`malformed closing tag ${whole}`);
      if (cur.name !== name) throw new Error(`</${name}> closes <${cur.name}> at ${lt}`);
      cur = cur.parent!;
    } else {
      const attrs: Record<string, string> = {};
      for (const a of attrText.matchAll(attrRe)) {
        if (a[1] in attrs) throw new Error(`duplicate attribute ${a[1]} in <${name}>`);
        attrs[a[1]] = a[2];
      }
      if (cur === root && root.children.length) throw new Error(`second root element <${name}>`);
      const el: XmlElement = { name, attrs, children: [], parent: cur };
      cur.children.push(el);
      if (!selfClosing) cur = el;
    }
    pos = lt + whole.length;
  }
  if (cur !== root) throw new Error(`<${cur.name}> is never closed`);
  if (root.children.length !== 1) throw new Error('no root element');
  return root.children[0];
}

function findAll(el: XmlElement, pred: (e: XmlElement) => boolean, out: XmlElement[] = []): XmlElement[] {
  if (pred(el)) out.push(el);
  for (const c of el.children) findAll(c, pred, out);
  return out;
}

/** Checks the figure: root <svg>, three panels, polylines with finite coordinates inside the canvas. */
function checkFigure(svg: string): { panels: XmlElement[]; width: number; height: number } {
  const root = parseXml(svg);
  expect(root.name).to.equal('svg');
  expect(root.attrs.xmlns).to.equal('http://www.w3.org/2000/svg');
  const width = Number(root.attrs.width);
  const height = Number(root.attrs.height);
  expect(width).to.be.greaterThan(0);
  expect(height).to.be.greaterThan(0);
  const panels = findAll(root, (e) => e.name === 'g' && e.attrs.class === 'panel');
  expect(panels.map((p) => p.attrs.id)).to.deep.equal(['panel-accuracy', 'panel-without-bn', 'panel-with-bn']);
  for (const p of panels) {
    const lines = findAll(p, (e) => e.name === 'polyline');
    expect(lines.length, `polylines in ${p.attrs.id}`).to.be.at.least(p.attrs.id === 'panel-accuracy' ? 2 : 3);
    for (const l of lines) {
      const pts = l.attrs.points.trim().split(/\s+/);
      expect(pts.length).to.be.at.least(2);
      for (const pt of pts) {
        const xy = pt.split(',');
        expect(xy.length, pt).to.equal(2);
        const [x, y] = xy.map(Number);
        expect(Number.isFinite(x) && Number.isFinite(y), `point ${pt}`).to.equal(true);
        expect(x).to.be.within(0, width);
        expect(y).to.be.within(0, height);
      }
    }
    const texts = findAll(p, (e) => e.name === 'text');
    expect(texts.length, `labels in ${p.attrs.id}`).to.be.at.least(6);
  }
  return { panels, width, height };
}

// ---------------------------------------------------------------------------------------------

function naiveProduct(M: number, N: number, K: number, a: (m: number, k: number) => number, b: (k: number, n: number) => number): Float64Array {
  const c = new Float64Array(M * N);
  for (let m = 0; m < M; m++) for (let n = 0; n < N; n++) {
    let s = 0;
    for (let k = 0; k < K; k++) s += a(m, k) * b(k, n);
    c[m * N + n] = s;
  }
  return c;
}

function randomArray(rng: Rng, n: number, zeroFraction = 0): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = rng.uniform() < zeroFraction ? 0 : rng.normal();
  return a;
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).to.equal(b.length);
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - b[i]));
  return d;
}

const sigmoid = (v: number) => 1 / (1 + Math.exp(-v));

/** Float64 forward of the network straight from its parameters (BN with running statistics). */
function referenceLogits(net: Mlp, x: Float32Array, rows: number): Float64Array {
  const L = net.sizes.length - 1;
  let h = Float64Array.from(x.subarray(0, rows * net.sizes[0]));
  for (let l = 0; l < L; l++) {
    const I = net.sizes[l];
    const O = net.sizes[l + 1];
    const d = net.dense[l];
    const z = new Float64Array(rows * O);
    for (let r = 0; r < rows; r++) for (let o = 0; o < O; o++) {
      let s = d.bias ? d.bias[o] : 0;
      for (let i = 0; i < I; i++) s += h[r * I + i] * d.wt[i * O + o];
      z[r * O + o] = s;
    }
    if (l === L - 1) return z;
    const bn = net.batchNorm ? net.bns[l] : null;
    const zn = bn ? forwardInference(z, { n: rows, c: O, s: 1 }, bn.weight, bn.bias, bn.runningMean!, bn.runningVar!, bn.eps) : z;
    h = zn.map(sigmoid);
  }
  throw new Error('unreachable');
}

describe('MNIST demo (examples/mnist)', function () {
  this.timeout(120000);
  let data: Dataset;

  before(() => {
    data = loadMnistPackage();
  });

  describe('data', () => {
    it('splits the 10,000 digits of the mnist package into 8,000 training and 2,000 test images in [0, 1]', () => {
      expect(data.nTrain).to.equal(8000);
      expect(data.nTest).to.equal(2000);
      expect(data.trainX.length).to.equal(8000 * 784);
      expect(data.testX.length).to.equal(2000 * 784);
      let lo = Infinity;
      let hi = -Infinity;
      let zeros = 0;
      for (const v of data.trainX) {
        lo = Math.min(lo, v);
        hi = Math.max(hi, v);
        if (v === 0) zeros++;
      }
      expect(lo).to.equal(0);
      expect(hi).to.equal(1);
      expect(zeros / data.trainX.length).to.be.within(0.6, 0.95); // real digits: mostly background
      const counts = new Array(10).fill(0);
      for (const y of data.testY) counts[y]++;
      for (const c of counts) expect(c).to.be.within(120, 290); // every class present, roughly 10% each
      const again = loadMnistPackage();
      expect(Buffer.from(again.testY).equals(Buffer.from(data.testY))).to.equal(true);
      expect(maxAbsDiff(again.testX.subarray(0, 7840), data.testX.subarray(0, 7840))).to.equal(0);
    });

    it('reads Fashion-MNIST idx files (gzipped) and explains how to get them when they are missing', () => {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bn-fashion-'));
      try {
        const idx = (magic: number, dims: number[], bytes: number[]) => {
          const head = Buffer.alloc(4 + 4 * dims.length);
          head.writeUInt32BE(magic, 0);
          dims.forEach((d, i) => head.writeUInt32BE(d, 4 + 4 * i));
          return zlib.gzipSync(Buffer.concat([head, Buffer.from(bytes)]));
        };
        const img = (n: number) => Array.from({ length: n * 784 }, (_, i) => (i * 7) % 256);
        fs.writeFileSync(path.join(dir, 'train-images-idx3-ubyte.gz'), idx(0x803, [3, 28, 28], img(3)));
        fs.writeFileSync(path.join(dir, 'train-labels-idx1-ubyte.gz'), idx(0x801, [3], [9, 0, 4]));
        fs.writeFileSync(path.join(dir, 't10k-images-idx3-ubyte.gz'), idx(0x803, [2, 28, 28], img(2)));
        fs.writeFileSync(path.join(dir, 't10k-labels-idx1-ubyte.gz'), idx(0x801, [2], [1, 2]));
        const f = loadFashionMnist(dir);
        expect([f.nTrain, f.nTest]).to.deep.equal([3, 2]);
        expect(Array.from(f.trainY)).to.deep.equal([9, 0, 4]);
        expect(f.trainX[785]).to.be.closeTo(((785 * 7) % 256) / 255, 1e-7);
        fs.rmSync(path.join(dir, 't10k-labels-idx1-ubyte.gz'));
        expect(() => loadFashionMnist(dir)).to.throw(DataUnavailableError, /t10k-labels-idx1-ubyte.*apt-get install dataset-fashion-mnist/s)
          .with.property('code', 'ERR_DEMO_DATA_UNAVAILABLE');
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    });
  });

  describe('network code', () => {
    it('gemm and the sparse products match a float64 reference for every stride pattern used', () => {
      const rng = new Rng(7);
      for (const [M, N, K] of [[1, 1, 1], [3, 5, 2], [4, 4, 4], [9, 10, 7], [13, 6, 17]]) {
        const A = randomArray(rng, M * K, 0.3);
        const B = randomArray(rng, K * N);
        const C = new Float32Array(M * N);
        // C = A B
        gemm(M, N, K, A, 0, K, 1, B, 0, N, 1, C, N, false);
        expect(maxAbsDiff(C, naiveProduct(M, N, K, (m, k) => A[m * K + k], (k, n) => B[k * N + n]))).to.be.below(1e-5);
        // C += A B^T with B stored [N, K]
        const Bt = randomArray(rng, N * K);
        const C2 = randomArray(rng, M * N);
        const expected = naiveProduct(M, N, K, (m, k) => A[m * K + k], (k, n) => Bt[n * K + k]).map((v, i) => v + C2[i]);
        gemm(M, N, K, A, 0, K, 1, Bt, 0, 1, K, C2, N, true);
        expect(maxAbsDiff(C2, expected)).to.be.below(1e-5);
        // C = A^T B with A stored [K, M]
        const At = randomArray(rng, K * M, 0.3);
        const C3 = new Float32Array(M * N);
        gemm(M, N, K, At, 0, 1, M, B, 0, N, 1, C3, N, false);
        expect(maxAbsDiff(C3, naiveProduct(M, N, K, (m, k) => At[k * M + m], (k, n) => B[k * N + n]))).to.be.below(1e-5);
        // sparse: CSR(A) B and CSC(At)^T... i.e. At^T B through the columns of At
        const S = new Float32Array(M * N);
        sparseTimesDense(new SparseMatrix().fromRows(A, M, K), M, B, N, S, false);
        expect(maxAbsDiff(S, naiveProduct(M, N, K, (m, k) => A[m * K + k], (k, n) => B[k * N + n]))).to.be.below(1e-5);
        const S2 = new Float32Array(M * N).fill(1);
        sparseTimesDense(new SparseMatrix().fromColumns(At, K, M), M, B, N, S2, true);
        expect(maxAbsDiff(S2, naiveProduct(M, N, K, (m, k) => At[k * M + m], (k, n) => B[k * N + n]).map((v) => v + 1))).to.be.below(1e-5);
      }
    });

    for (const withBn of [false, true]) {
      it(`backpropagation ${withBn ? 'with' : 'without'} BN matches central finite differences of the loss`, () => {
        const rng = new Rng(withBn ? 11 : 12);
        const sizes = [9, 7, 6, 5, 4];
        const net = new Mlp(initialWeights(rng, sizes, 0.6), withBn);
        for (const d of net.dense) if (d.bias) for (let o = 0; o < d.bias.length; o++) d.bias[o] = 0.3 * rng.normal();
        for (const bn of net.bns) for (let c = 0; c < bn.numFeatures; c++) {
          bn.weight![c] = 1 + 0.3 * rng.normal();
          bn.bias![c] = 0.3 * rng.normal();
        }
        const rows = 8;
        const x = randomArray(rng, rows * sizes[0], 0.4); // zeros exercise the sparse first layer
        const y = Uint8Array.from({ length: rows }, () => rng.int(0, sizes[sizes.length - 1] - 1));
        const classes = sizes[sizes.length - 1];
        const loss = () => {
          net.setTraining(true);
          return softmaxCrossEntropy(net.forward(x, rows), y, 0, rows, classes, null);
        };
        net.setTraining(true);
        softmaxCrossEntropy(net.forward(x, rows), y, 0, rows, classes, net.dlogits(rows));
        net.backward(x, rows);
        const params: Array<{ name: string; p: Float32Array; g: Float32Array }> = [];
        net.dense.forEach((d, l) => {
          params.push({ name: `W${l}`, p: d.wt, g: Float32Array.from(d.gradWt) });
          if (d.bias) params.push({ name: `b${l}`, p: d.bias, g: Float32Array.from(d.gradBias!) });
        });
        net.bns.forEach((bn, l) => {
          params.push({ name: `gamma${l}`, p: bn.weight as Float32Array, g: Float32Array.from(bn.gradWeight!) });
          params.push({ name: `beta${l}`, p: bn.bias as Float32Array, g: Float32Array.from(bn.gradBias!) });
        });
        expect(params.length).to.equal(withBn ? 4 + 1 + 6 : 8);
        const h = 1e-2;
        let checked = 0;
        for (const { name, p, g } of params) {
          for (let k = 0; k < p.length; k += Math.max(1, Math.floor(p.length / 7))) {
            const v = p[k];
            p[k] = v + h;
            const up = loss();
            p[k] = v - h;
            const down = loss();
            p[k] = v;
            const numeric = (up - down) / (2 * h);
            expect(Math.abs(numeric - g[k]), `${name}[${k}]: numeric ${numeric}, backprop ${g[k]}`).to.be.below(2e-3 + 2e-2 * Math.abs(numeric));
            checked++;
          }
        }
        expect(checked).to.be.above(40);
      });
    }

    it('the BN network in evaluation mode and its folded form match a float64 forward from the parameters', () => {
      const net = new Mlp(makeInitialWeights(3, [100, 100, 100], 0.1), true);
      const rng = new Rng(5);
      const batch = new Float32Array(60 * 784);
      const labels = new Uint8Array(60);
      for (let step = 0; step < 40; step++) {
        for (let b = 0; b < 60; b++) {
          const j = rng.int(0, data.nTrain - 1);
          batch.set(data.trainX.subarray(j * 784, (j + 1) * 784), b * 784);
          labels[b] = data.trainY[j];
        }
        net.trainStep(batch, labels, 0, 60, 0.5);
      }
      // the running statistics moved away from their initial (0, 1): BN is not the identity
      expect(Math.max(...Array.from(net.bns[0].runningMean!, Math.abs))).to.be.above(0.05);
      const rows = 200;
      const x = data.testX.subarray(0, rows * 784);
      const ref = referenceLogits(net, x, rows);
      net.setTraining(false);
      const evalLogits = Float32Array.from(net.forward(x, rows));
      const folded = net.folded();
      expect(folded.batchNorm).to.equal(false);
      const foldedLogits = Float32Array.from(folded.forward(x, rows));
      const scale = Math.max(1, ...Array.from(ref, Math.abs));
      expect(maxAbsDiff(evalLogits, ref) / scale).to.be.below(1e-5);
      expect(maxAbsDiff(foldedLogits, ref) / scale).to.be.below(1e-5);
      const pe = new Int32Array(rows);
      const pf = new Int32Array(rows);
      argmaxRows(evalLogits, rows, 10, pe);
      argmaxRows(foldedLogits, rows, 10, pf);
      expect(Array.from(pf)).to.deep.equal(Array.from(pe));
    });

    it('percentile interpolates between ranks; evaluation steps are evenly spaced and include 0 and the end', () => {
      const s = [1, 2, 3, 4, 5];
      expect(percentile(s, 50)).to.equal(3);
      expect(percentile(s, 15)).to.be.closeTo(1.6, 1e-12);
      expect(percentile(s, 85)).to.be.closeTo(4.4, 1e-12);
      expect(percentile([7], 85)).to.equal(7);
      expect(evaluationSteps(300, 3)).to.deep.equal([0, 100, 200, 300]);
      expect(evaluationSteps(5, 10)).to.deep.equal([0, 1, 2, 3, 4, 5]);
      expect(niceTicks(0, 1, 5)).to.deep.equal([0, 0.2, 0.4, 0.6, 0.8, 1]);
    });

    it('parses the command line and rejects bad options with a UsageError', () => {
      const d = parseArgs([]);
      expect(d.out).to.equal('demo-out');
      expect(d.data).to.equal('mnist');
      const o = parseArgs(['--steps', '500', '--lr=1.5', '--seed', '4', '--sweep', '0.1,2', '--out', '/tmp/x', '--help']);
      expect([o.steps, o.lr, o.seed, o.out, o.help]).to.deep.equal([500, 1.5, 4, '/tmp/x', true]);
      expect(o.sweepLrs).to.deep.equal([0.1, 2]);
      expect(parseArgs(['--sweep', 'none']).sweepLrs).to.deep.equal([]);
      expect(() => parseArgs(['--steps', '0'])).to.throw(UsageError, /--steps must be an integer >= 1, received "0"/);
      expect(() => parseArgs(['--lr'])).to.throw(UsageError, /--lr must be a number > 0, received nothing/);
      expect(() => parseArgs(['--data', 'cifar'])).to.throw(UsageError, /--data must be mnist or fashion, received "cifar"/);
      expect(() => parseArgs(['--frobnicate'])).to.throw(UsageError, /unknown option "--frobnicate"/).with.property('code', 'ERR_DEMO_USAGE');
    });
  });

  describe('a short run of the experiment', () => {
    let r: ExperimentResult;
    const steps = 180;

    before(() => {
      r = runExperiment({ data, steps, lr: 0.5, seed: 1, checkpoints: 3, sweepLrs: [0.1, 20], sweepSteps: 120 });
    });

    it('starts both networks from the same weights and puts the BN network ahead at every later checkpoint', () => {
      expect(r.checkpoints.map((c) => c.step)).to.deep.equal([0, 60, 120, 180]);
      const [first, ...later] = r.checkpoints;
      // same initial weights: at step 0, BN (running mean 0, variance 1) is nearly the identity
      expect(Math.abs(first.accPlain - first.accBn)).to.be.at.most(0.005);
      expect(first.accBn).to.be.below(0.25);
      for (const c of later) {
        expect(c.accBn, `step ${c.step}: BN ${c.accBn} vs plain ${c.accPlain}`).to.be.greaterThan(c.accPlain + 0.05);
        expect(c.trainLossBn).to.be.below(c.trainLossPlain);
      }
      expect(later[later.length - 1].accBn).to.be.above(0.85);
    });

    it('the BN network folded into its linear layers makes the same predictions as the unfolded one', () => {
      const f = r.fold;
      expect(f.samePredictions).to.equal(true);
      expect(f.mismatches).to.equal(0);
      expect(f.maxAbsLogitDiff).to.be.below(1e-4 * Math.max(1, f.maxAbsLogit));
      expect(f.accuracyFolded).to.equal(f.accuracyEval);
      expect(f.accuracyEval).to.equal(r.checkpoints[r.checkpoints.length - 1].accBn);
    });

    it('records the 15th/50th/85th percentiles of a last-layer sigmoid input at every checkpoint', () => {
      for (const rows of [r.percentiles.plain, r.percentiles.bn]) {
        expect(rows.map((p) => p.step)).to.deep.equal(r.checkpoints.map((c) => c.step));
        for (const p of rows) {
          expect([p.p15, p.p50, p.p85].every(Number.isFinite)).to.equal(true);
          expect(p.p15).to.be.at.most(p.p50);
          expect(p.p50).to.be.at.most(p.p85);
        }
      }
      // with BN the sigmoid input is normalized: its spread is of order 1 after training starts
      const last = r.percentiles.bn[r.percentiles.bn.length - 1];
      expect(last.p85 - last.p15).to.be.within(0.5, 5);
    });

    it('runs the learning-rate sweep; at a small and at a large learning rate the plain network stalls and BN does not', () => {
      expect(r.sweep.map((s) => s.lr)).to.deep.equal([0.1, 20]);
      for (const s of r.sweep) {
        expect(s.steps).to.equal(120);
        expect(s.accPlain).to.be.within(0, 1);
        expect(s.accBn).to.be.within(0, 1);
      }
      // lr 0.1: the plain network is still on its initial plateau; lr 20: its sigmoids saturate
      for (const s of r.sweep) {
        expect(s.accPlain, `lr ${s.lr}`).to.be.below(0.3);
        expect(s.accBn, `lr ${s.lr}`).to.be.above(0.6);
        expect(s.accBn - s.accPlain, `lr ${s.lr}`).to.be.above(0.4);
      }
      expect(sweepTable(r)).to.match(/\|\s+0\.1 \|/);
      expect(accuracyTable(r).split('\n')).to.have.length(2 + r.checkpoints.length);
    });

    it('writes the Figure 1 SVG: well-formed XML, three panels, finite polylines', () => {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bn-demo-'));
      try {
        const file = writeFigure1(r, path.join(dir, 'sub', 'figure1.svg'));
        const svg = fs.readFileSync(file, 'utf8');
        const { panels } = checkFigure(svg);
        expect(findAll(panels[1], (e) => e.name === 'polyline').length).to.equal(3);
        expect(svg).to.include('(a) Test accuracy').and.include('(b) Without BN').and.include('(c) With BN');
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    });

    it('the figure stays well-formed with diverged (NaN) values and awkward text', () => {
      const bad: ExperimentResult = JSON.parse(JSON.stringify(r));
      bad.dataset = 'a <weird> & "quoted" name';
      bad.checkpoints[2].accPlain = NaN;
      bad.percentiles.plain[1].p50 = Infinity;
      bad.percentiles.plain[3].p15 = NaN;
      const svg = figure1Svg(bad);
      checkFigure(svg);
      expect(svg).to.include('a &lt;weird&gt; &amp; &quot;quoted&quot; name');
      // the XML checker itself rejects broken documents
      expect(() => parseXml(svg.replace('</svg>', ''))).to.throw(/never closed/);
      expect(() => parseXml(svg.replace('<g class="panel"', '<g class="panel" class="x"'))).to.throw(/duplicate attribute/);
      expect(() => parseXml(svg.replace('&amp;', '&'))).to.throw(/bare '&'/);
    });
  });
});
