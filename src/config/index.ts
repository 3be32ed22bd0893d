// Gateway configuration: one table of settings, parsed once from flags > env > file > defaults, then frozen.
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { VmcpError } from '../errors.js';

export interface HostPort {
  host: string;
  port: number;
}

type Kind = 'string' | 'int' | 'duration' | 'bytes' | 'hostport' | 'bool' | 'list';

interface Setting {
  /** camelCase key in the config file and in GatewayConfig. */
  key: keyof GatewayConfig;
  kind: Kind;
  help: string;
  min?: number;
  max?: number;
  choices?: readonly string[];
  /** Secrets are never echoed in errors or logs. */
  secret?: boolean;
}

export interface GatewayConfig {
  listen: HostPort;
  http: HostPort;
  dataDir: string;
  tlsListen: HostPort | undefined;
  tlsCert: string | undefined;
  tlsKey: string | undefined;
  clientCa: string | undefined;
  store: string;
  redisUrl: string[];
  nodeId: string | undefined;
  jwtSecret: string | undefined;
  jwtPublicKeys: string | undefined;
  adminToken: string | undefined;
  logLevel: string;
  connectTimeoutMs: number;
  keepaliveMinS: number;
  keepaliveMaxS: number;
  frameTimeoutMs: number;
  maxMessageBytes: number;
  maxConnections: number;
  connectRatePerSec: number;
  connectBurst: number;
  uplinkRatePerSec: number;
  uplinkBurst: number;
  badFrameLimit: number;
  garbageByteLimit: number;
  badInputWindowMs: number;
  authFailureLimit: number;
  authFailureWindowMs: number;
  commandWindow: number;
  tokenTtlMs: number;
  tokenRenewBeforeMs: number;
  retentionMs: number;
  retentionBatch: number;
  diskFloorBytes: number;
  commitIntervalMs: number;
  commitMaxBatch: number;
  storeSync: string;
  storeWorker: boolean;
  writeBufferBytes: number;
  drainTimeoutMs: number;
  maxPendingUplink: number;
  shutdownTimeoutMs: number;
  redirect: string | undefined;
  sensorReadLimit: number;
  nodeHeartbeatMs: number;
  nodeTtlMs: number;
}

export const DEFAULTS: Readonly<GatewayConfig> = Object.freeze({
  listen: { host: '127.0.0.1', port: 7000 },
  http: { host: '127.0.0.1', port: 8080 },
  dataDir: './data',
  tlsListen: undefined,
  tlsCert: undefined,
  tlsKey: undefined,
  clientCa: undefined,
  store: 'sqlite',
  redisUrl: [],
  nodeId: undefined,
  jwtSecret: undefined,
  jwtPublicKeys: undefined,
  adminToken: undefined,
  logLevel: 'info',
  connectTimeoutMs: 10_000, // 2: wait for CONNECT
  keepaliveMinS: 1, // 2.1: KEEPALIVE clamp bounds
  keepaliveMaxS: 3600,
  frameTimeoutMs: 2_000, // 1.1: incomplete frame discarded
  maxMessageBytes: 16_384, // 1.2
  maxConnections: 19_500, // one process holds ~19,900 sockets under a 20,000-file cap
  connectRatePerSec: 2_000, // accepted CONNECTs per second; carrier-NAT fleets reconnect in bursts
  connectBurst: 5_000,
  uplinkRatePerSec: 50, // 3.2: per-vehicle token bucket
  uplinkBurst: 100,
  badFrameLimit: 16, // 1.1: the 16th bad frame in the window closes
  garbageByteLimit: 4_096, // 1.1: the 4,096th garbage byte in the window closes
  badInputWindowMs: 60_000,
  authFailureLimit: 30, // failed CREDENTIALs per source address per window before SERVER_BUSY for CREDENTIALs
  authFailureWindowMs: 60_000,
  commandWindow: 8, // 4.1: commands sent and without a final result at once
  tokenTtlMs: 24 * 3600_000, // 2.3: lifetime of a token issued at registration
  tokenRenewBeforeMs: 3600_000, // a CONNECT whose token expires sooner gets a fresh one
  retentionMs: 7 * 24 * 3600_000,
  retentionBatch: 200, // small deletes between commits keep ack p99 flat (bench/retention.ts)
  diskFloorBytes: 1024 ** 3,
  commitIntervalMs: 2, // group commit: a batch at most every few ms
  commitMaxBatch: 4_096,
  storeSync: 'full',
  // SQLite uplink commits on a worker thread. Off by default: on 2 cores shared with the simulator it
  // measured no better (docs/benchmarks.md); it pays where a core is free for the store.
  storeWorker: false,
  writeBufferBytes: 256 * 1024, // per connection, before the drain timeout starts counting
  drainTimeoutMs: 30_000,
  maxPendingUplink: 50_000, // uplink messages waiting for the store before reads pause
  shutdownTimeoutMs: 10_000,
  redirect: undefined,
  sensorReadLimit: 256,
  nodeHeartbeatMs: 2_000, // cluster: how often a node refreshes its heartbeat in Redis
  nodeTtlMs: 10_000, // cluster: a node silent this long is dead and its sessions are released
});

