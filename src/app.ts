// The composition root: wires configuration, store, auth, gateway core, transports and the HTTP API into one process.
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { buildApi } from './api/index.js';
import { TokenService } from './auth/tokens.js';
import { formatHostPort, type GatewayConfig, type HostPort } from './config/index.js';
import { VmcpError } from './errors.js';
import { systemClock, type Clock } from './gateway/clock.js';
import { Gateway } from './gateway/gateway.js';
import { listenTcp, listenTls, type Listener } from './gateway/transports.js';
import { createLogger, type Logger } from './observability/logger.js';
import { GatewayMetrics } from './observability/metrics.js';
import { RedisCoordinator } from './cluster/coordinator.js';
import type { PresenceEvent } from './gateway/gateway.js';
import { RedisStore } from './store/redis.js';
import { SqliteStore } from './store/sqlite.js';
import type { CommandRow, Store } from './store/types.js';

export interface AppOptions {
  logger?: Logger;
  clock?: Clock;
  /** Replace the configured store (tests). */
  store?: Store;
  /** Collect process metrics (off in tests that start many apps). */
  defaultMetrics?: boolean;
}

export interface AppAddresses {
  vehicle: HostPort;
  tls: HostPort | undefined;
  http: HostPort;
}

/** Secrets the gateway needs, from configuration or generated once into the data dir (zero-config start). */
export interface ResolvedSecrets {
  jwtSecret: string | undefined;
  adminToken: string;
  generated: string[];
}

function readOrCreateSecret(dataDir: string, file: string, generated: string[]): string {
  const path = join(dataDir, file);
  if (existsSync(path)) return readFileSync(path, 'utf8').trim();
  const value = randomBytes(32).toString('base64url');
  writeFileSync(path, `${value}\n`, { mode: 0o600 });
  generated.push(path);
  return value;
}

export function resolveSecrets(config: Readonly<GatewayConfig>): ResolvedSecrets {
  const dataDir = resolve(config.dataDir);
  mkdirSync(dataDir, { recursive: true });
  const generated: string[] = [];
  const jwtSecret =
    config.jwtSecret ??
    (config.jwtPublicKeys === undefined
      ? readOrCreateSecret(dataDir, 'jwt-secret', generated)
      : undefined);
  const adminToken = config.adminToken ?? readOrCreateSecret(dataDir, 'admin-token', generated);
  return { jwtSecret, adminToken, generated };
}

/** The node id kept in the data dir (generated on first start) unless --node-id is given. */
function readOrCreateNodeId(dataDir: string): string {
  mkdirSync(dataDir, { recursive: true });
  const path = join(dataDir, 'node-id');
  if (existsSync(path)) return readFileSync(path, 'utf8').trim();
  const id = `gw-${randomBytes(4).toString('hex')}`;
  writeFileSync(path, `${id}\n`);
  return id;
}

/** A listener bound to 0.0.0.0 / :: is advertised to other nodes as its loopback form (tests, one host). */
function advertised(hp: HostPort): HostPort {
  return hp.host === '0.0.0.0' || hp.host === '::' ? { host: '127.0.0.1', port: hp.port } : hp;
}

/** Reads a file named by a setting; a failure is a configuration error naming the setting. */
function readSettingFile(setting: string, path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new VmcpError(
      'VMCP_ERR_CONFIG',
      `invalid configuration: ${setting}: cannot read ${path}: ${(err as Error).message}`,
      {
        field: setting,
      },
    );
  }
}

export class GatewayApp {
  private constructor(
    readonly config: Readonly<GatewayConfig>,
    readonly gateway: Gateway,
    readonly store: Store,
    readonly api: FastifyInstance,
    readonly listeners: Listener[],
    readonly addresses: AppAddresses,
    readonly secrets: ResolvedSecrets,
  ) {}

