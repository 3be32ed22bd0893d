// The HTTP API (PROTOCOL.md 9 and issue 3 extras) on a real gateway core and a real SQLite store,
// driven through fastify's inject (and a real socket for the event stream). Routes that need a
// connected vehicle are covered end to end by the socket tests; here the store stands in for the
// vehicle's past (markSeen, appendUplink, command transitions).
import { mkdtemp, rm } from 'node:fs/promises';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance, InjectOptions, LightMyRequestResponse } from 'fastify';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ROUTES, buildApi, type ApiOptions, type RouteSpec } from '../../src/api/index.js';
import { openApiPath, type OpenApiDocument } from '../../src/api/openapi.js';
import { TokenService, verifySecret } from '../../src/auth/index.js';
import { loadConfig } from '../../src/config/index.js';
import { systemClock } from '../../src/gateway/clock.js';
import { Gateway } from '../../src/gateway/gateway.js';
import { silentLogger } from '../../src/observability/logger.js';
import { GatewayMetrics } from '../../src/observability/metrics.js';
import { parseTraceparent } from '../../src/observability/trace.js';
import {
  Cmd,
  ConnackStatus,
  DisconnectReason,
  decodeCommand,
  decodeDisconnect,
  decodeSensorRead,
  encodeCommandAck,
  encodeSensorData,
} from '../../src/protocol/index.js';
import type { RecordData, UplinkRecord } from '../../src/protocol/record.js';
import { SqliteStore } from '../../src/store/sqlite.js';
import type { UplinkWrite } from '../../src/store/types.js';
import { MemoryVehicle } from './memory-vehicle.js';

const TOKEN = 'admin-token-for-tests';
const AUTH = { authorization: `Bearer ${TOKEN}` };

interface Ctx {
  dir: string;
  store: SqliteStore;
  gw: Gateway;
  app: FastifyInstance;
  ready: boolean;
}

let ctx: Ctx;

async function setup(
  flags: Record<string, unknown> = {},
  apiOpts: Partial<ApiOptions> = {},
): Promise<Ctx> {
  const dir = await mkdtemp(join(tmpdir(), 'vmcp-api-'));
  const store = new SqliteStore({ path: join(dir, 'vmcp.db') });
  const gw = new Gateway({
    config: loadConfig({ flags: { dataDir: dir, ...flags } }),
    store,
    tokens: await TokenService.create({ hs256Secret: 'test-secret' }),
    logger: silentLogger(),
    metrics: new GatewayMetrics({ defaultMetrics: false }),
    clock: systemClock,
    nodeId: 'test',
  });
  await store.open();
  const c: Ctx = { dir, store, gw, app: undefined as unknown as FastifyInstance, ready: true };
  c.app = buildApi(gw, {
    adminToken: TOKEN,
    isReady: () => c.ready,
    logger: silentLogger(),
    ...apiOpts,
  });
  return c;
}

async function teardown(c: Ctx): Promise<void> {
  await c.app.close();
  c.gw.stop();
  await c.store.close();
  await rm(c.dir, { recursive: true, force: true });
}

beforeEach(async () => {
  ctx = await setup();
});

afterEach(async () => {
  await teardown(ctx);
});

type Method = 'GET' | 'POST' | 'DELETE' | 'PUT' | 'PATCH' | 'HEAD';

function call(
  method: Method,
  url: string,
  body?: unknown,
  headers: Record<string, string> = AUTH,
): Promise<LightMyRequestResponse> {
  const opts: InjectOptions = { method, url, headers };
  if (body !== undefined) opts.payload = body as InjectOptions['payload'];
  return ctx.app.inject(opts);
}

function json<T = Record<string, unknown>>(res: LightMyRequestResponse): T {
  return res.json<T>();
}

/** Every 4xx/5xx answer: exactly {"code","message"}, JSON. */
function expectError(res: LightMyRequestResponse, status: number, code: string): void {
  expect({ status: res.statusCode, body: res.body }).toMatchObject({ status });
  expect(res.headers['content-type']).toMatch(/^application\/json/);
  const body = json(res);
  expect(Object.keys(body).sort()).toEqual(['code', 'message']);
  expect(body.code).toBe(code);
  expect(typeof body.message).toBe('string');
  expect((body.message as string).length).toBeGreaterThan(0);
}

/** Sends raw bytes to a listening API and returns everything it answers before closing. */
function rawHttp(port: number, request: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port }, () => socket.write(request));
    const chunks: Buffer[] = [];
    socket.setTimeout(5_000, () => socket.destroy(new Error('no answer')));
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', reject);
    socket.on('close', () => resolve(Buffer.concat(chunks).toString('utf8')));
  });
}

function postCommand(vehicleId: string, body: unknown, headers: Record<string, string> = AUTH) {
  return call('POST', `/api/v1/vehicles/${vehicleId}/commands`, body, headers);
}

function telemetry(vehicleId: string, seq: number, data: RecordData): UplinkWrite {
  const record: UplinkRecord = {
    vehicleId,
    seq,
    kind: 'telemetry',
    timestamp: 1_764_000_000_000 + seq,
    receivedAt: Date.now(),
    traceparent: `00-${'ab'.repeat(16)}-${'cd'.repeat(8)}-01`,
    data,
  };
  return { vehicleId, seq, record };
}

function event(vehicleId: string, seq: number, data: RecordData): UplinkWrite {
  return {
    vehicleId,
    seq,
    record: {
      vehicleId,
      seq,
      kind: 'event',
      timestamp: 1_764_000_000_000 + seq,
      receivedAt: Date.now(),
      data,
    },
  };
}

async function append(writes: UplinkWrite[]): Promise<void> {
  const failed = await ctx.store.appendUplink(writes);
  expect(failed.size).toBe(0);
}

const PROTECTED = Object.entries(ROUTES as Record<string, RouteSpec>).filter(([, r]) => r.auth);

/** A concrete URL for a route of the table. */
function sampleUrl(r: RouteSpec): string {
  return r.url.replace(':id', 'V1').replace(':channel', '1');
}

// ---------------------------------------------------------------------------------------------

