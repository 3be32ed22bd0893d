// The HTTP API's route table (PROTOCOL.md 9): one entry per route holding the JSON schemas that
// validate its requests and document its answers. buildApi() registers routes from it and
// openapi.ts builds /docs/openapi.json from the same entries, so the two cannot drift apart.
import { ALL_SCOPES } from '../auth/index.js';
import { VEHICLE_ID_PATTERN } from '../protocol/messages/connect.js';
import { COMMAND_STATUSES } from '../store/types.js';

/** The subset of JSON Schema used here: valid for Ajv (draft-07) and as an OpenAPI 3.0 Schema Object. */
export interface JsonSchema {
  type?: 'object' | 'array' | 'string' | 'integer' | 'number' | 'boolean';
  description?: string;
  properties?: Record<string, JsonSchema>;
  required?: readonly string[];
  additionalProperties?: boolean | JsonSchema;
  items?: JsonSchema;
  minItems?: number;
  maxItems?: number;
  minimum?: number;
  maximum?: number;
  minLength?: number;
  maxLength?: number;
  pattern?: string;
  enum?: readonly (string | number | boolean)[];
  default?: unknown;
  nullable?: boolean;
  anyOf?: readonly JsonSchema[];
  /** OpenAPI only (response schemas, never compiled): a component reference. */
  $ref?: string;
}

export interface ObjectSchema extends JsonSchema {
  type: 'object';
  properties: Record<string, JsonSchema>;
}

// ---- limits (PROTOCOL.md 9) ----

export const TTL_MIN_MS = 1;
export const TTL_MAX_MS = 604_800_000;
export const TTL_DEFAULT_MS = 86_400_000;
export const LIST_DEFAULT_LIMIT = 100;
export const LIST_MAX_LIMIT = 1000;
export const SENSOR_TIMEOUT_DEFAULT_MS = 5_000;
export const SENSOR_TIMEOUT_MAX_MS = 60_000;
/**
 * Registration secrets: any a CREDENTIAL can carry (a CONNECT is at most 16,384 bytes by default,
 * 1.2), and a bound on what one request hands the KDF.
 */
export const SECRET_MAX_LENGTH = 16_384;

// ---- shared pieces ----

export const VEHICLE_ID: JsonSchema = {
  type: 'string',
  pattern: VEHICLE_ID_PATTERN.source,
  description: 'Vehicle id: 1–64 characters of [A-Za-z0-9._:-] (PROTOCOL.md 2.1 VEHICLE_ID)',
};

const COMMAND_ID: JsonSchema = {
  type: 'string',
  minLength: 1,
  maxLength: 128,
  description: 'Command id as returned by POST /api/v1/vehicles/{id}/commands',
};

const CURSOR: JsonSchema = {
  type: 'string',
  pattern: '^[A-Za-z0-9_-]{0,512}$',
  description: 'Opaque cursor from the previous page\'s "next"',
};

const vehicleParams: ObjectSchema = {
  type: 'object',
  properties: { id: VEHICLE_ID },
  required: ['id'],
};

const commandParams: ObjectSchema = {
  type: 'object',
  properties: { id: COMMAND_ID },
  required: ['id'],
};

function listLimit(what: string): JsonSchema {
  return {
    type: 'integer',
    minimum: what === 'records' ? 0 : 1,
    default: LIST_DEFAULT_LIMIT,
    description: `Maximum ${what} returned; values above ${LIST_MAX_LIMIT} are treated as ${LIST_MAX_LIMIT}`,
  };
}

// ---- response schemas (documentation only: answers are not filtered through them) ----

const ref = (name: string): JsonSchema => ({ $ref: `#/components/schemas/${name}` });

