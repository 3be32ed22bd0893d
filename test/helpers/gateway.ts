// Starts a real gateway (SQLite in a temp dir, ephemeral ports on 127.0.0.1) for integration tests.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GatewayApp } from '../../src/app.js';
import { TokenService } from '../../src/auth/tokens.js';
import { loadConfig } from '../../src/config/index.js';
import { silentLogger, type Logger } from '../../src/observability/logger.js';
import { TestVehicle } from './vehicle.js';

export const JWT_SECRET = 'integration-test-secret';
export const ADMIN_TOKEN = 'integration-admin-token';
export const ALL = ['telemetry:publish', 'event:publish', 'command:receive'];

export interface TestGateway {
  app: GatewayApp;
  dataDir: string;
  port: number;
  httpUrl: string;
  tokens: TokenService;
  token(vehicleId: string, scopes?: string[], ttlMs?: number): Promise<string>;
  vehicle(): Promise<TestVehicle>;
  /** Connects a vehicle with a token of all scopes; returns it with its CONNACK. */
  connected(vehicleId: string, extra?: Record<string, unknown>): Promise<TestVehicle>;
  api(
    method: string,
    path: string,
    body?: unknown,
    headers?: Record<string, string>,
  ): Promise<{ status: number; body: unknown }>;
  stop(): Promise<void>;
}

export async function startGateway(
  flags: Record<string, unknown> = {},
  dataDir?: string,
  logger: Logger = silentLogger(),
): Promise<TestGateway> {
  const dir = dataDir ?? mkdtempSync(join(tmpdir(), 'vmcp-it-'));
  const config = loadConfig({
    flags: {
      listen: '127.0.0.1:0',
      http: '127.0.0.1:0',
      dataDir: dir,
      jwtSecret: JWT_SECRET,
      adminToken: ADMIN_TOKEN,
      storeSync: 'normal',
      ...flags,
    },
  });
  const app = await GatewayApp.start(config, { logger, defaultMetrics: false });
  const tokens = await TokenService.create({ hs256Secret: JWT_SECRET });
  const port = app.addresses.vehicle.port;
  const httpUrl = `http://127.0.0.1:${app.addresses.http.port}`;
  const gw: TestGateway = {
    app,
    dataDir: dir,
    port,
    httpUrl,
    tokens,
    token: (vehicleId, scopes = ALL, ttlMs = 3600_000) =>
      tokens.sign({ subject: vehicleId, scopes, ttlMs, nowMs: Date.now() }),
    vehicle: () => TestVehicle.open(port),
    async connected(vehicleId, extra = {}) {
      const v = await TestVehicle.open(port);
      const ack = await v.connect({ vehicleId, token: await gw.token(vehicleId), ...extra });
      if (ack.status !== 0) throw new Error(`CONNACK status ${ack.status}: ${ack.reason}`);
      return v;
    },
    async api(method, path, body, headers = {}) {
      const res = await fetch(`${httpUrl}${path}`, {
        method,
        headers: {
          authorization: `Bearer ${ADMIN_TOKEN}`,
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
          ...headers,
        },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      const text = await res.text();
      return { status: res.status, body: text === '' ? undefined : (JSON.parse(text) as unknown) };
    },
    async stop() {
      await app.stop();
      if (dataDir === undefined) rmSync(dir, { recursive: true, force: true });
    },
  };
  return gw;
}