describe('authentication', () => {
  it.each(PROTECTED)('%s without a token → 401 unauthorized', async (_name, r) => {
    const res = await call(r.method, sampleUrl(r), r.method === 'POST' ? {} : undefined, {});
    expectError(res, 401, 'unauthorized');
  });

  it.each(PROTECTED)('%s with a wrong token → 401 unauthorized', async (_name, r) => {
    const res = await call(r.method, sampleUrl(r), undefined, {
      authorization: `Bearer ${TOKEN}x`,
    });
    expectError(res, 401, 'unauthorized');
  });

  it('refuses other schemes, a bare token and an empty bearer', async () => {
    for (const authorization of [
      `Basic ${Buffer.from(`admin:${TOKEN}`).toString('base64')}`,
      TOKEN,
      'Bearer ',
      'Bearer',
      `Bearer ${TOKEN.slice(0, -1)}`,
    ]) {
      expectError(
        await call('GET', '/api/v1/vehicles', undefined, { authorization }),
        401,
        'unauthorized',
      );
    }
  });

  it('accepts the scheme name in any case', async () => {
    const res = await call('GET', '/api/v1/vehicles', undefined, {
      authorization: `bearer ${TOKEN}`,
    });
    expect(res.statusCode).toBe(200);
  });

  it('auth is checked before validation', async () => {
    expectError(await postCommand('not a valid id!', { name: '' }, {}), 401, 'unauthorized');
  });

  it('unknown paths under /api/v1 need the token too, then answer 404', async () => {
    expectError(await call('GET', '/api/v1/nope', undefined, {}), 401, 'unauthorized');
    expectError(await call('GET', '/api/v1/nope'), 404, 'not_found');
  });

  it.each(['/api', '/api/', '/api/v2/vehicles/V1', '/api/other', '/api/v10/vehicles', '/api/v1x'])(
    'an unknown path outside /api/v1 (%s) is just unknown: 404 without a token',
    async (url) => {
      expectError(await call('GET', url, undefined, {}), 404, 'not_found');
    },
  );

  it('an empty admin token refuses every request', async () => {
    const c = await setup({}, { adminToken: '' });
    try {
      for (const authorization of ['Bearer ', 'Bearer', '']) {
        const res = await c.app.inject({
          method: 'GET',
          url: '/api/v1/vehicles',
          headers: { authorization },
        });
        expectError(res, 401, 'unauthorized');
      }
    } finally {
      await teardown(c);
    }
  });

  it.each([
    ['/healthz', 200],
    ['/readyz', 200],
    ['/metrics', 200],
    ['/docs/openapi.json', 200],
  ])('%s needs no token', async (url, status) => {
    const res = await call('GET', url, undefined, {});
    expect(res.statusCode).toBe(status);
  });
});

describe('unknown routes and malformed requests', () => {
  it.each([
    ['GET', '/'],
    ['GET', '/nope'],
    ['GET', '/api/v2/vehicles'],
    ['PUT', '/api/v1/vehicles/V1'],
    ['PATCH', '/api/v1/commands/x'],
    ['DELETE', '/api/v1/vehicles/V1'],
    ['POST', '/api/v1/commands/x'],
    ['DELETE', '/healthz'],
    ['GET', '/api/v1/vehicles/V1/sensors'],
  ] as [Method, string][])('%s %s → 404 not_found', async (method, url) => {
    expectError(await call(method, url), 404, 'not_found');
  });

  it('a method Node does not know (FOO, BREW) → 404 not_found on a real socket', async () => {
    await ctx.app.listen({ host: '127.0.0.1', port: 0 });
    const { port } = ctx.app.server.address() as AddressInfo;
    for (const method of ['FOO', 'BREW']) {
      const raw = await rawHttp(port, `${method} /healthz HTTP/1.1\r\nHost: x\r\n\r\n`);
      expect(raw).toMatch(/^HTTP\/1\.1 404 /);
      const body = JSON.parse(raw.slice(raw.indexOf('\r\n\r\n') + 4)) as Record<string, unknown>;
      expect(body).toEqual({ code: 'not_found', message: 'unknown HTTP method' });
    }
    // Other malformed requests stay 400.
    expect(await rawHttp(port, 'GET /healthz HTTP/9.9\r\n\r\n')).toMatch(/^HTTP\/1\.1 400 /);
  });

  it('HEAD does not start a sensor read: 404 not_found', async () => {
    await ctx.store.markSeen('V1', Date.now());
    const res = await call('HEAD', '/api/v1/vehicles/V1/sensors/1');
    expect(res.statusCode).toBe(404);
  });

  it('a JSON body that is not UTF-8 → 400 bad_request, nothing queued', async () => {
    const body = Buffer.concat([
      Buffer.from('{"name":"door.lock'),
      Buffer.of(0xff),
      Buffer.from('"}'),
    ]);
    const res = await call('POST', '/api/v1/vehicles/V1/commands', body, {
      ...AUTH,
      'content-type': 'application/json',
    });
    expectError(res, 400, 'bad_request');
    expect(json(res).message).toMatch(/UTF-8/);
    expect(await ctx.store.openCommands('V1', Date.now())).toEqual([]);
  });

  it('a malformed URL → 400 bad_request', async () => {
    expectError(await call('GET', '/api/v1/vehicles/%ZZ'), 400, 'bad_request');
  });

  it('a path parameter over the router limit → 400 bad_request, the message bounded', async () => {
    const res = await call('GET', `/api/v1/commands/${'c'.repeat(5000)}`);
    expectError(res, 400, 'bad_request');
    expect((json(res).message as string).length).toBeLessThanOrEqual(301);
  });

  it('invalid JSON → 400 bad_request', async () => {
    const res = await call('POST', '/api/v1/vehicles/V1/commands', '{"name": "x"', {
      ...AUTH,
      'content-type': 'application/json',
    });
    expectError(res, 400, 'bad_request');
  });

  it('prototype poisoning → 400 bad_request', async () => {
    const res = await call(
      'POST',
      '/api/v1/vehicles/V1/commands',
      '{"name":"x","__proto__":{"a":1}}',
      {
        ...AUTH,
        'content-type': 'application/json',
      },
    );
    expectError(res, 400, 'bad_request');
  });

  it('an unsupported content type → 400 bad_request', async () => {
    const res = await call('POST', '/api/v1/vehicles/V1/commands', 'name=x', {
      ...AUTH,
      'content-type': 'application/x-www-form-urlencoded',
    });
    expectError(res, 400, 'bad_request');
  });

  it('a body over the limit → 400 bad_request with the error shape', async () => {
    const big = JSON.stringify({ name: 'x', params: 'y'.repeat((1 << 20) + 10) });
    const res = await call('POST', '/api/v1/vehicles/V1/commands', big, {
      ...AUTH,
      'content-type': 'application/json',
    });
    expectError(res, 400, 'bad_request');
    expect(json(res).message).toMatch(/too large/);
  });

  it('a POST with the JSON header and no body is not a parse error where no body is needed', async () => {
    await ctx.store.markSeen('V1', Date.now());
    const res = await call('POST', '/api/v1/vehicles/V1/disconnect', '', {
      ...AUTH,
      'content-type': 'application/json',
    });
    expectError(res, 409, 'vehicle_offline');
  });
});

