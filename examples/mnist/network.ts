// The example's own small network: fully-connected layers, sigmoid, softmax cross-entropy and
// plain SGD, written as loops over typed arrays. Only the batch normalization comes from the
// library (BatchNorm1d, through its native kernels).
//
// Why hand-written loops rather than a dependency: the products here are small (batch 60 x 784 x
// 100, 60 x 100 x 100) and MNIST pixels are ~80% zeros. The npm options are either pure-JS loops
// of the same kind (ml-matrix, ndarray-gemm: no faster than register-blocked loops) or need a
// native BLAS build or a binary download (tfjs-node, BLAS bindings), which this project does not
// allow. The kernels in linalg.ts are a 4 x 4 register-blocked product for the hidden layers and
// a sparse product for the 784 -> 100 layer (weights stored transposed, [in, out], so every inner
// loop is contiguous); one SGD step of either network takes ~5 ms on one core.
import { BatchNorm1d } from '../../lib';
import { gemm, SparseMatrix, sparseTimesDense } from './linalg';
import { Rng } from './rng';

/** A fully-connected layer y = x W^T + b, with W [out, in]; stored transposed as wt [in, out]. */
export class Dense {
  readonly inFeatures: number;
  readonly outFeatures: number;
  /** W^T, row-major [in, out]: row i holds the weights from input i to every output. */
  readonly wt: Float32Array;
  readonly bias: Float32Array | null;
  readonly gradWt: Float32Array;
  readonly gradBias: Float32Array | null;
  /** Use the sparse kernels (for inputs that are mostly zeros, like MNIST pixels). */
  readonly sparseInput: boolean;
  private readonly sparse = new SparseMatrix();

  constructor(inFeatures: number, outFeatures: number, hasBias: boolean, sparseInput = false) {
    this.inFeatures = inFeatures;
    this.outFeatures = outFeatures;
    this.wt = new Float32Array(inFeatures * outFeatures);
    this.bias = hasBias ? new Float32Array(outFeatures) : null;
    this.gradWt = new Float32Array(inFeatures * outFeatures);
    this.gradBias = hasBias ? new Float32Array(outFeatures) : null;
    this.sparseInput = sparseInput;
  }

  /** W in the usual [out, in] row-major layout (what foldIntoLinear expects). */
  weightOutIn(): Float32Array {
    const I = this.inFeatures;
    const O = this.outFeatures;
    const w = new Float32Array(I * O);
    for (let i = 0; i < I; i++) for (let o = 0; o < O; o++) w[o * I + i] = this.wt[i * O + o];
    return w;
  }

  /** Sets W from the [out, in] layout. */
  setWeightOutIn(w: ArrayLike<number>): void {
    const I = this.inFeatures;
    const O = this.outFeatures;
    if (w.length !== I * O) throw new RangeError(`Dense.setWeightOutIn: w must have ${I * O} elements, received ${w.length}`);
    for (let i = 0; i < I; i++) for (let o = 0; o < O; o++) this.wt[i * O + o] = w[o * I + i];
  }

  /** out[r, :] = x[r, :] W^T + b for r < rows. */
  forward(x: Float32Array, rows: number, out: Float32Array): void {
    const I = this.inFeatures;
    const O = this.outFeatures;
    if (this.sparseInput) {
      sparseTimesDense(this.sparse.fromRows(x, rows, I), rows, this.wt, O, out, false);
    } else {
      gemm(rows, O, I, x, 0, I, 1, this.wt, 0, O, 1, out, O, false);
    }
    const b = this.bias;
    if (b) {
      for (let r = 0; r < rows; r++) {
        const or = r * O;
        for (let o = 0; o < O; o++) out[or + o] += b[o];
      }
    }
  }

  /**
   * Given dy = dL/dout for a forward on x, adds dL/dW^T and dL/db into the gradients and, if dx is
   * given, writes dL/dx = dy W.
   */
  backward(x: Float32Array, rows: number, dy: Float32Array, dx: Float32Array | null): void {
    const I = this.inFeatures;
    const O = this.outFeatures;
    if (dx) {
      // dx[r, i] = sum_o dy[r, o] * wt[i, o]
      gemm(rows, I, O, dy, 0, O, 1, this.wt, 0, 1, O, dx, I, false);
    }
    if (this.sparseInput) {
      // gradWt[i, o] += sum_r x[r, i] dy[r, o], over the non-zeros of column i of x
      sparseTimesDense(this.sparse.fromColumns(x, rows, I), I, dy, O, this.gradWt, true);
    } else {
      gemm(I, O, rows, x, 0, 1, I, dy, 0, O, 1, this.gradWt, O, true);
    }
    const gb = this.gradBias;
    if (gb) {
      for (let o = 0; o < O; o++) {
        let s = 0;
        for (let r = 0; r < rows; r++) s += dy[r * O + o];
        gb[o] += s;
      }
    }
  }

