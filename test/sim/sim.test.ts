// The fleet simulator against an in-process gateway: counts equal what the store holds, motion values
// in range, commands and sensor reads answered; plus its pure helpers. No timing assertions.
import { afterEach, describe, expect, it } from 'vitest';
import {
  LatencyHistogram,
  SIM_DEFAULTS,
  SimFleet,
  VehicleMotion,
  parseNofile,
  parseSources,
  vehicleId,
  type SimOptions,
  type SimSummary,
} from '../../src/sim/index.js';
import { simOptions } from '../../src/cli/sim.js';
import { ADMIN_TOKEN, JWT_SECRET, startGateway, type TestGateway } from '../helpers/gateway.js';

let gw: TestGateway | undefined;

afterEach(async () => {
  await gw?.stop();
  gw = undefined;
});

function options(g: TestGateway, over: Partial<SimOptions> = {}): SimOptions {
  return {
    ...SIM_DEFAULTS,
    host: '127.0.0.1',
    port: g.port,
    vehicles: 20,
    rate: 5,
    durationMs: 2_000,
    sources: [],
    auth: { kind: 'jwt', secret: JWT_SECRET, ttlMs: 3_600_000 },
    verify: { httpUrl: g.httpUrl, adminToken: ADMIN_TOKEN },
    drainMs: 5_000,
    tickMs: 10,
    ...over,
  };
}

interface UplinkItem {
  seq: number;
  kind: string;
  data: Record<string, number | string>;
}

/** Every stored record of a vehicle, through the API (bounded pages). */
async function records(g: TestGateway, id: string): Promise<UplinkItem[]> {
  const out: UplinkItem[] = [];
  let after = 0;
  for (let page = 0; page < 20; page++) {
    const res = await g.api('GET', `/api/v1/vehicles/${id}/uplink?afterSeq=${after}&limit=1000`);
    if (res.status === 404) break;
    const items = (res.body as { items: UplinkItem[] }).items;
    out.push(...items);
    if (items.length < 1000) break;
    after = items[items.length - 1]!.seq;
  }
  return out;
}

/** Resolves when `cond` holds, polling every 20 ms, at most `ms`. */
async function until(cond: () => boolean, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!cond() && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
}