describe('POST /api/v1/vehicles/{id}/commands', () => {
  it('202 {"id","seq","status":"pending"}, durable, with per-vehicle seqs from 1', async () => {
    const a = await postCommand('V1', { name: 'door.lock' });
    expect(a.statusCode).toBe(202);
    const ab = json(a);
    expect(ab).toMatchObject({ seq: 1, status: 'pending' });
    expect(typeof ab.id).toBe('string');
    const b = json(await postCommand('V1', { name: 'horn.honk', params: { times: 2 } }));
    expect(b.seq).toBe(2);
    const other = json(await postCommand('V2', { name: 'door.lock' }));
    expect(other.seq).toBe(1);
    const row = await ctx.store.getCommand(ab.id as string);
    expect(row).toMatchObject({
      vehicleId: 'V1',
      seq: 1,
      name: 'door.lock',
      status: 'pending',
      params: null,
    });
    expect((await ctx.store.getCommand(b.id as string))!.params).toBe('{"times":2}');
  });

  it('PARAMS is the JSON text the client wrote, compacted: no digit or form lost to a re-serialisation', async () => {
    const body =
      '{"name":"config.set", "params": {"id": 12345678901234567890, "gain": 1.0,\n "huge": 1E400, "s": "a  b"},"params2":1}';
    const res = await call('POST', '/api/v1/vehicles/V1/commands', body, {
      ...AUTH,
      'content-type': 'application/json',
    });
    expect(res.statusCode).toBe(202);
    const row = (await ctx.store.getCommand(json(res).id as string))!;
    expect(row.params).toBe('{"id":12345678901234567890,"gain":1.0,"huge":1E400,"s":"a  b"}');
    // Repeated "params": the last counts, as in the parsed body. null still means no PARAMS.
    const last = json(
      await call('POST', '/api/v1/vehicles/V1/commands', '{"name":"x","params":1,"params":[2]}', {
        ...AUTH,
        'content-type': 'application/json',
      }),
    );
    expect((await ctx.store.getCommand(last.id as string))!.params).toBe('[2]');
    const none = json(await postCommand('V1', { name: 'x', params: null }));
    expect((await ctx.store.getCommand(none.id as string))!.params).toBeNull();
  });

  it('ttlMs defaults to 86,400,000 and sets EXPIRES_AT = accept time + ttlMs', async () => {
    const before = Date.now();
    const d = json(await postCommand('V1', { name: 'x' }));
    const row = (await ctx.store.getCommand(d.id as string))!;
    expect(row.expiresAt - row.createdAt).toBe(86_400_000);
    expect(row.createdAt).toBeGreaterThanOrEqual(before);
    const t = json(await postCommand('V1', { name: 'x', ttlMs: 1234 }));
    const trow = (await ctx.store.getCommand(t.id as string))!;
    expect(trow.expiresAt - trow.createdAt).toBe(1234);
  });

  it.each([1, 604_800_000])('ttlMs %d (a bound) is accepted', async (ttlMs) => {
    expect((await postCommand('V1', { name: 'x', ttlMs })).statusCode).toBe(202);
  });

  it.each([
    ['no body', undefined],
    ['an array body', []],
    ['a string body', 'door.lock'],
    ['a null body', null],
    ['name missing', { params: {} }],
    ['name empty', { name: '' }],
    ['name a number', { name: 5 }],
    ['name null', { name: null }],
    ['name an array', { name: ['door.lock'] }],
    ['name with a lone surrogate', { name: 'door\ud800lock' }],
    ['ttlMs 0', { name: 'x', ttlMs: 0 }],
    ['ttlMs 604800001', { name: 'x', ttlMs: 604_800_001 }],
    ['ttlMs negative', { name: 'x', ttlMs: -5 }],
    ['ttlMs not an integer', { name: 'x', ttlMs: 1.5 }],
    ['ttlMs a string', { name: 'x', ttlMs: '1000' }],
    ['ttlMs null', { name: 'x', ttlMs: null }],
    ['ttlMs a boolean', { name: 'x', ttlMs: true }],
  ])('%s → 400 bad_request', async (_what, body) => {
    const res =
      body === null
        ? await call('POST', '/api/v1/vehicles/V1/commands', 'null', {
            ...AUTH,
            'content-type': 'application/json',
          })
        : await postCommand('V1', body);
    expectError(res, 400, 'bad_request');
  });

  it.each([
    ['65 characters', 'A'.repeat(65)],
    ['a space', 'bad%20id'],
    ['a slash', 'a%2Fb'],
    ['a non-ASCII letter', '%C3%A9t%C3%A9'],
    ['a plus', 'a+b'],
  ])('a vehicle id with %s → 400 bad_request', async (_what, id) => {
    expectError(await postCommand(id, { name: 'x' }), 400, 'bad_request');
  });

  it('accepts every VEHICLE_ID character and 64-character ids', async () => {
    for (const id of ['LSVAU2180N2183294', 'a.b_c:d-e', 'Z'.repeat(64), '0']) {
      expect((await postCommand(id, { name: 'x' })).statusCode).toBe(202);
    }
  });

  it('params: any JSON value is kept; omitted or null means none', async () => {
    const values: unknown[] = [{ a: [1, { b: null }] }, [1, 2], 'text', 42, 0, false, true];
    for (const params of values) {
      const d = json(await postCommand('V1', { name: 'config.set', params }));
      const row = (await ctx.store.getCommand(d.id as string))!;
      expect(JSON.parse(row.params!)).toEqual(params);
      expect(json(await call('GET', `/api/v1/commands/${d.id as string}`)).params).toEqual(params);
    }
    for (const body of [{ name: 'x' }, { name: 'x', params: null }]) {
      const d = json(await postCommand('V1', body));
      expect((await ctx.store.getCommand(d.id as string))!.params).toBeNull();
    }
  });

  it('unknown body fields are ignored', async () => {
    const res = await postCommand('V1', { name: 'x', priority: 'high' });
    expect(res.statusCode).toBe(202);
  });

  it('a command too large for one VMCP message → 400 bad_request', async () => {
    const res = await postCommand('V1', { name: 'x', params: 'p'.repeat(20_000) });
    expectError(res, 400, 'bad_request');
    expect(json(res).message).toMatch(/too large/);
    // Just under the limit still fits.
    const ok = await postCommand('V1', { name: 'x', params: 'p'.repeat(15_000) });
    expect(ok.statusCode).toBe(202);
  });

  it("continues the request's traceparent as a child span into the command", async () => {
    const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
    const parent = `00-${traceId}-00f067aa0ba902b7-01`;
    const d = json(await postCommand('V1', { name: 'x' }, { ...AUTH, traceparent: parent }));
    const tp = (await ctx.store.getCommand(d.id as string))!.traceparent!;
    const ctxt = parseTraceparent(tp)!;
    expect(ctxt.traceId).toBe(traceId);
    expect(ctxt.spanId).not.toBe('00f067aa0ba902b7');
    expect(ctxt.flags).toBe('01');
  });

  it('starts a new trace without (or with an invalid) traceparent', async () => {
    for (const headers of [AUTH, { ...AUTH, traceparent: 'garbage' }]) {
      const d = json(await postCommand('V1', { name: 'x' }, headers));
      const tp = (await ctx.store.getCommand(d.id as string))!.traceparent!;
      expect(parseTraceparent(tp)).toBeDefined();
    }
  });

  it('a vehicle never seen: the command is accepted while the vehicle is still 404', async () => {
    expect((await postCommand('NEVER1', { name: 'door.lock' })).statusCode).toBe(202);
    expectError(await call('GET', '/api/v1/vehicles/NEVER1'), 404, 'vehicle_not_found');
    expectError(await call('GET', '/api/v1/vehicles/NEVER1/uplink'), 404, 'vehicle_not_found');
    const list = json<{ items: { id: string }[] }>(await call('GET', '/api/v1/vehicles'));
    expect(list.items.map((v) => v.id)).not.toContain('NEVER1');
  });

  it('counts the command in the metrics', async () => {
    await postCommand('V1', { name: 'x' });
    expect(await ctx.gw.metrics.text()).toMatch(/vmcp_commands_total\{status="pending"\} 1/);
  });
});

