// The HTTP API (PROTOCOL.md 9 and the extras of issue 3) on fastify. Routes, their validation and the
// OpenAPI document all come from the one table in schemas.ts.
import { isUtf8 } from 'node:buffer';
import { createHash, timingSafeEqual } from 'node:crypto';
import {
  LogController,
  fastify,
  type FastifyBaseLogger,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
  type FastifySchema,
} from 'fastify';
import { hashSecret } from '../auth/index.js';
import { VmcpError, isVmcpError } from '../errors.js';
import type { Gateway, VehicleView } from '../gateway/gateway.js';
import type { Logger } from '../observability/logger.js';
import { childTraceparent, parseTraceparent } from '../observability/trace.js';
import { toHex } from '../protocol/bytes.js';
import type { VehicleRow } from '../store/types.js';
import { registerConsole } from './console.js';
import { compactJson, memberText } from './raw-json.js';
import { buildOpenApi, type OpenApiDocument } from './openapi.js';
import {
  LIST_MAX_LIMIT,
  ROUTES,
  TTL_DEFAULT_MS,
  type AddDeviceBody,
  type CommandParams,
  type JsonSchema,
  type ListVehiclesQuery,
  type ObjectSchema,
  type PostCommandBody,
  type RouteName,
  type RouteSpec,
  type SensorParams,
  type SensorQuery,
  type StreamQuery,
  type UplinkQuery,
  type VehicleParams,
} from './schemas.js';
import { StreamHub, type StreamHubOptions } from './stream.js';
import { commandJson } from './views.js';

export interface ApiOptions {
  /** The bearer token of /api/v1/* (VMCP_ADMIN_TOKEN). An empty token refuses every request. */
  adminToken: string;
  /** /readyz answers 200 only while this holds (listeners up, store open) and the core is ready (gw.ready). */
  isReady: () => boolean;
  logger?: Logger;
  /** Request body limit in bytes (default 1 MiB). */
  bodyLimit?: number;
  stream?: StreamHubOptions;
}

export interface ErrorBody {
  code: string;
  message: string;
}

type Handler = (req: FastifyRequest, reply: FastifyReply) => Promise<unknown>;

const API_VERSION = '1';

// ---- errors ----

const MAX_MESSAGE = 300;

function fail(reply: FastifyReply, status: number, code: string, message: string): FastifyReply {
  const text = message.length > MAX_MESSAGE ? `${message.slice(0, MAX_MESSAGE)}…` : message;
  return reply.code(status).type('application/json; charset=utf-8').send({ code, message: text });
}

interface FrameworkError {
  statusCode?: number;
  code?: string;
  message: string;
  validation?: unknown;
}

function isFrameworkError(err: unknown): err is FrameworkError {
  return err instanceof Error && ('statusCode' in err || 'validation' in err);
}

/** Maps anything thrown to the section 9 error body. */
export function errorBody(err: unknown): { status: number; body: ErrorBody } {
  if (isVmcpError(err)) {
    const [status, code] = err.http;
    return {
      status,
      body: { code, message: code === 'internal' ? 'internal error' : err.message },
    };
  }
  if (isFrameworkError(err)) {
    const status = err.statusCode ?? 500;
    if (err.validation !== undefined)
      return { status: 400, body: { code: 'bad_request', message: err.message } };
    if (status === 404) return { status: 404, body: { code: 'not_found', message: err.message } };
    if (status === 413) {
      return { status: 400, body: { code: 'bad_request', message: 'request body too large' } };
    }
    if (status >= 400 && status < 500)
      return { status: 400, body: { code: 'bad_request', message: err.message } };
  }
  return { status: 500, body: { code: 'internal', message: 'internal error' } };
}

/** Store or gateway work: a VmcpError passes through, anything else means the store failed. */
async function viaStore<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (isVmcpError(err)) throw err;
    throw new VmcpError('VMCP_ERR_STORE_UNAVAILABLE', undefined, { cause: err });
  }
}

// ---- auth ----

function sha256(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest();
}