  /** Plain SGD: W -= lr * dW, b -= lr * db; then clears the gradients. */
  sgdStep(lr: number): void {
    const w = this.wt;
    const g = this.gradWt;
    for (let k = 0; k < w.length; k++) w[k] -= lr * g[k];
    g.fill(0);
    if (this.bias && this.gradBias) {
      for (let o = 0; o < this.outFeatures; o++) this.bias[o] -= lr * this.gradBias[o];
      this.gradBias.fill(0);
    }
  }
}

/** y = 1 / (1 + e^-x), elementwise over the first `count` values. */
export function sigmoidForward(x: Float32Array, count: number, y: Float32Array): void {
  for (let k = 0; k < count; k++) y[k] = 1 / (1 + Math.exp(-x[k]));
}

/** dx = dy * y * (1 - y), from the sigmoid's output y. */
export function sigmoidBackward(y: Float32Array, dy: Float32Array, count: number, dx: Float32Array): void {
  for (let k = 0; k < count; k++) {
    const s = y[k];
    dx[k] = dy[k] * s * (1 - s);
  }
}

/**
 * Mean softmax cross-entropy of logits [rows, classes] against integer labels. If dlogits is
 * given, writes d(mean loss)/dlogits = (softmax - onehot) / rows. Returns the mean loss.
 */
export function softmaxCrossEntropy(
  logits: Float32Array, labels: Uint8Array, labelOffset: number, rows: number, classes: number, dlogits: Float32Array | null,
): number {
  let loss = 0;
  const p = new Float64Array(classes);
  for (let r = 0; r < rows; r++) {
    const lr = r * classes;
    let max = -Infinity;
    for (let c = 0; c < classes; c++) if (logits[lr + c] > max) max = logits[lr + c];
    let sum = 0;
    for (let c = 0; c < classes; c++) {
      p[c] = Math.exp(logits[lr + c] - max);
      sum += p[c];
    }
    const label = labels[labelOffset + r];
    loss += Math.log(sum) + max - logits[lr + label];
    if (dlogits) {
      for (let c = 0; c < classes; c++) dlogits[lr + c] = (p[c] / sum - (c === label ? 1 : 0)) / rows;
    }
  }
  return loss / rows;
}

/** Index of the largest value of each row. */
export function argmaxRows(x: Float32Array, rows: number, cols: number, out: Uint8Array | Int32Array, outOffset = 0): void {
  for (let r = 0; r < rows; r++) {
    let best = 0;
    let bv = x[r * cols];
    for (let c = 1; c < cols; c++) {
      if (x[r * cols + c] > bv) {
        bv = x[r * cols + c];
        best = c;
      }
    }
    out[outOffset + r] = best;
  }
}

/** Weights shared by both variants: W [out, in] per layer, drawn from N(0, std^2). */
export interface InitialWeights {
  sizes: number[];
  weights: Float32Array[];
}

export function initialWeights(rng: Rng, sizes: number[], std: number): InitialWeights {
  const weights: Float32Array[] = [];
  for (let l = 0; l + 1 < sizes.length; l++) {
    const w = new Float32Array(sizes[l] * sizes[l + 1]);
    for (let k = 0; k < w.length; k++) w[k] = std * rng.normal();
    weights.push(w);
  }
  return { sizes: sizes.slice(), weights };
}

interface Buffers {
  rows: number;
  /** Per hidden layer: dense output (the BN input, or the sigmoid input without BN). */
  z: Float32Array[];
  /** Per hidden layer: the sigmoid input (BN output; same array as z without BN). */
  u: Float32Array[];
  /** Per hidden layer: sigmoid output. */
  h: Float32Array[];
  logits: Float32Array;
  dlogits: Float32Array;
  dh: Float32Array[];
  du: Float32Array[];
  dz: Float32Array[];
}

/**
 * sizes[0] inputs -> hidden sigmoid layers sizes[1..L-2] -> sizes[L-1] logits. With batchNorm,
 * each hidden layer is Dense(no bias) -> BatchNorm1d -> sigmoid; without, Dense(bias) -> sigmoid.
 */
export class Mlp {
  readonly sizes: number[];
  readonly batchNorm: boolean;
  readonly dense: Dense[];
  readonly bns: BatchNorm1d[];
  private buffers = new Map<number, Buffers>();

  constructor(init: InitialWeights, batchNorm: boolean, sparseFirstLayer = true) {
    this.sizes = init.sizes.slice();
    this.batchNorm = batchNorm;
    this.dense = [];
    this.bns = [];
    const L = this.sizes.length - 1;
    for (let l = 0; l < L; l++) {
      const last = l === L - 1;
      const d = new Dense(this.sizes[l], this.sizes[l + 1], last || !batchNorm, l === 0 && sparseFirstLayer);
      d.setWeightOutIn(init.weights[l]);
      this.dense.push(d);
      if (!last && batchNorm) this.bns.push(new BatchNorm1d(this.sizes[l + 1]));
    }
  }

  get hiddenLayers(): number {
    return this.sizes.length - 2;
  }

