// Process groups over Gloo (the collective library PyTorch uses on CPUs): ranks in separate
// processes or machines. The rendezvous is PyTorch's: tcp://HOST:PORT (rank 0 serves a key-value
// store there, in native/gloo/tcp_store.cc), file:///shared/path (Gloo's FileStore), or env://
// (MASTER_ADDR, MASTER_PORT). Gloo's TCP transport then carries the collectives, peer to peer.
// The native part is its own addon, batchnorm_gloo.node, loaded on the first initProcessGroup.
import * as fs from 'fs';
import * as path from 'path';
import { BatchNormRangeError, BatchNormTypeError, describe } from '../errors';
import { readOptions } from '../validate';
import { Exchanged, HEADER_LENGTH, SyncGroup, syncError } from './group';

interface GlooBinding {
  connect(o: { rank: number; size: number; host: string; port: number; path: string; timeoutMs: number; localAddress: string; iface: string }): Promise<object>;
  allGather(g: object, input: Float64Array, output: Float64Array): void;
  allGatherAsync(g: object, input: Float64Array, output: Float64Array): Promise<void>;
  close(g: object): void;
}

export interface ProcessGroupOptions {
  /** Only 'gloo'. Default 'gloo'. */
  backend?: 'gloo';
  /** 'tcp://HOST:PORT', 'file:///path' or 'env://' (MASTER_ADDR, MASTER_PORT). Default 'env://'. */
  initMethod?: string;
  /** Default: the RANK environment variable. */
  rank?: number;
  /** Default: the WORLD_SIZE environment variable. */
  worldSize?: number;
  /** Rendezvous and collective timeout (ms). Default 60000. */
  timeoutMs?: number;
  /** This rank's address for Gloo's connections (default: the local address on the route to the
   * rendezvous host; GLOO_SOCKET_IFNAME=eth0 picks an interface instead, as in PyTorch). */
  localAddress?: string;
}

// Payload values carried in the first (fixed-size) all-gather of an exchange: 8 KiB per rank.
export const INLINE_PAYLOAD = 1023;

const KEYS = ['backend', 'initMethod', 'rank', 'worldSize', 'timeoutMs', 'localAddress'] as const;
const INSTALL = 'apt-get install -y libgloo-dev && BATCHNORM_BUILD_FROM_SOURCE=1 npm rebuild node-batchnorm';

let binding: GlooBinding | undefined;

/** The Gloo addon, or ERR_BN_GLOO_UNAVAILABLE saying what is missing and how to install it. */
export function loadGloo(): GlooBinding {
  if (binding) return binding;
  const file = process.env.BATCHNORM_GLOO_BINDING
    ? path.resolve(process.env.BATCHNORM_GLOO_BINDING)
    : path.resolve(__dirname, '..', '..', '..', 'build', 'Release', 'batchnorm_gloo.node');
  if (!fs.existsSync(file)) {
    throw syncError(
      'ERR_BN_GLOO_UNAVAILABLE',
      `initProcessGroup: the Gloo backend is not built (${file} is missing): it is built from source only where Gloo's headers ` +
        `and library are installed. On Debian/Ubuntu: \`${INSTALL}\`. Worker threads of one process need no Gloo: use ThreadGroup`,
    );
  }
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    binding = require(file) as GlooBinding;
  } catch (e) {
    const msg = (e as Error).message.split('\n')[0];
    const lib = /lib[\w.+-]*\.so[\d.]*/.exec(msg)?.[0];
    throw syncError(
      'ERR_BN_GLOO_UNAVAILABLE',
      `initProcessGroup: ${file} could not be loaded: ${msg}` +
        (lib ? `. ${lib} is missing: install it (Debian/Ubuntu: \`${INSTALL}\`)` : `. Rebuild it: \`${INSTALL}\``),
      e,
    );
  }
  return binding;
}

function envInt(fn: string, name: string, v: unknown, env: string, lo: number, hi: number): number {
  const raw = v ?? (process.env[env] !== undefined ? Number(process.env[env]) : undefined);
  if (raw === undefined) {
    throw new BatchNormTypeError('ERR_BN_INVALID_ARG_TYPE', `${fn}: ${name} is required (or set the ${env} environment variable)`);
  }
  if (typeof raw !== 'number' || !Number.isInteger(raw) || raw < lo || raw > hi) {
    throw new BatchNormRangeError('ERR_BN_OUT_OF_RANGE', `${fn}: ${name} must be an integer in [${lo}, ${hi}], received ${v !== undefined ? describe(v) : `${env}=${process.env[env]}`}`);
  }
  return raw;
}