describe('GET /api/v1/commands/{id}', () => {
  it('200 {"id","vehicleId","seq","name","status","result"}, result null until final', async () => {
    const d = json(
      await postCommand('V1', { name: 'door.lock', params: { force: true }, ttlMs: 60_000 }),
    );
    const res = await call('GET', `/api/v1/commands/${d.id as string}`);
    expect(res.statusCode).toBe(200);
    const c = json(res);
    expect(c).toMatchObject({
      id: d.id,
      vehicleId: 'V1',
      seq: 1,
      name: 'door.lock',
      status: 'pending',
      result: null,
      params: { force: true },
    });
    expect(c.expiresAt as number).toBe((c.createdAt as number) + 60_000);
    expect(typeof c.updatedAt).toBe('number');
  });

  it('shows the final status and the parsed result', async () => {
    const d = json(await postCommand('V1', { name: 'door.lock' }));
    const now = Date.now();
    await ctx.store.transitionCommand(d.id as string, ['pending'], 'delivered', now);
    await ctx.store.transitionCommand(d.id as string, ['delivered'], 'succeeded', now, {
      locked: true,
    });
    const c = json(await call('GET', `/api/v1/commands/${d.id as string}`));
    expect(c).toMatchObject({ status: 'succeeded', result: { locked: true } });
  });

  it('an unknown id → 404 not_found', async () => {
    expectError(await call('GET', '/api/v1/commands/cmd_nope'), 404, 'not_found');
  });

  it('an id longer than 128 characters → 400 bad_request', async () => {
    expectError(await call('GET', `/api/v1/commands/${'c'.repeat(129)}`), 400, 'bad_request');
  });
});

describe('commands past EXPIRES_AT before the sweep marks them', () => {
  // 4.1: at EXPIRES_AT a command is expired; the once-a-second sweep must not leave a window in
  // which the API shows it open or lets it be cancelled.
  it('GET shows it expired (and records it), DELETE → 409 command_final', async () => {
    const pending = json(await postCommand('V1', { name: 'door.lock', ttlMs: 1 }));
    const delivered = json(await postCommand('V1', { name: 'door.lock', ttlMs: 1 }));
    await ctx.store.transitionCommand(delivered.id as string, ['pending'], 'delivered', Date.now());
    await new Promise((r) => setTimeout(r, 5));
    for (const d of [pending, delivered]) {
      expect(json(await call('GET', `/api/v1/commands/${d.id as string}`)).status).toBe('expired');
      expect((await ctx.store.getCommand(d.id as string))!.status).toBe('expired');
    }
    const other = json(await postCommand('V1', { name: 'door.lock', ttlMs: 1 }));
    await new Promise((r) => setTimeout(r, 5));
    expectError(
      await call('DELETE', `/api/v1/commands/${other.id as string}`),
      409,
      'command_final',
    );
    expect((await ctx.store.getCommand(other.id as string))!.status).toBe('expired');
  });
});

describe('DELETE /api/v1/commands/{id} (cancel)', () => {
  it('cancels a pending command (200, status cancelled), then 409 command_final', async () => {
    const d = json(await postCommand('V1', { name: 'door.lock' }));
    const res = await call('DELETE', `/api/v1/commands/${d.id as string}`);
    expect(res.statusCode).toBe(200);
    expect(json(res)).toMatchObject({
      id: d.id,
      vehicleId: 'V1',
      seq: 1,
      status: 'cancelled',
      result: null,
    });
    expect((await ctx.store.getCommand(d.id as string))!.status).toBe('cancelled');
    expectError(await call('DELETE', `/api/v1/commands/${d.id as string}`), 409, 'command_final');
    expect(json(await call('GET', `/api/v1/commands/${d.id as string}`)).status).toBe('cancelled');
    // The seq stays used.
    expect(json(await postCommand('V1', { name: 'door.lock' })).seq).toBe(2);
  });

  it('a delivered command → 409 command_delivered', async () => {
    const d = json(await postCommand('V1', { name: 'door.lock' }));
    await ctx.store.transitionCommand(d.id as string, ['pending'], 'delivered', Date.now());
    expectError(
      await call('DELETE', `/api/v1/commands/${d.id as string}`),
      409,
      'command_delivered',
    );
  });

  it.each(['succeeded', 'failed', 'rejected', 'unsupported', 'expired'] as const)(
    'a %s command → 409 command_final',
    async (status) => {
      const d = json(await postCommand('V1', { name: 'door.lock' }));
      await ctx.store.transitionCommand(d.id as string, ['pending'], status, Date.now());
      expectError(await call('DELETE', `/api/v1/commands/${d.id as string}`), 409, 'command_final');
    },
  );

  it('an unknown id → 404 not_found', async () => {
    expectError(await call('DELETE', '/api/v1/commands/cmd_nope'), 404, 'not_found');
  });
});

describe('GET /api/v1/vehicles/{id}', () => {
  it('a vehicle never seen → 404 vehicle_not_found', async () => {
    expectError(await call('GET', '/api/v1/vehicles/V1'), 404, 'vehicle_not_found');
  });

  it('a seen vehicle before any uplink: lastUplinkSeq 0, latest {}, offline, session null', async () => {
    await ctx.store.markSeen('V1', Date.now());
    const res = await call('GET', '/api/v1/vehicles/V1');
    expect(res.statusCode).toBe(200);
    expect(json(res)).toEqual({
      id: 'V1',
      online: false,
      lastUplinkSeq: 0,
      latest: {},
      session: null,
    });
  });

  it('latest merges telemetry data, each key from the highest seq carrying it; holes count as consumed', async () => {
    await ctx.store.markSeen('V1', Date.now());
    await append([
      telemetry('V1', 1, { latitude: 31.2304, speedKmh: 10, vendor: { '0x80': 'dead' } }),
      telemetry('V1', 2, { speedKmh: 65.3, headingDeg: 90 }),
      event('V1', 3, { eventCode: 1, severity: 3, latitude: 1 }),
      { vehicleId: 'V1', seq: 4, record: null },
    ]);
    const v = json(await call('GET', '/api/v1/vehicles/V1'));
    expect(v.lastUplinkSeq).toBe(4);
    expect(v.latest).toMatchObject({
      latitude: 31.2304,
      speedKmh: 65.3,
      headingDeg: 90,
      vendor: { '0x80': 'dead' },
    });
    expect(v.latest).not.toHaveProperty('eventCode');
  });

  it('an invalid id → 400 bad_request', async () => {
    expectError(await call('GET', `/api/v1/vehicles/${'A'.repeat(65)}`), 400, 'bad_request');
  });
});

