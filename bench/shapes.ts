// The benchmark's shapes: (N, C, H, W) float32 NCHW, and (N, C) for BatchNorm1d.

export interface BenchShape {
  dims: number[];
  /** "32x64x112x112" */
  label: string;
  n: number;
  c: number;
  /** product of the spatial dims (1 for [N, C]) */
  s: number;
  total: number;
}

export const DEFAULT_SHAPES = [
  '32x64x112x112', '32x256x56x56', '32x1024x14x14', '32x2048x7x7', '1x256x56x56', '64x3x224x224', '256x1024',
];
export const QUICK_SHAPES = ['1x256x56x56'];

export function makeShape(dims: number[]): BenchShape {
  const [n, c, ...sp] = dims;
  const s = sp.reduce((a, b) => a * b, 1);
  return { dims, label: dims.join('x'), n, c, s, total: n * c * s };
}

/** "32x64x112x112,256x1024" (also accepts "32,64,112,112;256,1024" and "(32,64,112,112)"). */
export function parseShapes(spec: string): BenchShape[] {
  const items = spec.includes('x') ? spec.split(/[,;\s]+/) : spec.split(/[;\s]+/);
  const out: BenchShape[] = [];
  for (const raw of items) {
    const item = raw.replace(/[()[\]]/g, '').trim();
    if (!item) continue;
    const dims = item.split(/[x,*]/).map((d) => Number(d));
    if (dims.length < 2 || dims.length > 5 || dims.some((d) => !Number.isInteger(d) || d < 1)) {
      throw new Error(`--shapes: expected shapes like 32x64x112x112,256x1024 (2 to 5 positive integers each), received '${raw}'`);
    }
    const shape = makeShape(dims);
    if (shape.n * shape.s < 2) {
      throw new Error(`--shapes: ${shape.label} has one value per channel, which training mode cannot normalize`);
    }
    if (shape.total > 2 ** 31) throw new Error(`--shapes: ${shape.label} has more than 2^31 elements`);
    out.push(shape);
  }
  if (!out.length) throw new Error('--shapes: no shape given');
  return out;
}