const S = (
  key: keyof GatewayConfig,
  kind: Kind,
  help: string,
  extra: Partial<Setting> = {},
): Setting => ({
  key,
  kind,
  help,
  ...extra,
});

/** Every setting: flag `--kebab-case`, env `VMCP_SNAKE_CASE`, file key camelCase. */
export const SETTINGS: readonly Setting[] = [
  S('listen', 'hostport', 'vehicle TCP listener host:port'),
  S('http', 'hostport', 'HTTP API host:port'),
  S('dataDir', 'string', 'data directory (store, generated secrets, node id)'),
  S('tlsListen', 'hostport', 'mutual-TLS vehicle listener host:port'),
  S('tlsCert', 'string', 'PEM file: the TLS listener certificate'),
  S('tlsKey', 'string', 'PEM file: the TLS listener private key'),
  S('clientCa', 'string', 'PEM file: the device CA client certificates must chain to'),
  S('store', 'string', 'store engine', { choices: ['sqlite', 'redis'] }),
  S('redisUrl', 'list', 'Redis URL(s); several seeds mean Redis Cluster'),
  S('nodeId', 'string', 'node id (generated and kept in the data dir when absent)'),
  S('jwtSecret', 'string', 'HS256 secret for vehicle tokens', { secret: true }),
  S('jwtPublicKeys', 'string', 'PEM public keys (ES256/EdDSA) for vehicle tokens'),
  S('adminToken', 'string', 'bearer token of the HTTP API', { secret: true }),
  S('logLevel', 'string', 'log level', {
    choices: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'],
  }),
  S('connectTimeoutMs', 'duration', 'time allowed for CONNECT after accept', {
    min: 100,
    max: 600_000,
  }),
  S('keepaliveMinS', 'int', 'lowest keepalive granted (s)', { min: 1, max: 65_535 }),
  S('keepaliveMaxS', 'int', 'highest keepalive granted (s)', { min: 1, max: 65_535 }),
  S('frameTimeoutMs', 'duration', 'incomplete frame timeout', { min: 10, max: 600_000 }),
  S('maxMessageBytes', 'bytes', 'largest reassembled message', { min: 255, max: 16 * 1024 * 1024 }),
  S('maxConnections', 'int', 'vehicle connections held at most', { min: 1, max: 10_000_000 }),
  S('connectRatePerSec', 'int', 'CONNECTs accepted per second', { min: 1, max: 10_000_000 }),
  S('connectBurst', 'int', 'CONNECT burst', { min: 1, max: 10_000_000 }),
  S('uplinkRatePerSec', 'int', 'uplink messages per second per vehicle', {
    min: 1,
    max: 1_000_000,
  }),
  S('uplinkBurst', 'int', 'uplink burst per vehicle', { min: 1, max: 1_000_000 }),
  S('badFrameLimit', 'int', 'bad frames per window before disconnect', { min: 1, max: 1_000_000 }),
  S('garbageByteLimit', 'int', 'garbage bytes per window before disconnect', {
    min: 1,
    max: 1_000_000_000,
  }),
  S('badInputWindowMs', 'duration', 'sliding window of the bad-input limits', {
    min: 1_000,
    max: 3_600_000,
  }),
  S('authFailureLimit', 'int', 'failed CREDENTIALs per address per window (tokens exempt)', {
    min: 1,
    max: 10_000_000,
  }),
  S('authFailureWindowMs', 'duration', 'window of the failed-authentication limit', {
    min: 1_000,
    max: 86_400_000,
  }),
  S('commandWindow', 'int', 'downlink commands in flight per vehicle', { min: 1, max: 1_000 }),
  S('tokenTtlMs', 'duration', 'lifetime of tokens issued at registration', {
    min: 60_000,
    max: 365 * 86_400_000,
  }),
  S('tokenRenewBeforeMs', 'duration', 'renew a token expiring sooner than this (0: never)', {
    min: 0,
    max: 365 * 86_400_000,
  }),
  S('retentionMs', 'duration', 'keep uplink records this long', {
    min: 60_000,
    max: 3650 * 86_400_000,
  }),
  S('retentionBatch', 'int', 'records deleted per retention step', { min: 10, max: 1_000_000 }),
  S('diskFloorBytes', 'bytes', 'free disk below which uplink is shed', { min: 0, max: 2 ** 50 }),
  S('commitIntervalMs', 'duration', 'group commit interval', { min: 0, max: 1_000 }),
  S('commitMaxBatch', 'int', 'messages per group commit at most', { min: 1, max: 1_000_000 }),
  S('storeSync', 'string', 'SQLite durability: full fsyncs every commit', {
    choices: ['full', 'normal'],
  }),
  S('storeWorker', 'bool', 'SQLite: run uplink commits in a worker thread'),
  S('writeBufferBytes', 'bytes', 'per-connection output buffered before backpressure', {
    min: 1024,
    max: 1024 ** 3,
  }),
  S('drainTimeoutMs', 'duration', 'how long a connection may stay over its output buffer', {
    min: 100,
    max: 3_600_000,
  }),
  S('maxPendingUplink', 'int', 'uplink messages queued for the store before reads pause', {
    min: 100,
    max: 10_000_000,
  }),
  S('shutdownTimeoutMs', 'duration', 'graceful shutdown bound', { min: 100, max: 600_000 }),
  S('redirect', 'string', 'host:port sent with DISCONNECT SHUTDOWN'),
  S('sensorReadLimit', 'int', 'outstanding sensor reads per vehicle', { min: 1, max: 256 }),
  S('nodeHeartbeatMs', 'duration', 'cluster: node heartbeat interval', { min: 100, max: 60_000 }),
  S('nodeTtlMs', 'duration', 'cluster: a node without heartbeat this long is dead', {
    min: 500,
    max: 600_000,
  }),
];

