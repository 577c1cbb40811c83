#!/usr/bin/env python3
"""PyTorch's CPU batch norm as a peer of bn_bench_core, where PyTorch is installed.

PyTorch is no dependency of node-batchnorm and cannot be installed where the project builds (no
PyPI there); this script runs where it is (a machine with PyTorch), on the same shapes, ops and
thread counts as bn_bench_core, and prints rows in bn_bench_core's --json format (output "fresh":
ATen allocates every output). Given bn_bench_core's JSON from the same machine (--ours FILE), it
prints PyTorch's time over ours and both ratios to the faster copy of the same bytes.

  build-bench/bn_bench_core --shapes 32x256x56x56 --threads 2,16 --layout nchw,nhwc --json > ours.json
  python3 bench/peers/pytorch_bn.py --shapes 32x256x56x56 --threads 2,16 --layout nchw,nhwc \
      --ours ours.json

The ops are the ATen ones that torch.nn.BatchNorm2d and autograd call: native_batch_norm in
training (running statistics updated) and inference, native_batch_norm_backward with all three
gradients. Times: median and min over repetitions after a warm-up, as bn_bench_core.
"""
import argparse
import json
import math
import statistics
import sys
import time

import torch

EPS = 1e-5
MOMENTUM = 0.1


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--shapes', default='32x256x56x56,32x1024x14x14,32x2048x7x7')
    p.add_argument('--threads', default='1,2')
    p.add_argument('--layout', default='nchw', help='nchw, nhwc or both (channels_last)')
    p.add_argument('--ops', default='train,infer,backward')
    p.add_argument('--time', type=float, default=0.5, help='seconds per case')
    p.add_argument('--ours', help="bn_bench_core --json output from the same machine: print the ratios")
    p.add_argument('--out', help='also write the rows as JSON to this file')
    return p.parse_args(argv)


def time_case(fn, seconds, min_reps=5):
    fn()  # warm-up: first-touch of ATen's allocations, thread pool start
    times = []
    end = time.perf_counter() + seconds
    while len(times) < min_reps or time.perf_counter() < end:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return {'median': statistics.median(times), 'min': min(times), 'reps': len(times)}


def cases(dims, channels_last):
    c = dims[1]
    g = torch.Generator().manual_seed(1)
    x = torch.randn(*dims, generator=g)
    dy = torch.randn(*dims, generator=g)
    if channels_last:
        fmt = torch.channels_last if len(dims) == 4 else torch.channels_last_3d
        x, dy = x.contiguous(memory_format=fmt), dy.contiguous(memory_format=fmt)
    w, b = torch.rand(c, generator=g) + 0.5, torch.randn(c, generator=g)
    rm, rv = torch.zeros(c), torch.ones(c)
    _, save_mean, save_invstd = torch.native_batch_norm(x, w, b, rm, rv, True, MOMENTUM, EPS)
    return {
        'train': (8, lambda: torch.native_batch_norm(x, w, b, rm, rv, True, MOMENTUM, EPS)),
        'infer': (8, lambda: torch.native_batch_norm(x, w, b, rm, rv, False, MOMENTUM, EPS)),
        'backward': (12, lambda: torch.ops.aten.native_batch_norm_backward(
            dy, x, w, rm, rv, save_mean, save_invstd, True, EPS, [True, True, True])),
    }


OP_NAMES = {'train': 'fwd-train', 'infer': 'fwd-infer', 'backward': 'backward'}


def measure(a):
    rows = []
    layouts = [s.strip() for s in a.layout.split(',')]
    for shape in a.shapes.split(','):
        dims = [int(d) for d in shape.split('x')]
        for layout in layouts:
            cl = layout == 'nhwc'
            if cl and len(dims) not in (4, 5):
                continue
            name = shape + ('-cl' if cl else '')
            ops = cases(dims, cl)
            for nt in [int(t) for t in a.threads.split(',')]:
                torch.set_num_threads(nt)
                for op in a.ops.split(','):
                    per_elem, fn = ops[op]
                    st = time_case(fn, a.time)
                    rows.append({'shape': name, 'op': OP_NAMES[op], 'output': 'fresh', 'threads': nt,
                                 'bytes': per_elem * math.prod(dims), **st})
                    print(f"{name:22s} {OP_NAMES[op]:9s} {nt:2d} thr  {st['median'] * 1e3:9.3f} ms", file=sys.stderr)
    return rows


def cpu_capability():
    get = getattr(getattr(torch.backends, 'cpu', None), 'get_cpu_capability', None)
    return get() if get else 'cpu capability unknown'


def compare(rows, ours_file):
    ours = json.load(open(ours_file))
    by_key = {(r['shape'], r['op'], r['output'], r['threads']): r for r in ours['rows']}
    print(f"ours: simd {ours.get('simd')}, L2 {ours.get('l2Bytes')} B, L3 {ours.get('l3Bytes')} B; "
          f"torch {torch.__version__}, {cpu_capability()}")
    print('| shape | op | thr | torch ms | ours ms (fresh / provided) | torch / ours fresh | '
          'copy / torch | copy / ours fresh |')
    print('|---|---|---:|---:|---:|---:|---:|---:|')
    for r in rows:
        k = (r['shape'], r['op'], 'fresh', r['threads'])
        mine, prov = by_key.get(k), by_key.get(k[:2] + ('provided', r['threads']))
        if mine is None:
            continue
        copy_ops = ('copy8-plain', 'copy8-stream') if r['op'] != 'backward' else ('copy12-plain', 'copy12-stream')
        copies = [by_key[(r['shape'], c, '-', r['threads'])]['median'] for c in copy_ops
                  if (r['shape'], c, '-', r['threads']) in by_key]
        copy = min(copies) if copies else float('nan')
        print(f"| {r['shape']} | {r['op']} | {r['threads']} | {r['median'] * 1e3:.3f} | "
              f"{mine['median'] * 1e3:.3f} / {prov['median'] * 1e3 if prov else float('nan'):.3f} | "
              f"{r['median'] / mine['median']:.2f} | {copy / r['median']:.2f} | {copy / mine['median']:.2f} |")


def main():
    a = parse_args(sys.argv[1:])
    rows = measure(a)
    result = {'peer': f'torch {torch.__version__}', 'rows': rows}
    if a.out:
        with open(a.out, 'w') as f:
            json.dump(result, f)
    if a.ours:
        compare(rows, a.ours)
    else:
        json.dump(result, sys.stdout)
        print()


if __name__ == '__main__':
    main()
