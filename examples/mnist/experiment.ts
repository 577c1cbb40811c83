// The experiment of section 4.1 (Figure 1) of Ioffe & Szegedy (2015): the same small sigmoid
// network trained with and without batch normalization, same seed, initial weights and data order;
// test accuracy over training, the 15/50/85th percentiles of one last-layer sigmoid's input, the
// BN network checked against its folded form, and a learning-rate sweep.
import { Dataset, IMAGE_SIZE, NUM_CLASSES } from './data';
import { argmaxRows, initialWeights, InitialWeights, Mlp, softmaxCrossEntropy } from './network';
import { Rng } from './rng';

export interface ExperimentOptions {
  data: Dataset;
  /** SGD steps of the main run. */
  steps: number;
  /** Learning rate of the main run. */
  lr: number;
  seed: number;
  /** Mini-batch size (paper: 60). */
  batchSize?: number;
  /** Hidden layer widths (paper: 3 x 100). */
  hidden?: number[];
  /** Standard deviation of the Gaussian initial weights. */
  initStd?: number;
  /** Number of evaluation points after step 0 (evenly spaced). */
  checkpoints?: number;
  /** Which sigmoid of the last hidden layer to record. */
  unit?: number;
  /** Learning rates of the sweep ([] for none). */
  sweepLrs?: number[];
  /** Steps of each sweep run. */
  sweepSteps?: number;
  onProgress?: (p: ProgressInfo) => void;
}

export interface ProgressInfo {
  done: number;
  total: number;
  phase: string;
  accPlain?: number;
  accBn?: number;
}

export interface CheckpointRow {
  step: number;
  accPlain: number;
  accBn: number;
  /** Mean training loss over the steps since the previous checkpoint (NaN at step 0). */
  trainLossPlain: number;
  trainLossBn: number;
}

export interface PercentileRow {
  step: number;
  p15: number;
  p50: number;
  p85: number;
}

export interface FoldCheck {
  /** Argmax of the BN network (evaluation mode) and of the folded network agree on every test example. */
  samePredictions: boolean;
  mismatches: number;
  maxAbsLogitDiff: number;
  maxAbsLogit: number;
  accuracyEval: number;
  accuracyFolded: number;
}

export interface SweepRow {
  lr: number;
  steps: number;
  accPlain: number;
  accBn: number;
}

export interface ExperimentResult {
  dataset: string;
  nTrain: number;
  nTest: number;
  steps: number;
  lr: number;
  seed: number;
  batchSize: number;
  hidden: number[];
  initStd: number;
  unit: number;
  checkpoints: CheckpointRow[];
  percentiles: { plain: PercentileRow[]; bn: PercentileRow[] };
  fold: FoldCheck;
  sweep: SweepRow[];
  seconds: { main: number; sweep: number };
}

export const DEFAULTS = {
  batchSize: 60,
  hidden: [100, 100, 100],
  initStd: 0.05,
  checkpoints: 40,
  unit: 0,
  sweepLrs: [0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20],
};

