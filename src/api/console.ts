// GET /console: a self-contained operator page (docs/console.md). One HTML answer with its CSS and
// script inline, no external assets. The page itself holds no data and needs no token; it asks the
// operator for the admin token and calls /api/v1/* with it as a bearer, like any other API client.
import { createHash } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { VEHICLE_ID_PATTERN } from '../protocol/messages/connect.js';
import { CONSOLE_BODY } from './console/markup.js';
import { CONSOLE_SCRIPT } from './console/script.js';
import { CONSOLE_STYLE } from './console/style.js';
import {
  SENSOR_TIMEOUT_DEFAULT_MS,
  SENSOR_TIMEOUT_MAX_MS,
  TTL_DEFAULT_MS,
  TTL_MAX_MS,
} from './schemas.js';
import { HEARTBEAT_MS } from './stream.js';

export const CONSOLE_PATH = '/console';

/** Values the browser script needs from the server's side, inlined as JSON. */
export interface ConsoleConfig {
  vehicleIdPattern: string;
  ttlMaxMs: number;
  ttlDefaultMs: number;
  sensorTimeoutDefaultMs: number;
  sensorTimeoutMaxMs: number;
  /** The stream's heartbeat period: the page reconnects after 4 of them without a byte. */
  heartbeatMs: number;
}

export interface ConsoleOptions {
  /** Heartbeat period of the event stream (StreamHubOptions.heartbeatMs); default HEARTBEAT_MS. */
  heartbeatMs?: number;
}

export interface ConsolePage {
  html: string;
  /** The Content-Security-Policy answered with the page: only its own inline script and style run. */
  csp: string;
}

/** JSON safe to put inside a <script> element (no `</script>`, no `<!--`). */
function scriptJson(value: unknown): string {
  return JSON.stringify(value)
    .replace(/</g, '\\u003c')
    .replace(/>/g, '\\u003e')
    .replace(/\u2028/g, '\\u2028')
    .replace(/\u2029/g, '\\u2029');
}

function cspHash(text: string): string {
  return `'sha256-${createHash('sha256').update(text, 'utf8').digest('base64')}'`;
}

export function consoleConfig(opts: ConsoleOptions = {}): ConsoleConfig {
  return {
    vehicleIdPattern: VEHICLE_ID_PATTERN.source,
    ttlMaxMs: TTL_MAX_MS,
    ttlDefaultMs: TTL_DEFAULT_MS,
    sensorTimeoutDefaultMs: SENSOR_TIMEOUT_DEFAULT_MS,
    sensorTimeoutMaxMs: SENSOR_TIMEOUT_MAX_MS,
    heartbeatMs: opts.heartbeatMs ?? HEARTBEAT_MS,
  };
}

/** The browser script with its configuration filled in. */
export function consoleScript(config: ConsoleConfig = consoleConfig()): string {
  return CONSOLE_SCRIPT.replace('/*__CONFIG__*/null', () => scriptJson(config));
}

export function buildConsolePage(opts: ConsoleOptions = {}): ConsolePage {
  const script = consoleScript(consoleConfig(opts));
  const html =
    '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n' +
    '<meta name="viewport" content="width=device-width, initial-scale=1">\n' +
    '<meta name="referrer" content="no-referrer">\n' +
    '<title>VMCP Gateway console</title>\n' +
    '<link rel="icon" href="data:,">\n' +
    `<style>${CONSOLE_STYLE}</style>\n</head>\n<body>${CONSOLE_BODY}<script>${script}</script>\n</body>\n</html>\n`;
  const csp = [
    "default-src 'none'",
    `script-src ${cspHash(script)}`,
    `style-src ${cspHash(CONSOLE_STYLE)}`,
    "connect-src 'self'",
    'img-src data:',
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join('; ');
  return { html, csp };
}

/** Registers GET /console (and HEAD, by fastify's default). No bearer token: the page carries no data. */
export function registerConsole(app: FastifyInstance, opts: ConsoleOptions = {}): void {
  const page = buildConsolePage(opts);
  app.get(CONSOLE_PATH, async (_req, reply) =>
    reply
      .type('text/html; charset=utf-8')
      .header('content-security-policy', page.csp)
      .header('x-content-type-options', 'nosniff')
      .header('x-frame-options', 'DENY')
      .header('referrer-policy', 'no-referrer')
      .header('cache-control', 'no-store')
      .send(page.html),
  );
}
