// Helpers shared by the multi-node tests: the API of one gateway process, and a vehicle connected to one.
import type { TokenService } from '../../src/auth/tokens.js';
import type { ServeProcess } from './process.js';
import { TestVehicle } from './vehicle.js';

/** Calls a node's HTTP API with the admin bearer token; the body is parsed JSON (undefined when empty). */
export async function nodeApi(
  node: ServeProcess,
  admin: string,
  method: string,
  path: string,
  body?: unknown,
): Promise<{ status: number; body: unknown }> {
  const res = await fetch(`${node.httpUrl}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${admin}`,
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text === '' ? undefined : (JSON.parse(text) as unknown) };
}

/** Connects a vehicle to a node with a fresh token; returns it with its CONNACK's NEXT_UPLINK_SEQ. */
export async function vehicleOnNode(
  node: ServeProcess,
  tokens: TokenService,
  id: string,
  scopes: string[],
): Promise<{ v: TestVehicle; next: number }> {
  const v = await TestVehicle.open(node.vehiclePort);
  const token = await tokens.sign({ subject: id, scopes, ttlMs: 3600_000, nowMs: Date.now() });
  const ack = await v.connect({ vehicleId: id, token });
  if (ack.status !== 0) throw new Error(`CONNACK ${ack.status} ${ack.reason}`);
  return { v, next: ack.nextUplinkSeq! };
}

/** Kills every gateway process still running (SIGKILL) and waits for each to exit. */
export async function killNodes(nodes: readonly ServeProcess[]): Promise<void> {
  for (const n of nodes) {
    if (n.child.exitCode === null && n.child.signalCode === null) n.child.kill('SIGKILL');
    await n.exited;
  }
}
