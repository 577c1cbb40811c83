// What the benchmark ran on: CPU, caches, memory, load, Node, the addon's SIMD level and build.
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as bn from '../lib';

export interface MachineInfo {
  date: string;
  cpuModel: string;
  cpus: number;
  /** CPUs this process may run on (its affinity, e.g. under taskset); absent in older runs */
  cpusUsable?: number;
  /** bytes per core (0 if unknown) */
  l2PerCore: number;
  /** bytes (0 if unknown) */
  l3: number;
  memGiB: number;
  loadAvg: number[];
  node: string;
  platform: string;
  commit: string;
  /** what the core sizes its pieces from (coreCaches()) */
  coreCaches?: string;
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

/** "16 CPUs (2 usable by this process)", or "2 CPUs" when the process may use them all. */
export function cpusText(m: MachineInfo): string {
  const usable = m.cpusUsable !== undefined && m.cpusUsable !== m.cpus ? ` (${m.cpusUsable} usable by this process)` : '';
  return `${m.cpus} CPUs${usable}`;
}

export function machineInfo(): MachineInfo {
  return {
    date: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
    cpuModel: cpuModel(),
    cpus: os.cpus().length,
    cpusUsable: os.availableParallelism(),
    l2PerCore: cacheSize(2),
    l3: cacheSize(3),
    memGiB: Math.round(os.totalmem() / 1024 ** 3),
    loadAvg: os.loadavg(),
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
    commit: gitCommit(),
    coreCaches: coreCaches(),
  };
}

/** Every data/unified cache level of cpu0 as sysfs gives it, and what glibc's sysconf reports
 * (getconf), as one line: the cache sizes this process sees. */
export function cacheFacts(): { text: string } {
  const parts: string[] = [];
  const dir = '/sys/devices/system/cpu/cpu0/cache';
  try {
    for (const idx of fs.readdirSync(dir).filter((d) => d.startsWith('index')).sort()) {
      const read = (f: string) => fs.readFileSync(`${dir}/${idx}/${f}`, 'utf8').trim();
      const type = read('type');
      if (type === 'Instruction') continue;
      let shared = '';
      try { shared = `, shared by CPUs ${read('shared_cpu_list')}`; } catch { /* older kernels */ }
      parts.push(`L${read('level')} ${read('size')}${shared}`);
    }
  } catch { parts.push('sysfs: none'); }
  try {
    const out = execFileSync('getconf', ['-a'], { stdio: ['ignore', 'pipe', 'ignore'] }).toString();
    const get = (k: string) => Number(new RegExp(`^${k}\\s+(\\d+)`, 'm').exec(out)?.[1] ?? 0);
    const kib = (b: number) => (b ? `${b / 1024} KiB` : '?');
    parts.push(`sysconf: L1d ${kib(get('LEVEL1_DCACHE_SIZE'))}, L2 ${kib(get('LEVEL2_CACHE_SIZE'))}, L3 ${kib(get('LEVEL3_CACHE_SIZE'))}`);
  } catch { parts.push('sysconf: getconf not available'); }
  return { text: `sysfs (cpu0): ${parts.join('; ')}; ${coreCaches()}` };
}

/** The cache sizes the core sizes its pieces from (its machine facts, read at load). */
export function coreCaches(): string {
  const c = bn.runtimeInfo().caches;
  return `core sizes its pieces for L2 ${mib(c.l2Bytes)}, L3 ${c.l3Bytes ? mib(c.l3Bytes) : '?'} shared by ${c.l3Sharing} CPUs (from ${c.source})`;
}

export function mib(bytes: number): string {
  return bytes >= 1024 ** 2 ? `${(bytes / 1024 ** 2).toFixed(bytes >= 10 * 1024 ** 2 ? 0 : 1)} MiB` : `${Math.round(bytes / 1024)} KiB`;
}