const byKey = new Map(SETTINGS.map((s) => [s.key as string, s]));

/** Short names the issue and operators use: `--retention 7d`, `--disk-floor 1GiB` (also VMCP_RETENTION, VMCP_DISK_FLOOR). */
export const ALIASES: Readonly<Record<string, keyof GatewayConfig>> = {
  retention: 'retentionMs',
  diskFloor: 'diskFloorBytes',
};
for (const [alias, key] of Object.entries(ALIASES)) byKey.set(alias, byKey.get(key)!);

export function flagName(key: string): string {
  return key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}

export function envName(key: string): string {
  return `VMCP_${key.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase()}`;
}

function bad(setting: string, why: string): never {
  throw new VmcpError('VMCP_ERR_CONFIG', `invalid configuration: ${setting}: ${why}`, {
    field: setting,
  });
}

const DURATION = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$/;
const DURATION_UNITS: Record<string, number> = {
  ms: 1,
  s: 1_000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
};
const BYTES = /^(\d+(?:\.\d+)?)\s*(b|kb|kib|mb|mib|gb|gib|tb|tib)?$/i;
const BYTE_UNITS: Record<string, number> = {
  b: 1,
  kb: 1e3,
  kib: 1024,
  mb: 1e6,
  mib: 1024 ** 2,
  gb: 1e9,
  gib: 1024 ** 3,
  tb: 1e12,
  tib: 1024 ** 4,
};