/** Percentile q (0..100) of sorted values, linear interpolation between closest ranks. */
export function percentile(sorted: ArrayLike<number>, q: number): number {
  const n = sorted.length;
  if (n === 0) return NaN;
  const pos = (q / 100) * (n - 1);
  const lo = Math.floor(pos);
  const hi = Math.min(n - 1, lo + 1);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

export interface EvalResult {
  accuracy: number;
  loss: number;
  /** Sigmoid inputs of the recorded unit over the test set (if requested). */
  unitInputs: Float64Array | null;
  /** All logits [nTest, classes] (if requested). */
  logits: Float32Array | null;
}

const EVAL_CHUNK = 1000;

/** Test-set accuracy in evaluation mode (BN uses its running statistics). */
export function evaluate(net: Mlp, x: Float32Array, y: Uint8Array, count: number, opts: { unit?: number; keepLogits?: boolean } = {}): EvalResult {
  net.setTraining(false);
  const classes = net.sizes[net.sizes.length - 1];
  const inF = net.sizes[0];
  const lastHidden = net.hiddenLayers - 1;
  const width = net.sizes[lastHidden + 1];
  const unitInputs = opts.unit === undefined ? null : new Float64Array(count);
  const logitsAll = opts.keepLogits ? new Float32Array(count * classes) : null;
  const pred = new Int32Array(EVAL_CHUNK);
  let correct = 0;
  let lossSum = 0;
  for (let start = 0; start < count; start += EVAL_CHUNK) {
    const rows = Math.min(EVAL_CHUNK, count - start);
    const xb = x.subarray(start * inF, (start + rows) * inF);
    const logits = net.forward(xb, rows);
    lossSum += softmaxCrossEntropy(logits, y, start, rows, classes, null) * rows;
    argmaxRows(logits, rows, classes, pred);
    for (let r = 0; r < rows; r++) if (pred[r] === y[start + r]) correct++;
    if (unitInputs) {
      const u = net.sigmoidInput(lastHidden, rows);
      for (let r = 0; r < rows; r++) unitInputs[start + r] = u[r * width + opts.unit!];
    }
    if (logitsAll) logitsAll.set(logits.subarray(0, rows * classes), start * classes);
  }
  return { accuracy: correct / count, loss: lossSum / count, unitInputs, logits: logitsAll };
}

function percentilesOf(values: Float64Array, step: number): PercentileRow {
  const s = Float64Array.from(values).sort();
  return { step, p15: percentile(s, 15), p50: percentile(s, 50), p85: percentile(s, 85) };
}

/** Feeds mini-batches in a seeded order: each epoch is a fresh permutation of the training set. */
export class BatchStream {
  private order: Uint32Array;
  private pos: number;
  readonly x: Float32Array;
  readonly y: Uint8Array;

  constructor(private readonly data: Dataset, private readonly batchSize: number, private readonly rng: Rng) {
    this.order = new Uint32Array(data.nTrain);
    for (let i = 0; i < data.nTrain; i++) this.order[i] = i;
    this.pos = data.nTrain; // shuffle on first use
    this.x = new Float32Array(batchSize * IMAGE_SIZE);
    this.y = new Uint8Array(batchSize);
  }

  next(): void {
    for (let b = 0; b < this.batchSize; b++) {
      if (this.pos >= this.order.length) {
        this.rng.shuffle(this.order);
        this.pos = 0;
      }
      const j = this.order[this.pos++];
      this.x.set(this.data.trainX.subarray(j * IMAGE_SIZE, (j + 1) * IMAGE_SIZE), b * IMAGE_SIZE);
      this.y[b] = this.data.trainY[j];
    }
  }
}

interface PairOptions {
  data: Dataset;
  steps: number;
  lr: number;
  seed: number;
  batchSize: number;
  hidden: number[];
  initStd: number;
  /** Steps after which to evaluate (step 0 = before training). */
  evalSteps: number[];
  unit: number | null;
  onStep?: (step: number, last?: CheckpointRow) => void;
}

interface PairResult {
  plain: Mlp;
  bn: Mlp;
  checkpoints: CheckpointRow[];
  percentiles: { plain: PercentileRow[]; bn: PercentileRow[] };
}

/** The same network with and without BN, from the same initial weights, fed the same batches. */
export function makeInitialWeights(seed: number, hidden: number[], initStd: number): InitialWeights {
  return initialWeights(new Rng(seed), [IMAGE_SIZE, ...hidden, NUM_CLASSES], initStd);
}

function trainPair(o: PairOptions): PairResult {
  const init = makeInitialWeights(o.seed, o.hidden, o.initStd);
  const plain = new Mlp(init, false);
  const bn = new Mlp(init, true);
  const stream = new BatchStream(o.data, o.batchSize, new Rng((o.seed ^ 0x5bd1e995) >>> 0));
  const evalSet = new Set(o.evalSteps);
  const checkpoints: CheckpointRow[] = [];
  const percentiles = { plain: [] as PercentileRow[], bn: [] as PercentileRow[] };
  let lossPlain = 0;
  let lossBn = 0;
  let since = 0;
  const checkpoint = (step: number) => {
    const unit = o.unit ?? undefined;
    const ep = evaluate(plain, o.data.testX, o.data.testY, o.data.nTest, { unit });
    const eb = evaluate(bn, o.data.testX, o.data.testY, o.data.nTest, { unit });
    const row: CheckpointRow = {
      step,
      accPlain: ep.accuracy,
      accBn: eb.accuracy,
      trainLossPlain: since ? lossPlain / since : NaN,
      trainLossBn: since ? lossBn / since : NaN,
    };
    checkpoints.push(row);
    if (ep.unitInputs && eb.unitInputs) {
      percentiles.plain.push(percentilesOf(ep.unitInputs, step));
      percentiles.bn.push(percentilesOf(eb.unitInputs, step));
    }
    lossPlain = lossBn = 0;
    since = 0;
    return row;
  };
  if (evalSet.has(0)) checkpoint(0);
  for (let step = 1; step <= o.steps; step++) {
    stream.next();
    lossPlain += plain.trainStep(stream.x, stream.y, 0, o.batchSize, o.lr);
    lossBn += bn.trainStep(stream.x, stream.y, 0, o.batchSize, o.lr);
    since++;
    const row = evalSet.has(step) ? checkpoint(step) : undefined;
    o.onStep?.(step, row);
  }
  return { plain, bn, checkpoints, percentiles };
}

/** Runs the BN network in evaluation mode and its folded form on the test set and compares. */
export function foldCheck(bn: Mlp, data: Dataset): FoldCheck {
  const folded = bn.folded();
  const a = evaluate(bn, data.testX, data.testY, data.nTest, { keepLogits: true });
  const b = evaluate(folded, data.testX, data.testY, data.nTest, { keepLogits: true });
  const la = a.logits!;
  const lb = b.logits!;
  const pa = new Int32Array(data.nTest);
  const pb = new Int32Array(data.nTest);
  argmaxRows(la, data.nTest, NUM_CLASSES, pa);
  argmaxRows(lb, data.nTest, NUM_CLASSES, pb);
  let mismatches = 0;
  for (let i = 0; i < data.nTest; i++) if (pa[i] !== pb[i]) mismatches++;
  let maxDiff = 0;
  let maxAbs = 0;
  for (let k = 0; k < la.length; k++) {
    const d = Math.abs(la[k] - lb[k]);
    if (!(d <= maxDiff)) maxDiff = d; // NaN propagates
    maxAbs = Math.max(maxAbs, Math.abs(la[k]));
  }
  return { samePredictions: mismatches === 0, mismatches, maxAbsLogitDiff: maxDiff, maxAbsLogit: maxAbs, accuracyEval: a.accuracy, accuracyFolded: b.accuracy };
}

/** Evenly spaced evaluation steps 0, s/n, 2s/n, ..., s. */
export function evaluationSteps(steps: number, count: number): number[] {
  const set = new Set<number>([0, steps]);
  for (let k = 1; k < count; k++) set.add(Math.round((k * steps) / count));
  return [...set].sort((a, b) => a - b);
}

function checkPositiveInt(name: string, v: number): void {
  if (!Number.isInteger(v) || v < 1) throw new RangeError(`runExperiment: ${name} must be an integer >= 1, received ${v}`);
}

function checkPositive(name: string, v: number): void {
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) throw new RangeError(`runExperiment: ${name} must be a finite number > 0, received ${v}`);
}