function bearerChecker(adminToken: string): (header: string | undefined) => boolean {
  const expected = sha256(adminToken);
  return (header) => {
    if (adminToken === '' || header === undefined) return false;
    const m = /^Bearer +(.+)$/i.exec(header);
    if (m === null) return false;
    // Hashing first makes the compare constant-time whatever the lengths.
    return timingSafeEqual(sha256(m[1]!.trim()), expected);
  };
}

// ---- query and path coercion ----

const NUMBER = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/;
/** An integer in a path or query is decimal digits: `1e2`, `1.` or `0x10` stay text and fail (400). */
const INTEGER = /^[+-]?\d+$/;

/**
 * Query strings and path parameters arrive as text; the schemas say integer, boolean or array.
 * Ajv runs without type coercion (so JSON bodies are checked strictly: `"name": 5` is a 400), and
 * this converts text the schema's way before validation. Text that does not convert is left as
 * is and fails validation with 400.
 */
function coerceText(schema: ObjectSchema, obj: Record<string, unknown>): void {
  for (const [key, prop] of Object.entries(schema.properties)) {
    const v = obj[key];
    if (v === undefined) continue;
    obj[key] = coerceValue(prop, v);
  }
}

function coerceValue(prop: JsonSchema, v: unknown): unknown {
  switch (prop.type) {
    case 'integer':
      return typeof v === 'string' && INTEGER.test(v) ? Number(v) : v;
    case 'number':
      return typeof v === 'string' && NUMBER.test(v) ? Number(v) : v;
    case 'boolean':
      if (v === 'true') return true;
      if (v === 'false') return false;
      return v;
    case 'array': {
      const parts = Array.isArray(v) ? (v as unknown[]) : [v];
      return parts
        .flatMap((p) => (typeof p === 'string' ? p.split(',') : [p]))
        .filter((p) => p !== '')
        .map((p) => (prop.items === undefined ? p : coerceValue(prop.items, p)));
    }
    default:
      return v;
  }
}

/** A lone surrogate (`"\\ud800"` in the JSON) has no UTF-8 form: NAME and CREDENTIAL are UTF-8. */
function wellFormed(text: string, field: string): void {
  if (/\p{Cs}/u.test(text))
    throw new VmcpError(
      'VMCP_ERR_HTTP_BAD_REQUEST',
      `body/${field} is not valid Unicode (a lone surrogate)`,
    );
}