  /** Opens the store, starts the gateway, the vehicle listeners and the API. /readyz answers 200 after this. */
  static async start(
    config: Readonly<GatewayConfig>,
    options: AppOptions = {},
  ): Promise<GatewayApp> {
    const logger = options.logger ?? createLogger(config.logLevel);
    const secrets = resolveSecrets(config);
    const nodeId = config.nodeId ?? readOrCreateNodeId(resolve(config.dataDir));
    const store =
      options.store ??
      (config.store === 'redis'
        ? new RedisStore({ urls: config.redisUrl })
        : new SqliteStore({
            path: join(resolve(config.dataDir), 'vmcp.db'),
            sync: config.storeSync === 'normal' ? 'normal' : 'full',
            worker: config.storeWorker,
          }));
    await store.open();
    const cluster =
      config.store === 'redis'
        ? new RedisCoordinator({
            urls: config.redisUrl,
            nodeId,
            logger,
            heartbeatMs: config.nodeHeartbeatMs,
            nodeTtlMs: config.nodeTtlMs,
          })
        : undefined;
    const tokens = await TokenService.create({
      hs256Secret: secrets.jwtSecret,
      publicKeysPem: config.jwtPublicKeys,
    });
    const gateway = new Gateway({
      config,
      store,
      tokens,
      logger,
      metrics: new GatewayMetrics({ defaultMetrics: options.defaultMetrics ?? true }),
      clock: options.clock ?? systemClock,
      nodeId,
      cluster,
    });
    let listening = false;
    const api = buildApi(gateway, {
      adminToken: secrets.adminToken,
      isReady: () => listening,
      logger,
    });
    const listeners: Listener[] = [];
    try {
      gateway.start();
      listeners.push(await listenTcp(gateway, config.listen));
      let tlsAddress: HostPort | undefined;
      if (config.tlsListen !== undefined) {
        const tls = await listenTls(gateway, config.tlsListen, {
          cert: readSettingFile('tlsCert', config.tlsCert!),
          key: readSettingFile('tlsKey', config.tlsKey!),
          clientCa: readSettingFile('clientCa', config.clientCa!),
        });
        listeners.push(tls);
        tlsAddress = tls.address;
      }
      await api.listen({ host: config.http.host, port: config.http.port });
      const httpAddr = api.server.address();
      const http =
        typeof httpAddr === 'object' && httpAddr !== null
          ? { host: httpAddr.address, port: httpAddr.port }
          : config.http;
      if (cluster !== undefined) {
        await cluster.start(
          {
            nodeId,
            vehicleAddress: formatHostPort(advertised(listeners[0]!.address)),
            httpAddress: formatHostPort(advertised(http)),
            startedAt: Date.now(),
          },
          {
            onMessage: (msg) => gateway.onNodeMessage(msg),
            onForgotten: () => gateway.reclaimSessions(),
            // Presence and command changes of vehicles on other nodes, for this node's event stream.
            onEvent: (event) => {
              if (event.kind === 'presence')
                gateway.events.emit('presence', event.data as PresenceEvent);
              else gateway.events.emit('command', event.data as CommandRow);
            },
          },
        );
      }
      listening = true;
      const addresses = { vehicle: listeners[0]!.address, tls: tlsAddress, http };
      logger.info(
        {
          vehicle: formatHostPort(addresses.vehicle),
          tls: tlsAddress && formatHostPort(tlsAddress),
          http: formatHostPort(http),
          store: store.capabilities.engine,
        },
        'gateway ready',
      );
      return new GatewayApp(config, gateway, store, api, listeners, addresses, secrets);
    } catch (err) {
      gateway.stop();
      await cluster?.stop();
      await Promise.allSettled(listeners.map((l) => l.close()));
      await api.close().catch(() => undefined);
      await store.close();
      throw err;
    }
  }

  private stopping: Promise<void> | undefined;

  /** Graceful stop: no new connections, DISCONNECT SHUTDOWN, flush uplink, close the API and the store. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      const closing = this.listeners.map((l) => l.close());
      await this.gateway.shutdown();
      await Promise.allSettled(closing);
      await this.gateway.cluster?.stop();
      await this.api.close();
      await this.store.close();
    })();
    return this.stopping;
  }
}
