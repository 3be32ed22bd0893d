// VehicleClient against the real gateway: 500 messages across a client restart arrive exactly once, in order; commands, sensors, registration.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CommandResult, FileOutbox, VehicleClient } from '../../src/client/index.js';
import { ALL, startGateway, type TestGateway } from '../helpers/gateway.js';
import { makePki } from '../helpers/pki.js';

let gw: TestGateway;
let dir: string;

beforeAll(async () => {
  gw = await startGateway();
  dir = mkdtempSync(join(tmpdir(), 'vmcp-sdk-e2e-'));
});

afterAll(async () => {
  await gw?.stop();
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
});

async function until(check: () => boolean | Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

interface UplinkItem {
  seq: number;
  kind: string;
  timestamp: number;
  data: { speedKmh?: number };
}

async function uplinkSeqs(vehicleId: string): Promise<UplinkItem[]> {
  const items: UplinkItem[] = [];
  let after = 0;
  for (;;) {
    const res = await gw.api(
      'GET',
      `/api/v1/vehicles/${vehicleId}/uplink?afterSeq=${after}&limit=1000`,
    );
    expect(res.status).toBe(200);
    const page = (res.body as { items: UplinkItem[] }).items;
    if (page.length === 0) return items;
    items.push(...page);
    after = page.at(-1)!.seq;
  }
}

describe('VehicleClient end to end', () => {
  it('publishes 500 telemetry messages across a client restart: the gateway holds 1..500 exactly', async () => {
    const vehicleId = 'SDKE2E00000000001';
    const token = await gw.token(vehicleId);
    const path = join(dir, `${vehicleId}.jsonl`);
    const T0 = 1_764_000_000_000;
    const options = {
      vehicleId,
      gateways: [`127.0.0.1:${gw.port}`],
      token,
      reconnect: { baseMs: 50, capMs: 500 },
    };
    const errors: Error[] = [];

    // First process: publishes 1..250 and stops while some are still unacked.
    const store1 = new FileOutbox(path);
    const first = new VehicleClient({ ...options, outbox: store1 });
    first.on('error', (e) => errors.push(e));
    first.start();
    const firstSeqs: Promise<number>[] = [];
    for (let i = 1; i <= 250; i++) {
      const p = first.publishTelemetry({ timestamp: T0 + i, speed: i });
      p.catch(() => undefined); // an instance stopped mid-flight leaves some pending forever
      firstSeqs.push(p);
    }
    await firstSeqs[49]; // the first 50 are stored
    await first.stop();
    store1.close();
    const leftOver = first.unacked;
    expect(leftOver).toBeGreaterThan(0); // the rate limit (50/s, burst 100) holds most of them back

    // Second process: same outbox file, a new client. It resends what is unacked and continues the
    // seqs, this time in TELEMETRY_BATCH messages (a version 2 session).
    const store2 = new FileOutbox(path);
    const second = new VehicleClient({
      ...options,
      outbox: store2,
      batch: { maxSamples: 40, maxDelayMs: 10 },
    });
    let batchedAcks = 0;
    second.on('acked', () => batchedAcks++);
    second.on('error', (e) => errors.push(e));
    expect(second.unacked).toBe(leftOver);
    expect(second.nextSeq).toBe(251);
    second.start();
    const secondSeqs: Promise<number>[] = [];
    for (let i = 251; i <= 500; i++)
      secondSeqs.push(second.publishTelemetry({ timestamp: T0 + i, speed: i }));
    expect(await Promise.all(secondSeqs)).toEqual(Array.from({ length: 250 }, (_, k) => 251 + k));
    await until(() => second.unacked === 0);

    // Far fewer acks than messages: the samples went in batches.
    expect(batchedAcks).toBeLessThan(200);
    const items = await uplinkSeqs(vehicleId);
    expect(items.map((r) => r.seq)).toEqual(Array.from({ length: 500 }, (_, k) => k + 1));
    expect(items.every((r) => r.kind === 'telemetry' && r.timestamp === T0 + r.seq)).toBe(true);
    expect(items.every((r) => r.data.speedKmh === r.seq / 10)).toBe(true);
    const vehicle = await gw.api('GET', `/api/v1/vehicles/${vehicleId}`);
    expect(vehicle.body).toMatchObject({ id: vehicleId, online: true, lastUplinkSeq: 500 });

    await second.stop();
    store2.close();
    expect(errors).toEqual([]);
  });

  it('round-trips a command and a sensor read', async () => {
    const vehicleId = 'SDKE2E00000000002';
    const client = new VehicleClient({
      vehicleId,
      gateways: [`127.0.0.1:${gw.port}`],
      token: await gw.token(vehicleId),
    });
    let runs = 0;
    client.onCommand('door.lock', (cmd) => {
      runs++;
      return {
        result: CommandResult.SUCCEEDED,
        payload: { locked: true, params: JSON.parse(cmd.params ?? 'null') as unknown },
      };
    });
    client.onSensorRead(1, () => Uint8Array.of(0x31, 0x2e));
    const up = new Promise((resolve) => client.once('connected', resolve));
    client.start();
    await up;

    const posted = await gw.api('POST', `/api/v1/vehicles/${vehicleId}/commands`, {
      name: 'door.lock',
      params: { force: true },
    });
    expect(posted.status).toBe(202);
    const id = (posted.body as { id: string }).id;
    let cmd: { status: string; result: unknown } = { status: 'pending', result: null };
    await until(async () => {
      cmd = (await gw.api('GET', `/api/v1/commands/${id}`)).body as typeof cmd;
      return cmd.status === 'succeeded';
    });
    expect(cmd.result).toEqual({ locked: true, params: { force: true } });
    expect(runs).toBe(1);
    expect(client.lastCommandSeq).toBeGreaterThan(0);

    const unknown = await gw.api('POST', `/api/v1/vehicles/${vehicleId}/commands`, {
      name: 'warp.drive',
    });
    const unknownId = (unknown.body as { id: string }).id;
    await until(
      async () =>
        ((await gw.api('GET', `/api/v1/commands/${unknownId}`)).body as { status: string })
          .status === 'unsupported',
    );

    const sensor = await gw.api('GET', `/api/v1/vehicles/${vehicleId}/sensors/1`);
    expect(sensor).toMatchObject({
      status: 200,
      body: { channel: 1, status: 'ok', value: '312e' },
    });
    const missing = await gw.api('GET', `/api/v1/vehicles/${vehicleId}/sensors/9`);
    expect(missing.status).toBe(404);
    await client.stop();
  });

  it('registers with a credential, keeps the issued token and reconnects with it', async () => {
    const vehicleId = 'SDKE2E00000000003';
    const created = await gw.api('POST', '/api/v1/devices', {
      id: vehicleId,
      secret: 's3cret',
      scopes: ALL,
    });
    expect(created.status).toBe(201);
    const client = new VehicleClient({
      vehicleId,
      gateways: [`127.0.0.1:${gw.port}`],
      credential: 's3cret',
      reconnect: { baseMs: 20, capMs: 100 },
    });
    const token = new Promise<string>((resolve) => client.once('token', resolve));
    client.start();
    expect((await token).split('.')).toHaveLength(3);
    expect(await client.publishTelemetry({ timestamp: 1_764_000_000_000 })).toBe(1);
    await client.stop();
    const again = new Promise((resolve) => client.once('connected', resolve));
    client.start();
    await again;
    expect(await client.publishTelemetry({ timestamp: 1_764_000_000_001 })).toBe(2);
    await client.stop();
  });
});

describe('VehicleClient over mutual TLS', () => {
  it('connects with a client certificate and publishes', async () => {
    const pkiDir = mkdtempSync(join(tmpdir(), 'vmcp-sdk-pki-'));
    const pki = makePki(pkiDir);
    const tlsGw = await startGateway({
      tlsListen: '127.0.0.1:0',
      tlsCert: pki.server.certPath,
      tlsKey: pki.server.keyPath,
      clientCa: pki.deviceCa.certPath,
    });
    try {
      const vehicleId = 'SDKTLS00000000001';
      const cert = pki.issueClientCert(vehicleId);
      const client = new VehicleClient({
        vehicleId,
        gateways: [`127.0.0.1:${tlsGw.app.addresses.tls!.port}`],
        token: await tlsGw.token(vehicleId),
        tls: { cert: cert.certPem, key: cert.keyPem, ca: pki.serverCa.certPem },
      });
      const up = new Promise((resolve) => client.once('connected', resolve));
      client.start();
      await up;
      expect(await client.publishTelemetry({ timestamp: 1_764_000_000_000, speed: 10 })).toBe(1);
      await client.stop();
    } finally {
      await tlsGw.stop();
      rmSync(pkiDir, { recursive: true, force: true });
    }
  });
});
