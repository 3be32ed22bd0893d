// Thin transport adapters: TCP and mutual-TLS listeners that set socket options, cap connections and hand streams to the core.
import {
  createServer as createTcpServer,
  Socket,
  type Server,
  type SocketConstructorOpts,
} from 'node:net';
import { createServer as createTlsServer, type TLSSocket } from 'node:tls';
import { certificateIdentity } from '../auth/certificate.js';
import type { HostPort } from '../config/index.js';
import type { Gateway } from './gateway.js';
import { onSharedBufferRead } from './session.js';

/** Connections beyond maxConnections get a CONNACK SERVER_BUSY; beyond this margin they are dropped at accept. */
const OVERFLOW_MARGIN = 256;

export interface Listener {
  readonly address: HostPort;
  close(): Promise<void>;
}

/** How the TCP listener reads its sockets: see sharedBufferSocket. */
export type TcpReadMode = 'shared-buffer' | 'stream';

export interface TcpListener extends Listener {
  /** How the last accepted socket is read ('stream' only where this Node lacks the internals). */
  readonly readMode: TcpReadMode;
}

/** One read buffer for every plain-TCP vehicle socket: reads are copied out before the next one. */
const sharedReadBuffer = Buffer.allocUnsafe(64 * 1024);

/**
 * Re-wraps an accepted (paused) TCP socket's handle in a net.Socket created with the `onread`
 * option, so each read lands in one shared buffer and reaches the session directly: no 64 KiB
 * allocation per read, and none of the Readable stream's per-read work (push, 'data', the
 * read-more tick). Node's server has no option for this on the sockets it accepts, so the handle is
 * passed by `_handle` and the `handle` constructor option (what child_process uses to pass sockets
 * between processes). Measured on the Node floor (bench/node-floor.ts, 1,000 vehicles × 10/s): 9.2
 * µs of CPU per ack instead of 10.7. Where this Node's sockets do not look as expected, the socket
 * is read as a stream, as before. Pause, resume, end and close behave as on any socket.
 */
function sharedBufferSocket(socket: Socket): Socket | undefined {
  const internal = socket as unknown as { _handle: { readStart?: unknown } | null };
  const handle = internal._handle;
  if (handle === null || typeof handle !== 'object' || typeof handle.readStart !== 'function')
    return undefined;
  internal._handle = null;
  let fast: Socket;
  try {
    fast = new Socket({
      handle,
      onread: { buffer: sharedReadBuffer, callback: onSharedBufferRead },
    } as SocketConstructorOpts);
  } catch {
    internal._handle = handle;
    return undefined;
  }
  // The accepted socket no longer owns the handle: destroying it only settles the server's count.
  socket.destroy();
  return fast;
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

export async function listenTcp(gw: Gateway, at: HostPort): Promise<TcpListener> {
  let readMode: TcpReadMode = 'shared-buffer';
  // Paused at accept: nothing is read before the socket is re-wrapped (or resumed as a stream).
  const server = createTcpServer({ pauseOnConnect: true }, (accepted) => {
    if (overCapacity(gw) || gw.draining) {
      accepted.destroy();
      return;
    }
    const fast = sharedBufferSocket(accepted);
    if (fast === undefined && readMode === 'shared-buffer') {
      readMode = 'stream';
      gw.logger.warn('TCP sockets read as streams: this Node has no socket handle to re-wrap');
    }
    const socket = fast ?? accepted;
    tune(socket);
    gw.handle(socket, { transport: 'tcp', remoteAddress: socket.remoteAddress ?? '' });
    // A stream socket accepted paused starts with the session's 'data' listener, except that
    // pauseOnConnect marks it not flowing: start it here. (The shared-buffer socket reads already.)
    if (fast === undefined) accepted.resume();
  });
  server.on('error', (err) => gw.logger.error({ err }, 'TCP listener error'));
  const address = await listen(server, at);
  gw.logger.info({ address }, 'vehicle TCP listener up');
  return {
    address,
    close: closer(server),
    get readMode() {
      return readMode;
    },
  };
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