  private buffersFor(rows: number): Buffers {
    let b = this.buffers.get(rows);
    if (b) return b;
    const H = this.hiddenLayers;
    const mk = (l: number) => new Float32Array(rows * this.sizes[l + 1]);
    const z: Float32Array[] = [];
    const u: Float32Array[] = [];
    const dz: Float32Array[] = [];
    const du: Float32Array[] = [];
    for (let l = 0; l < H; l++) {
      z.push(mk(l));
      u.push(this.batchNorm ? mk(l) : z[l]);
      dz.push(mk(l));
      du.push(this.batchNorm ? mk(l) : dz[l]);
    }
    const classes = this.sizes[this.sizes.length - 1];
    b = {
      rows, z, u, du, dz,
      h: Array.from({ length: H }, (_, l) => mk(l)),
      dh: Array.from({ length: H }, (_, l) => mk(l)),
      logits: new Float32Array(rows * classes),
      dlogits: new Float32Array(rows * classes),
    };
    this.buffers.set(rows, b);
    return b;
  }

  /** Training mode (BN uses batch statistics and updates its running statistics) or evaluation. */
  setTraining(training: boolean): void {
    for (const bn of this.bns) bn.train(training);
  }

  /**
   * Forward on x [rows, sizes[0]] (rows x inputs, row-major). Returns the logits buffer (valid
   * until the next forward with the same number of rows).
   */
  forward(x: Float32Array, rows: number): Float32Array {
    const b = this.buffersFor(rows);
    const H = this.hiddenLayers;
    let input = x;
    for (let l = 0; l < H; l++) {
      this.dense[l].forward(input, rows, b.z[l]);
      if (this.batchNorm) this.bns[l].forward(b.z[l], [rows, this.sizes[l + 1]], b.u[l]);
      sigmoidForward(b.u[l], rows * this.sizes[l + 1], b.h[l]);
      input = b.h[l];
    }
    this.dense[H].forward(input, rows, b.logits);
    return b.logits;
  }

  /** The input of the sigmoids of hidden layer l ([rows, sizes[l+1]]) at the last forward with `rows` rows. */
  sigmoidInput(l: number, rows: number): Float32Array {
    return this.buffersFor(rows).u[l];
  }

  /**
   * One SGD step on the batch x [rows, in] with labels y[labelOffset ..]: forward in training
   * mode, softmax cross-entropy, backward, update. Returns the batch's mean loss.
   */
  trainStep(x: Float32Array, y: Uint8Array, labelOffset: number, rows: number, lr: number): number {
    this.setTraining(true);
    const logits = this.forward(x, rows);
    const b = this.buffersFor(rows);
    const classes = this.sizes[this.sizes.length - 1];
    const loss = softmaxCrossEntropy(logits, y, labelOffset, rows, classes, b.dlogits);
    this.backward(x, rows);
    this.step(lr);
    return loss;
  }

  /** Backpropagates the dlogits buffer through the network, accumulating every gradient. */
  backward(x: Float32Array, rows: number): void {
    const b = this.buffersFor(rows);
    const H = this.hiddenLayers;
    this.dense[H].backward(b.h[H - 1], rows, b.dlogits, b.dh[H - 1]);
    for (let l = H - 1; l >= 0; l--) {
      const count = rows * this.sizes[l + 1];
      sigmoidBackward(b.h[l], b.dh[l], count, b.du[l]);
      if (this.batchNorm) this.bns[l].backward(b.du[l], b.dz[l]);
      const input = l === 0 ? x : b.h[l - 1];
      this.dense[l].backward(input, rows, b.dz[l], l === 0 ? null : b.dh[l - 1]);
    }
  }

  /** Gradients of the loss set by the last backward (for the dlogits buffer of `rows` rows). */
  dlogits(rows: number): Float32Array {
    return this.buffersFor(rows).dlogits;
  }

  /** Plain SGD on every parameter (dense weights and biases, BN gamma and beta); clears gradients. */
  step(lr: number): void {
    for (const d of this.dense) d.sgdStep(lr);
    for (const bn of this.bns) {
      const w = bn.weight!;
      const bi = bn.bias!;
      const gw = bn.gradWeight!;
      const gb = bn.gradBias!;
      for (let c = 0; c < w.length; c++) {
        w[c] -= lr * gw[c];
        bi[c] -= lr * gb[c];
      }
      bn.zeroGrad();
    }
  }

  /**
   * The inference network with each BN folded into the linear layer before it (foldIntoLinear):
   * a plain Mlp whose hidden layers have weights W' and biases b'. Uses the running statistics.
   */
  folded(): Mlp {
    if (!this.batchNorm) throw new Error('Mlp.folded: the network has no batch normalization to fold');
    const init: InitialWeights = { sizes: this.sizes, weights: this.dense.map((d) => d.weightOutIn()) };
    const plain = new Mlp(init, false);
    for (let l = 0; l < this.hiddenLayers; l++) {
      const f = this.bns[l].foldIntoLinear(this.dense[l].weightOutIn(), null);
      plain.dense[l].setWeightOutIn(f.weight);
      plain.dense[l].bias!.set(f.bias);
    }
    const last = this.dense[this.hiddenLayers];
    plain.dense[this.hiddenLayers].bias!.set(last.bias!);
    return plain;
  }
}
