// Writes Figure 1 of the paper as a standalone SVG (no dependency): (a) test accuracy vs training
// steps with and without BN, (b) and (c) the 15th, 50th and 85th percentiles of the input to one
// sigmoid of the last hidden layer over training, without and with BN (same y scale).
import * as fs from 'fs';
import * as path from 'path';
import type { ExperimentResult, PercentileRow } from './experiment';

const PANEL_W = 400;
const PANEL_H = 330;
const MARGIN = { left: 62, right: 18, top: 58, bottom: 52 };
const TOP = 70;
const WIDTH = PANEL_W * 3;
const HEIGHT = TOP + PANEL_H + 10;

const COLORS = {
  plain: '#444444',
  bn: '#1f6fd1',
  band: { plain: '#e3e3e3', bn: '#d6e6fa' },
};

export function escapeXml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

function fmt(v: number): string {
  return Number.isInteger(v) ? String(v) : v.toFixed(2).replace(/0+$/, '').replace(/\.$/, '');
}

/** About `count` round tick values covering [lo, hi]. */
export function niceTicks(lo: number, hi: number, count = 5): number[] {
  if (!(hi > lo)) {
    const d = Math.abs(lo) > 0 ? Math.abs(lo) * 0.1 : 1;
    lo -= d;
    hi += d;
  }
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? 10 * mag;
  const ticks: number[] = [];
  for (let t = Math.ceil(lo / step - 1e-9) * step; t <= hi + step * 1e-9; t += step) {
    ticks.push(Math.abs(t) < step * 1e-9 ? 0 : Number(t.toPrecision(12)));
  }
  return ticks;
}

function tickLabel(v: number): string {
  if (Math.abs(v) >= 1000 && v % 1000 === 0) return `${v / 1000}k`;
  return fmt(v);
}

interface Series {
  label: string;
  xs: number[];
  ys: number[];
  color: string;
  width: number;
  dash?: string;
}

interface Band {
  xs: number[];
  lo: number[];
  hi: number[];
  color: string;
}

interface PanelSpec {
  id: string;
  title: string;
  xLabel: string;
  yLabel: string;
  yRange: [number, number];
  xMax: number;
  series: Series[];
  band?: Band;
  legend: Array<{ label: string; color: string; width: number; dash?: string; swatch?: string }>;
}

/** Splits a series into polylines at non-finite values; returns SVG point lists. */
function polylines(xs: number[], ys: number[], sx: (x: number) => number, sy: (y: number) => number): string[] {
  const out: string[] = [];
  let cur: string[] = [];
  for (let i = 0; i < xs.length; i++) {
    if (Number.isFinite(xs[i]) && Number.isFinite(ys[i])) {
      cur.push(`${sx(xs[i]).toFixed(1)},${sy(ys[i]).toFixed(1)}`);
    } else if (cur.length) {
      out.push(cur.join(' '));
      cur = [];
    }
  }
  if (cur.length) out.push(cur.join(' '));
  return out;
}