describe('GET /api/v1/vehicles/{id}/uplink', () => {
  beforeEach(async () => {
    await ctx.store.markSeen('V1', Date.now());
  });

  it('records in seq order in the section 8 form, holes not listed', async () => {
    await append([
      telemetry('V1', 1, { latitude: 31.2304, longitude: 121.4737 }),
      { vehicleId: 'V1', seq: 2, record: null },
      event('V1', 3, { eventCode: 2, severity: 1, detail: 'harsh braking' }),
      telemetry('V1', 4, { fuelOrSocPct: 80 }),
    ]);
    const res = await call('GET', '/api/v1/vehicles/V1/uplink');
    expect(res.statusCode).toBe(200);
    const { items } = json<{ items: UplinkRecord[] }>(res);
    expect(items.map((r) => r.seq)).toEqual([1, 3, 4]);
    expect(items[0]).toEqual({
      vehicleId: 'V1',
      seq: 1,
      kind: 'telemetry',
      timestamp: 1_764_000_000_001,
      receivedAt: items[0]!.receivedAt,
      traceparent: `00-${'ab'.repeat(16)}-${'cd'.repeat(8)}-01`,
      data: { latitude: 31.2304, longitude: 121.4737 },
    });
    expect(items[1]).toMatchObject({
      kind: 'event',
      data: { eventCode: 2, severity: 1, detail: 'harsh braking' },
    });
    expect(items[1]).not.toHaveProperty('traceparent');
  });

  it('afterSeq and limit page through the records', async () => {
    await append([1, 2, 3, 4, 5].map((s) => telemetry('V1', s, { engineRpm: s })));
    const page = async (q: string) =>
      json<{ items: UplinkRecord[] }>(
        await call('GET', `/api/v1/vehicles/V1/uplink?${q}`),
      ).items.map((r) => r.seq);
    expect(await page('afterSeq=2')).toEqual([3, 4, 5]);
    expect(await page('afterSeq=2&limit=2')).toEqual([3, 4]);
    expect(await page('afterSeq=5')).toEqual([]);
    expect(await page('afterSeq=999999999999')).toEqual([]);
    expect(await page('limit=0')).toEqual([]);
    expect(await page('afterSeq=0&limit=1')).toEqual([1]);
  });

  it('limit defaults to 100 and is clamped to 1000', async () => {
    const writes: UplinkWrite[] = [];
    for (let s = 1; s <= 1005; s++) writes.push(telemetry('V1', s, { engineRpm: s }));
    await append(writes);
    const count = async (q: string) =>
      json<{ items: UplinkRecord[] }>(await call('GET', `/api/v1/vehicles/V1/uplink${q}`)).items
        .length;
    expect(await count('')).toBe(100);
    expect(await count('?limit=1000')).toBe(1000);
    expect(await count('?limit=1001')).toBe(1000);
    expect(await count('?limit=5000')).toBe(1000);
    expect(await count('?limit=99999999999999999999')).toBe(1000);
    expect(await count('?afterSeq=1000&limit=5000')).toBe(5);
  });

  it.each([
    'afterSeq=-1',
    'afterSeq=1.5',
    'afterSeq=1e2',
    'afterSeq=0x10',
    'afterSeq=abc',
    'afterSeq=',
    'afterSeq=1&afterSeq=2',
    'limit=-1',
    'limit=2.5',
    'limit=ten',
    'limit=',
  ])('%s → 400 bad_request', async (q) => {
    expectError(await call('GET', `/api/v1/vehicles/V1/uplink?${q}`), 400, 'bad_request');
  });

  it('a vehicle never seen → 404 vehicle_not_found', async () => {
    expectError(await call('GET', '/api/v1/vehicles/V2/uplink'), 404, 'vehicle_not_found');
  });
});

describe('GET /api/v1/vehicles (list)', () => {
  it('lists seen vehicles in id order with a cursor', async () => {
    for (const id of ['V3', 'V1', 'V5', 'V2', 'V4']) await ctx.store.markSeen(id, Date.now());
    await postCommand('UNSEEN', { name: 'x' });
    const all = json<{ items: { id: string }[]; next: string | null }>(
      await call('GET', '/api/v1/vehicles'),
    );
    expect(all.items.map((v) => v.id)).toEqual(['V1', 'V2', 'V3', 'V4', 'V5']);
    expect(all.next).toBeNull();
    expect(all.items[0]).toEqual({
      id: 'V1',
      online: false,
      lastUplinkSeq: 0,
      latest: {},
      session: null,
    });

    const ids: string[] = [];
    let url = '/api/v1/vehicles?limit=2';
    for (let pages = 0; pages < 10; pages++) {
      const p = json<{ items: { id: string }[]; next: string | null }>(await call('GET', url));
      ids.push(...p.items.map((v) => v.id));
      if (p.next === null) break;
      url = `/api/v1/vehicles?limit=2&cursor=${encodeURIComponent(p.next)}`;
    }
    expect(ids).toEqual(['V1', 'V2', 'V3', 'V4', 'V5']);
  });

  it('limit above 1000 is clamped, online=false lists all', async () => {
    await ctx.store.markSeen('V1', Date.now());
    expect(
      json<{ items: unknown[] }>(await call('GET', '/api/v1/vehicles?limit=5000')).items,
    ).toHaveLength(1);
    expect(
      json<{ items: unknown[] }>(await call('GET', '/api/v1/vehicles?online=false')).items,
    ).toHaveLength(1);
  });

  it('online=true lists live sessions only (none here)', async () => {
    await ctx.store.markSeen('V1', Date.now());
    const res = await call('GET', '/api/v1/vehicles?online=true');
    expect(res.statusCode).toBe(200);
    expect(json(res)).toEqual({ items: [], next: null });
  });

  it.each(['limit=0', 'limit=-1', 'limit=1.5', 'online=maybe', 'online=', 'cursor=not%20base64!'])(
    '%s → 400 bad_request',
    async (q) => {
      expectError(await call('GET', `/api/v1/vehicles?${q}`), 400, 'bad_request');
    },
  );
});

describe('GET /api/v1/vehicles/{id}/sensors/{channel}', () => {
  it('a vehicle never seen → 404 vehicle_not_found', async () => {
    expectError(await call('GET', '/api/v1/vehicles/V1/sensors/1'), 404, 'vehicle_not_found');
  });

  it('a seen vehicle that is offline → 409 vehicle_offline', async () => {
    await ctx.store.markSeen('V1', Date.now());
    expectError(await call('GET', '/api/v1/vehicles/V1/sensors/1'), 409, 'vehicle_offline');
    // Bounds of channel and timeoutMs pass validation.
    expectError(
      await call('GET', '/api/v1/vehicles/V1/sensors/0?timeoutMs=1'),
      409,
      'vehicle_offline',
    );
    expectError(
      await call('GET', '/api/v1/vehicles/V1/sensors/255?timeoutMs=60000'),
      409,
      'vehicle_offline',
    );
  });

  it.each([
    '256',
    '-1',
    '1.5',
    '1e2',
    '1.',
    '0x10',
    'x',
    '1?timeoutMs=1e3',
    '1?timeoutMs=0',
    '1?timeoutMs=60001',
    '1?timeoutMs=-5',
    '1?timeoutMs=2.5',
    '1?timeoutMs=soon',
    '1?timeoutMs=',
  ])('channel/query %s → 400 bad_request', async (rest) => {
    await ctx.store.markSeen('V1', Date.now());
    expectError(await call('GET', `/api/v1/vehicles/V1/sensors/${rest}`), 400, 'bad_request');
  });

  it('an invalid vehicle id → 400 bad_request', async () => {
    expectError(await call('GET', '/api/v1/vehicles/a%20b/sensors/1'), 400, 'bad_request');
  });
});

describe('POST /api/v1/vehicles/{id}/disconnect', () => {
  it('a vehicle without a live session → 409 vehicle_offline', async () => {
    expectError(await call('POST', '/api/v1/vehicles/V1/disconnect'), 409, 'vehicle_offline');
    await ctx.store.markSeen('V1', Date.now());
    expectError(await call('POST', '/api/v1/vehicles/V1/disconnect'), 409, 'vehicle_offline');
  });

  it('an invalid id → 400 bad_request', async () => {
    expectError(await call('POST', '/api/v1/vehicles/a%2Fb/disconnect'), 400, 'bad_request');
  });
});

