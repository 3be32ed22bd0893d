// Scale-out on a real Redis with 3 gateway processes: takeover across nodes (racing too), a vehicle hopping
// nodes mid-stream, commands routed through another node, kill -9 of a node, Redis restart (issue 5).
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TokenService } from '../../src/auth/tokens.js';
import type { SessionRecord } from '../../src/cluster/coordinator.js';
import { RedisStore } from '../../src/store/redis.js';
import {
  AckStatus,
  Cmd,
  ConnackStatus,
  CommandResult,
  DisconnectReason,
  decodeConnack,
  decodeDisconnect,
  decodeUplinkAck,
  encodeCommandAck,
  encodeConnect,
  encodeTelemetry,
  type CommandMessage,
  type DisconnectMessage,
  type UplinkAckMessage,
} from '../../src/protocol/index.js';
import { killNodes, nodeApi, vehicleOnNode } from '../helpers/cluster.js';
import { startServe, type ServeProcess } from '../helpers/process.js';
import { startRedis, type RedisServer } from '../helpers/redis.js';
import { TestVehicle } from '../helpers/vehicle.js';

const SECRET = 'cluster-secret';
const ADMIN = 'cluster-admin';
const env = { VMCP_JWT_SECRET: SECRET, VMCP_ADMIN_TOKEN: ADMIN };
const T = 1764000000000;
const GHOST = resolve(dirname(fileURLToPath(import.meta.url)), '../helpers/ghost-claimant.mjs');

let redis: RedisServer;
let nodes: ServeProcess[] = [];
let tokens: TokenService;
const dirs: string[] = [];
const nodeDirs: string[] = [];

async function startNode(i: number, nodeTtlMs = '1500'): Promise<ServeProcess> {
  const dir = nodeDirs[i] ?? mkdtempSync(join(tmpdir(), `vmcp-node${i}-`));
  nodeDirs[i] = dir;
  return startServe(
    [
      '--store',
      'redis',
      '--redis-url',
      redis.url,
      '--data-dir',
      dir,
      '--node-heartbeat-ms',
      '300',
      '--node-ttl-ms',
      nodeTtlMs,
      '--uplink-rate-per-sec',
      '100000',
      '--uplink-burst',
      '100000',
    ],
    env,
  );
}

beforeAll(async () => {
  tokens = await TokenService.create({ hs256Secret: SECRET });
  // A data dir of our own: stop() keeps it, so the restart test finds its AOF.
  const redisDir = mkdtempSync(join(tmpdir(), 'vmcp-cl-redis-'));
  dirs.push(redisDir);
  redis = await startRedis({ dir: redisDir });
  nodes = await Promise.all([0, 1, 2].map((i) => startNode(i)));
}, 60_000);

afterAll(async () => {
  await killNodes(nodes);
  await redis?.stop();
  for (const d of [...dirs, ...nodeDirs]) rmSync(d, { recursive: true, force: true });
});

const api = (node: ServeProcess, method: string, path: string, body?: unknown) =>
  nodeApi(node, ADMIN, method, path, body);
const vehicleOn = (node: ServeProcess, id: string) =>
  vehicleOnNode(node, tokens, id, ['telemetry:publish', 'event:publish', 'command:receive']);

async function storedSeqs(node: ServeProcess, id: string): Promise<number[]> {
  const seqs: number[] = [];
  for (let after = 0; ;) {
    const res = await api(
      node,
      'GET',
      `/api/v1/vehicles/${id}/uplink?afterSeq=${after}&limit=1000`,
    );
    const items = (res.body as { items: { seq: number }[] }).items;
    if (items.length === 0) return seqs;
    seqs.push(...items.map((r) => r.seq));
    after = items[items.length - 1]!.seq;
  }
}

async function sendAndAck(v: TestVehicle, from: number, to: number): Promise<number> {
  for (let seq = from; seq <= to; seq++)
    v.send(Cmd.TELEMETRY, encodeTelemetry({ seq, timestamp: T + seq, speed: seq % 1000 }));
  let last = 0;
  while (last < to) {
    const a = await v.nextDecoded<UplinkAckMessage>(Cmd.UPLINK_ACK);
    expect(a.status).toBe(AckStatus.STORED);
    last = a.seq;
  }
  return last;
}

