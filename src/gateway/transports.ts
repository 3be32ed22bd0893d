// Thin transport adapters: TCP and mutual-TLS listeners that set socket options, cap connections and hand streams to the core.
import {
  createServer as createTcpServer,
  Socket as NetSocket,
  type Server,
  type Socket,
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

/** How the TCP listener reads its sockets: see readIntoSharedBuffer. */
export type TcpReadMode = 'shared-buffer' | 'stream';

export interface TcpListener extends Listener {
  /** How accepted sockets are read ('stream' only where this Node's sockets lack the internals). */
  readonly readMode: TcpReadMode;
}

/** One read buffer for every plain-TCP vehicle socket: each read is copied out before the next. */
const sharedReadBuffer = Buffer.allocUnsafe(64 * 1024);

interface OnreadSymbols {
  buffer: symbol;
  callback: symbol;
  generator: symbol;
}

/**
 * The symbols under which a net.Socket keeps its `onread` option (lib/net.js: kBuffer, kBufferCb,
 * kBufferGen), found by their descriptions on a fresh socket; undefined if this Node has others.
 */
function findOnreadSymbols(): OnreadSymbols | undefined {
  const probe = new NetSocket();
  const bySymbol = new Map<string, symbol>();
  for (const sym of Object.getOwnPropertySymbols(probe))
    if (sym.description !== undefined) bySymbol.set(sym.description, sym);
  const buffer = bySymbol.get('kBuffer');
  const callback = bySymbol.get('kBufferCb');
  const generator = bySymbol.get('kBufferGen');
  const slots = probe as unknown as Record<symbol, unknown>;
  if (buffer === undefined || callback === undefined || generator === undefined) return undefined;
  if (slots[buffer] !== null || slots[callback] !== null || slots[generator] !== null)
    return undefined;
  return { buffer, callback, generator };
}

/** findOnreadSymbols, once (null: not looked up yet). */
let onreadSymbols: OnreadSymbols | undefined | null = null;

function onreadSlots(): OnreadSymbols | undefined {
  if (onreadSymbols === null) onreadSymbols = findOnreadSymbols();
  return onreadSymbols;
}

/** Test hook: read accepted TCP sockets as streams, as on a Node without the onread internals. */
export function forceStreamReads(on: boolean): void {
  onreadSymbols = on ? undefined : null;
}

/**
 * Makes an accepted TCP socket read into one shared buffer and hand each read to its session
 * directly (onSharedBufferRead), as a socket created with the `onread` option does: no 64 KiB
 * allocation and ArrayBuffer per read, and none of the Readable stream's per-read work (push,
 * 'data', the read-more tick). Node's server has no option for this on the sockets it accepts, so
 * the option's slots are set on the accepted socket before its first read (the connection listener
 * runs in the same tick as accept) and its handle is switched to the buffer (`useUserBuffer`, what
 * the option calls). Pause, resume, end and close go through the same code as for `onread`
 * sockets. Returns false, leaving the socket a stream, where this Node's sockets differ.
 */
function readIntoSharedBuffer(socket: Socket): boolean {
  const syms = onreadSlots();
  if (syms === undefined) return false;
  const slots = socket as unknown as Record<symbol, unknown> & {
    _handle?: { useUserBuffer?: (buf: Uint8Array) => void } | null;
  };
  const handle = slots._handle;
  if (handle === null || handle === undefined || typeof handle.useUserBuffer !== 'function')
    return false;
  if (slots[syms.buffer] !== null || slots[syms.callback] !== null) return false;
  slots[syms.buffer] = sharedReadBuffer;
  slots[syms.callback] = onSharedBufferRead;
  slots[syms.generator] = null;
  handle.useUserBuffer(sharedReadBuffer);
  return true;
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
  let readMode: TcpReadMode = onreadSlots() === undefined ? 'stream' : 'shared-buffer';
  const server = createTcpServer({ pauseOnConnect: false }, (socket) => {
    if (overCapacity(gw) || gw.draining) {
      socket.destroy();
      return;
    }
    if (!readIntoSharedBuffer(socket) && readMode === 'shared-buffer') {
      readMode = 'stream';
      gw.logger.warn(
        'TCP vehicle sockets are read as streams: an accepted socket lacks onread slots',
      );
    }
    tune(socket);
    gw.handle(socket, { transport: 'tcp', remoteAddress: socket.remoteAddress ?? '' });
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
  // A failed or timed-out handshake only emits this event: Node leaves the socket open (a client
  // that stalls mid-handshake would hold a descriptor forever, uncounted, and keep server.close()
  // and so the shutdown waiting). 2: the wait for CONNECT after accept is bounded; so is this.
  server.on('tlsClientError', (err, socket) => {
    gw.logger.debug({ err: err.message }, 'TLS handshake failed');
    socket.destroy();
  });
  server.on('error', (err) => gw.logger.error({ err }, 'TLS listener error'));
  const address = await listen(server, at);
  gw.logger.info({ address }, 'vehicle mutual-TLS listener up');
  return { address, close: closer(server) };
}
