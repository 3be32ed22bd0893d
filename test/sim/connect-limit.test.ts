// The simulator against a gateway whose CONNECT check is slow and one at a time (as a registered
// secret's scrypt is): the CONNECTs in flight adapt so none outlives the connect timeout, and a
// registered vehicle reconnects with the TOKEN its CONNACK carried, not its credential. A fake gateway
// (raw VMCP over TCP) and a stub registration API, both on 127.0.0.1 and ephemeral ports.
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { createServer, type Server, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import {
  Cmd,
  ConnackStatus,
  DisconnectReason,
  FrameDecoder,
  MessageAssembler,
  decodeConnect,
  encodeConnack,
  encodeDisconnect,
  encodeMessage,
} from '../../src/protocol/index.js';
import { SIM_DEFAULTS, SimFleet, type SimOptions } from '../../src/sim/index.js';

/** A gateway that checks one CONNECT at a time, `costMs` each, and issues a token for a credential. */
class SlowAuthGateway {
  readonly server: Server;
  private readonly queue: (() => void)[] = [];
  private busy = false;
  /** CONNECTs received and not answered yet: now and the most at once. */
  pending = 0;
  peakPending = 0;
  credentialConnects = 0;
  tokenConnects = 0;
  badTokens = 0;
  private readonly kicked = new Set<string>();
  private readonly sockets = new Set<Socket>();

  constructor(
    private readonly costMs: number,
    /** Kick each vehicle once, right after its first accepted CONNECT. */
    private readonly kickOnce: boolean,
  ) {
    this.server = createServer((sock) => this.accept(sock));
  }

  async listen(): Promise<number> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    return (this.server.address() as { port: number }).port;
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise((r) => this.server.close(r));
  }

  private accept(sock: Socket): void {
    this.sockets.add(sock);
    sock.on('close', () => this.sockets.delete(sock));
    sock.on('error', () => undefined);
    const decoder = new FrameDecoder(
      new MessageAssembler(
        {
          onMessage: (code, data) => {
            if (code === Cmd.CONNECT) this.connect(sock, data.slice());
          },
          onBrokenRun: () => undefined,
          onTooLarge: () => undefined,
          onBadFrame: () => undefined,
          onGarbage: () => undefined,
        },
        65_536,
      ),
    );
    sock.on('data', (chunk) => decoder.push(chunk));
  }

  private connect(sock: Socket, data: Uint8Array): void {
    const msg = decodeConnect(data);
    this.pending++;
    if (this.pending > this.peakPending) this.peakPending = this.pending;
    this.queue.push(() => {
      this.pending--;
      if (sock.destroyed) return; // the vehicle gave up (connect timeout)
      const id = msg.vehicleId;
      let token: string | undefined;
      if (msg.credential !== undefined) {
        this.credentialConnects++;
        token = `tok-${id}`;
      } else if (msg.token === `tok-${id}`) this.tokenConnects++;
      else {
        this.badTokens++;
        sock.end(
          encodeMessage(
            Cmd.CONNACK,
            encodeConnack({ status: ConnackStatus.BAD_CREDENTIALS, version: 0 }),
          ),
        );
        return;
      }
      sock.write(
        encodeMessage(
          Cmd.CONNACK,
          encodeConnack({
            status: ConnackStatus.ACCEPTED,
            version: 2,
            sessionId: `s-${id}`,
            keepalive: 30,
            nextUplinkSeq: 1,
            token,
          }),
        ),
      );
      if (this.kickOnce && !this.kicked.has(id)) {
        this.kicked.add(id);
        sock.end(
          encodeMessage(
            Cmd.DISCONNECT,
            encodeDisconnect({ reason: DisconnectReason.KICKED, retryAfterMs: 50 }),
          ),
        );
      }
    });
    this.next();
  }

  /** One check at a time, costMs each. */
  private next(): void {
    if (this.busy) return;
    const job = this.queue.shift();
    if (job === undefined) return;
    this.busy = true;
    setTimeout(() => {
      job();
      this.busy = false;
      this.next();
    }, this.costMs);
  }
}

