// Two gateway processes on a 3-master Redis Cluster carry the same traffic: takeover, ordered uplink,
// commands across nodes, the uplink bus through a consumer group, and drain with REDIRECT (issue 5).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TokenService } from '../../src/auth/tokens.js';
import { tail } from '../../src/cli/tail.js';
import {
  AckStatus,
  Cmd,
  CommandResult,
  DisconnectReason,
  encodeCommandAck,
  encodeTelemetry,
  type CommandMessage,
  type DisconnectMessage,
  type UplinkAckMessage,
} from '../../src/protocol/index.js';
import { killNodes, nodeApi, vehicleOnNode } from '../helpers/cluster.js';
import { startServe, type ServeProcess } from '../helpers/process.js';
import { startRedisCluster, type RedisCluster } from '../helpers/redis.js';
import { TestVehicle } from '../helpers/vehicle.js';

const SECRET = 'rc-secret';
const ADMIN = 'rc-admin';
const env = { VMCP_JWT_SECRET: SECRET, VMCP_ADMIN_TOKEN: ADMIN };
let cluster: RedisCluster;
let nodes: ServeProcess[] = [];
let tokens: TokenService;
const dirs: string[] = [];

beforeAll(async () => {
  tokens = await TokenService.create({ hs256Secret: SECRET });
  cluster = await startRedisCluster(3);
  const urlArgs = cluster.urls.flatMap((u) => ['--redis-url', u]);
  nodes = await Promise.all(
    [0, 1].map((i) => {
      const dir = mkdtempSync(join(tmpdir(), `vmcp-rc${i}-`));
      dirs.push(dir);
      return startServe(
        [
          '--store',
          'redis',
          ...urlArgs,
          '--data-dir',
          dir,
          '--node-heartbeat-ms',
          '300',
          '--node-ttl-ms',
          '1500',
        ],
        env,
      );
    }),
  );
}, 90_000);

afterAll(async () => {
  await killNodes(nodes);
  await cluster?.stop();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const api = (node: ServeProcess, method: string, path: string, body?: unknown) =>
  nodeApi(node, ADMIN, method, path, body);
const vehicleOn = (node: ServeProcess, id: string) =>
  vehicleOnNode(node, tokens, id, ['telemetry:publish', 'command:receive']);

async function sendAndAck(v: TestVehicle, from: number, to: number): Promise<void> {
  for (let seq = from; seq <= to; seq++)
    v.send(Cmd.TELEMETRY, encodeTelemetry({ seq, timestamp: 1764000000000 + seq }));
  let last = 0;
  while (last < to) {
    const a = await v.nextDecoded<UplinkAckMessage>(Cmd.UPLINK_ACK);
    expect(a.status).toBe(AckStatus.STORED);
    last = a.seq;
  }
}

describe('gateways on a 3-master Redis Cluster', () => {
  const ids = Array.from({ length: 12 }, (_, i) => `VIN-RC-${i}`);

  it('stores many vehicles (spread over the masters) in order, with takeover between the nodes', async () => {
    for (const [i, id] of ids.entries()) {
      const first = await vehicleOn(nodes[i % 2]!, id);
      await sendAndAck(first.v, 1, 15);
      const second = await vehicleOn(nodes[(i + 1) % 2]!, id);
      expect(second.next).toBe(16);
      expect((await first.v.nextDecoded<DisconnectMessage>(Cmd.DISCONNECT)).reason).toBe(
        DisconnectReason.TAKEN_OVER,
      );
      await sendAndAck(second.v, 16, 30);
      second.v.close();
    }
    for (const id of ids) {
      const res = await api(nodes[0]!, 'GET', `/api/v1/vehicles/${id}/uplink?limit=1000`);
      expect((res.body as { items: { seq: number }[] }).items.map((r) => r.seq)).toEqual(
        Array.from({ length: 30 }, (_, k) => k + 1),
      );
    }
  });

  it('delivers a command posted on one node through the other', async () => {
    const id = 'VIN-RC-CMD';
    const { v } = await vehicleOn(nodes[1]!, id);
    const posted = await api(nodes[0]!, 'POST', `/api/v1/vehicles/${id}/commands`, {
      name: 'horn.honk',
    });
    expect(posted.status).toBe(202);
    const cmd = await v.nextDecoded<CommandMessage>(Cmd.COMMAND);
    v.send(Cmd.COMMAND_ACK, encodeCommandAck({ seq: cmd.seq, result: CommandResult.SUCCEEDED }));
    const cid = (posted.body as { id: string }).id;
    const deadline = Date.now() + 10_000;
    let status = '';
    while (status !== 'succeeded' && Date.now() < deadline) {
      status = ((await api(nodes[0]!, 'GET', `/api/v1/commands/${cid}`)).body as { status: string })
        .status;
      if (status !== 'succeeded') await new Promise((r) => setTimeout(r, 50));
    }
    expect(status).toBe('succeeded');
    v.close();
  });

  it('`vmcp tail --group` consumes every stored record once, in seq order per vehicle', async () => {
    const lines: string[] = [];
    const code = await tail(
      [
        '--group',
        'it-consumers',
        '--consumer',
        'c1',
        '--count',
        String(ids.length * 30),
        ...cluster.urls.flatMap((u) => ['--redis-url', u]),
      ],
      (t) => lines.push(t),
      () => undefined,
    );
    expect(code).toBe(0);
    const bySeq = new Map<string, number[]>();
    for (const line of lines) {
      const { data } = JSON.parse(line) as { data: { vehicleId: string; seq: number } };
      bySeq.set(data.vehicleId, [...(bySeq.get(data.vehicleId) ?? []), data.seq]);
    }
    for (const id of ids)
      expect(bySeq.get(id)).toEqual(Array.from({ length: 30 }, (_, k) => k + 1));
  });

  it('a draining node sends DISCONNECT SHUTDOWN with REDIRECT to the live node', async () => {
    const { v } = await vehicleOn(nodes[1]!, 'VIN-RC-DRAIN');
    nodes[1]!.child.kill('SIGTERM');
    const d = await v.nextDecoded<DisconnectMessage>(Cmd.DISCONNECT);
    expect(d.reason).toBe(DisconnectReason.SHUTDOWN);
    expect(d.redirect).toBe(`127.0.0.1:${nodes[0]!.vehiclePort}`);
    expect(await nodes[1]!.exited).toBe(0);
    const moved = await vehicleOn(nodes[0]!, 'VIN-RC-DRAIN');
    moved.v.close();
  });
});