function headerValue(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

// ---- the app ----

export function buildApi(gw: Gateway, opts: ApiOptions): FastifyInstance {
  const logger = opts.logger?.child({ component: 'http' });
  const loggerOpts: { loggerInstance: FastifyBaseLogger } | { logger: false } =
    logger === undefined ? { logger: false } : { loggerInstance: logger };
  const app = fastify({
    ...loggerOpts,
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: opts.bodyLimit ?? 1 << 20,
    return503OnClosing: false,
    routerOptions: { maxParamLength: 512 },
    // Bodies are checked strictly; query and path text is converted by coerceText() instead.
    ajv: { customOptions: { coerceTypes: false } },
    // Malformed URLs (bad percent-encoding) and the like, before any route is found.
    frameworkErrors: (err, _req, reply) => {
      const { status, body } = errorBody(err);
      void fail(reply, status, body.code, body.message);
    },
    // Requests Node's parser refuses before any route is looked up. A method it does not know (FOO,
    // BREW) is an unknown method: 404 not_found (9), like a known method on a path without it.
    clientErrorHandler: (err, socket) => {
      const code = 'code' in err ? err.code : undefined;
      if (socket.writable && code !== 'ECONNRESET') {
        const [status, reason, body] =
          code === 'HPE_INVALID_METHOD'
            ? [404, 'Not Found', { code: 'not_found', message: 'unknown HTTP method' }]
            : [400, 'Bad Request', { code: 'bad_request', message: 'malformed HTTP request' }];
        const text = JSON.stringify(body);
        socket.end(
          `HTTP/1.1 ${status} ${reason}\r\nContent-Type: application/json; charset=utf-8\r\n` +
            `Content-Length: ${Buffer.byteLength(text)}\r\nConnection: close\r\n\r\n${text}`,
        );
      }
      socket.destroy();
    },
  });

  const authorized = bearerChecker(opts.adminToken);
  const authUrls = new Set<string>(
    Object.values(ROUTES as Record<string, RouteSpec>)
      .filter((r) => r.auth)
      .map((r) => r.url),
  );
  const hub = new StreamHub(gw, logger, opts.stream);
  const openapi: OpenApiDocument = buildOpenApi(ROUTES, {
    title: 'VMCP Gateway HTTP API',
    version: API_VERSION,
    description:
      'The HTTP API of the VMCP gateway (PROTOCOL.md section 9). Every 4xx/5xx answer has the body {"code","message"}.',
  });
  const openapiText = JSON.stringify(openapi);

  /** Each JSON request's body text, for what must reach the vehicle as written (params). */
  const rawBodies = new WeakMap<FastifyRequest, string>();
  // A JSON parser that takes an empty body as no body (a POST without payload but with the header),
  // and refuses a body that is not UTF-8 (RFC 8259 8.1) instead of decoding it with U+FFFD in it.
  const jsonParser = app.getDefaultJsonParser('error', 'error');
  app.addContentTypeParser(
    'application/json',
    { parseAs: 'buffer' },
    (req: FastifyRequest, body: string | Buffer, done) => {
      if (typeof body !== 'string' && !isUtf8(body)) {
        const err = new VmcpError('VMCP_ERR_HTTP_BAD_REQUEST', 'request body is not valid UTF-8');
        return done(err, undefined);
      }
      const text = typeof body === 'string' ? body : body.toString('utf8');
      if (text.trim() === '') return done(null, undefined);
      rawBodies.set(req, text);
      jsonParser(req, text, done);
    },
  );

  // /api/v1/* needs the admin token, unknown paths under it included (they answer 401 before 404);
  // other unknown paths (/api/v2/…, /api) are just unknown: 404.
  app.addHook('onRequest', async (req, reply) => {
    const url = req.routeOptions.url;
    const path = req.url.split('?')[0]!;
    const protectedRoute =
      url === undefined ? path === '/api/v1' || path.startsWith('/api/v1/') : authUrls.has(url);
    if (protectedRoute && !authorized(headerValue(req.headers.authorization))) {
      return fail(reply, 401, 'unauthorized', 'missing or wrong bearer token');
    }
    return undefined;
  });

  app.addHook('onResponse', async (req, reply) => {
    logger?.debug(
      {
        method: req.method,
        url: req.routeOptions.url ?? req.url,
        status: reply.statusCode,
        ms: Math.round(reply.elapsedTime * 10) / 10,
      },
      'http request',
    );
  });

  app.addHook('preClose', async () => hub.closeAll());

  app.setErrorHandler((err, req, reply) => {
    const { status, body } = errorBody(err);
    if (status >= 500)
      logger?.error({ err, method: req.method, url: req.url }, 'http request failed');
    return fail(reply, status, body.code, body.message);
  });

  app.setNotFoundHandler((req, reply) => {
    const path = req.url.split('?')[0]!.slice(0, 200);
    return fail(reply, 404, 'not_found', `no route for ${req.method} ${path}`);
  });

  // ---- handlers, one per route of the table ----

  async function vehicleResource(row: VehicleRow): Promise<VehicleView> {
    const session = await gw.sessionViewOf(row.id);
    return {
      id: row.id,
      online: session !== null,
      lastUplinkSeq: row.lastUplinkSeq,
      latest: row.latest,
      session,
    };
  }

  async function onlinePage(limit: number, cursor: string | undefined) {
    const page = await gw.listOnline(limit, cursor === undefined || cursor === '' ? null : cursor);
    const items: VehicleView[] = [];
    for (const id of page.ids) {
      const view = await gw.vehicle(id);
      if (view !== undefined) items.push(view);
    }
    return { items, next: page.next };
  }

  const handlers: Record<RouteName, Handler> = {
    async postCommand(req, reply) {
      const { id } = req.params as VehicleParams;
      const body = req.body as PostCommandBody;
      wellFormed(body.name, 'name');
      // PARAMS is the client's own JSON text (compacted), not a re-serialisation of the parsed value.
      const raw = rawBodies.get(req);
      const rawParams = raw === undefined ? undefined : memberText(raw, 'params');
      const paramsText =
        body.params === undefined || body.params === null
          ? null
          : rawParams !== undefined
            ? compactJson(rawParams)
            : JSON.stringify(body.params);
      const size = commandSize(body.name, paramsText ?? '');
      if (size > gw.config.maxMessageBytes) {
        throw new VmcpError(
          'VMCP_ERR_HTTP_BAD_REQUEST',
          `command too large: its COMMAND message would be ${size} bytes, more than the ${gw.config.maxMessageBytes} allowed`,
        );
      }
      const traceparent = childTraceparent(parseTraceparent(headerValue(req.headers.traceparent)));
      const row = await viaStore(() =>
        gw.downlink.post({
          vehicleId: id,
          name: body.name,
          paramsText,
          ttlMs: body.ttlMs ?? TTL_DEFAULT_MS,
          traceparent,
        }),
      );
      logger?.info(
        { vehicleId: id, commandId: row.id, seq: row.seq, name: row.name, traceparent },
        'command accepted',
      );
      // 9: 202 {"id","seq","status":"pending"}; the row may already be on its way to an online vehicle.
      return reply.code(202).send({
        id: row.id,
        seq: row.seq,
        status: 'pending',
        vehicleId: row.vehicleId,
        expiresAt: row.expiresAt,
      });
    },

    async getCommand(req) {
      const { id } = req.params as CommandParams;
      const row = await viaStore(() => gw.downlink.current(id));
      if (row === undefined) throw new VmcpError('VMCP_ERR_COMMAND_NOT_FOUND');
      return commandJson(row);
    },

    async cancelCommand(req) {
      const { id } = req.params as CommandParams;
      const row = await viaStore(() => gw.downlink.cancel(id));
      return commandJson(row);
    },

    async listVehicles(req) {
      const q = req.query as ListVehiclesQuery;
      const limit = Math.min(q.limit, LIST_MAX_LIMIT);
      if (q.online) return onlinePage(limit, q.cursor);
      const page = await viaStore(() =>
        gw.store.listVehicles(limit, q.cursor === undefined || q.cursor === '' ? null : q.cursor),
      );
      return { items: await Promise.all(page.items.map(vehicleResource)), next: page.next };
    },

    async getVehicle(req) {
      const { id } = req.params as VehicleParams;
      const view = await viaStore(() => gw.vehicle(id));
      if (view === undefined) throw new VmcpError('VMCP_ERR_VEHICLE_NOT_FOUND');
      return view;
    },

    async listUplink(req) {
      const { id } = req.params as VehicleParams;
      const q = req.query as UplinkQuery;
      const vehicle = await viaStore(() => gw.store.getVehicle(id));
      if (vehicle === undefined) throw new VmcpError('VMCP_ERR_VEHICLE_NOT_FOUND');
      const limit = Math.min(q.limit, LIST_MAX_LIMIT);
      const items =
        limit === 0 ? [] : await viaStore(() => gw.store.listUplink(id, q.afterSeq, limit));
      return { items };
    },

    async readSensor(req) {
      const { id, channel } = req.params as SensorParams;
      const { timeoutMs } = req.query as SensorQuery;
      const r = await viaStore(() => gw.readSensor(id, channel, timeoutMs));
      if (r.status === 1) throw new VmcpError('VMCP_ERR_NO_SUCH_CHANNEL');
      if (r.status !== 0) throw new VmcpError('VMCP_ERR_SENSOR_FAILURE');
      return { channel, status: 'ok', value: toHex(r.value) };
    },

    async disconnectVehicle(req) {
      const { id } = req.params as VehicleParams;
      if (!(await viaStore(() => gw.kick(id)))) throw new VmcpError('VMCP_ERR_VEHICLE_OFFLINE');
      logger?.info({ vehicleId: id }, 'vehicle kicked by an operator');
      return { id, disconnected: true };
    },

    async addDevice(req, reply) {
      const body = req.body as AddDeviceBody;
      wellFormed(body.secret, 'secret');
      const secretHash = await hashSecret(body.secret);
      const added = await viaStore(() =>
        gw.store.addDevice({
          id: body.id,
          secretHash,
          scopes: [...new Set(body.scopes)],
          createdAt: gw.clock.now(),
          revokedAt: null,
        }),
      );
      if (!added) throw new VmcpError('VMCP_ERR_DEVICE_EXISTS');
      logger?.info({ vehicleId: body.id, scopes: body.scopes }, 'device registered');
      return reply.code(201).send({ id: body.id });
    },

    async revokeDevice(req) {
      const { id } = req.params as VehicleParams;
      const revoked = await viaStore(() => gw.revokeDevice(id));
      if (!revoked) throw new VmcpError('VMCP_ERR_DEVICE_NOT_FOUND');
      logger?.info({ vehicleId: id }, 'device revoked');
      return { id, revoked: true };
    },

    async stream(req, reply) {
      const { vehicle } = req.query as StreamQuery;
      reply.hijack();
      if (req.method === 'HEAD') {
        reply.raw.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8' });
        reply.raw.end();
        return reply;
      }
      hub.attach(reply.raw, vehicle);
      return reply;
    },

    async healthz() {
      return { status: 'ok' };
    },

    async readyz(_req, reply) {
      // The caller's view (listeners up, store open) and the core's (store writable, not draining).
      if (!opts.isReady())
        return fail(reply, 503, 'not_ready', 'not ready: listeners or store not open');
      const why = gw.notReadyReason;
      if (why === undefined) return { status: 'ok' };
      return fail(reply, 503, 'not_ready', `not ready: ${why}`);
    },

    async metrics(_req, reply) {
      const text = await gw.metrics.text();
      return reply.type(gw.metrics.registry.contentType).send(text);
    },

    async openapi(_req, reply) {
      return reply.type('application/json; charset=utf-8').send(openapiText);
    },
  };

  for (const name of Object.keys(ROUTES) as RouteName[]) {
    const spec: RouteSpec = ROUTES[name];
    const schema: FastifySchema = {};
    if (spec.params !== undefined) schema.params = spec.params;
    if (spec.querystring !== undefined) schema.querystring = spec.querystring;
    if (spec.body !== undefined) schema.body = spec.body;
    const { params, querystring } = spec;
    app.route({
      method: spec.method,
      url: spec.url,
      // HEAD answers like GET without its body; a sensor read is not done for a HEAD (404).
      exposeHeadRoute: name !== 'readSensor',
      schema,
      preValidation: async (req) => {
        if (params !== undefined) coerceText(params, req.params as Record<string, unknown>);
        if (querystring !== undefined)
          coerceText(querystring, req.query as Record<string, unknown>);
      },
      handler: handlers[name],
    });
  }

  // GET /console: the operator page (console.ts); it calls the routes above with the admin token.
  registerConsole(app, { heartbeatMs: opts.stream?.heartbeatMs });

  return app;
}

// COMMAND (4.1): SEQ u32, then TLVs of 5-byte headers: COMMAND_ID (cmd_ + UUID), NAME, PARAMS,
// EXPIRES_AT (u64) and TRACEPARENT (55 characters).
const COMMAND_FIXED_BYTES = 4 + (5 + 40) + 5 + (5 + 8) + (5 + 55);

/** Size in bytes of the COMMAND message a command becomes (it must fit the message limit, 1.2). */
export function commandSize(name: string, paramsText: string): number {
  const params = paramsText === '' ? 0 : 5 + Buffer.byteLength(paramsText, 'utf8');
  return COMMAND_FIXED_BYTES + Buffer.byteLength(name, 'utf8') + params;
}
