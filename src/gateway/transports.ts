// Thin transport adapters: TCP and mutual-TLS listeners that set socket options, cap connections and hand streams to the core.
import { createServer as createTcpServer, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer, type TLSSocket } from 'node:tls';
import { certificateIdentity } from '../auth/certificate.js';
import type { HostPort } from '../config/index.js';
import type { Gateway } from './gateway.js';

/** Connections beyond maxConnections get a CONNACK SERVER_BUSY; beyond this margin they are dropped at accept. */
const OVERFLOW_MARGIN = 256;

export interface Listener {
  readonly address: HostPort;
  close(): Promise<void>;
}

function tune(socket: Socket): void {
  socket.setNoDelay(true);
  // The gateway's own keepalive (2.4) detects dead peers; TCP keepalive catches half-open NAT paths.
  socket.setKeepAlive(true, 60_000);
}

function overCapacity(gw: Gateway): boolean {
  return gw.all.size >= gw.config.maxConnections + OVERFLOW_MARGIN;
}

async function listen(server: Server, at: HostPort): Promise<HostPort> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: at.host, port: at.port, backlog: 4096 }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const addr = server.address();
  if (addr === null || typeof addr === 'string') throw new Error('listener has no address');
  return { host: addr.address, port: addr.port };
}

function closer(server: Server): () => Promise<void> {
  return () => new Promise((resolve) => server.close(() => resolve()));
}

export async function listenTcp(gw: Gateway, at: HostPort): Promise<Listener> {
  const server = createTcpServer({ pauseOnConnect: false }, (socket) => {
    if (overCapacity(gw) || gw.draining) {
      socket.destroy();
      return;
    }
    tune(socket);
    gw.handle(socket, { transport: 'tcp', remoteAddress: socket.remoteAddress ?? '' });
  });
  server.on('error', (err) => gw.logger.error({ err }, 'TCP listener error'));
  const address = await listen(server, at);
  gw.logger.info({ address }, 'vehicle TCP listener up');
  return { address, close: closer(server) };
}

export interface TlsOptions {
  cert: string | Buffer;
  key: string | Buffer;
  /** The device CA: client certificates must chain to it (2.3). */
  clientCa: string | Buffer;
}

export async function listenTls(gw: Gateway, at: HostPort, tls: TlsOptions): Promise<Listener> {
  const server = createTlsServer(
    {
      cert: tls.cert,
      key: tls.key,
      ca: tls.clientCa,
      requestCert: true,
      // Unchained or missing client certificates fail the handshake: no session is ever created for them.
      rejectUnauthorized: true,
      handshakeTimeout: Math.min(gw.config.connectTimeoutMs, 10_000),
      minVersion: 'TLSv1.2',
    },
    (socket: TLSSocket) => {
      if (overCapacity(gw) || gw.draining || !socket.authorized) {
        socket.destroy();
        return;
      }
      tune(socket);
      gw.handle(socket, {
        transport: 'tls',
        remoteAddress: socket.remoteAddress ?? '',
        certificate: certificateIdentity(socket.getPeerCertificate()),
      });
    },
  );
  server.on('tlsClientError', (err) =>
    gw.logger.debug({ err: err.message }, 'TLS handshake failed'),
  );
  server.on('error', (err) => gw.logger.error({ err }, 'TLS listener error'));
  const address = await listen(server, at);
  gw.logger.info({ address }, 'vehicle mutual-TLS listener up');
  return { address, close: closer(server) };
}
