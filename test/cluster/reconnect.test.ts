// A vehicle that drops on node A with uplink still in a commit and reconnects at once on node B gets
// the exact NEXT_UPLINK_SEQ: A keeps the registry entry until its writes are durable, and B waits (issue 5).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TokenService } from '../../src/auth/tokens.js';
import { Cmd, encodeMessage, encodeTelemetry } from '../../src/protocol/index.js';
import { killNodes, nodeApi, vehicleOnNode } from '../helpers/cluster.js';
import { startServe, type ServeProcess } from '../helpers/process.js';
import { startRedis, type RedisServer } from '../helpers/redis.js';

const SECRET = 'rc-reconnect-secret';
const ADMIN = 'rc-reconnect-admin';
let redis: RedisServer;
let nodes: ServeProcess[] = [];
let tokens: TokenService;
const dirs: string[] = [];

beforeAll(async () => {
  tokens = await TokenService.create({ hs256Secret: SECRET });
  redis = await startRedis();
  nodes = await Promise.all(
    [0, 1].map((i) => {
      const dir = mkdtempSync(join(tmpdir(), `vmcp-rcn${i}-`));
      dirs.push(dir);
      // A long commit interval keeps writes pending long enough to move to the other node in between.
      return startServe(
        [
          '--store',
          'redis',
          '--redis-url',
          redis.url,
          '--data-dir',
          dir,
          '--commit-interval-ms',
          '300',
        ],
        { VMCP_JWT_SECRET: SECRET, VMCP_ADMIN_TOKEN: ADMIN },
      );
    }),
  );
}, 60_000);

afterAll(async () => {
  await killNodes(nodes);
  await redis?.stop();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe('moving to another node with uplink in flight', () => {
  it('the CONNACK on node B reports NEXT_UPLINK_SEQ after node A committed', async () => {
    const id = 'VIN-RCN-1';
    const a = await vehicleOnNode(nodes[0]!, tokens, id, ['telemetry:publish']);
    const frames = Array.from({ length: 20 }, (_, i) =>
      encodeMessage(Cmd.TELEMETRY, encodeTelemetry({ seq: i + 1, timestamp: 1764000000000 + i })),
    );
    a.v.sendRaw(Buffer.concat(frames));
    await new Promise((r) => setTimeout(r, 50));
    a.v.close();
    await a.v.waitClosed();
    const b = await vehicleOnNode(nodes[1]!, tokens, id, ['telemetry:publish']);
    expect(b.next).toBe(21);
    const view = (await nodeApi(nodes[1]!, ADMIN, 'GET', `/api/v1/vehicles/${id}`)).body as {
      lastUplinkSeq: number;
    };
    expect(view.lastUplinkSeq).toBe(20);
    b.v.close();
  });
});

describe('a Redis that stops answering', () => {
  it('a CONNECT that cannot be processed is closed after 3 × the connect timeout, and the node recovers', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vmcp-rcn-stall-'));
    dirs.push(dir);
    const node = await startServe(
      [
        '--store',
        'redis',
        '--redis-url',
        redis.url,
        '--data-dir',
        dir,
        '--connect-timeout-ms',
        '300',
      ],
      { VMCP_JWT_SECRET: SECRET, VMCP_ADMIN_TOKEN: ADMIN },
    );
    nodes.push(node);
    const { TestVehicle } = await import('../helpers/vehicle.js');
    const pid = Number(
      /process_id:(\d+)/.exec(
        await (await import('../helpers/redis.js')).rawCommand(redis.port, 'INFO server'),
      )![1],
    );
    process.kill(pid, 'SIGSTOP');
    try {
      const v = await TestVehicle.open(node.vehiclePort);
      const id = 'VIN-RCN-STALL';
      const token = await tokens.sign({
        subject: id,
        scopes: ['telemetry:publish'],
        ttlMs: 3600_000,
        nowMs: Date.now(),
      });
      const { encodeConnect } = await import('../../src/protocol/index.js');
      v.send(Cmd.CONNECT, encodeConnect({ versionMin: 1, versionMax: 2, vehicleId: id, token }));
      await v.waitClosed(5_000);
      expect(v.inbox.filter((m) => m.code === Cmd.CONNACK && m.data[0] === 0)).toEqual([]);
    } finally {
      process.kill(pid, 'SIGCONT');
    }
    const after = await vehicleOnNode(node, tokens, 'VIN-RCN-STALL-2', ['telemetry:publish']);
    expect(after.next).toBe(1);
    after.v.close();
  }, 30_000);
});