/** Parses "7d", "1500ms", "30s" (a bare number is milliseconds). */
export function parseDuration(text: string): number | undefined {
  const m = DURATION.exec(text.trim());
  if (!m) return undefined;
  return Math.round(Number(m[1]) * DURATION_UNITS[m[2] ?? 'ms']!);
}

/** Parses "1GiB", "512kb", "4096". */
export function parseBytes(text: string): number | undefined {
  const m = BYTES.exec(text.trim());
  if (!m) return undefined;
  return Math.round(Number(m[1]) * BYTE_UNITS[(m[2] ?? 'b').toLowerCase()]!);
}

export function parseHostPort(text: string): HostPort | undefined {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(text.trim());
  if (!m) return undefined;
  const port = Number(m[3]);
  if (port > 65_535) return undefined;
  return { host: m[1] ?? (m[2] || '0.0.0.0'), port };
}

export function formatHostPort(hp: HostPort): string {
  return hp.host.includes(':') ? `[${hp.host}]:${hp.port}` : `${hp.host}:${hp.port}`;
}

function coerce(s: Setting, raw: unknown, source: string): unknown {
  const name = `${s.key} (${source})`;
  const text = typeof raw === 'string' ? raw : undefined;
  switch (s.kind) {
    case 'string': {
      if (typeof raw !== 'string' || raw === '') bad(name, 'expected a non-empty string');
      if (s.choices && !s.choices.includes(raw))
        bad(name, `expected one of ${s.choices.join(', ')}`);
      return raw;
    }
    case 'list': {
      const items = Array.isArray(raw)
        ? raw
        : typeof raw === 'string'
          ? raw.split(',')
          : bad(name, 'expected a list');
      const out = items.map((x) =>
        typeof x === 'string' ? x.trim() : bad(name, 'expected strings'),
      );
      return out.filter((x) => x !== '');
    }
    case 'bool': {
      if (typeof raw === 'boolean') return raw;
      if (text === 'true' || text === '1') return true;
      if (text === 'false' || text === '0') return false;
      return bad(name, 'expected true or false');
    }
    case 'hostport': {
      if (typeof raw !== 'string') bad(name, 'expected host:port');
      return parseHostPort(raw) ?? bad(name, `expected host:port, got ${JSON.stringify(raw)}`);
    }
    case 'int':
    case 'duration':
    case 'bytes': {
      let n: number | undefined;
      if (typeof raw === 'number') n = raw;
      else if (text !== undefined) {
        n =
          s.kind === 'duration'
            ? parseDuration(text)
            : s.kind === 'bytes'
              ? parseBytes(text)
              : /^-?\d+$/.test(text.trim())
                ? Number(text)
                : undefined;
      }
      if (n === undefined || !Number.isFinite(n) || !Number.isInteger(n))
        bad(
          name,
          `expected ${s.kind === 'int' ? 'an integer' : `a ${s.kind}`}, got ${JSON.stringify(raw)}`,
        );
      if (s.min !== undefined && n < s.min) bad(name, `must be ≥ ${s.min}`);
      if (s.max !== undefined && n > s.max) bad(name, `must be ≤ ${s.max}`);
      return n;
    }
  }
}

export interface ConfigSources {
  /** Parsed flags: camelCase key → raw text (from parseFlags). */
  flags?: Record<string, unknown>;
  env?: NodeJS.ProcessEnv;
  /** Path of a JSON or YAML file. */
  configFile?: string | undefined;
}

function readConfigFile(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    bad('config', `cannot read ${path}: ${(err as Error).message}`);
  }
  let parsed: unknown;
  try {
    parsed = /\.ya?ml$/i.test(path) ? parseYaml(text) : JSON.parse(text);
  } catch (err) {
    bad('config', `cannot parse ${path}: ${(err as Error).message}`);
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed))
    bad('config', `${path} must hold an object`);
  return parsed as Record<string, unknown>;
}

