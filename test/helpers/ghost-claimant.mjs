// A cluster node that dies right after claiming a vehicle: it registers as a node, claims the
// vehicle's session in the registry, prints the session it replaced, and then does nothing more
// (the test SIGKILLs it). It is the state a gateway leaves when it is killed between its claim and
// its takeover request. Usage: node ghost-claimant.mjs <redis-url> <node-id> <vehicle-id>
import { RedisCoordinator } from '../../dist/cluster/coordinator.js';

const [url, nodeId, vehicleId] = process.argv.slice(2);
const quiet = { debug() {}, info() {}, warn() {}, error() {} };
const c = new RedisCoordinator({
  urls: [url],
  nodeId,
  logger: quiet,
  heartbeatMs: 300,
  nodeTtlMs: 1_500,
});
await c.start(
  { nodeId, vehicleAddress: '127.0.0.1:1', httpAddress: '127.0.0.1:1', startedAt: Date.now() },
  // It never answers: a takeover request sent to it goes unanswered, as to a killed process.
  { onMessage: () => new Promise(() => undefined), onEvent() {} },
);
const { prev } = await c.claim({
  vehicleId,
  nodeId,
  sessionId: `${nodeId}-1`,
  connectedAt: Date.now(),
  remote: '127.0.0.1:1',
  version: 2,
  keepalive: 30,
});
process.stdout.write(`${JSON.stringify({ prev: prev ?? null })}\n`);
setInterval(() => undefined, 60_000);
