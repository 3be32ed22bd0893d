// Gateway addresses, the reconnect backoff formula, and the TCP/TLS transport the client dials through.
import { connect as netConnect, isIP } from 'node:net';
import type { Duplex } from 'node:stream';
import { connect as tlsConnect, type ConnectionOptions } from 'node:tls';

export interface GatewayAddress {
  host: string;
  port: number;
}

/** Parses `host:port` or `[v6]:port`; throws a TypeError naming the bad address. */
export function parseGateway(address: string): GatewayAddress {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(address.trim());
  const port = m === null ? NaN : Number(m[3]);
  if (m === null || !(port >= 1 && port <= 65_535))
    throw new TypeError(`gateway address must be host:port, got "${address}"`);
  return { host: (m[1] ?? m[2])!, port };
}

export function formatGateway(a: GatewayAddress): string {
  return a.host.includes(':') ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
}

/**
 * Opens a byte stream to a gateway. The client writes CONNECT at once (a connecting socket buffers
 * it) and treats 'close' as the end of the attempt, so any Duplex works: tests pass an in-memory pair.
 */
export type Transport = (gateway: GatewayAddress, tls: ConnectionOptions | undefined) => Duplex;

/** TCP, or TLS with the given options (client certificate and key for mutual TLS, PROTOCOL.md 2.3). */
export const tcpTransport: Transport = (gateway, tls) => {
  if (tls === undefined) {
    const socket = netConnect({ host: gateway.host, port: gateway.port });
    socket.setNoDelay(true);
    return socket;
  }
  const socket = tlsConnect({
    host: gateway.host,
    port: gateway.port,
    // SNI takes a host name only (RFC 6066 3).
    ...(isIP(gateway.host) === 0 ? { servername: gateway.host } : {}),
    ...tls,
  });
  socket.setNoDelay(true);
  return socket;
};

export interface BackoffOptions {
  /** First delay (default 1,000 ms). */
  baseMs: number;
  /** Longest delay (default 60,000 ms). */
  capMs: number;
}

/**
 * PROTOCOL.md 7: `min(cap, base × 2^attempt) × random(0.5, 1.0)`, in whole milliseconds.
 * `random` is in [0, 1), like Math.random.
 */
export function backoffDelay(attempt: number, options: BackoffOptions, random: number): number {
  // 2^30 × base already passes any sane cap; the bound keeps the power finite.
  const raw = Math.min(options.capMs, options.baseMs * 2 ** Math.min(attempt, 30));
  return Math.round(raw * (0.5 + 0.5 * random));
}
