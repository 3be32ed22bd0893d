// Builds a VehicleClient wired to a PeerNetwork and ManualTimers, collecting its errors.
import { ManualTimers, VehicleClient, type VehicleClientOptions } from '../../src/client/index.js';
import { PeerNetwork, type ScriptedPeer } from './peer.js';

export interface Harness {
  client: VehicleClient;
  net: PeerNetwork;
  timers: ManualTimers;
  errors: Error[];
}

export function setup(options: Partial<VehicleClientOptions> = {}): Harness {
  const timers = new ManualTimers();
  const net = new PeerNetwork();
  const client = new VehicleClient({
    vehicleId: 'VIN00000000000001',
    gateways: ['gw-a:7000'],
    token: 'test-token',
    timers,
    transport: net.transport,
    random: () => 0,
    ...options,
  });
  const errors: Error[] = [];
  client.on('error', (err) => errors.push(err));
  return { client, net, timers, errors };
}

/** Starts the client and accepts its first connection. */
export async function connected(
  h: Harness,
  connack: Parameters<ScriptedPeer['accept']>[0] = {},
): Promise<ScriptedPeer> {
  h.client.start();
  const peer = await h.net.nextPeer();
  const up = new Promise<void>((resolve) => h.client.once('connected', () => resolve()));
  await peer.accept(connack);
  await up;
  return peer;
}

/** Tracks whether a promise has settled, without awaiting it. */
export function track<T>(p: Promise<T>): {
  settled: () => boolean;
  value: () => T | undefined;
  error: () => unknown;
} {
  let done = false;
  let value: T | undefined;
  let error: unknown;
  p.then(
    (v) => {
      done = true;
      value = v;
    },
    (e: unknown) => {
      done = true;
      error = e;
    },
  );
  return { settled: () => done, value: () => value, error: () => error };
}
