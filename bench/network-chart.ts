// bench/network-NAME.svg: per BN layer of a network, the training forward + backward time with
// reused and with fresh outputs beside the copy floor of the same bytes (target thread count),
// one panel per layout. Plain SVG, no dependency.
import type { NetworkRun } from './network-report';

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

const SERIES = [
  { label: 'copy floor (8 B + 12 B per element)', color: '#9e9e9e' },
  { label: 'reused outputs', color: '#1f77b4' },
  { label: 'fresh outputs', color: '#ff7f0e' },
];

export function networkChartSvg(run: NetworkRun): string {
  const T = run.summary.targetThreads;
  const L = run.layers.length;
  const bar = 5, gap = 5, left = 60, panelH = 220, panelGap = 70, top = 56;
  const groupW = SERIES.length * bar + gap;
  const width = Math.max(left + L * groupW + 20, 720);
  const o: string[] = [];
  const panels = run.layouts.map((layout) => {
    const rows = run.summary.layers.filter((r) => r.layout === layout && r.threads === T);
    return { layout, values: rows.map((r) => [r.floor8 + r.floor12, r.reused.train + r.reused.backward, r.fresh.train + r.fresh.backward].map((s) => s * 1e3)) };
  });
  const max = Math.max(1e-3, ...panels.flatMap((p) => p.values.flat()));
  const step = [0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100].find((st) => max / st <= 6) ?? 200;
  const ceil = Math.ceil(max / step) * step;
  const height = top + run.layouts.length * (panelH + panelGap) + 30;
  o.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="11">`);
  o.push('<rect width="100%" height="100%" fill="white"/>');
  o.push(`<text x="${left}" y="20" font-size="14" font-weight="bold">${esc(`${run.network} batch ${run.batch}: BN training forward + backward per layer, ${T} thread${T > 1 ? 's' : ''} — ${run.machine.cpuModel}`)}</text>`);
  o.push(`<text x="${left}" y="36" fill="#555">${esc('ms per layer, medians over rounds (lower is better); layers in network order (hover a bar for its name)')}</text>`);
  SERIES.forEach((s, i) => {
    const lx = left + i * 240;
    o.push(`<rect x="${lx}" y="${top - 12}" width="10" height="10" fill="${s.color}"/><text x="${lx + 15}" y="${top - 3}">${esc(s.label)}</text>`);
  });
  panels.forEach((p, pi) => {
    const y0 = top + 20 + pi * (panelH + panelGap);
    const y = (v: number) => y0 + panelH - (v / ceil) * panelH;
    o.push(`<text x="${left}" y="${y0 - 6}" font-weight="bold">${esc(p.layout === 'nhwc' ? 'channels-last (NHWC)' : 'NCHW')}</text>`);
    for (let v = 0; v <= ceil + 1e-9; v += step) {
      o.push(`<line x1="${left}" x2="${width - 10}" y1="${y(v).toFixed(1)}" y2="${y(v).toFixed(1)}" stroke="#e5e5e5"/>`);
      o.push(`<text x="${left - 6}" y="${(y(v) + 4).toFixed(1)}" text-anchor="end" fill="#555">${+v.toFixed(3)}</text>`);
    }
    p.values.forEach((vals, l) => {
      const x0 = left + l * groupW + gap / 2;
      vals.forEach((v, si) => {
        const x = x0 + si * bar;
        o.push(`<rect x="${x}" y="${y(v).toFixed(1)}" width="${bar - 1}" height="${(y0 + panelH - y(v)).toFixed(1)}" fill="${SERIES[si].color}"><title>${esc(`${l + 1} ${run.layers[l].name} ${run.layers[l].dims.join('x')}: ${SERIES[si].label} ${v.toFixed(3)} ms`)}</title></rect>`);
      });
      if (L <= 60 && (l % 5 === 0 || L <= 20)) o.push(`<text x="${x0 + 1}" y="${y0 + panelH + 12}" fill="#555" font-size="9">${l + 1}</text>`);
    });
    o.push(`<line x1="${left}" x2="${width - 10}" y1="${y0 + panelH}" y2="${y0 + panelH}" stroke="#333"/>`);
    o.push(`<text x="${left}" y="${y0 + panelH + 26}" fill="#555" font-size="10">layer number (bench/RESULTS.md lists them)</text>`);
  });
  o.push('</svg>');
  return o.join('\n') + '\n';
}