/** Options with every default filled in, validated. */
export type ResolvedOptions = Required<Omit<ExperimentOptions, 'onProgress' | 'data'>> & { data: Dataset };

export function resolveOptions(options: ExperimentOptions): ResolvedOptions {
  const o: ResolvedOptions = {
    data: options.data,
    steps: options.steps,
    lr: options.lr,
    seed: options.seed,
    batchSize: options.batchSize ?? DEFAULTS.batchSize,
    hidden: options.hidden ?? DEFAULTS.hidden,
    initStd: options.initStd ?? DEFAULTS.initStd,
    checkpoints: options.checkpoints ?? DEFAULTS.checkpoints,
    unit: options.unit ?? DEFAULTS.unit,
    sweepLrs: options.sweepLrs ?? DEFAULTS.sweepLrs,
    sweepSteps: options.sweepSteps ?? options.steps,
  };
  checkPositiveInt('steps', o.steps);
  checkPositiveInt('batchSize', o.batchSize);
  checkPositiveInt('checkpoints', o.checkpoints);
  if (o.sweepLrs.length) checkPositiveInt('sweepSteps', o.sweepSteps);
  checkPositive('lr', o.lr);
  checkPositive('initStd', o.initStd);
  o.sweepLrs.forEach((lr) => checkPositive('sweepLrs[]', lr));
  if (!Number.isInteger(o.seed) || o.seed < 0) throw new RangeError(`runExperiment: seed must be an integer >= 0, received ${o.seed}`);
  if (!o.hidden.length || !o.hidden.every((h) => Number.isInteger(h) && h >= 1)) throw new RangeError(`runExperiment: hidden must be a non-empty list of integers >= 1, received [${o.hidden.join(', ')}]`);
  const lastWidth = o.hidden[o.hidden.length - 1];
  if (!Number.isInteger(o.unit) || o.unit < 0 || o.unit >= lastWidth) throw new RangeError(`runExperiment: unit must be an integer in [0, ${lastWidth - 1}], received ${o.unit}`);
  if (o.batchSize > o.data.nTrain) throw new RangeError(`runExperiment: batchSize ${o.batchSize} exceeds the ${o.data.nTrain} training examples`);
  return o;
}

