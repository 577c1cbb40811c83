// What the benchmark ran on: CPU, caches, memory, load, Node, the addon's SIMD level and build.
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';

export interface MachineInfo {
  date: string;
  cpuModel: string;
  cpus: number;
  /** bytes per core (0 if unknown) */
  l2PerCore: number;
  /** bytes (0 if unknown) */
  l3: number;
  memGiB: number;
  loadAvg: number[];
  node: string;
  platform: string;
  commit: string;
}

function cpuModel(): string {
  try {
    const text = fs.readFileSync('/proc/cpuinfo', 'utf8');
    const m = /^model name\s*:\s*(.+)$/m.exec(text) ?? /^Hardware\s*:\s*(.+)$/m.exec(text);
    if (m) return m[1].trim();
  } catch { /* not Linux */ }
  return os.cpus()[0]?.model ?? 'unknown';
}

function parseSize(s: string): number {
  const m = /^(\d+)\s*([KMG]?)/i.exec(s.trim());
  if (!m) return 0;
  return Number(m[1]) * ({ '': 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3 } as Record<string, number>)[m[2].toUpperCase()];
}

function cacheSize(level: number): number {
  const dir = '/sys/devices/system/cpu/cpu0/cache';
  try {
    for (const idx of fs.readdirSync(dir)) {
      if (!idx.startsWith('index')) continue;
      const lvl = Number(fs.readFileSync(`${dir}/${idx}/level`, 'utf8'));
      const type = fs.readFileSync(`${dir}/${idx}/type`, 'utf8').trim();
      if (lvl === level && type !== 'Instruction') return parseSize(fs.readFileSync(`${dir}/${idx}/size`, 'utf8'));
    }
  } catch { /* no sysfs */ }
  return 0;
}

function gitCommit(): string {
  try {
    return execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: __dirname, stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim();
  } catch {
    return 'unknown';
  }
}

export function machineInfo(): MachineInfo {
  return {
    date: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
    cpuModel: cpuModel(),
    cpus: os.cpus().length,
    l2PerCore: cacheSize(2),
    l3: cacheSize(3),
    memGiB: Math.round(os.totalmem() / 1024 ** 3),
    loadAvg: os.loadavg(),
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
    commit: gitCommit(),
  };
}

export function mib(bytes: number): string {
  return bytes >= 1024 ** 2 ? `${(bytes / 1024 ** 2).toFixed(bytes >= 10 * 1024 ** 2 ? 0 : 1)} MiB` : `${Math.round(bytes / 1024)} KiB`;
}
