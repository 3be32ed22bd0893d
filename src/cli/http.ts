// Shared plumbing of the CLI's HTTP API clients (`vmcp device|send|tail`): strict argument parsing,
// the API base URL and bearer token, JSON requests with the API's {"code","message"} errors, and a
// server-sent events parser.
import { existsSync, readFileSync } from 'node:fs';
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { join, resolve } from 'node:path';
import { Readable } from 'node:stream';
import { parseArgs } from 'node:util';

export type Out = (text: string) => void;

export const DEFAULT_URL = 'http://127.0.0.1:8080';
export const DEFAULT_DATA_DIR = './data';

/** Help text shared by every API client command. */
export const CONNECTION_HELP = `Connection:
  --url URL            gateway HTTP API (env VMCP_URL; default ${DEFAULT_URL})
  --admin-token TOKEN  API bearer token (env VMCP_ADMIN_TOKEN; default: the data dir's admin-token file)
  --data-dir DIR       the gateway's data dir, read for its admin-token (env VMCP_DATA_DIR; default ${DEFAULT_DATA_DIR})
  --help               show this help`;

/** A command-line mistake: the command prints it with its usage and exits 2. */
export class UsageError extends Error {}

/** An answer other than 2xx, or no answer at all: the command prints it and exits 1. */
export class ApiError extends Error {
  constructor(
    message: string,
    readonly status: number | undefined,
    readonly body: unknown,
  ) {
    super(message);
  }
}

export interface OptionSpec {
  /** Flags taking a value (kebab-case, without `--`). */
  values?: readonly string[];
  /** Flags that may be repeated, each taking a value. */
  multiple?: readonly string[];
  /** Flags without a value. */
  booleans?: readonly string[];
}

export interface ParsedArgs {
  values: Record<string, string | undefined>;
  lists: Record<string, string[]>;
  booleans: Record<string, boolean>;
  positionals: string[];
  help: boolean;
}

const CONNECTION_FLAGS = ['url', 'admin-token', 'data-dir'] as const;

/** True when argv asks for help, wherever it stands (so `--help` works even next to bad flags). */
function wantsHelp(argv: readonly string[]): boolean {
  for (const a of argv) {
    if (a === '--') return false;
    if (a === '--help' || a === '-h') return true;
  }
  return false;
}

/**
 * Parses argv strictly against the command's flags plus the connection flags. Unknown flags, a
 * missing value or a value given to a boolean flag throw a UsageError naming the flag.
 */
export function parseCommandArgs(argv: readonly string[], spec: OptionSpec): ParsedArgs {
  const help = wantsHelp(argv);
  const options: Record<
    string,
    { type: 'string' | 'boolean'; multiple?: boolean; short?: string }
  > = {
    help: { type: 'boolean', short: 'h' },
  };
  for (const v of [...CONNECTION_FLAGS, ...(spec.values ?? [])]) options[v] = { type: 'string' };
  for (const v of spec.multiple ?? []) options[v] = { type: 'string', multiple: true };
  for (const b of spec.booleans ?? []) options[b] = { type: 'boolean' };
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({ args: [...argv], options, strict: true, allowPositionals: true });
  } catch (e) {
    if (help) return { values: {}, lists: {}, booleans: {}, positionals: [], help };
    throw new UsageError((e as Error).message.replace(/\s*\n/g, ' '));
  }
  const values: Record<string, string | undefined> = {};
  const lists: Record<string, string[]> = {};
  const booleans: Record<string, boolean> = {};
  for (const [name, value] of Object.entries(parsed.values)) {
    if (typeof value === 'string') values[name] = value;
    else if (typeof value === 'boolean') booleans[name] = value;
    else if (Array.isArray(value))
      lists[name] = value.filter((x): x is string => typeof x === 'string');
  }
  for (const v of spec.multiple ?? []) lists[v] ??= [];
  return {
    values,
    lists,
    booleans,
    positionals: parsed.positionals,
    help: help || booleans.help === true,
  };
}

/** A request body that is JSON text already, sent as is (numbers keep every digit). */
export class RawJson {
  constructor(readonly text: string) {}
}

export interface ApiClient {
  readonly baseUrl: string;
  /** Sends a JSON request; resolves with the parsed body of a 2xx answer, else throws ApiError. */
  request(method: string, path: string, body?: unknown, signal?: AbortSignal): Promise<unknown>;
  /** Opens a streaming GET (server-sent events); resolves once the answer's headers are in. */
  openStream(path: string, signal: AbortSignal): Promise<ReadableStream<Uint8Array>>;
}

function nonEmpty(v: string | undefined): string | undefined {
  return v === undefined || v === '' ? undefined : v;
}

/**
 * Where the bearer token comes from: --admin-token, else VMCP_ADMIN_TOKEN, else the `admin-token`
 * file the gateway generated in its data dir (the file resolveSecrets writes). The file is only read,
 * never created: a client run before the gateway's first start must not invent a token.
 */