describe('devices', () => {
  const device = {
    id: 'LSVAU2180N2183294',
    secret: 's3cret',
    scopes: ['telemetry:publish', 'command:receive'],
  };

  it('POST 201 {"id"}, the secret stored hashed; again → 409 device_exists', async () => {
    const res = await call('POST', '/api/v1/devices', device);
    expect(res.statusCode).toBe(201);
    expect(json(res)).toEqual({ id: device.id });
    const row = (await ctx.store.getDevice(device.id))!;
    expect(row.scopes).toEqual(device.scopes);
    expect(row.secretHash).not.toContain('s3cret');
    expect(await verifySecret('s3cret', row.secretHash)).toBe(true);
    expect(await verifySecret('wrong', row.secretHash)).toBe(false);
    expectError(await call('POST', '/api/v1/devices', device), 409, 'device_exists');
  });

  it('accepts any secret a CREDENTIAL can carry (up to 16,384 characters)', async () => {
    const secret = 's'.repeat(16_384);
    expect(
      (await call('POST', '/api/v1/devices', { id: 'D1', secret, scopes: [] })).statusCode,
    ).toBe(201);
    expect(await verifySecret(secret, (await ctx.store.getDevice('D1'))!.secretHash)).toBe(true);
  });

  it('accepts an empty scope list and every known scope, duplicates folded', async () => {
    expect(
      (await call('POST', '/api/v1/devices', { id: 'D1', secret: 'x', scopes: [] })).statusCode,
    ).toBe(201);
    const all = ['telemetry:publish', 'event:publish', 'command:receive', 'event:publish'];
    expect(
      (await call('POST', '/api/v1/devices', { id: 'D2', secret: 'x', scopes: all })).statusCode,
    ).toBe(201);
    expect((await ctx.store.getDevice('D2'))!.scopes).toEqual([
      'telemetry:publish',
      'event:publish',
      'command:receive',
    ]);
  });

  it.each([
    ['no body', undefined],
    ['id missing', { secret: 'x', scopes: [] }],
    ['id invalid', { id: 'bad id', secret: 'x', scopes: [] }],
    ['id too long', { id: 'A'.repeat(65), secret: 'x', scopes: [] }],
    ['id a number', { id: 17, secret: 'x', scopes: [] }],
    ['secret missing', { id: 'D1', scopes: [] }],
    ['secret empty', { id: 'D1', secret: '', scopes: [] }],
    ['secret a number', { id: 'D1', secret: 1234, scopes: [] }],
    ['secret too long', { id: 'D1', secret: 'x'.repeat(16_385), scopes: [] }],
    ['secret with a lone surrogate', { id: 'D1', secret: 'a\ud800b', scopes: [] }],
    ['scopes missing', { id: 'D1', secret: 'x' }],
    ['scopes a string', { id: 'D1', secret: 'x', scopes: 'telemetry:publish' }],
    [
      'scopes with an unknown scope',
      { id: 'D1', secret: 'x', scopes: ['telemetry:publish', 'admin'] },
    ],
    ['scopes with a non-string', { id: 'D1', secret: 'x', scopes: [1] }],
  ])('%s → 400 bad_request', async (_what, body) => {
    expectError(await call('POST', '/api/v1/devices', body), 400, 'bad_request');
    expect(await ctx.store.getDevice('D1')).toBeUndefined();
  });

  it('DELETE revokes: 200 {"id","revoked":true}; again or unknown → 404 not_found; the id can be registered anew', async () => {
    await call('POST', '/api/v1/devices', device);
    const res = await call('DELETE', `/api/v1/devices/${device.id}`);
    expect(res.statusCode).toBe(200);
    expect(json(res)).toEqual({ id: device.id, revoked: true });
    expect((await ctx.store.getDevice(device.id))!.revokedAt).not.toBeNull();
    expectError(await call('DELETE', `/api/v1/devices/${device.id}`), 404, 'not_found');
    expectError(await call('DELETE', '/api/v1/devices/UNKNOWN'), 404, 'not_found');
    expectError(await call('DELETE', '/api/v1/devices/bad%20id'), 400, 'bad_request');
    expect((await call('POST', '/api/v1/devices', device)).statusCode).toBe(201);
  });
});