function panel(p: PanelSpec, x0: number): string {
  const left = x0 + MARGIN.left;
  const right = x0 + PANEL_W - MARGIN.right;
  const top = TOP + MARGIN.top;
  const bottom = TOP + PANEL_H - MARGIN.bottom;
  const [ylo, yhi] = p.yRange;
  const xMax = p.xMax > 0 ? p.xMax : 1;
  const sx = (x: number) => left + (x / xMax) * (right - left);
  const sy = (y: number) => bottom - ((Math.min(Math.max(y, ylo), yhi) - ylo) / (yhi - ylo)) * (bottom - top);
  const parts: string[] = [];
  parts.push(`<g class="panel" id="${p.id}">`);
  parts.push(`<text x="${(left + right) / 2}" y="${TOP + 22}" text-anchor="middle" font-size="15" font-weight="bold">${escapeXml(p.title)}</text>`);
  // grid and ticks
  const yt = niceTicks(ylo, yhi, 8).filter((t) => t >= ylo - 1e-9 && t <= yhi + 1e-9);
  for (const t of yt) {
    const y = sy(t).toFixed(1);
    parts.push(`<line x1="${left}" y1="${y}" x2="${right}" y2="${y}" stroke="#ececec" stroke-width="1"/>`);
    parts.push(`<text x="${left - 6}" y="${y}" dy="4" text-anchor="end" font-size="11">${tickLabel(t)}</text>`);
  }
  const xt = niceTicks(0, xMax, 5).filter((t) => t >= 0 && t <= xMax + 1e-9);
  for (const t of xt) {
    const x = sx(t).toFixed(1);
    parts.push(`<line x1="${x}" y1="${bottom}" x2="${x}" y2="${bottom + 4}" stroke="#000" stroke-width="1"/>`);
    parts.push(`<text x="${x}" y="${bottom + 17}" text-anchor="middle" font-size="11">${tickLabel(t)}</text>`);
  }
  parts.push(`<rect x="${left}" y="${top}" width="${right - left}" height="${bottom - top}" fill="none" stroke="#000" stroke-width="1"/>`);
  parts.push(`<text x="${(left + right) / 2}" y="${bottom + 38}" text-anchor="middle" font-size="12">${escapeXml(p.xLabel)}</text>`);
  parts.push(`<text transform="translate(${x0 + 16},${(top + bottom) / 2}) rotate(-90)" text-anchor="middle" font-size="12">${escapeXml(p.yLabel)}</text>`);
  // data
  if (p.band) {
    const b = p.band;
    const ok: number[] = [];
    for (let i = 0; i < b.xs.length; i++) if ([b.xs[i], b.lo[i], b.hi[i]].every(Number.isFinite)) ok.push(i);
    if (ok.length > 1) {
      const pts = [...ok.map((i) => `${sx(b.xs[i]).toFixed(1)},${sy(b.hi[i]).toFixed(1)}`), ...ok.reverse().map((i) => `${sx(b.xs[i]).toFixed(1)},${sy(b.lo[i]).toFixed(1)}`)];
      parts.push(`<polygon class="band" points="${pts.join(' ')}" fill="${b.color}" stroke="none"/>`);
    }
  }
  for (const s of p.series) {
    for (const pts of polylines(s.xs, s.ys, sx, sy)) {
      if (!pts.includes(' ')) {
        // an isolated finite point between non-finite ones
        const [cx, cy] = pts.split(',');
        parts.push(`<circle class="point" cx="${cx}" cy="${cy}" r="${s.width + 1}" fill="${s.color}"/>`);
        continue;
      }
      parts.push(
        `<polyline class="series" data-label="${escapeXml(s.label)}" points="${pts}" fill="none" stroke="${s.color}" stroke-width="${s.width}"`
        + `${s.dash ? ` stroke-dasharray="${s.dash}"` : ''} stroke-linejoin="round"/>`,
      );
    }
  }
  // legend: one row between the title and the plot
  const itemW = p.legend.map((e) => 34 + 6.2 * e.label.length + 14);
  let lx = (left + right) / 2 - itemW.reduce((q, w) => q + w, 0) / 2;
  const ly = top - 12;
  parts.push('<g class="legend">');
  p.legend.forEach((e, i) => {
    if (e.swatch) parts.push(`<rect x="${lx.toFixed(1)}" y="${ly - 6}" width="26" height="11" fill="${e.swatch}"/>`);
    parts.push(`<line x1="${lx.toFixed(1)}" y1="${ly - 0.5}" x2="${(lx + 26).toFixed(1)}" y2="${ly - 0.5}" stroke="${e.color}" stroke-width="${e.width}"${e.dash ? ` stroke-dasharray="${e.dash}"` : ''}/>`);
    parts.push(`<text x="${(lx + 32).toFixed(1)}" y="${ly + 3.5}" font-size="11">${escapeXml(e.label)}</text>`);
    lx += itemW[i];
  });
  parts.push('</g>');
  parts.push('</g>');
  return parts.join('\n');
}

function finiteRange(values: number[]): [number, number] | null {
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of values) {
    if (Number.isFinite(v)) {
      lo = Math.min(lo, v);
      hi = Math.max(hi, v);
    }
  }
  return lo <= hi ? [lo, hi] : null;
}

function percentilePanel(id: string, title: string, rows: PercentileRow[], color: string, band: string, yRange: [number, number], xMax: number): PanelSpec {
  const xs = rows.map((r) => r.step);
  return {
    id,
    title,
    xLabel: 'training steps',
    yLabel: 'input to a last-layer sigmoid',
    yRange,
    xMax,
    band: { xs, lo: rows.map((r) => r.p15), hi: rows.map((r) => r.p85), color: band },
    series: [
      { label: '85th percentile', xs, ys: rows.map((r) => r.p85), color, width: 1.3 },
      { label: '50th percentile', xs, ys: rows.map((r) => r.p50), color, width: 2.4 },
      { label: '15th percentile', xs, ys: rows.map((r) => r.p15), color, width: 1.3 },
    ],
    legend: [
      { label: '50th percentile', color, width: 2.4 },
      { label: '15th-85th percentile', color, width: 1.3, swatch: band },
    ],
  };
}