interface Rendezvous {
  host: string;
  port: number;
  path: string;
}

function parseInitMethod(fn: string, m: unknown): Rendezvous {
  const method = m ?? 'env://';
  if (typeof method !== 'string') {
    throw new BatchNormTypeError('ERR_BN_INVALID_ARG_TYPE', `${fn}: initMethod must be a string like 'tcp://10.0.0.1:29500', received ${describe(method)}`);
  }
  if (method === 'env://') {
    const host = process.env.MASTER_ADDR;
    const port = process.env.MASTER_PORT;
    if (!host || !port) {
      throw new BatchNormTypeError('ERR_BN_INVALID_ARG_TYPE', `${fn}: initMethod env:// needs MASTER_ADDR and MASTER_PORT in the environment (received ${host ?? 'no MASTER_ADDR'}, ${port ?? 'no MASTER_PORT'})`);
    }
    return parseInitMethod(fn, `tcp://${host.includes(':') ? `[${host}]` : host}:${port}`);
  }
  const tcp = /^tcp:\/\/(\[[^\]]+\]|[^:/]+):(\d+)$/.exec(method);
  if (tcp) {
    const port = Number(tcp[2]);
    if (port < 1 || port > 65535) throw new BatchNormRangeError('ERR_BN_OUT_OF_RANGE', `${fn}: the port of ${method} must be in [1, 65535]`);
    return { host: tcp[1].replace(/^\[|\]$/g, ''), port, path: '' };
  }
  if (method.startsWith('file://')) {
    const p = method.slice('file://'.length);
    if (!p.startsWith('/')) throw new BatchNormRangeError('ERR_BN_OUT_OF_RANGE', `${fn}: ${method} must name an absolute path (file:///dir/rendezvous)`);
    return { host: '', port: 0, path: p };
  }
  throw new BatchNormRangeError('ERR_BN_OUT_OF_RANGE', `${fn}: initMethod must be 'tcp://HOST:PORT', 'file:///path' or 'env://', received ${describe(method)}`);
}

/**
 * Joins (or, on rank 0, serves) the rendezvous and connects every rank to every other over
 * Gloo's TCP transport. Resolves once all worldSize ranks have joined; ERR_BN_SYNC_TIMEOUT if they
 * have not within timeoutMs, ERR_BN_SYNC_RENDEZVOUS if the address or port cannot be used.
 */
export async function initProcessGroup(options: ProcessGroupOptions = {}): Promise<GlooGroup> {
  const fn = 'initProcessGroup';
  const o = readOptions(fn, options, KEYS);
  if (o.backend !== undefined && o.backend !== 'gloo') {
    throw new BatchNormRangeError('ERR_BN_OUT_OF_RANGE', `${fn}: backend must be 'gloo' (worker threads of one process: ThreadGroup), received ${describe(o.backend)}`);
  }
  const worldSize = envInt(fn, 'worldSize', o.worldSize, 'WORLD_SIZE', 1, 65536);
  const rank = envInt(fn, 'rank', o.rank, 'RANK', 0, worldSize - 1);
  const timeoutMs = envInt(fn, 'timeoutMs', o.timeoutMs ?? 60000, '', 1, 2 ** 31 - 1);
  const rv = parseInitMethod(fn, o.initMethod);
  if (o.localAddress !== undefined && typeof o.localAddress !== 'string') {
    throw new BatchNormTypeError('ERR_BN_INVALID_ARG_TYPE', `${fn}: localAddress must be a string, received ${describe(o.localAddress)}`);
  }
  const g = loadGloo();
  let handle: object;
  try {
    handle = await g.connect({
      rank, size: worldSize, host: rv.host, port: rv.port, path: rv.path, timeoutMs,
      localAddress: (o.localAddress as string | undefined) ?? '', iface: process.env.GLOO_SOCKET_IFNAME ?? '',
    });
  } catch (e) {
    const code = (e as { code?: string }).code === 'ERR_BN_SYNC_TIMEOUT' ? 'ERR_BN_SYNC_TIMEOUT' : 'ERR_BN_SYNC_RENDEZVOUS';
    throw syncError(code, `${fn} (rank ${rank} of ${worldSize}): ${(e as Error).message}`, e);
  }
  return new GlooGroup(g, handle, rank, worldSize, timeoutMs);
}