describe('operations endpoints', () => {
  it('GET /healthz → 200 {"status":"ok"}', async () => {
    const res = await call('GET', '/healthz', undefined, {});
    expect(res.statusCode).toBe(200);
    expect(json(res)).toEqual({ status: 'ok' });
  });

  it('GET /readyz follows isReady(): 200, then 503 not_ready', async () => {
    const ok = await call('GET', '/readyz', undefined, {});
    expect(ok.statusCode).toBe(200);
    expect(json(ok)).toEqual({ status: 'ok' });
    ctx.ready = false;
    expectError(await call('GET', '/readyz', undefined, {}), 503, 'not_ready');
    ctx.ready = true;
    expect((await call('GET', '/readyz', undefined, {})).statusCode).toBe(200);
    // The core's own readiness counts too: a draining gateway is not ready.
    ctx.gw.draining = true;
    expectError(await call('GET', '/readyz', undefined, {}), 503, 'not_ready');
    ctx.gw.draining = false;
  });

  it('GET /metrics: Prometheus text with a connections gauge and a messages counter', async () => {
    const res = await call('GET', '/metrics', undefined, {});
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toMatch(/^text\/plain/);
    expect(res.body).toMatch(/^# TYPE \w*connections\w* gauge$/m);
    expect(res.body).toMatch(/^# TYPE \w*messages\w* counter$/m);
  });

  it('a store that fails → 503 store_unavailable', async () => {
    await ctx.store.markSeen('V1', Date.now());
    await ctx.store.close();
    expectError(await call('GET', '/api/v1/vehicles/V1'), 503, 'store_unavailable');
    expectError(await postCommand('V1', { name: 'x' }), 503, 'store_unavailable');
    expectError(await call('GET', '/api/v1/commands/x'), 503, 'store_unavailable');
  });
});

describe('GET /docs/openapi.json', () => {
  async function doc(): Promise<OpenApiDocument> {
    const res = await call('GET', '/docs/openapi.json', undefined, {});
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toMatch(/^application\/json/);
    return json<OpenApiDocument>(res);
  }

  it('is an OpenAPI 3.0 document listing every route of the table, and every route is served', async () => {
    const d = await doc();
    expect(d.openapi).toMatch(/^3\.0\./);
    const documented: string[] = [];
    for (const [path, ops] of Object.entries(d.paths)) {
      for (const method of Object.keys(ops)) documented.push(`${method.toUpperCase()} ${path}`);
    }
    const table = Object.values(ROUTES as Record<string, RouteSpec>).map(
      (r) => `${r.method} ${openApiPath(r.url)}`,
    );
    expect(documented.sort()).toEqual([...table].sort());
    for (const expected of [
      'POST /api/v1/vehicles/{id}/commands',
      'GET /api/v1/commands/{id}',
      'DELETE /api/v1/commands/{id}',
      'GET /api/v1/vehicles/{id}',
      'GET /api/v1/vehicles/{id}/uplink',
      'GET /api/v1/vehicles/{id}/sensors/{channel}',
      'POST /api/v1/devices',
      'GET /api/v1/vehicles',
      'DELETE /api/v1/devices/{id}',
      'POST /api/v1/vehicles/{id}/disconnect',
      'GET /api/v1/stream',
      'GET /healthz',
      'GET /readyz',
      'GET /metrics',
      'GET /docs/openapi.json',
    ]) {
      expect(documented).toContain(expected);
    }
    for (const r of Object.values(ROUTES as Record<string, RouteSpec>)) {
      expect(ctx.app.hasRoute({ method: r.method, url: r.url })).toBe(true);
    }
  });

  it('documents the same schemas that validate requests', async () => {
    const d = await doc();
    const post = d.paths['/api/v1/vehicles/{id}/commands']!.post!;
    expect(post.requestBody!.content['application/json']!.schema).toEqual(ROUTES.postCommand.body);
    expect(post.requestBody!.content['application/json']!.schema).toMatchObject({
      properties: { ttlMs: { minimum: 1, maximum: 604_800_000, default: 86_400_000 } },
    });
    const uplink = d.paths['/api/v1/vehicles/{id}/uplink']!.get!;
    expect(uplink.parameters.map((p) => `${p.in}:${p.name}`)).toEqual([
      'path:id',
      'query:afterSeq',
      'query:limit',
    ]);
    const sensor = d.paths['/api/v1/vehicles/{id}/sensors/{channel}']!.get!;
    expect(sensor.parameters.find((p) => p.name === 'channel')!.schema).toMatchObject({
      minimum: 0,
      maximum: 255,
    });
    expect(Object.keys(sensor.responses).sort()).toEqual([
      '200',
      '400',
      '401',
      '404',
      '409',
      '429',
      '502',
      '504',
    ]);
    expect(d.paths['/api/v1/vehicles/{id}']!.get!.security).toEqual([{ bearerAuth: [] }]);
    expect(d.paths['/healthz']!.get!.security).toEqual([]);
    // Every $ref resolves.
    const text = JSON.stringify(d);
    for (const m of text.matchAll(/"\$ref":"#\/components\/schemas\/(\w+)"/g)) {
      expect(d.components.schemas).toHaveProperty(m[1]!);
    }
  });
});

// ---------------------------------------------------------------------------------------------

describe('GET /api/v1/stream (server-sent events)', () => {
  interface Sse {
    res: IncomingMessage;
    events: { event: string; data: unknown }[];
    comments: string[];
    close(): void;
    waitFor(pred: () => boolean, ms?: number): Promise<void>;
  }

  let base: string;
  let sc: Ctx;

  beforeEach(async () => {
    sc = await setup({}, { stream: { heartbeatMs: 50 } });
    await sc.app.listen({ host: '127.0.0.1', port: 0 });
    const addr = sc.app.server.address() as AddressInfo;
    base = `http://127.0.0.1:${addr.port}`;
  });

  afterEach(async () => {
    await teardown(sc);
  });

  function open(query = '', headers: Record<string, string> = AUTH): Promise<Sse> {
    return new Promise((resolve, reject) => {
      const req = httpRequest(`${base}/api/v1/stream${query}`, { headers }, (res) => {
        const sse: Sse = {
          res,
          events: [],
          comments: [],
          close: () => req.destroy(),
          waitFor: async (pred, ms = 5_000) => {
            const until = Date.now() + ms;
            while (!pred()) {
              if (Date.now() > until) throw new Error('timed out waiting on the stream');
              await new Promise((r) => setTimeout(r, 10));
            }
          },
        };
        let buf = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          buf += chunk;
          let i: number;
          while ((i = buf.indexOf('\n\n')) >= 0) {
            const block = buf.slice(0, i);
            buf = buf.slice(i + 2);
            let ev = 'message';
            let data: string | undefined;
            for (const line of block.split('\n')) {
              if (line.startsWith(':')) sse.comments.push(line.slice(1).trim());
              else if (line.startsWith('event: ')) ev = line.slice(7);
              else if (line.startsWith('data: ')) data = line.slice(6);
            }
            if (data !== undefined)
              sse.events.push({ event: ev, data: JSON.parse(data) as unknown });
          }
        });
        resolve(sse);
      });
      req.on('error', reject);
      req.end();
    });
  }

  function record(vehicleId: string, seq: number): UplinkRecord {
    return {
      vehicleId,
      seq,
      kind: 'telemetry',
      timestamp: 1,
      receivedAt: 2,
      data: { speedKmh: 1.5 },
    };
  }

  it('streams uplink, presence and command events; heartbeats; cleans up on close', async () => {
    const baseline = sc.gw.events.listenerCount('uplink');
    const s = await open();
    expect(s.res.statusCode).toBe(200);
    expect(s.res.headers['content-type']).toMatch(/^text\/event-stream/);
    await s.waitFor(() => sc.gw.events.listenerCount('uplink') === baseline + 1);

    sc.gw.events.emit('uplink', record('V1', 7));
    sc.gw.events.emit('presence', { vehicleId: 'V1', online: true, sessionId: 's1', at: 3 });
    const posted = await fetch(`${base}/api/v1/vehicles/V1/commands`, {
      method: 'POST',
      headers: { ...AUTH, 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'door.lock' }),
    });
    const { id } = (await posted.json()) as { id: string };
    await fetch(`${base}/api/v1/commands/${id}`, { method: 'DELETE', headers: AUTH });

    await s.waitFor(() => s.events.length >= 4);
    expect(s.events[0]).toEqual({ event: 'uplink', data: record('V1', 7) });
    expect(s.events[1]).toEqual({
      event: 'presence',
      data: { vehicleId: 'V1', online: true, sessionId: 's1', at: 3 },
    });
    expect(s.events[2]).toMatchObject({
      event: 'command',
      data: { id, vehicleId: 'V1', status: 'pending' },
    });
    expect(s.events[3]).toMatchObject({
      event: 'command',
      data: { id, status: 'cancelled', result: null },
    });

    await s.waitFor(() => s.comments.includes('heartbeat'));

    s.close();
    await s.waitFor(() => sc.gw.events.listenerCount('uplink') === baseline);
    expect(sc.gw.events.listenerCount('presence')).toBe(0);
    expect(sc.gw.events.listenerCount('command')).toBe(0);
  });

  it('filters by vehicle (repeated or comma separated)', async () => {
    const a = await open('?vehicle=V1&vehicle=V2');
    const b = await open('?vehicle=V3,V1');
    const all = await open();
    await a.waitFor(() => sc.gw.events.listenerCount('uplink') === 1);
    for (const v of ['V1', 'V2', 'V3', 'V4']) sc.gw.events.emit('uplink', record(v, 1));
    await all.waitFor(
      () => all.events.length === 4 && a.events.length === 2 && b.events.length === 2,
    );
    expect(a.events.map((e) => (e.data as UplinkRecord).vehicleId)).toEqual(['V1', 'V2']);
    expect(b.events.map((e) => (e.data as UplinkRecord).vehicleId)).toEqual(['V1', 'V3']);
    for (const s of [a, b, all]) s.close();
    await all.waitFor(() => sc.gw.events.listenerCount('uplink') === 0);
  });

  it('needs the token and valid vehicle ids', async () => {
    const noAuth = await fetch(`${base}/api/v1/stream`);
    expect(noAuth.status).toBe(401);
    expect(await noAuth.json()).toMatchObject({ code: 'unauthorized' });
    const bad = await fetch(`${base}/api/v1/stream?vehicle=ok,not%20ok`, { headers: AUTH });
    expect(bad.status).toBe(400);
    expect(await bad.json()).toMatchObject({ code: 'bad_request' });
  });

  it('closing the server ends open streams', async () => {
    const s = await open();
    const ended = new Promise<void>((r) => s.res.on('close', () => r()));
    await s.waitFor(() => sc.gw.events.listenerCount('uplink') === 1);
    await sc.app.close();
    await ended;
    expect(sc.gw.events.listenerCount('uplink')).toBe(0);
  });
});

