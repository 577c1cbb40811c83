// bench/chart.svg: GB/s per shape and op (caller-provided outputs, target thread count) next to
// the plain and streaming copy bandwidth of the same bytes. Plain SVG, no dependency.
import { find, gbs, Result } from './results';
import type { BenchShape } from './shapes';

interface Series { key: string; label: string; color: string; pick: (shape: string) => Result | undefined }

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

export function chartSvg(all: Result[], shapes: BenchShape[], threads: number, title: string): string {
  const ours = (op: string, output: Result['output']) => (shape: string) => find(all, { impl: 'node-batchnorm', shape, op, output, threads });
  const copy = (op: string) => (shape: string) => find(all, { impl: 'copy', shape, op, threads });
  const series: Series[] = [
    { key: 'c8p', label: 'copy, plain stores (8 B/elem)', color: '#b0b0b0', pick: copy('copy8-plain') },
    { key: 'c8s', label: 'copy, streaming stores (8 B/elem)', color: '#6e6e6e', pick: copy('copy8-stream') },
    { key: 'ft', label: 'forward training', color: '#1f77b4', pick: ours('fwd-train', 'provided') },
    { key: 'fi', label: 'forward inference', color: '#2ca02c', pick: ours('fwd-infer', 'provided') },
    { key: 'fip', label: 'forward inference, in place', color: '#98df8a', pick: ours('fwd-infer', 'inplace') },
    { key: 'bw', label: 'backward (12 B/elem)', color: '#d62728', pick: ours('backward', 'provided') },
  ];
  const values = shapes.map((s) => series.map((se) => { const r = se.pick(s.label); return r ? gbs(r) : undefined; }));
  const max = Math.max(1, ...values.flat().filter((v): v is number => v !== undefined));
  const step = [1, 2, 5, 10, 20, 25, 50, 100, 200].find((st) => max / st <= 8) ?? 500;
  const top = Math.ceil(max / step) * step;

  const bar = 14, gap = 26, left = 60, plotTop = 50, plotH = 300;
  const groupW = series.length * bar + gap;
  const width = Math.max(left + shapes.length * groupW + 20, left + 3 * 230 + 20);
  const legendY = plotTop + plotH + 50;
  const height = legendY + Math.ceil(series.length / 3) * 18 + 20;
  const y = (v: number) => plotTop + plotH - (v / top) * plotH;
  const o: string[] = [];
  o.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="11">`);
  o.push(`<rect width="100%" height="100%" fill="white"/>`);
  o.push(`<text x="${left}" y="20" font-size="14" font-weight="bold">${esc(title)}</text>`);
  o.push(`<text x="${left}" y="36" fill="#555">GB/s counting the floor bytes (higher is better); caller-provided outputs, ${threads} thread${threads > 1 ? 's' : ''}</text>`);
  for (let v = 0; v <= top + 1e-9; v += step) {
    o.push(`<line x1="${left}" x2="${width - 10}" y1="${y(v)}" y2="${y(v)}" stroke="#e5e5e5"/>`);
    o.push(`<text x="${left - 6}" y="${y(v) + 4}" text-anchor="end" fill="#555">${v}</text>`);
  }
  o.push(`<text transform="translate(16 ${plotTop + plotH / 2}) rotate(-90)" text-anchor="middle" fill="#555">GB/s</text>`);
  shapes.forEach((s, gi) => {
    const x0 = left + gi * groupW + gap / 2;
    values[gi].forEach((v, si) => {
      if (v === undefined) return;
      const x = x0 + si * bar;
      o.push(`<rect x="${x}" y="${y(v).toFixed(1)}" width="${bar - 2}" height="${(plotTop + plotH - y(v)).toFixed(1)}" fill="${series[si].color}"><title>${esc(`${s.label} ${series[si].label}: ${v.toFixed(2)} GB/s`)}</title></rect>`);
      o.push(`<text x="${x + (bar - 2) / 2}" y="${y(v) - 3}" text-anchor="start" transform="rotate(-90 ${x + (bar - 2) / 2} ${y(v) - 3})" font-size="9" dy="3" fill="#333">${v.toFixed(1)}</text>`);
    });
    o.push(`<text x="${x0 + (series.length * bar) / 2}" y="${plotTop + plotH + 16}" text-anchor="middle">${esc(s.label)}</text>`);
  });
  o.push(`<line x1="${left}" x2="${width - 10}" y1="${plotTop + plotH}" y2="${plotTop + plotH}" stroke="#333"/>`);
  series.forEach((se, i) => {
    const lx = left + (i % 3) * 230, ly = legendY + Math.floor(i / 3) * 18;
    o.push(`<rect x="${lx}" y="${ly - 10}" width="12" height="12" fill="${se.color}"/><text x="${lx + 18}" y="${ly}">${esc(se.label)}</text>`);
  });
  o.push('</svg>');
  return o.join('\n') + '\n';
}
