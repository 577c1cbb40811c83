// "Machines" for the sync tests: one network namespace per rank, each joined by a veth pair to a
// bridge in a hub namespace, with addresses 10.77.0.x/24 that exist only inside the namespaces.
// Needs root (ip netns); created and removed by the test itself. Nothing touches the host's own
// namespace: both ends of every veth are created directly in their namespaces.
import { execFileSync } from 'child_process';

export interface Network {
  /** Namespace of rank r. */
  names: string[];
  /** Address of rank r (10.77.0.(r + 1)). */
  addresses: string[];
  hub: string;
  /** The device of rank r inside its namespace. */
  devices: string[];
}

function ip(...args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

/** Why this machine cannot run the test, or null. */
export function netnsUnavailable(): string | null {
  if (typeof process.getuid === 'function' && process.getuid() !== 0) {
    return 'the network-namespace test needs root (ip netns add); CI runs it as root: run `npm test` as root';
  }
  try {
    execFileSync('ip', ['-V'], { stdio: 'ignore' });
  } catch {
    return 'the network-namespace test needs the ip command (Debian: apt-get install -y iproute2)';
  }
  return null;
}

export function createNetwork(ranks: number): Network {
  const tag = `bn${process.pid % 100000}`;
  const net: Network = { names: [], addresses: [], hub: `${tag}hub`, devices: [] };
  try {
    ip('netns', 'add', net.hub);
    ip('-n', net.hub, 'link', 'add', 'br0', 'type', 'bridge');
    ip('-n', net.hub, 'link', 'set', 'br0', 'up');
    for (let r = 0; r < ranks; r++) {
      const ns = `${tag}r${r}`;
      const dev = `eth${r}`;
      const addr = `10.77.0.${r + 1}`;
      ip('netns', 'add', ns);
      net.names.push(ns);
      net.addresses.push(addr);
      net.devices.push(dev);
      ip('link', 'add', 'name', dev, 'netns', ns, 'type', 'veth', 'peer', 'name', `p${r}`, 'netns', net.hub);
      ip('-n', ns, 'link', 'set', 'lo', 'up');
      ip('-n', ns, 'addr', 'add', `${addr}/24`, 'dev', dev);
      ip('-n', ns, 'link', 'set', dev, 'up');
      ip('-n', net.hub, 'link', 'set', `p${r}`, 'master', 'br0');
      ip('-n', net.hub, 'link', 'set', `p${r}`, 'up');
    }
  } catch (e) {
    removeNetwork(net);
    throw new Error(`could not create the test network: ${(e as { stderr?: Buffer }).stderr?.toString() ?? (e as Error).message}`);
  }
  return net;
}

/** Cuts rank r off the network (its link goes down: no packet, no reset reaches the others). */
export function cutOff(net: Network, r: number): void {
  ip('-n', net.names[r], 'link', 'set', net.devices[r], 'down');
}

export function removeNetwork(net: Network): void {
  for (const ns of [...net.names, net.hub]) {
    try {
      ip('netns', 'del', ns);
    } catch {
      // already gone
    }
  }
}