/** POST /api/v1/devices answers 201 (the registration the simulator does before its run). */
async function registrationApi(): Promise<{
  server: HttpServer;
  url: string;
  posts: () => number;
}> {
  let posts = 0;
  const server = createHttpServer((req, res) => {
    req.resume();
    req.on('end', () => {
      if (req.method === 'POST' && req.url === '/api/v1/devices') posts++;
      res.writeHead(201, { 'content-type': 'application/json' }).end('{}');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  return { server, url: `http://127.0.0.1:${port}`, posts: () => posts };
}

let gateway: SlowAuthGateway | undefined;
let api: HttpServer | undefined;

afterEach(async () => {
  await gateway?.close();
  api?.closeAllConnections();
  await new Promise((r) => (api === undefined ? r(undefined) : api.close(r)));
  gateway = undefined;
  api = undefined;
});

async function fleet(
  costMs: number,
  kickOnce: boolean,
  over: Partial<SimOptions>,
): Promise<{ fleet: SimFleet; gw: SlowAuthGateway; posts: () => number }> {
  gateway = new SlowAuthGateway(costMs, kickOnce);
  const port = await gateway.listen();
  const reg = await registrationApi();
  api = reg.server;
  const f = new SimFleet({
    ...SIM_DEFAULTS,
    host: '127.0.0.1',
    port,
    rate: 0,
    sources: [],
    drainMs: 0,
    tickMs: 10,
    auth: { kind: 'register', adminToken: 't', httpUrl: reg.url, secretSeed: 's' },
    verify: undefined,
    ...over,
  });
  return { fleet: f, gw: gateway, posts: reg.posts };
}

describe('vmcp sim against a gateway with a slow CONNECT check', () => {
  it('keeps CONNECTs in flight to what the gateway answers in time: none times out', async () => {
    // 350 checks of 8 ms one after the other: 2.8 s of queue if all were sent at once (the default
    // --max-connecting 1000 lets them), more than the connect timeout of 2.5 s for the last ones.
    const { fleet: f, gw } = await fleet(8, false, {
      vehicles: 350,
      durationMs: 6_000,
      connectTimeoutMs: 2_500,
    });
    const s = await f.run();
    // The limit adapted: well below the 350 a fixed limit of 1000 lets through at once.
    expect(gw.peakPending).toBeLessThanOrEqual(175);
    expect(s.connections.peakConnecting).toBeLessThanOrEqual(175);
    expect(s.errors.connect_timeout).toBeUndefined();
    expect(s.connections.connectLatencyMs.max).toBeLessThan(2_500);
    expect(s.connections.accepted).toBe(350);
    expect(s.connections.allConnectedMs).not.toBeNull();
    // Registration happened before the run, and its time is reported.
    expect(s.registration).toMatchObject({ devices: 350, registered: 350, failed: 0 });
    expect(s.registration!.elapsedMs).toBeGreaterThanOrEqual(0);
  });

  it('reconnects with the TOKEN of its CONNACK, not the credential (one slow check per vehicle)', async () => {
    const {
      fleet: f,
      gw,
      posts,
    } = await fleet(5, true, {
      vehicles: 20,
      durationMs: 2_500,
      backoffBaseMs: 100,
    });
    const s = await f.run();
    expect(posts()).toBe(20); // registered once each, before the run
    expect(gw.credentialConnects).toBe(20); // the credential once per vehicle
    expect(gw.tokenConnects).toBeGreaterThanOrEqual(20); // every reconnect with the token
    expect(gw.badTokens).toBe(0);
    expect(s.connections.reconnects).toBeGreaterThanOrEqual(20);
    for (const v of f.vehicles) expect(v.issuedToken).toBe(`tok-${v.id}`);
  });
});