describe('vmcp sim against an in-process gateway', () => {
  it('stores exactly what it counts, with plausible motion, and answers commands and sensor reads', async () => {
    gw = await startGateway();
    const g = gw;
    const fleet = new SimFleet(options(g));
    const running = fleet.run();
    await until(() => fleet.stats.connected === 20, 10_000);
    expect(fleet.stats.connected).toBe(20);

    const ids = [0, 1, 2].map((i) => vehicleId(SIM_DEFAULTS.idPrefix, i));
    const posted: string[] = [];
    for (const id of ids) {
      const res = await g.api('POST', `/api/v1/vehicles/${id}/commands`, { name: 'door.lock' });
      expect(res.status).toBe(202);
      posted.push((res.body as { id: string }).id);
    }
    const sensor = await g.api('GET', `/api/v1/vehicles/${ids[0]}/sensors/2?timeoutMs=5000`);
    const missing = await g.api('GET', `/api/v1/vehicles/${ids[0]}/sensors/200?timeoutMs=5000`);
    const summary: SimSummary = await running;

    // Commands answered SUCCEEDED, sensor reads answered.
    for (const id of posted) {
      const res = await g.api('GET', `/api/v1/commands/${id}`);
      expect((res.body as { status: string }).status).toBe('succeeded');
    }
    expect(summary.downlink.commands).toBe(3);
    expect(sensor.status).toBe(200);
    const soc = parseInt((sensor.body as { value: string }).value, 16);
    expect(soc).toBeGreaterThanOrEqual(0);
    expect(soc).toBeLessThanOrEqual(100);
    expect(missing.status).toBe(404);
    expect(summary.downlink.sensorReads).toBe(2);

    // Counts: everything sent was acked and is in the store, nothing more.
    const u = summary.uplink;
    expect(u.sent).toBeGreaterThan(0);
    expect(u.unacked).toBe(0);
    expect(u.stored).toBe(u.sent);
    expect(u.generated).toBe(u.sent);
    expect(summary.errorsTotal).toBe(0);
    expect(summary.store).toMatchObject({ loss: 0, lostAcked: 0, disorder: 0, extra: 0 });
    expect(summary.store?.records).toBe(u.stored);
    let stored = 0;
    for (let i = 0; i < 20; i++) {
      const items = await records(g, vehicleId(SIM_DEFAULTS.idPrefix, i));
      stored += items.length;
      items.forEach((r, j) => expect(r.seq).toBe(j + 1)); // in seq order, no hole, no duplicate
      for (const r of items) {
        const d = r.data;
        expect(Math.abs(Number(d.latitude) - 31.2304)).toBeLessThan(0.2);
        expect(Math.abs(Number(d.longitude) - 121.4737)).toBeLessThan(0.2);
        if (r.kind === 'event') {
          expect([1, 2, 3, 4, 5]).toContain(d.eventCode);
          continue;
        }
        expect(d.speedKmh).toBeGreaterThanOrEqual(0);
        expect(d.speedKmh).toBeLessThanOrEqual(120);
        expect(d.headingDeg).toBeGreaterThanOrEqual(0);
        expect(d.headingDeg).toBeLessThan(360);
        expect(d.fuelOrSocPct).toBeGreaterThanOrEqual(0);
        expect(d.fuelOrSocPct).toBeLessThanOrEqual(100);
        expect(d.odometerKm).toBeGreaterThan(0);
        expect(Number(d.statusFlags) & ~0xf).toBe(0);
      }
    }
    expect(stored).toBe(u.stored);
    expect(summary.latencyMs.count).toBe(u.stored);
    expect(LatencyHistogram.decode(summary.histogram).count).toBe(u.stored);
  });

  it('batches in version 2 and follows THROTTLED without losing anything', async () => {
    gw = await startGateway({ uplinkRatePerSec: 10, uplinkBurst: 10 });
    const g = gw;
    const fleet = new SimFleet(
      options(g, { vehicles: 6, rate: 40, batch: 4, durationMs: 1_500, drainMs: 1_000 }),
    );
    const summary = await fleet.run();
    const u = summary.uplink;
    expect(u.throttled).toBeGreaterThan(0);
    expect(u.resent).toBeGreaterThan(0);
    expect(u.messages).toBeLessThan(u.sent + u.resent); // batches carry several samples
    expect(summary.store).toMatchObject({ lostAcked: 0, disorder: 0, extra: 0 });
    let stored = 0;
    for (let i = 0; i < 6; i++) stored += (await records(g, vehicleId('SIM-', i))).length;
    // Every sample acked is stored; samples still unacked at the end may or may not be.
    expect(stored).toBeGreaterThanOrEqual(u.stored);
    expect(stored).toBeLessThanOrEqual(u.sent);
  });
});

describe('vmcp sim timing', () => {
  it('pings an idle fleet on its keepalive and starts sending when the rate is raised', async () => {
    gw = await startGateway();
    const g = gw;
    const fleet = new SimFleet(
      options(g, { vehicles: 5, rate: 0, keepaliveS: 1, durationMs: 3_500, drainMs: 1_000 }),
    );
    const running = fleet.run();
    await until(() => fleet.stats.connected === 5, 10_000);
    // Idle: only keepalive PINGs after a second without sending, answered by PONGs.
    await until(() => fleet.stats.pongs >= 5, 2_500);
    expect(fleet.stats.generated).toBe(0);
    fleet.setRate(20);
    const summary = await running;
    expect(summary.keepalive.pings).toBeGreaterThanOrEqual(5);
    expect(summary.keepalive.pongs).toBeGreaterThanOrEqual(5);
    expect(summary.keepalive.misses).toBe(0);
    expect(summary.uplink.sent).toBeGreaterThan(0);
    expect(summary.uplink.stored).toBe(summary.uplink.sent);
    expect(summary.latencyMs.count).toBe(summary.uplink.stored);
    expect(summary.errorsTotal).toBe(0);
    expect(summary.store).toMatchObject({ loss: 0, lostAcked: 0, disorder: 0, extra: 0 });
  });
});