export function resolveAdminToken(args: ParsedArgs, env: NodeJS.ProcessEnv): string {
  const flag = args.values['admin-token'];
  if (flag !== undefined) {
    if (flag === '') throw new UsageError('--admin-token must not be empty');
    return flag;
  }
  const fromEnv = nonEmpty(env.VMCP_ADMIN_TOKEN);
  if (fromEnv !== undefined) return fromEnv;
  const dataDir = args.values['data-dir'] ?? nonEmpty(env.VMCP_DATA_DIR) ?? DEFAULT_DATA_DIR;
  if (dataDir === '') throw new UsageError('--data-dir must not be empty');
  const file = join(resolve(dataDir), 'admin-token');
  if (!existsSync(file)) {
    throw new UsageError(
      `no admin token: pass --admin-token, set VMCP_ADMIN_TOKEN, or point --data-dir at the gateway's data dir (${file} does not exist)`,
    );
  }
  const token = readFileSync(file, 'utf8').trim();
  if (token === '') throw new UsageError(`no admin token: ${file} is empty`);
  return token;
}

export function resolveBaseUrl(args: ParsedArgs, env: NodeJS.ProcessEnv): string {
  const raw = args.values.url ?? nonEmpty(env.VMCP_URL) ?? DEFAULT_URL;
  const source = args.values.url !== undefined ? '--url' : 'VMCP_URL';
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new UsageError(`${source} must be an http(s) URL, got ${JSON.stringify(raw)}`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new UsageError(`${source} must be an http(s) URL, got ${JSON.stringify(raw)}`);
  }
  return url.href.replace(/\/+$/, '');
}

/**
 * One HTTP request with node:http(s), answered as a fetch Response. Not fetch itself: fetch parses
 * the URL by the WHATWG rules, which resolve the path segments `.` and `..` (escaped as `%2E` too),
 * and those are valid vehicle ids (PROTOCOL.md 2.1). Here the path goes out exactly as built.
 */