/** The SVG text of the three-panel figure. */
export function figure1Svg(r: ExperimentResult): string {
  const steps = r.checkpoints.map((c) => c.step);
  const xMax = r.steps;
  const acc = [...r.checkpoints.map((c) => c.accPlain), ...r.checkpoints.map((c) => c.accBn)];
  const ar = finiteRange(acc) ?? [0, 1];
  const accLo = Math.max(0, Math.floor(ar[0] * 10) / 10);
  const accPanel: PanelSpec = {
    id: 'panel-accuracy',
    title: '(a) Test accuracy',
    xLabel: 'training steps',
    yLabel: 'test accuracy',
    yRange: [Math.min(accLo, 0.9), 1],
    xMax,
    series: [
      { label: 'Without BN', xs: steps, ys: r.checkpoints.map((c) => c.accPlain), color: COLORS.plain, width: 2, dash: '6 4' },
      { label: 'With BN', xs: steps, ys: r.checkpoints.map((c) => c.accBn), color: COLORS.bn, width: 2.2 },
    ],
    legend: [
      { label: 'Without BN', color: COLORS.plain, width: 2, dash: '6 4' },
      { label: 'With BN', color: COLORS.bn, width: 2.2 },
    ],
  };
  const all = [...r.percentiles.plain, ...r.percentiles.bn].flatMap((p) => [p.p15, p.p50, p.p85]);
  const pr = finiteRange(all) ?? [-1, 1];
  const pad = (pr[1] - pr[0]) * 0.08 || 0.5;
  const yr: [number, number] = [pr[0] - pad, pr[1] + pad];
  const ticks = niceTicks(yr[0], yr[1], 8);
  const tstep = ticks.length > 1 ? ticks[1] - ticks[0] : 1;
  const yRange: [number, number] = [Math.floor(yr[0] / tstep - 1e-9) * tstep, Math.ceil(yr[1] / tstep + 1e-9) * tstep];
  const panels = [
    panel(accPanel, 0),
    panel(percentilePanel('panel-without-bn', '(b) Without BN', r.percentiles.plain, COLORS.plain, COLORS.band.plain, yRange, xMax), PANEL_W),
    panel(percentilePanel('panel-with-bn', '(c) With BN', r.percentiles.bn, COLORS.bn, COLORS.band.bn, yRange, xMax), 2 * PANEL_W),
  ];
  const title = `Figure 1 (Ioffe & Szegedy 2015, section 4.1) reproduced: 784-100-100-100-10 sigmoid MLP, SGD lr ${r.lr}, batch ${r.batchSize}`;
  const sub = `${r.dataset}: ${r.nTrain} training / ${r.nTest} test images; seed ${r.seed}; initial weights N(0, ${r.initStd}\u00b2)`;
  const sub2 = `(b, c): input of sigmoid ${r.unit} of the last hidden layer over the test set, BN in evaluation mode (running statistics)`;
  return [
    '<?xml version="1.0" encoding="UTF-8"?>',
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${HEIGHT}" viewBox="0 0 ${WIDTH} ${HEIGHT}" font-family="Helvetica, Arial, sans-serif">`,
    `<rect x="0" y="0" width="${WIDTH}" height="${HEIGHT}" fill="#ffffff"/>`,
    `<text x="${WIDTH / 2}" y="24" text-anchor="middle" font-size="16">${escapeXml(title)}</text>`,
    `<text x="${WIDTH / 2}" y="44" text-anchor="middle" font-size="12" fill="#555555">${escapeXml(sub)}</text>`,
    `<text x="${WIDTH / 2}" y="60" text-anchor="middle" font-size="12" fill="#555555">${escapeXml(sub2)}</text>`,
    ...panels,
    '</svg>',
    '',
  ].join('\n');
}

/** Writes figure1Svg(r) to `file` (creating its folder); returns the path. */
export function writeFigure1(r: ExperimentResult, file: string): string {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, figure1Svg(r));
  return file;
}