// ---------------------------------------------------------------------------------------------

describe('with a live session (in-memory transport)', () => {
  const ALL = ['telemetry:publish', 'event:publish', 'command:receive'];

  async function online(id: string, scopes: readonly string[] = ALL): Promise<MemoryVehicle> {
    const v = new MemoryVehicle(ctx.gw, id);
    const ack = await v.connect(scopes);
    expect(ack.status).toBe(ConnackStatus.ACCEPTED);
    return v;
  }

  it('the vehicle resource shows online and the session object', async () => {
    const v = await online('V1');
    const res = json(await call('GET', '/api/v1/vehicles/V1'));
    expect(res).toMatchObject({ id: 'V1', online: true, lastUplinkSeq: 0, latest: {} });
    const session = res.session as Record<string, unknown>;
    expect(Object.keys(session).sort()).toEqual([
      'connectedAt',
      'id',
      'keepalive',
      'remote',
      'version',
    ]);
    expect(session).toMatchObject({ remote: '10.1.2.3', version: 2, keepalive: 60 });
    expect(typeof session.id).toBe('string');
    v.close();
  });

  it('online=true lists live sessions only, paged in id order', async () => {
    await ctx.store.markSeen('OFF', Date.now());
    const vs = [await online('V2'), await online('V1'), await online('V3')];
    const page1 = json<{ items: { id: string; online: boolean }[]; next: string | null }>(
      await call('GET', '/api/v1/vehicles?online=true&limit=2'),
    );
    expect(page1.items.map((v) => v.id)).toEqual(['V1', 'V2']);
    expect(page1.items.every((v) => v.online)).toBe(true);
    expect(page1.next).not.toBeNull();
    const page2 = json<{ items: { id: string }[]; next: string | null }>(
      await call('GET', `/api/v1/vehicles?online=true&limit=2&cursor=${page1.next!}`),
    );
    expect(page2).toMatchObject({ items: [{ id: 'V3' }], next: null });
    const all = json<{ items: { id: string; online: boolean }[] }>(
      await call('GET', '/api/v1/vehicles'),
    );
    expect(all.items.map((v) => [v.id, v.online])).toEqual([
      ['OFF', false],
      ['V1', true],
      ['V2', true],
      ['V3', true],
    ]);
    for (const v of vs) v.close();
  });

  describe('sensor reads', () => {
    async function read(v: MemoryVehicle, url: string, status: number, value: number[]) {
      const pending = call('GET', url);
      const req = decodeSensorRead((await v.waitFor(Cmd.SENSOR_READ)).data);
      v.send(
        Cmd.SENSOR_DATA,
        encodeSensorData({
          channel: req.channel,
          tag: req.tag,
          status,
          value: Uint8Array.from(value),
        }),
      );
      return { res: await pending, channel: req.channel };
    }

    it('status 0 → 200 {"channel","status":"ok","value":"<hex>"}', async () => {
      const v = await online('V1');
      const { res, channel } = await read(
        v,
        '/api/v1/vehicles/V1/sensors/7',
        0,
        [0xde, 0xad, 0x01],
      );
      expect(channel).toBe(7);
      expect(res.statusCode).toBe(200);
      expect(json(res)).toEqual({ channel: 7, status: 'ok', value: 'dead01' });
      v.close();
    });

    it('status 1 → 404 no_such_channel, status 2 → 502 sensor_failure', async () => {
      const v = await online('V1');
      expectError(
        (await read(v, '/api/v1/vehicles/V1/sensors/9', 1, [])).res,
        404,
        'no_such_channel',
      );
      expectError(
        (await read(v, '/api/v1/vehicles/V1/sensors/9', 2, [])).res,
        502,
        'sensor_failure',
      );
      v.close();
    });

    it('no answer in time → 504 timeout', async () => {
      const v = await online('V1');
      expectError(await call('GET', '/api/v1/vehicles/V1/sensors/1?timeoutMs=30'), 504, 'timeout');
      v.close();
    });

    it('a session without command:receive → 409 not_permitted', async () => {
      const v = await online('V1', ['telemetry:publish']);
      expectError(await call('GET', '/api/v1/vehicles/V1/sensors/1'), 409, 'not_permitted');
      v.close();
    });

    it('the session ends before the answer → 409 vehicle_offline', async () => {
      const v = await online('V1');
      const pending = call('GET', '/api/v1/vehicles/V1/sensors/1?timeoutMs=5000');
      await v.waitFor(Cmd.SENSOR_READ);
      v.close();
      expectError(await pending, 409, 'vehicle_offline');
    });
  });

  it('a command to an online vehicle: 202 pending, sent with the child traceparent, then 409 command_delivered, then the result', async () => {
    const v = await online('V1');
    const traceId = '0af7651916cd43dd8448eb211c80319c';
    const res = await postCommand(
      'V1',
      { name: 'door.lock', params: { force: true } },
      { ...AUTH, traceparent: `00-${traceId}-b7ad6b7169203331-01` },
    );
    expect(res.statusCode).toBe(202);
    const { id, seq, status } = json(res);
    expect(status).toBe('pending');
    const cmd = decodeCommand((await v.waitFor(Cmd.COMMAND)).data);
    expect(cmd).toMatchObject({ seq, commandId: id, name: 'door.lock', params: '{"force":true}' });
    expect(parseTraceparent(cmd.traceparent)!.traceId).toBe(traceId);

    await vi.waitFor(async () =>
      expect(json(await call('GET', `/api/v1/commands/${id as string}`)).status).toBe('delivered'),
    );
    expectError(await call('DELETE', `/api/v1/commands/${id as string}`), 409, 'command_delivered');

    v.send(
      Cmd.COMMAND_ACK,
      encodeCommandAck({
        seq: seq as number,
        result: 0,
        resultPayload: Buffer.from('{"locked":true}'),
      }),
    );
    await vi.waitFor(async () =>
      expect(json(await call('GET', `/api/v1/commands/${id as string}`))).toMatchObject({
        status: 'succeeded',
        result: { locked: true },
      }),
    );
    expectError(await call('DELETE', `/api/v1/commands/${id as string}`), 409, 'command_final');
    v.close();
  });

  it('POST disconnect → 200 {"id","disconnected":true}; the vehicle gets DISCONNECT KICKED', async () => {
    const v = await online('V1');
    const res = await call('POST', '/api/v1/vehicles/V1/disconnect');
    expect(res.statusCode).toBe(200);
    expect(json(res)).toEqual({ id: 'V1', disconnected: true });
    expect(decodeDisconnect((await v.waitFor(Cmd.DISCONNECT)).data).reason).toBe(
      DisconnectReason.KICKED,
    );
    expect(json(await call('GET', '/api/v1/vehicles/V1')).online).toBe(false);
    expectError(await call('POST', '/api/v1/vehicles/V1/disconnect'), 409, 'vehicle_offline');
    v.close();
  });

  it('DELETE device kicks its live session', async () => {
    expect(
      (await call('POST', '/api/v1/devices', { id: 'V1', secret: 'x', scopes: ALL })).statusCode,
    ).toBe(201);
    const v = await online('V1');
    expect((await call('DELETE', '/api/v1/devices/V1')).statusCode).toBe(200);
    expect(decodeDisconnect((await v.waitFor(Cmd.DISCONNECT)).data).reason).toBe(
      DisconnectReason.KICKED,
    );
    v.close();
  });
});