export const COMPONENT_SCHEMAS: Record<string, JsonSchema> = {
  Error: {
    type: 'object',
    required: ['code', 'message'],
    properties: {
      code: { type: 'string', description: 'Stable snake_case error code' },
      message: { type: 'string', description: 'Human-readable text' },
    },
  },
  Status: {
    type: 'object',
    required: ['status'],
    properties: { status: { type: 'string', enum: ['ok'] } },
  },
  CommandAccepted: {
    type: 'object',
    required: ['id', 'seq', 'status'],
    properties: {
      id: COMMAND_ID,
      seq: { type: 'integer', description: 'Per-vehicle downlink seq (PROTOCOL.md 4.1)' },
      status: { type: 'string', enum: ['pending'] },
      vehicleId: VEHICLE_ID,
      expiresAt: { type: 'integer', description: 'ms since the Unix epoch' },
    },
  },
  Command: {
    type: 'object',
    required: ['id', 'vehicleId', 'seq', 'name', 'status', 'result'],
    properties: {
      id: COMMAND_ID,
      vehicleId: VEHICLE_ID,
      seq: { type: 'integer' },
      name: { type: 'string' },
      status: { type: 'string', enum: COMMAND_STATUSES },
      result: {
        nullable: true,
        description: 'Parsed RESULT_PAYLOAD (PROTOCOL.md 4.2), else null',
      },
      params: { nullable: true, description: 'The request\'s "params", or null' },
      createdAt: { type: 'integer', description: 'ms since the Unix epoch' },
      expiresAt: { type: 'integer', description: 'ms since the Unix epoch' },
      updatedAt: { type: 'integer', description: 'ms since the Unix epoch' },
    },
  },
  RecordData: {
    type: 'object',
    description: 'Known tags converted to the units in their names (PROTOCOL.md 8)',
    properties: {
      latitude: { type: 'number' },
      longitude: { type: 'number' },
      speedKmh: { type: 'number' },
      headingDeg: { type: 'number' },
      altitudeM: { type: 'integer' },
      odometerKm: { type: 'number' },
      fuelOrSocPct: { type: 'integer' },
      statusFlags: { type: 'integer' },
      engineRpm: { type: 'integer' },
      batteryMv: { type: 'integer' },
      eventCode: { type: 'integer' },
      severity: { type: 'integer' },
      detail: { type: 'string' },
      vendor: {
        type: 'object',
        description: 'Vendor tags keyed "0x80"…"0xfe", lower-case hex values',
        additionalProperties: { type: 'string' },
      },
    },
  },
  UplinkRecord: {
    type: 'object',
    required: ['vehicleId', 'seq', 'kind', 'timestamp', 'receivedAt', 'data'],
    properties: {
      vehicleId: VEHICLE_ID,
      seq: { type: 'integer' },
      kind: { type: 'string', enum: ['telemetry', 'event'] },
      timestamp: { type: 'integer', description: 'ms since the Unix epoch (TIMESTAMP tag)' },
      receivedAt: { type: 'integer', description: 'ms since the Unix epoch' },
      traceparent: { type: 'string' },
      data: ref('RecordData'),
    },
  },
  Session: {
    type: 'object',
    nullable: true,
    required: ['id', 'connectedAt', 'remote', 'version', 'keepalive'],
    properties: {
      id: { type: 'string' },
      connectedAt: { type: 'integer', description: 'ms since the Unix epoch' },
      remote: { type: 'string', description: 'Remote address' },
      version: { type: 'integer', description: 'Negotiated protocol version' },
      keepalive: { type: 'integer', description: 'Negotiated keepalive, seconds' },
    },
  },
  Vehicle: {
    type: 'object',
    required: ['id', 'online', 'lastUplinkSeq', 'latest', 'session'],
    properties: {
      id: VEHICLE_ID,
      online: { type: 'boolean' },
      lastUplinkSeq: { type: 'integer', description: 'Last consumed uplink seq (0 before any)' },
      latest: ref('RecordData'),
      session: ref('Session'),
    },
  },
  VehiclePage: {
    type: 'object',
    required: ['items', 'next'],
    properties: {
      items: { type: 'array', items: ref('Vehicle') },
      next: { type: 'string', nullable: true, description: 'Cursor of the next page, or null' },
    },
  },
  UplinkPage: {
    type: 'object',
    required: ['items'],
    properties: { items: { type: 'array', items: ref('UplinkRecord') } },
  },
  SensorValue: {
    type: 'object',
    required: ['channel', 'status', 'value'],
    properties: {
      channel: { type: 'integer' },
      status: { type: 'string', enum: ['ok'] },
      value: { type: 'string', description: 'Lower-case hex of the SENSOR_DATA VALUE' },
    },
  },
  DeviceCreated: {
    type: 'object',
    required: ['id'],
    properties: { id: VEHICLE_ID },
  },
  DeviceRevoked: {
    type: 'object',
    required: ['id', 'revoked'],
    properties: { id: VEHICLE_ID, revoked: { type: 'boolean', enum: [true] } },
  },
  Disconnected: {
    type: 'object',
    required: ['id', 'disconnected'],
    properties: { id: VEHICLE_ID, disconnected: { type: 'boolean', enum: [true] } },
  },
};

// ---- the route table ----

export interface ResponseSpec {
  description: string;
  /** A COMPONENT_SCHEMAS name; absent for a body that is not JSON. */
  schema?: string;
  /** Defaults to application/json. */
  contentType?: string;
}

export interface RouteSpec {
  method: 'GET' | 'POST' | 'DELETE';
  /** fastify path syntax (`:param`). */
  url: string;
  summary: string;
  tag: string;
  /** Requires `Authorization: Bearer <admin token>`. */
  auth: boolean;
  params?: ObjectSchema;
  querystring?: ObjectSchema;
  body?: ObjectSchema;
  responses: Record<number, ResponseSpec>;
}