describe('vmcp sim with registration', () => {
  it('registers devices through the API, connects with CREDENTIAL and keeps the issued token', async () => {
    gw = await startGateway();
    const g = gw;
    const fleet = new SimFleet(
      options(g, {
        vehicles: 3,
        rate: 4,
        durationMs: 1_000,
        idPrefix: 'REG-',
        auth: { kind: 'register', adminToken: ADMIN_TOKEN, httpUrl: g.httpUrl, secretSeed: 't' },
      }),
    );
    const summary = await fleet.run();
    expect(summary.connections.accepted).toBe(3);
    expect(summary.uplink.stored).toBe(summary.uplink.sent);
    expect(summary.store).toMatchObject({ loss: 0, lostAcked: 0, records: summary.uplink.sent });
    for (const v of fleet.vehicles) expect(v.issuedToken).toMatch(/^ey/);
  });
});

describe('simulator helpers', () => {
  it('keeps motion within the wire ranges over a simulated hour', () => {
    const t0 = 1_764_000_000_000;
    for (let seed = 1; seed <= 20; seed++) {
      const m = new VehicleMotion(seed, t0);
      for (let s = 1; s <= 3600; s += 7) {
        m.advance(t0 + s * 1000);
        const t = m.telemetry(t0 + s * 1000);
        expect(Math.abs(t.latitude!)).toBeLessThanOrEqual(900_000_000);
        expect(Math.abs(t.longitude!)).toBeLessThanOrEqual(1_800_000_000);
        expect(t.speed).toBeGreaterThanOrEqual(0);
        expect(t.speed).toBeLessThanOrEqual(1_200);
        expect(t.heading).toBeGreaterThanOrEqual(0);
        expect(t.heading).toBeLessThanOrEqual(3599);
        expect(t.fuelOrSoc).toBeGreaterThanOrEqual(0);
        expect(t.fuelOrSoc).toBeLessThanOrEqual(100);
        expect(t.altitude).toBeGreaterThan(-32_768);
        expect(t.altitude).toBeLessThan(32_768);
        m.takeEvent(t0 + s * 1000);
      }
    }
  });

  it('parses source ranges, fd limits and flags', () => {
    expect(parseSources('127.0.0.1-127.0.0.3')).toEqual(['127.0.0.1', '127.0.0.2', '127.0.0.3']);
    expect(parseSources('127.0.0.9,127.0.1.1')).toEqual(['127.0.0.9', '127.0.1.1']);
    expect(() => parseSources('127.0.0.5-127.0.0.1')).toThrow();
    expect(
      parseNofile('Max open files            20000                20000                files'),
    ).toEqual({
      soft: 20_000,
      hard: 20_000,
    });
    const o = simOptions(
      [
        '--target',
        '127.0.0.1:7100',
        '--vehicles',
        '5',
        '--rate',
        '0.5',
        '--duration',
        '3s',
        '--batch',
        '8',
      ],
      { VMCP_JWT_SECRET: 's' },
    );
    expect(o).toMatchObject({ port: 7100, vehicles: 5, rate: 0.5, durationMs: 3_000, batch: 8 });
    expect(() => simOptions(['--vehicles', '5'], {})).toThrow(/jwt-secret/);
  });

  it('gives the store check 3 minutes unless --verify-budget says otherwise', () => {
    const base = ['--verify', '--http', 'http://127.0.0.1:8080', '--admin-token', 't'];
    const env = { VMCP_JWT_SECRET: 's' };
    expect(simOptions(base, env).verify).toEqual({
      httpUrl: 'http://127.0.0.1:8080',
      adminToken: 't',
      budgetMs: 180_000,
    });
    expect(simOptions([...base, '--verify-budget', '20m'], env).verify?.budgetMs).toBe(1_200_000);
    expect(() => simOptions([...base, '--verify-budget', 'soon'], env)).toThrow(/--verify-budget/);
  });

  it('merges encoded histograms', () => {
    const a = new LatencyHistogram();
    const b = new LatencyHistogram();
    for (let i = 1; i <= 100; i++) a.recordMs(i);
    for (let i = 1; i <= 100; i++) b.recordMs(1000 + i);
    const m = LatencyHistogram.decode(a.encode());
    m.addEncoded(b.encode());
    expect(m.count).toBe(200);
    expect(m.summary().max).toBeGreaterThan(1000);
  });
});