export interface MainRun {
  checkpoints: CheckpointRow[];
  percentiles: { plain: PercentileRow[]; bn: PercentileRow[] };
  fold: FoldCheck;
  seconds: number;
}

/** The main run: both networks at o.lr for o.steps, checkpoints, percentiles, fold check. */
export function runMain(o: ResolvedOptions, onStep?: (step: number, last?: CheckpointRow) => void): MainRun {
  const t0 = Date.now();
  let last: CheckpointRow | undefined;
  const main = trainPair({
    data: o.data, steps: o.steps, lr: o.lr, seed: o.seed, batchSize: o.batchSize, hidden: o.hidden, initStd: o.initStd,
    evalSteps: evaluationSteps(o.steps, o.checkpoints), unit: o.unit,
    onStep: (step, row) => {
      if (row) last = row;
      onStep?.(step, last);
    },
  });
  const fold = foldCheck(main.bn, o.data);
  return { checkpoints: main.checkpoints, percentiles: main.percentiles, fold, seconds: (Date.now() - t0) / 1000 };
}

/** One point of the learning-rate sweep: both networks at `lr` for o.sweepSteps, final test accuracy. */
export function runSweepPoint(o: ResolvedOptions, lr: number, onStep?: (step: number) => void): SweepRow {
  const r = trainPair({
    data: o.data, steps: o.sweepSteps, lr, seed: o.seed, batchSize: o.batchSize, hidden: o.hidden, initStd: o.initStd,
    evalSteps: [o.sweepSteps], unit: null, onStep,
  });
  const row = r.checkpoints[r.checkpoints.length - 1];
  return { lr, steps: o.sweepSteps, accPlain: row.accPlain, accBn: row.accBn };
}

export function assembleResult(o: ResolvedOptions, main: MainRun, sweep: SweepRow[], sweepSeconds: number): ExperimentResult {
  return {
    dataset: o.data.name,
    nTrain: o.data.nTrain,
    nTest: o.data.nTest,
    steps: o.steps,
    lr: o.lr,
    seed: o.seed,
    batchSize: o.batchSize,
    hidden: o.hidden.slice(),
    initStd: o.initStd,
    unit: o.unit,
    checkpoints: main.checkpoints,
    percentiles: main.percentiles,
    fold: main.fold,
    sweep,
    seconds: { main: main.seconds, sweep: sweepSeconds },
  };
}

/** The whole experiment in this thread: the main run, then the learning-rate sweep. */
export function runExperiment(options: ExperimentOptions): ExperimentResult {
  const o = resolveOptions(options);
  const total = o.steps + o.sweepLrs.length * o.sweepSteps;
  const report = options.onProgress ?? (() => undefined);
  const main = runMain(o, (step, last) => {
    if (step % 10 === 0 || step === o.steps) report({ done: step, total, phase: `lr ${o.lr}`, accPlain: last?.accPlain, accBn: last?.accBn });
  });
  const t1 = Date.now();
  const sweep = o.sweepLrs.map((lr, k) => {
    const base = o.steps + k * o.sweepSteps;
    return runSweepPoint(o, lr, (step) => {
      if (step % 10 === 0 || step === o.sweepSteps) report({ done: base + step, total, phase: `sweep lr ${lr}` });
    });
  });
  return assembleResult(o, main, sweep, (Date.now() - t1) / 1000);
}