async function eventually(check: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('one session per vehicle across nodes', () => {
  it('a CONNECT on node B takes over the session on node A (DISCONNECT TAKEN_OVER before the new CONNACK)', async () => {
    const id = 'VIN-CL-TAKEOVER';
    const a = await vehicleOn(nodes[0]!, id);
    await sendAndAck(a.v, 1, 10);
    const b = await vehicleOn(nodes[1]!, id);
    expect(b.next).toBe(11);
    expect((await a.v.nextDecoded<DisconnectMessage>(Cmd.DISCONNECT)).reason).toBe(
      DisconnectReason.TAKEN_OVER,
    );
    await a.v.waitClosed();
    // Every node answers the same: online, with node B's session.
    for (const n of nodes) {
      const view = (await api(n, 'GET', `/api/v1/vehicles/${id}`)).body as {
        online: boolean;
        lastUplinkSeq: number;
      };
      expect(view).toMatchObject({ online: true, lastUplinkSeq: 10 });
    }
    b.v.close();
  });

  it('racing CONNECTs on three nodes leave exactly one live session', async () => {
    const id = 'VIN-CL-RACE';
    const token = await tokens.sign({
      subject: id,
      scopes: ['telemetry:publish'],
      ttlMs: 3600_000,
      nowMs: Date.now(),
    });
    const vs = await Promise.all(nodes.map((n) => TestVehicle.open(n.vehiclePort)));
    const acks = await Promise.allSettled(vs.map((v) => v.connect({ vehicleId: id, token })));
    await new Promise((r) => setTimeout(r, 1_000));
    const alive = vs.filter((v) => !v.closed);
    expect(alive.length).toBe(1);
    const winner = alive[0]!;
    expect(acks[vs.indexOf(winner)]).toMatchObject({ status: 'fulfilled', value: { status: 0 } });
    winner.send(Cmd.PING);
    await winner.next(Cmd.PONG);
    winner.close();
  });

  it('racing CONNECTs behind a live session: each gets a CONNACK, each session is closed before the next CONNACK, NEXT_UPLINK_SEQ exact', async () => {
    // PROTOCOL.md 2 and 6: the old connection gets DISCONNECT TAKEN_OVER and is closed before the new
    // one gets its CONNACK; before CONNACK the gateway closes only after a refusing CONNACK (or the
    // errors 6 names). With three CONNECTs racing on three nodes, the takeovers form a chain in
    // claim order, and every link of it must hold.
    const id = 'VIN-CL-RACE-CHAIN';
    const token = await tokens.sign({
      subject: id,
      scopes: ['telemetry:publish'],
      ttlMs: 3600_000,
      nowMs: Date.now(),
    });
    const storedAcks = (v: TestVehicle): number[] =>
      v.inbox
        .filter((m) => m.code === Cmd.UPLINK_ACK)
        .map((m) => decodeUplinkAck(m.data))
        .filter((a) => a.status === AckStatus.STORED)
        .map((a) => a.seq);
    let last = 0;
    for (let round = 0; round < 12; round++) {
      const live = await TestVehicle.open(nodes[round % 3]!.vehiclePort);
      const c0 = await live.connect({ vehicleId: id, token });
      expect(c0).toMatchObject({ status: ConnackStatus.ACCEPTED, nextUplinkSeq: last + 1 });
      // Uplink in flight on the live session while the others race in.
      for (let k = 0; k < 30; k++)
        live.send(Cmd.TELEMETRY, encodeTelemetry({ seq: last + 1 + k, timestamp: T + k }));
      const racers = await Promise.all(nodes.map((n) => TestVehicle.open(n.vehiclePort)));
      for (const v of racers)
        v.send(Cmd.CONNECT, encodeConnect({ versionMin: 1, versionMax: 2, vehicleId: id, token }));
      const links = await Promise.all(
        racers.map(async (v) => {
          const m = await v.next(Cmd.CONNACK, 15_000);
          return { v, at: m.at, c: decodeConnack(m.data) };
        }),
      );
      for (const l of links) expect(l.c.status).toBe(ConnackStatus.ACCEPTED);
      const chain = [{ v: live, at: 0, c: c0 }, ...links.sort((a, b) => a.at - b.at)];
      const winner = chain[chain.length - 1]!;
      const takenAt: number[] = [];
      for (const l of chain.slice(0, -1)) {
        const m = await l.v.next(Cmd.DISCONNECT, 10_000);
        expect(decodeDisconnect(m.data).reason).toBe(DisconnectReason.TAKEN_OVER);
        takenAt.push(m.at);
        await l.v.waitClosed(10_000);
      }
      for (let i = 1; i < chain.length; i++) {
        const prev = chain[i - 1]!;
        const cur = chain[i]!;
        // Messages on different connections arrive in the order the gateways wrote them (loopback).
        // The FIN is out before the next CONNACK too, but the client reads EOF one loop turn after
        // the data before it (libuv stops at a partial read), so only the DISCONNECT is compared.
        expect(takenAt[i - 1]).toBeLessThan(cur.at);
        expect(cur.c.nextUplinkSeq).toBeGreaterThan(Math.max(0, ...storedAcks(prev.v)));
        expect(cur.c.nextUplinkSeq!).toBeGreaterThanOrEqual(prev.c.nextUplinkSeq!);
      }
      // The winner is live and continues exactly where the store is.
      const from = winner.c.nextUplinkSeq!;
      last = await sendAndAck(winner.v, from, from + 4);
      expect(winner.v.closed).toBe(false);
      winner.v.close();
      await winner.v.waitClosed();
    }
    expect(await storedSeqs(nodes[0]!, id)).toEqual(Array.from({ length: last }, (_, i) => i + 1));
  }, 120_000);
});

describe('a node that dies or stalls in the middle of a takeover', () => {
  const signToken = (id: string): Promise<string> =>
    tokens.sign({ subject: id, scopes: ['telemetry:publish'], ttlMs: 3600_000, nowMs: Date.now() });

  /** Claims `id` from a node process that is SIGKILLed right after its claim (before it asks anyone). */
  async function ghostClaim(id: string): Promise<SessionRecord | null> {
    const child = spawn(
      process.execPath,
      [GHOST, redis.url, `ghost-${Math.random().toString(36).slice(2, 8)}`, id],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    const exited = new Promise((r) => child.on('exit', r));
    const line = await new Promise<string>((resolve, reject) => {
      let out = '';
      child.stdout!.on('data', (c: Buffer) => {
        out += c.toString();
        if (out.includes('\n')) resolve(out.split('\n')[0]!);
      });
      void exited.then(() => reject(new Error(`ghost claimant exited: ${out}`)));
    });
    child.kill('SIGKILL');
    await exited;
    return (JSON.parse(line) as { prev: SessionRecord | null }).prev;
  }

  /** Sends CONNECT on a new connection to `node`; the CONNACK with its arrival time. */
  async function connectTimed(node: ServeProcess, id: string, token: string) {
    const v = await TestVehicle.open(node.vehiclePort);
    v.send(Cmd.CONNECT, encodeConnect({ versionMin: 1, versionMax: 2, vehicleId: id, token }));
    const m = await v.next(Cmd.CONNACK, 15_000);
    return { v, at: m.at, c: decodeConnack(m.data) };
  }

  it('a claimant killed before it asked the owner to close: the next CONNECT closes the owner first', async () => {
    // Before: the next claimant asked only the dead node, waited 3 s, and left the owner's session
    // open for good (the registry no longer named it).
    const id = 'VIN-CL-GHOST-NEXT';
    const token = await signToken(id);
    const owner = await vehicleOn(nodes[0]!, id);
    await sendAndAck(owner.v, 1, 10);
    const prev = await ghostClaim(id);
    expect(prev).toMatchObject({ vehicleId: id });
    const next = await connectTimed(nodes[2]!, id, token);
    expect(next.c).toMatchObject({ status: ConnackStatus.ACCEPTED, nextUplinkSeq: 11 });
    const d = await owner.v.next(Cmd.DISCONNECT, 5_000);
    expect(decodeDisconnect(d.data).reason).toBe(DisconnectReason.TAKEN_OVER);
    expect(d.at).toBeLessThan(next.at);
    await owner.v.waitClosed();
    expect(await sendAndAck(next.v, 11, 15)).toBe(15);
    expect(await storedSeqs(nodes[1]!, id)).toEqual(Array.from({ length: 15 }, (_, i) => i + 1));
    next.v.close();
  }, 30_000);

  it('a claimant killed and no CONNECT after it: the owner session is closed when the dead node is reaped', async () => {
    const id = 'VIN-CL-GHOST-REAP';
    const owner = await vehicleOn(nodes[1]!, id);
    await sendAndAck(owner.v, 1, 5);
    expect(await ghostClaim(id)).toMatchObject({ vehicleId: id });
    // The node TTL is 1.5 s: the reaper releases the dead claim and closes what it replaced.
    const d = await owner.v.next(Cmd.DISCONNECT, 10_000);
    expect(decodeDisconnect(d.data).reason).toBe(DisconnectReason.TAKEN_OVER);
    await owner.v.waitClosed();
    const offline = async () => {
      for (const n of nodes)
        if (((await api(n, 'GET', `/api/v1/vehicles/${id}`)).body as { online: boolean }).online)
          return false;
      return true;
    };
    await eventually(offline, 5_000);
    const back = await vehicleOn(nodes[2]!, id);
    expect(back.next).toBe(6);
    back.v.close();
  }, 30_000);

  it('racing CONNECTs behind a stalled node (SIGSTOP) are closed in claim order, NEXT_UPLINK_SEQ exact', async () => {
    // The owner's node stops answering (10 s TTL: it is not declared dead). The first racer waits the
    // 3 s bound for it; the racers after it must wait for the racer before them (its node reports
    // progress), not give up at the same bound and answer out of order.
    const ROUNDS = 4;
    const extra = await startNode(3, '10000');
    try {
      const id = 'VIN-CL-STALLED';
      const token = await signToken(id);
      let last = 0;
      for (let round = 0; round < ROUNDS; round++) {
        const owner = await vehicleOn(extra, id);
        expect(owner.next).toBe(last + 1);
        last = await sendAndAck(owner.v, last + 1, last + 5);
        extra.child.kill('SIGSTOP');
        try {
          const links = (await Promise.all(nodes.map((n) => connectTimed(n, id, token)))).sort(
            (a, b) => a.at - b.at,
          );
          for (const l of links) expect(l.c.status).toBe(ConnackStatus.ACCEPTED);
          for (let i = 0; i + 1 < links.length; i++) {
            const d = await links[i]!.v.next(Cmd.DISCONNECT, 10_000);
            expect(decodeDisconnect(d.data).reason).toBe(DisconnectReason.TAKEN_OVER);
            expect(d.at).toBeLessThan(links[i + 1]!.at);
            expect(links[i + 1]!.c.nextUplinkSeq).toBe(last + 1);
          }
        } finally {
          extra.child.kill('SIGCONT');
        }
        // Resumed, the stalled node closes the owner's session as it was asked.
        const d = await owner.v.next(Cmd.DISCONNECT, 10_000);
        expect(decodeDisconnect(d.data).reason).toBe(DisconnectReason.TAKEN_OVER);
        await owner.v.waitClosed();
        const winner = await vehicleOn(nodes[round % 3]!, id);
        expect(winner.next).toBe(last + 1);
        last = await sendAndAck(winner.v, last + 1, last + 5);
        winner.v.close();
        await winner.v.waitClosed();
      }
      expect(await storedSeqs(nodes[0]!, id)).toEqual(
        Array.from({ length: last }, (_, i) => i + 1),
      );
    } finally {
      await killNodes([extra]);
    }
  }, 90_000);
});

describe('a stalled node that resumes after a takeover', () => {
  it('does not store its old session uplink: the new CONNACK NEXT_UPLINK_SEQ stays exact (fencing)', async () => {
    // Before: the resumed node read the old connection's buffered TELEMETRY before the takeover
    // message and stored it, so the seqs of the new session's CONNACK were consumed behind its back
    // (its own messages then got OUT_OF_ORDER and DUPLICATE).
    const extra = await startNode(3, '10000'); // not declared dead while stopped
    try {
      const id = 'VIN-CL-FENCE';
      const owner = await vehicleOn(extra, id);
      await sendAndAck(owner.v, 1, 5);
      extra.child.kill('SIGSTOP');
      let racer: Awaited<ReturnType<typeof vehicleOn>>;
      try {
        // Buffered in the stopped node's socket: read when it resumes.
        for (let seq = 6; seq <= 13; seq++)
          owner.v.send(Cmd.TELEMETRY, encodeTelemetry({ seq, timestamp: T + seq, speed: 111 }));
        racer = await vehicleOn(nodes[1]!, id); // waits the 3 s bound for the stopped node
        expect(racer.next).toBe(6);
      } finally {
        extra.child.kill('SIGCONT');
      }
      const d = await owner.v.next(Cmd.DISCONNECT, 10_000);
      expect(decodeDisconnect(d.data).reason).toBe(DisconnectReason.TAKEN_OVER);
      await owner.v.waitClosed(10_000);
      const late = owner.v.inbox
        .filter((m) => m.code === Cmd.UPLINK_ACK)
        .map((m) => decodeUplinkAck(m.data))
        .filter((a) => a.status === AckStatus.STORED && a.seq >= 6);
      expect(late).toEqual([]);
      // The new session's own messages are the ones stored at 6..13.
      for (let seq = 6; seq <= 13; seq++)
        racer.v.send(Cmd.TELEMETRY, encodeTelemetry({ seq, timestamp: T + seq, speed: 222 }));
      let last = 0;
      while (last < 13) {
        const a = await racer.v.nextDecoded<UplinkAckMessage>(Cmd.UPLINK_ACK);
        expect(a.status).toBe(AckStatus.STORED);
        last = a.seq;
      }
      const res = await api(nodes[0]!, 'GET', `/api/v1/vehicles/${id}/uplink?afterSeq=5&limit=100`);
      const items = (res.body as { items: { seq: number; data: { speedKmh?: number } }[] }).items;
      expect(items.map((r) => [r.seq, r.data.speedKmh])).toEqual(
        Array.from({ length: 8 }, (_, i) => [6 + i, 22.2]),
      );
      racer.v.close();
    } finally {
      await killNodes([extra]);
    }
  }, 60_000);
});

describe('a node frozen longer than its TTL', () => {
  it('registers its sessions again when it resumes, and closes those a CONNECT elsewhere took meanwhile', async () => {
    // Before: the other nodes released its sessions (it looked dead) and nothing put them back, so
    // its vehicles showed offline while connected, and a CONNECT elsewhere left two sessions live.
    const extra = await startNode(3); // TTL 1.5 s
    try {
      const kept = 'VIN-CL-FROZEN-KEPT';
      const taken = 'VIN-CL-FROZEN-TAKEN';
      const a = await vehicleOn(extra, kept);
      const b = await vehicleOn(extra, taken);
      await sendAndAck(a.v, 1, 3);
      const online = async (id: string): Promise<boolean[]> =>
        Promise.all(
          nodes.map(
            async (n) =>
              ((await api(n, 'GET', `/api/v1/vehicles/${id}`)).body as { online: boolean }).online,
          ),
        );
      extra.child.kill('SIGSTOP');
      try {
        // Reaped: the registry no longer names its sessions.
        await eventually(async () => (await online(kept)).every((o) => !o), 10_000);
        const b3 = await vehicleOn(nodes[2]!, taken);
        expect(b3.next).toBe(1);
        extra.child.kill('SIGCONT');
        // Back: the session nobody took is registered again; the one taken meanwhile is closed.
        await eventually(async () => (await online(kept)).every((o) => o), 10_000);
        const d = await b.v.next(Cmd.DISCONNECT, 10_000);
        expect(decodeDisconnect(d.data).reason).toBe(DisconnectReason.TAKEN_OVER);
        await b.v.waitClosed();
        expect(b3.v.closed).toBe(false);
        expect(await online(taken)).toEqual([true, true, true]);
        b3.v.close();
      } finally {
        extra.child.kill('SIGCONT');
      }
      // The kept session works and a CONNECT elsewhere takes it over as usual.
      expect(await sendAndAck(a.v, 4, 6)).toBe(6);
      const a2 = await vehicleOn(nodes[0]!, kept);
      expect(a2.next).toBe(7);
      expect(decodeDisconnect((await a.v.next(Cmd.DISCONNECT, 5_000)).data).reason).toBe(
        DisconnectReason.TAKEN_OVER,
      );
      a2.v.close();
    } finally {
      await killNodes([extra]);
    }
  }, 60_000);
});

describe('uplink across nodes', () => {
  it('a vehicle hopping nodes mid-stream produces an exact stored sequence', async () => {
    const id = 'VIN-CL-HOP';
    let seq = 0;
    for (let hop = 0; hop < 6; hop++) {
      const node = nodes[hop % 3]!;
      const { v, next } = await vehicleOn(node, id);
      expect(next).toBe(seq + 1);
      // Pipelined without waiting: the hop happens with messages in flight.
      for (let k = 0; k < 40; k++)
        v.send(Cmd.TELEMETRY, encodeTelemetry({ seq: seq + 1 + k, timestamp: T + k }));
      let acked = seq;
      while (acked < seq + 20) acked = (await v.nextDecoded<UplinkAckMessage>(Cmd.UPLINK_ACK)).seq;
      v.close();
      await v.waitClosed();
      // Wait until the node released the session, then learn the durable seq from the next CONNACK.
      const probe = await vehicleOn(nodes[(hop + 1) % 3]!, id);
      seq = probe.next - 1;
      expect(seq).toBeGreaterThanOrEqual(acked);
      probe.v.close();
      await probe.v.waitClosed();
    }
    const stored = await storedSeqs(nodes[2]!, id);
    expect(stored).toEqual(Array.from({ length: seq }, (_, i) => i + 1));
  });
});

describe('uplink written behind the session (another writer)', () => {
  it('seqs the store had consumed already are answered DUPLICATE, then the session continues from the store', async () => {
    // PROTOCOL.md 3.2 (a): S <= last consumed -> DUPLICATE. Before: every refused seq got
    // OUT_OF_ORDER with the store's next seq, also those the store had consumed.
    const id = 'VIN-CL-BEHIND';
    const { v, next } = await vehicleOn(nodes[0]!, id);
    expect(next).toBe(1);
    const other = new RedisStore({ urls: [redis.url] });
    await other.open();
    try {
      const writes = Array.from({ length: 5 }, (_, i) => ({
        vehicleId: id,
        seq: i + 1,
        record: {
          vehicleId: id,
          seq: i + 1,
          kind: 'telemetry' as const,
          timestamp: T + i,
          receivedAt: T + i,
          data: { speedKmh: 1 },
        },
      }));
      expect(await other.appendUplink(writes)).toEqual(new Map());
    } finally {
      await other.close();
    }
    for (let seq = 1; seq <= 5; seq++)
      v.send(Cmd.TELEMETRY, encodeTelemetry({ seq, timestamp: T + seq, speed: 50 }));
    const acks: UplinkAckMessage[] = [];
    for (let i = 0; i < 5; i++) acks.push(await v.nextDecoded<UplinkAckMessage>(Cmd.UPLINK_ACK));
    expect(acks).toEqual([1, 2, 3, 4, 5].map((seq) => ({ seq, status: AckStatus.DUPLICATE })));
    expect(await sendAndAck(v, 6, 8)).toBe(8);
    expect(await storedSeqs(nodes[1]!, id)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    v.close();
  });
});

describe('downlink across nodes', () => {
  it('a command posted on node A is delivered by node C and its result is visible on node B', async () => {
    const id = 'VIN-CL-CMD';
    const { v } = await vehicleOn(nodes[2]!, id);
    const posted = await api(nodes[0]!, 'POST', `/api/v1/vehicles/${id}/commands`, {
      name: 'door.lock',
      params: { all: true },
    });
    expect(posted.status).toBe(202);
    const cmd = await v.nextDecoded<CommandMessage>(Cmd.COMMAND);
    expect(cmd).toMatchObject({ seq: 1, name: 'door.lock', params: '{"all":true}' });
    v.send(
      Cmd.COMMAND_ACK,
      encodeCommandAck({
        seq: 1,
        result: CommandResult.SUCCEEDED,
        resultPayload: new TextEncoder().encode('{"ok":1}'),
      }),
    );
    const cid = (posted.body as { id: string }).id;
    await eventually(
      async () =>
        ((await api(nodes[1]!, 'GET', `/api/v1/commands/${cid}`)).body as { status: string })
          .status === 'succeeded',
    );
    expect((await api(nodes[1]!, 'GET', `/api/v1/commands/${cid}`)).body).toMatchObject({
      result: { ok: 1 },
    });
    // A sensor read through another node, and a kick through another node.
    const read = api(nodes[1]!, 'GET', `/api/v1/vehicles/${id}/sensors/3?timeoutMs=3000`);
    const req = await v.nextDecoded<{ channel: number; tag: number }>(Cmd.SENSOR_READ);
    const { encodeSensorData } = await import('../../src/protocol/index.js');
    v.send(
      Cmd.SENSOR_DATA,
      encodeSensorData({ channel: 3, tag: req.tag, status: 0, value: Uint8Array.of(7) }),
    );
    expect(await read).toEqual({ status: 200, body: { channel: 3, status: 'ok', value: '07' } });
    expect((await api(nodes[0]!, 'POST', `/api/v1/vehicles/${id}/disconnect`)).status).toBe(200);
    expect((await v.nextDecoded<DisconnectMessage>(Cmd.DISCONNECT)).reason).toBe(
      DisconnectReason.KICKED,
    );
  });

  it('commands posted at once through the holding node and others are delivered in seq order', async () => {
    // 4.1: in SEQ order. The holding node learns of commands created elsewhere by notices that may
    // arrive after one it created itself with a higher seq.
    for (let round = 0; round < 5; round++) {
      const id = `VIN-CL-ORDER-${round}`;
      const { v } = await vehicleOn(nodes[2]!, id);
      const posts = Array.from({ length: 12 }, (_, i) =>
        api(nodes[i % 3]!, 'POST', `/api/v1/vehicles/${id}/commands`, { name: 'horn.honk' }),
      );
      for (const res of await Promise.all(posts)) expect(res.status).toBe(202);
      const seqs: number[] = [];
      for (let i = 0; i < 8; i++) seqs.push((await v.nextDecoded<CommandMessage>(Cmd.COMMAND)).seq);
      expect(seqs).toEqual([1, 2, 3, 4, 5, 6, 7, 8]); // the window is full: nothing acked
      v.close();
    }
  });

  it('expiry frees window slots on the node holding the vehicle, whichever node marked the commands expired', async () => {
    // 4.1: at most 8 sent without a final result; expiry frees a slot. Every node sweeps the shared
    // expiry index, so the node that writes `expired` is usually not the vehicle's.
    const id = 'VIN-CL-EXPIRY';
    const { v } = await vehicleOn(nodes[2]!, id);
    const post = async (ttlMs: number) => {
      const res = await api(nodes[0]!, 'POST', `/api/v1/vehicles/${id}/commands`, {
        name: 'horn.honk',
        ttlMs,
      });
      expect(res.status).toBe(202);
      return (res.body as { id: string }).id;
    };
    // Eight that expire one after another (different sweeps, so different nodes), never answered.
    const short: string[] = [];
    for (let i = 0; i < 8; i++) short.push(await post(1_000 + i * 250));
    for (let seq = 1; seq <= 8; seq++)
      expect((await v.nextDecoded<CommandMessage>(Cmd.COMMAND)).seq).toBe(seq);
    for (let i = 0; i < 8; i++) await post(60_000);
    // All eight slots come free: the eight long-lived commands are all sent.
    for (let seq = 9; seq <= 16; seq++)
      expect((await v.nextDecoded<CommandMessage>(Cmd.COMMAND, 10_000)).seq).toBe(seq);
    for (const cid of short)
      expect(
        ((await api(nodes[1]!, 'GET', `/api/v1/commands/${cid}`)).body as { status: string })
          .status,
      ).toBe('expired');
    v.close();
  });
});

describe('failures', () => {
  it('kill -9 of a node under load: vehicles move to another node, every acked message is stored exactly once', async () => {
    const ids = ['VIN-CL-K1', 'VIN-CL-K2', 'VIN-CL-K3'];
    const acked = new Map<string, number>(ids.map((id) => [id, 0]));
    const victim = nodes[1]!;
    const vs = await Promise.all(ids.map((id) => vehicleOn(victim, id)));
    // The highest STORED ack each vehicle has read so far.
    const drain = (): void =>
      vs.forEach(({ v }, i) => {
        for (const m of v.inbox.splice(0)) {
          if (m.code === Cmd.UPLINK_ACK && m.data[4] === AckStatus.STORED)
            acked.set(ids[i]!, Buffer.from(m.data).readUInt32BE(0));
        }
      });
    const pumps = vs.map(async ({ v }) => {
      for (let seq = 1; seq <= 5_000 && !v.closed; seq++) {
        v.send(Cmd.TELEMETRY, encodeTelemetry({ seq, timestamp: T + seq }));
        if (seq % 50 === 0) await new Promise((r) => setTimeout(r, 1));
        drain();
      }
    });
    // Acks that come after the pumps have sent everything count too (a loaded machine).
    await eventually(async () => {
      drain();
      return [...acked.values()].every((n) => n >= 200);
    }, 20_000);
    victim.child.kill('SIGKILL');
    await victim.exited;
    await Promise.all(pumps);
    // The vehicles reconnect to a live node; the dead node's sessions are taken over after its TTL at most.
    for (const id of ids) {
      const { v, next } = await vehicleOn(nodes[0]!, id);
      expect(next - 1).toBeGreaterThanOrEqual(acked.get(id)!);
      const last = await sendAndAck(v, next, next + 9);
      v.close();
      expect(await storedSeqs(nodes[2]!, id)).toEqual(
        Array.from({ length: last }, (_, i) => i + 1),
      );
    }
    nodes[1] = await startNode(1);
  }, 60_000);

  it('a node killed and restarted within its TTL releases what its earlier life held: those vehicles show offline', async () => {
    // A fourth node with a 10 s TTL, so the restart is surely within it (nobody reaps the node).
    const longTtl = '10000';
    let extra = await startNode(3, longTtl);
    try {
      const id = 'VIN-CL-RESTARTED';
      const { v } = await vehicleOn(extra, id);
      const online = async () =>
        ((await api(nodes[0]!, 'GET', `/api/v1/vehicles/${id}`)).body as { online: boolean })
          .online;
      expect(await online()).toBe(true);
      extra.child.kill('SIGKILL');
      await extra.exited;
      v.close();
      extra = await startNode(3, longTtl); // same data dir: same node id
      // The vehicle does not come back: no node may show it online (before: for ever).
      await eventually(async () => !(await online()), 5_000);
    } finally {
      await killNodes([extra]);
    }
  }, 60_000);

  it('a sensor read routed to a node that dies is answered 409 vehicle_offline, not left to time out', async () => {
    const extra = await startNode(3);
    try {
      const id = 'VIN-CL-SENSOR-DEATH';
      await vehicleOn(extra, id);
      const t0 = Date.now();
      const read = api(nodes[0]!, 'GET', `/api/v1/vehicles/${id}/sensors/1?timeoutMs=20000`);
      await new Promise((r) => setTimeout(r, 300)); // the read is out on the dying node
      extra.child.kill('SIGKILL');
      await extra.exited;
      const res = await read;
      expect(res).toMatchObject({ status: 409, body: { code: 'vehicle_offline' } });
      expect(Date.now() - t0).toBeLessThan(10_000); // the node TTL is 1.5 s; the read's timeout 20 s
    } finally {
      await killNodes([extra]);
    }
  }, 60_000);

  it('Redis stopped and restarted under load: nothing acked is lost, the gateway resumes by itself', async () => {
    const id = 'VIN-CL-REDIS';
    const { v } = await vehicleOn(nodes[0]!, id);
    let lastStored = await sendAndAck(v, 1, 20);
    await redis.stop();
    // While Redis is down nothing is acked STORED: THROTTLED (or no answer) only.
    v.send(Cmd.TELEMETRY, encodeTelemetry({ seq: lastStored + 1, timestamp: T }));
    const during = await v.nextDecoded<UplinkAckMessage>(Cmd.UPLINK_ACK, 15_000);
    expect(during).toEqual({ seq: lastStored + 1, status: AckStatus.THROTTLED });
    expect((await fetch(`${nodes[0]!.httpUrl}/readyz`)).status).toBe(503);
    // A node with no traffic at all notices too (a ping), within a few seconds.
    await eventually(
      async () => (await fetch(`${nodes[1]!.httpUrl}/readyz`)).status === 503,
      8_000,
    );
    await redis.restart();
    // The vehicle resends from the throttled seq until it is stored.
    const deadline = Date.now() + 20_000;
    while (Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 300));
      v.send(Cmd.TELEMETRY, encodeTelemetry({ seq: lastStored + 1, timestamp: T }));
      const a = await v.nextDecoded<UplinkAckMessage>(Cmd.UPLINK_ACK, 15_000);
      if (a.status === AckStatus.STORED) {
        lastStored = a.seq;
        break;
      }
      expect(a.status).toBe(AckStatus.THROTTLED);
    }
    lastStored = await sendAndAck(v, lastStored + 1, lastStored + 10);
    // Every node resumes by itself; each reconnects on its own backoff (up to 2 s apart after a
    // long outage), so the node read from is asked once it is ready.
    for (const n of nodes)
      await eventually(async () => (await fetch(`${n.httpUrl}/readyz`)).status === 200);
    expect(await storedSeqs(nodes[2]!, id)).toEqual(
      Array.from({ length: lastStored }, (_, i) => i + 1),
    );
    v.close();
  }, 60_000);

  it('a command result that arrives while Redis is down is kept and recorded once Redis is back, the command not sent again', async () => {
    const id = 'VIN-CL-CMD-REDIS';
    const { v } = await vehicleOn(nodes[1]!, id);
    const posted = await api(nodes[1]!, 'POST', `/api/v1/vehicles/${id}/commands`, {
      name: 'trunk.open',
    });
    expect(posted.status).toBe(202);
    const cid = (posted.body as { id: string }).id;
    const cmd = await v.nextDecoded<CommandMessage>(Cmd.COMMAND);
    await redis.stop();
    v.send(
      Cmd.COMMAND_ACK,
      encodeCommandAck({
        seq: cmd.seq,
        result: CommandResult.SUCCEEDED,
        resultPayload: new TextEncoder().encode('{"opened":true}'),
      }),
    );
    // The write fails at least once (retried every second); within a session a command is sent
    // once (4.1), so the vehicle is not asked again.
    await expect(v.nextDecoded<CommandMessage>(Cmd.COMMAND, 2_500)).rejects.toThrow(/timed out/);
    await redis.restart();
    const status = async (): Promise<{ status?: string; result?: unknown }> => {
      try {
        return (await api(nodes[0]!, 'GET', `/api/v1/commands/${cid}`)).body as {
          status?: string;
        };
      } catch {
        return {};
      }
    };
    let last: unknown;
    await eventually(async () => (last = await status()).status === 'succeeded', 20_000).catch(
      (err: Error) => {
        throw new Error(`${err.message}; the command read last: ${JSON.stringify(last)}`);
      },
    );
    expect(await status()).toMatchObject({ status: 'succeeded', result: { opened: true } });
    v.close();
  }, 60_000);
});