const err = (description: string): ResponseSpec => ({ description, schema: 'Error' });
const E400 = err('bad_request: a malformed body or parameter');
const E401 = err('unauthorized: missing or wrong bearer token');
const E404 = err('not_found');
const E404_VEHICLE = err('vehicle_not_found: the vehicle never connected');
const E503 = err('store_unavailable');

export const ROUTES = {
  postCommand: {
    method: 'POST',
    url: '/api/v1/vehicles/:id/commands',
    summary: 'Queue a command for a vehicle (durable on 202; a vehicle never seen is accepted)',
    tag: 'commands',
    auth: true,
    params: vehicleParams,
    body: {
      type: 'object',
      required: ['name'],
      additionalProperties: false,
      properties: {
        name: { type: 'string', minLength: 1, description: 'e.g. door.lock, horn.honk' },
        params: {
          description:
            'Any JSON value, sent as PARAMS in the JSON text of the request (whitespace between tokens dropped, numbers as written); omitted or null sends none',
        },
        ttlMs: {
          type: 'integer',
          minimum: TTL_MIN_MS,
          maximum: TTL_MAX_MS,
          default: TTL_DEFAULT_MS,
          description: 'EXPIRES_AT = accept time + ttlMs',
        },
      },
    },
    responses: {
      202: { description: 'Accepted and durable', schema: 'CommandAccepted' },
      400: E400,
      401: E401,
      503: E503,
    },
  },
  getCommand: {
    method: 'GET',
    url: '/api/v1/commands/:id',
    summary: 'A command and its status',
    tag: 'commands',
    auth: true,
    params: commandParams,
    responses: { 200: { description: 'The command', schema: 'Command' }, 401: E401, 404: E404 },
  },
  cancelCommand: {
    method: 'DELETE',
    url: '/api/v1/commands/:id',
    summary: 'Cancel a pending command (never written to the vehicle)',
    tag: 'commands',
    auth: true,
    params: commandParams,
    responses: {
      200: { description: 'The command, status cancelled', schema: 'Command' },
      401: E401,
      404: E404,
      409: err('command_delivered or command_final'),
    },
  },
  listVehicles: {
    method: 'GET',
    url: '/api/v1/vehicles',
    summary: 'Vehicles seen, or only those online, in id order, paged',
    tag: 'vehicles',
    auth: true,
    querystring: {
      type: 'object',
      additionalProperties: false,
      properties: {
        online: {
          type: 'boolean',
          default: false,
          description: 'true: only vehicles with a live session on this gateway',
        },
        limit: listLimit('vehicles'),
        cursor: CURSOR,
      },
    },
    responses: {
      200: { description: 'One page', schema: 'VehiclePage' },
      400: E400,
      401: E401,
    },
  },
  getVehicle: {
    method: 'GET',
    url: '/api/v1/vehicles/:id',
    summary: 'A vehicle: presence, last uplink seq, merged latest telemetry, live session',
    tag: 'vehicles',
    auth: true,
    params: vehicleParams,
    responses: {
      200: { description: 'The vehicle', schema: 'Vehicle' },
      400: E400,
      401: E401,
      404: E404_VEHICLE,
    },
  },
  listUplink: {
    method: 'GET',
    url: '/api/v1/vehicles/:id/uplink',
    summary: 'Stored uplink records in seq order (holes are not listed)',
    tag: 'vehicles',
    auth: true,
    params: vehicleParams,
    querystring: {
      type: 'object',
      additionalProperties: false,
      properties: {
        afterSeq: {
          type: 'integer',
          minimum: 0,
          default: 0,
          description: 'Only records with seq > afterSeq',
        },
        limit: listLimit('records'),
      },
    },
    responses: {
      200: { description: 'Records', schema: 'UplinkPage' },
      400: E400,
      401: E401,
      404: E404_VEHICLE,
    },
  },
  readSensor: {
    method: 'GET',
    url: '/api/v1/vehicles/:id/sensors/:channel',
    summary: 'Live sensor read (SENSOR_READ / SENSOR_DATA, PROTOCOL.md 4.3)',
    tag: 'vehicles',
    auth: true,
    params: {
      type: 'object',
      required: ['id', 'channel'],
      properties: {
        id: VEHICLE_ID,
        channel: { type: 'integer', minimum: 0, maximum: 255 },
      },
    },
    querystring: {
      type: 'object',
      additionalProperties: false,
      properties: {
        timeoutMs: {
          type: 'integer',
          minimum: 1,
          maximum: SENSOR_TIMEOUT_MAX_MS,
          default: SENSOR_TIMEOUT_DEFAULT_MS,
        },
      },
    },
    responses: {
      200: { description: 'The value', schema: 'SensorValue' },
      400: E400,
      401: E401,
      404: err('vehicle_not_found, or no_such_channel (SENSOR_DATA status 1)'),
      409: err('vehicle_offline (offline or session ended), not_permitted (no command:receive)'),
      429: err('too_many_reads: 256 reads outstanding'),
      502: err('sensor_failure (SENSOR_DATA status 2)'),
      504: err('timeout: no answer in time'),
    },
  },
  disconnectVehicle: {
    method: 'POST',
    url: '/api/v1/vehicles/:id/disconnect',
    summary: "End the vehicle's live session (DISCONNECT KICKED)",
    tag: 'vehicles',
    auth: true,
    params: vehicleParams,
    responses: {
      200: { description: 'Disconnected', schema: 'Disconnected' },
      400: E400,
      401: E401,
      409: err('vehicle_offline'),
    },
  },
  addDevice: {
    method: 'POST',
    url: '/api/v1/devices',
    summary: 'Register a device for CREDENTIAL registration (PROTOCOL.md 2.3)',
    tag: 'devices',
    auth: true,
    body: {
      type: 'object',
      required: ['id', 'secret', 'scopes'],
      additionalProperties: false,
      properties: {
        id: VEHICLE_ID,
        secret: {
          type: 'string',
          minLength: 1,
          maxLength: SECRET_MAX_LENGTH,
          description: 'Stored hashed; CREDENTIAL is its UTF-8',
        },
        scopes: {
          type: 'array',
          items: { type: 'string', enum: ALL_SCOPES },
          description: 'Scopes put in tokens issued to the device',
        },
      },
    },
    responses: {
      201: { description: 'Registered', schema: 'DeviceCreated' },
      400: E400,
      401: E401,
      409: err('device_exists'),
    },
  },
  revokeDevice: {
    method: 'DELETE',
    url: '/api/v1/devices/:id',
    summary: 'Revoke a device: its live session is kicked and its CONNECTs are refused',
    tag: 'devices',
    auth: true,
    params: vehicleParams,
    responses: {
      200: { description: 'Revoked', schema: 'DeviceRevoked' },
      400: E400,
      401: E401,
      404: err('not_found: no such device (or already revoked)'),
    },
  },
  stream: {
    method: 'GET',
    url: '/api/v1/stream',
    summary:
      'Server-sent events: `uplink` (section 8 records), `presence` and `command` (command resources); a comment heartbeat every 15 s',
    tag: 'stream',
    auth: true,
    querystring: {
      type: 'object',
      additionalProperties: false,
      properties: {
        vehicle: {
          type: 'array',
          items: VEHICLE_ID,
          maxItems: 1000,
          description: 'Only these vehicles (repeat the parameter or separate ids with commas)',
        },
      },
    },
    responses: {
      200: { description: 'An event stream', contentType: 'text/event-stream' },
      400: E400,
      401: E401,
    },
  },
  healthz: {
    method: 'GET',
    url: '/healthz',
    summary: 'Liveness: 200 while the process runs',
    tag: 'operations',
    auth: false,
    responses: { 200: { description: 'Alive', schema: 'Status' } },
  },
  readyz: {
    method: 'GET',
    url: '/readyz',
    summary: 'Readiness: 200 once the listeners accept and the store is open',
    tag: 'operations',
    auth: false,
    responses: {
      200: { description: 'Ready', schema: 'Status' },
      503: err('not_ready'),
    },
  },
  metrics: {
    method: 'GET',
    url: '/metrics',
    summary: 'Prometheus metrics',
    tag: 'operations',
    auth: false,
    responses: {
      200: { description: 'Prometheus text exposition format', contentType: 'text/plain' },
    },
  },
  openapi: {
    method: 'GET',
    url: '/docs/openapi.json',
    summary: 'This document',
    tag: 'operations',
    auth: false,
    responses: { 200: { description: 'OpenAPI 3.0 document' } },
  },
} as const satisfies Record<string, RouteSpec>;

export type RouteName = keyof typeof ROUTES;

// ---- request types matching the schemas above (after validation and defaults) ----

export interface VehicleParams {
  id: string;
}
export interface CommandParams {
  id: string;
}
export interface PostCommandBody {
  name: string;
  params?: unknown;
  ttlMs: number;
}
export interface ListVehiclesQuery {
  online: boolean;
  limit: number;
  cursor?: string;
}
export interface UplinkQuery {
  afterSeq: number;
  limit: number;
}
export interface SensorParams {
  id: string;
  channel: number;
}
export interface SensorQuery {
  timeoutMs: number;
}
export interface AddDeviceBody {
  id: string;
  secret: string;
  scopes: string[];
}
export interface StreamQuery {
  vehicle?: string[];
}