/** Builds the frozen configuration. Precedence: flags > env > file > defaults. Unknown keys are errors. */
export function loadConfig(sources: ConfigSources = {}): Readonly<GatewayConfig> {
  const cfg: Record<string, unknown> = { ...DEFAULTS };
  const env = sources.env ?? {};
  const configFile =
    (sources.flags?.config as string | undefined) ?? env.VMCP_CONFIG ?? sources.configFile;
  if (configFile !== undefined) {
    for (const [k, v] of Object.entries(readConfigFile(configFile))) {
      const s = byKey.get(k);
      if (!s) bad(k, `unknown setting in ${configFile}`);
      cfg[s.key] = coerce(s, v, configFile);
    }
  }
  for (const [alias, key] of Object.entries(ALIASES)) {
    const v = env[envName(alias)];
    if (v !== undefined && v !== '') cfg[key] = coerce(byKey.get(key)!, v, envName(alias));
  }
  for (const s of SETTINGS) {
    const v = env[envName(s.key)];
    if (v !== undefined && v !== '') cfg[s.key] = coerce(s, v, envName(s.key));
  }
  for (const [k, v] of Object.entries(sources.flags ?? {})) {
    if (k === 'config') continue;
    const s = byKey.get(k);
    if (!s) bad(`--${flagName(k)}`, 'unknown option');
    cfg[s.key] = coerce(s, v, `--${flagName(k)}`);
  }
  const out = cfg as unknown as GatewayConfig;
  if (out.keepaliveMinS > out.keepaliveMaxS) bad('keepaliveMinS', 'must be ≤ keepaliveMaxS');
  if (out.tlsListen && (!out.tlsCert || !out.tlsKey || !out.clientCa)) {
    bad('tlsListen', 'needs --tls-cert, --tls-key and --client-ca');
  }
  if (out.store === 'redis' && out.redisUrl.length === 0)
    bad('redisUrl', 'required with --store redis');
  // Deep-frozen: nested values (listen, http, redisUrl) are shared by everything that reads them.
  for (const v of Object.values(out)) if (typeof v === 'object' && v !== null) Object.freeze(v);
  return Object.freeze(out);
}

/**
 * Parses `--kebab-flag value` / `--kebab-flag=value` pairs into camelCase keys. Flags without a
 * value (followed by another flag or nothing) are `true`. Positional arguments are returned apart.
 */
export function parseFlags(argv: readonly string[]): {
  flags: Record<string, string | true>;
  positional: string[];
} {
  const flags: Record<string, string | true> = {};
  const positional: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (!a.startsWith('--')) {
      positional.push(a);
      continue;
    }
    const eq = a.indexOf('=');
    const name = a.slice(2, eq < 0 ? undefined : eq);
    const key = name.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
    const value =
      eq >= 0
        ? a.slice(eq + 1)
        : i + 1 < argv.length && !argv[i + 1]!.startsWith('--')
          ? argv[++i]!
          : true;
    // A repeated flag (--redis-url a --redis-url b) accumulates as a comma-separated list.
    const prev = flags[key];
    flags[key] = typeof prev === 'string' && typeof value === 'string' ? `${prev},${value}` : value;
  }
  return { flags, positional };
}

/** Settings help text for `vmcp serve --help`. */
export function settingsHelp(): string {
  return SETTINGS.map((s) => {
    const def = (DEFAULTS as unknown as Record<string, unknown>)[s.key];
    const shown =
      def === undefined
        ? ''
        : s.kind === 'hostport'
          ? ` (default ${formatHostPort(def as HostPort)})`
          : ` (default ${JSON.stringify(def)})`;
    const line = `  --${flagName(s.key).padEnd(24)} ${envName(s.key).padEnd(28)} ${s.help}${shown}`;
    const aliases = Object.entries(ALIASES)
      .filter(([, key]) => key === s.key)
      .map(
        ([alias]) =>
          `  --${flagName(alias).padEnd(24)} ${envName(alias).padEnd(28)} alias of --${flagName(s.key)}`,
      );
    return [line, ...aliases].join('\n');
  }).join('\n');
}
