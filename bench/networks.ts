// The BatchNorm layers of whole networks, for the network benchmark (bench/network.ts).
//
// Where the shapes come from: torchvision's ResNet-50 and ResNet-18 (torchvision/models/resnet.py,
// "ResNet v1.5": the stride of a Bottleneck sits on its 3x3 conv) on a 224x224 input, and the
// MNIST demo's network (examples/mnist: 784-100-100-100-10, BatchNorm1d(100) after each hidden
// layer). Each BN's (C, H, W) is derived below from the architecture (stem, stage widths, block
// counts, strides), not copied from a trace; the layer names are torchvision's state_dict prefixes.
// `npm run bench -- --network resnet50 --list` prints the table. ResNet-50 has 53 BatchNorm2d
// layers, ResNet-18 has 20.

export interface BnLayer {
  /** torchvision's module name, e.g. "layer1.0.downsample.1" */
  name: string;
  c: number;
  /** spatial dims, [] for BatchNorm1d */
  spatial: number[];
}

export interface Network {
  name: string;
  /** what the table comes from, one line */
  source: string;
  /** the batch the network's own code uses when --batch is not given */
  defaultBatch: number;
  layers: BnLayer[];
}

const STAGE_WIDTHS = [64, 128, 256, 512];
const STAGE_STRIDES = [1, 2, 2, 2];

// Stem: conv1 7x7 stride 2 (224 -> 112) then bn1, then a 3x3 stride-2 max-pool (112 -> 56).
const INPUT = 224;
const STEM_CHANNELS = 64;

function resnet(blocks: number[], bottleneck: boolean): BnLayer[] {
  const out: BnLayer[] = [];
  let hw = INPUT / 2;
  out.push({ name: 'bn1', c: STEM_CHANNELS, spatial: [hw, hw] });
  hw /= 2;
  let inplanes = STEM_CHANNELS;
  const expansion = bottleneck ? 4 : 1;
  blocks.forEach((count, stage) => {
    const planes = STAGE_WIDTHS[stage];
    for (let b = 0; b < count; b++) {
      const stride = b === 0 ? STAGE_STRIDES[stage] : 1;
      const outHw = hw / stride;
      const p = `layer${stage + 1}.${b}`;
      if (bottleneck) {
        out.push({ name: `${p}.bn1`, c: planes, spatial: [hw, hw] }); // conv1 1x1, before the stride
        out.push({ name: `${p}.bn2`, c: planes, spatial: [outHw, outHw] }); // conv2 3x3, stride
        out.push({ name: `${p}.bn3`, c: planes * expansion, spatial: [outHw, outHw] }); // conv3 1x1
      } else {
        out.push({ name: `${p}.bn1`, c: planes, spatial: [outHw, outHw] }); // conv1 3x3, stride
        out.push({ name: `${p}.bn2`, c: planes, spatial: [outHw, outHw] }); // conv2 3x3
      }
      if (stride !== 1 || inplanes !== planes * expansion) {
        out.push({ name: `${p}.downsample.1`, c: planes * expansion, spatial: [outHw, outHw] });
      }
      inplanes = planes * expansion;
      hw = outHw;
    }
  });
  return out;
}

function mnistDemo(): BnLayer[] {
  // examples/mnist/main.ts: 784-100-100-100-10 sigmoid MLP, BatchNorm1d after each hidden Dense.
  return [1, 2, 3].map((l) => ({ name: `bns.${l - 1} (hidden ${l})`, c: 100, spatial: [] }));
}

export const NETWORKS: Record<string, Network> = {
  resnet50: {
    name: 'resnet50',
    source: "torchvision ResNet-50 (Bottleneck v1.5, blocks 3-4-6-3) at 224x224, shapes derived from the architecture",
    defaultBatch: 32,
    layers: resnet([3, 4, 6, 3], true),
  },
  resnet18: {
    name: 'resnet18',
    source: "torchvision ResNet-18 (BasicBlock, blocks 2-2-2-2) at 224x224, shapes derived from the architecture",
    defaultBatch: 32,
    layers: resnet([2, 2, 2, 2], false),
  },
  mnist: {
    name: 'mnist',
    source: "the MNIST demo's network (examples/mnist: 784-100-100-100-10, BatchNorm1d(100) x 3; the demo trains at batch 60)",
    defaultBatch: 60,
    layers: mnistDemo(),
  },
};

/** [N, C, ...spatial] */
export function layerDims(l: BnLayer, batch: number): number[] {
  return [batch, l.c, ...l.spatial];
}

export function layerElements(l: BnLayer, batch: number): number {
  return layerDims(l, batch).reduce((a, b) => a * b, 1);
}