/** A rank of a Gloo process group (from initProcessGroup). */
export class GlooGroup extends SyncGroup {
  readonly backend = 'gloo' as const;
  /** allReduce goes in pieces of this many values (each rank receives worldSize x 8 MiB at most). */
  readonly maxPayload = 1 << 20;

  /** @internal */
  constructor(private readonly g: GlooBinding, private handle: object | null, readonly rank: number, readonly worldSize: number, readonly timeoutMs: number) {
    super();
  }

  private live(): object {
    if (!this.handle) throw syncError('ERR_BN_SYNC_BROKEN', 'GlooGroup: destroyed on this rank');
    return this.handle;
  }

  private split(all: Float64Array, n: number): Float64Array[] {
    return Array.from({ length: this.worldSize }, (_, r) => all.slice(r * n, (r + 1) * n));
  }

  private rethrow(e: unknown): never {
    const code = (e as { code?: string }).code;
    if (code === 'ERR_BN_SYNC_TIMEOUT' || code === 'ERR_BN_SYNC_PEER_LOST' || code === 'ERR_BN_SYNC_BROKEN') {
      throw syncError(code, `rank ${this.rank} of ${this.worldSize}: ${(e as Error).message}`, e);
    }
    throw e;
  }

  // The first all-gather has a fixed size on every rank: the header and, when it fits, the payload
  // itself (one round trip for a layer of up to 511 channels: 2C + 1 <= 1023). A longer payload follows in a second
  // all-gather, once every rank's header agrees on its length; ranks that disagree learn it from
  // the headers instead of exchanging misaligned data.
  private firstBlock(header: Float64Array, payload: Float64Array): Float64Array {
    const b = new Float64Array(HEADER_LENGTH + INLINE_PAYLOAD);
    b.set(header, 0);
    if (payload.length <= INLINE_PAYLOAD) b.set(payload, HEADER_LENGTH);
    return b;
  }

  /** The exchange when the first all-gather settles it; null when the payloads must follow. */
  private afterFirst(all: Float64Array, payload: Float64Array): Exchanged | null {
    const blocks = this.split(all, HEADER_LENGTH + INLINE_PAYLOAD);
    const headers = blocks.map((b) => b.slice(0, HEADER_LENGTH));
    if (headers.some((x) => x[3] !== payload.length)) return { headers, payloads: headers.map(() => new Float64Array(0)) };
    if (payload.length > INLINE_PAYLOAD) return null;
    return { headers, payloads: blocks.map((b) => b.slice(HEADER_LENGTH, HEADER_LENGTH + payload.length)) };
  }

  protected exchangeSync(header: Float64Array, payload: Float64Array): Exchanged {
    const all = new Float64Array((HEADER_LENGTH + INLINE_PAYLOAD) * this.worldSize);
    try {
      this.g.allGather(this.live(), this.firstBlock(header, payload), all);
      const done = this.afterFirst(all, payload);
      if (done) return done;
      const p = new Float64Array(payload.length * this.worldSize);
      this.g.allGather(this.live(), payload, p);
      return { headers: this.split(all, HEADER_LENGTH + INLINE_PAYLOAD).map((b) => b.slice(0, HEADER_LENGTH)), payloads: this.split(p, payload.length) };
    } catch (e) {
      this.rethrow(e);
    }
  }

  protected async exchangeAsync(header: Float64Array, payload: Float64Array): Promise<Exchanged> {
    const all = new Float64Array((HEADER_LENGTH + INLINE_PAYLOAD) * this.worldSize);
    try {
      await this.g.allGatherAsync(this.live(), this.firstBlock(header, payload), all);
      const done = this.afterFirst(all, payload);
      if (done) return done;
      const p = new Float64Array(payload.length * this.worldSize);
      await this.g.allGatherAsync(this.live(), payload, p);
      return { headers: this.split(all, HEADER_LENGTH + INLINE_PAYLOAD).map((b) => b.slice(0, HEADER_LENGTH)), payloads: this.split(p, payload.length) };
    } catch (e) {
      this.rethrow(e);
    }
  }

  protected release(): void {
    if (this.handle) this.g.close(this.handle);
    this.handle = null;
  }
}