function sendHttp(
  base: URL,
  method: string,
  path: string,
  headers: Record<string, string>,
  body: string | undefined,
  signal: AbortSignal | undefined,
): Promise<Response> {
  const request = base.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise((resolveResponse, reject) => {
    const req = request(
      {
        protocol: base.protocol,
        hostname: base.hostname.replace(/^\[(.*)\]$/, '$1'),
        port: base.port,
        method,
        path: base.pathname.replace(/\/+$/, '') + path,
        headers:
          body === undefined ? headers : { ...headers, 'content-length': Buffer.byteLength(body) },
        signal,
      },
      (res) => {
        const status = res.statusCode ?? 0;
        const empty = method === 'HEAD' || status === 204 || status === 205 || status === 304;
        if (empty) res.resume();
        resolveResponse(
          new Response(empty ? null : (Readable.toWeb(res) as ReadableStream<Uint8Array>), {
            status,
            statusText: res.statusMessage ?? '',
            headers: responseHeaders(res.headers),
          }),
        );
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

function responseHeaders(h: IncomingHttpHeaders): Headers {
  const out = new Headers();
  for (const [k, v] of Object.entries(h)) {
    if (v === undefined) continue;
    for (const one of Array.isArray(v) ? v : [v]) out.append(k, one);
  }
  return out;
}

function describeNetworkError(e: unknown): string {
  if (!(e instanceof Error)) return String(e);
  const direct = (e as Error & { code?: unknown }).code;
  if (typeof direct === 'string') return `${direct} (${e.message})`;
  const cause = (e as Error & { cause?: unknown }).cause;
  if (cause instanceof Error) {
    const code = (cause as Error & { code?: unknown }).code;
    return typeof code === 'string' ? `${code} (${cause.message})` : cause.message;
  }
  return e.message;
}

async function readBody(res: Response): Promise<unknown> {
  const text = await res.text();
  if (text === '') return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text;
  }
}

/** The one-line description of a failed answer: status and the API's {"code","message"} body. */
function describeFailure(method: string, path: string, status: number, body: unknown): string {
  const shown =
    body === undefined
      ? '(empty body)'
      : typeof body === 'string'
        ? body.slice(0, 500)
        : JSON.stringify(body);
  return `${method} ${path} → ${status} ${shown}`;
}

export function createApiClient(args: ParsedArgs, env: NodeJS.ProcessEnv = process.env): ApiClient {
  const baseUrl = resolveBaseUrl(args, env);
  const base = new URL(baseUrl);
  const token = resolveAdminToken(args, env);
  const send = async (
    method: string,
    path: string,
    headers: Record<string, string>,
    body: string | undefined,
    signal: AbortSignal | undefined,
  ): Promise<Response> => {
    try {
      return await sendHttp(
        base,
        method,
        path,
        { authorization: `Bearer ${token}`, ...headers },
        body,
        signal,
      );
    } catch (e) {
      if (signal?.aborted === true) throw e;
      throw new ApiError(
        `cannot reach ${baseUrl}: ${describeNetworkError(e)}`,
        undefined,
        undefined,
      );
    }
  };
  return {
    baseUrl,
    async request(method, path, body, signal) {
      const res = await send(
        method,
        path,
        body === undefined
          ? { accept: 'application/json' }
          : { accept: 'application/json', 'content-type': 'application/json' },
        body === undefined ? undefined : body instanceof RawJson ? body.text : JSON.stringify(body),
        signal,
      );
      const parsed = await readBody(res);
      if (!res.ok)
        throw new ApiError(describeFailure(method, path, res.status, parsed), res.status, parsed);
      return parsed;
    },
    async openStream(path, signal) {
      const res = await send('GET', path, { accept: 'text/event-stream' }, undefined, signal);
      if (!res.ok) {
        const parsed = await readBody(res);
        throw new ApiError(describeFailure('GET', path, res.status, parsed), res.status, parsed);
      }
      if (res.body === null)
        throw new ApiError(`GET ${path} → ${res.status} without a body`, res.status, undefined);
      return res.body;
    },
  };
}

/**
 * Runs a command body with the common error handling: UsageError → message and a pointer to
 * --help on err, exit 2; ApiError → message on err, exit 1.
 */
export async function runCommand(
  name: string,
  err: Out,
  body: () => Promise<number>,
): Promise<number> {
  try {
    return await body();
  } catch (e) {
    if (e instanceof UsageError) {
      err(`${name}: ${e.message}\nRun '${name} --help' for usage.\n`);
      return 2;
    }
    if (e instanceof ApiError) {
      err(`${name}: ${e.message}\n`);
      return 1;
    }
    throw e;
  }
}

/** A vehicle or device id as a path segment; `.` and `..` escaped so no router reads a dot segment. */
export function encodeId(id: string): string {
  return id === '.' || id === '..' ? id.replaceAll('.', '%2E') : encodeURIComponent(id);
}

// ---------------------------------------------------------------------------------------------
// Server-sent events (https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation)

export interface SseEvent {
  /** The `event:` field, `message` when absent. */
  event: string;
  /** The `data:` lines joined with "\n". */
  data: string;
  /** The last event id seen so far on the stream (`id:` field), '' when none. */
  id: string;
}

/**
 * An incremental event-stream parser: feed it decoded text in chunks of any size, collect events.
 * Handles CRLF, CR and LF line ends (also split across chunks), a leading BOM, comments (`:`),
 * fields without a colon, one optional space after the colon, multi-line data, `id` and `retry`.
 */
export class SseParser {
  private buffer = '';
  private started = false;
  /** The previous chunk ended with CR: a LF at the start of the next one belongs to it. */
  private pendingCr = false;
  private eventType = '';
  private data: string[] = [];
  private lastId = '';
  /** The reconnection delay the server asked for (`retry:`), undefined until it does. */
  retryMs: number | undefined;

  push(chunk: string): SseEvent[] {
    let text = chunk;
    if (this.pendingCr && text.startsWith('\n')) text = text.slice(1);
    this.pendingCr = false;
    if (!this.started) {
      if (text === '') return [];
      if (text.startsWith('\uFEFF')) text = text.slice(1);
      this.started = true;
    }
    this.buffer += text;
    const events: SseEvent[] = [];
    let start = 0;
    for (;;) {
      const cr = this.buffer.indexOf('\r', start);
      const lf = this.buffer.indexOf('\n', start);
      let end: number;
      if (cr < 0 && lf < 0) break;
      if (cr >= 0 && (lf < 0 || cr < lf)) {
        end = cr;
        const line = this.buffer.slice(start, end);
        if (cr + 1 < this.buffer.length) start = this.buffer[cr + 1] === '\n' ? cr + 2 : cr + 1;
        else {
          start = cr + 1;
          this.pendingCr = true;
        }
        this.line(line, events);
      } else {
        end = lf;
        this.line(this.buffer.slice(start, end), events);
        start = lf + 1;
      }
    }
    this.buffer = this.buffer.slice(start);
    return events;
  }

  private line(line: string, events: SseEvent[]): void {
    if (line === '') {
      this.dispatch(events);
      return;
    }
    if (line.startsWith(':')) return;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    switch (field) {
      case 'event':
        this.eventType = value;
        break;
      case 'data':
        this.data.push(value);
        break;
      case 'id':
        if (!value.includes('\0')) this.lastId = value;
        break;
      case 'retry':
        if (/^\d+$/.test(value)) this.retryMs = Number(value);
        break;
      default:
        break;
    }
  }

  private dispatch(events: SseEvent[]): void {
    const type = this.eventType;
    const data = this.data;
    this.eventType = '';
    this.data = [];
    if (data.length === 0) return;
    events.push({ event: type === '' ? 'message' : type, data: data.join('\n'), id: this.lastId });
  }
}
