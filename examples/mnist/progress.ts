// A one-line progress bar on stderr (redrawn in place on a terminal; a line every 10% otherwise).

export interface ProgressUpdate {
  done: number;
  total: number;
  /** Free text after the bar (phase, accuracies). */
  detail?: string;
}

function clock(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '--:--';
  const s = Math.round(seconds);
  const m = Math.floor(s / 60);
  return `${m}:${String(s % 60).padStart(2, '0')}`;
}

export class ProgressBar {
  private readonly start = Date.now();
  private lastDraw = 0;
  private lastDecile = -1;
  private drawn = false;
  private readonly tty: boolean;

  constructor(private readonly stream: NodeJS.WriteStream = process.stderr, private readonly width = 28) {
    this.tty = Boolean(stream.isTTY);
  }

  update(u: ProgressUpdate, force = false): void {
    const now = Date.now();
    const frac = u.total > 0 ? Math.min(1, u.done / u.total) : 1;
    if (this.tty) {
      if (!force && now - this.lastDraw < 100 && frac < 1) return;
      this.lastDraw = now;
      this.stream.write(`\r${this.line(u, frac, now)}\x1b[K`);
      this.drawn = true;
    } else {
      const decile = Math.floor(frac * 10);
      if (decile === this.lastDecile && !force) return;
      this.lastDecile = decile;
      this.stream.write(`${this.line(u, frac, now)}\n`);
    }
  }

  private line(u: ProgressUpdate, frac: number, now: number): string {
    const filled = Math.round(frac * this.width);
    const bar = '#'.repeat(filled) + '-'.repeat(this.width - filled);
    const elapsed = (now - this.start) / 1000;
    const eta = frac >= 0.02 ? (elapsed * (1 - frac)) / frac : NaN; // too noisy before 2%
    const pct = `${(frac * 100).toFixed(0)}%`.padStart(4);
    return `[${bar}] ${pct} ${clock(elapsed)} elapsed, ETA ${clock(eta)}${u.detail ? `  ${u.detail}` : ''}`;
  }

  /** Ends the bar's line. */
  finish(): void {
    if (this.tty && this.drawn) this.stream.write('\n');
    this.drawn = false;
  }
}
