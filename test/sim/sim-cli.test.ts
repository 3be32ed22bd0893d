// `vmcp sim` as a command: unknown flags and bad values are usage errors (exit 2) naming the flag,
// source addresses are spread over 127.0.0.1–50 by default against a loopback target, and a run
// where no vehicle ever connected, or whose store check lost acked records, exits 1 saying why.
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { createServer } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { sim, simOptions } from '../../src/cli/sim.js';
import { DEFAULT_LOOPBACK_SOURCES, parseSources, simFailures } from '../../src/sim/index.js';
import type { SimSummary } from '../../src/sim/index.js';
import { JWT_SECRET, startGateway, type TestGateway } from '../helpers/gateway.js';

const env = { VMCP_JWT_SECRET: 's' };
const opts = (line: string) =>
  simOptions(
    line.split(' ').filter((a) => a !== ''),
    env,
  );

/** Runs `vmcp sim` in this process; returns its exit code and what it wrote. */
async function run(argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await sim(
    argv,
    (t) => (out += t),
    (t) => (err += t),
  );
  return { code, out, err };
}

/** A port on 127.0.0.1 where nothing listens (bound, then released). */
async function closedPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as { port: number }).port;
  await new Promise((r) => s.close(r));
  return port;
}

let gw: TestGateway | undefined;
let api: HttpServer | undefined;

afterEach(async () => {
  await gw?.stop();
  gw = undefined;
  api?.closeAllConnections();
  await new Promise((r) => (api === undefined ? r(undefined) : api.close(r)));
  api = undefined;
});

describe('vmcp sim arguments', () => {
  it.each([
    ['--bogus-flag 1', /--bogus-flag: unknown option/],
    ['--vehicle 5000', /--vehicle: unknown option \(did you mean --vehicles\?\)/],
    ['--register yes', /--register takes no value/],
    ['--jwt-secret', /--jwt-secret: expected a value/],
    ['--vehicles 1.5', /--vehicles: expected a whole number/],
    ['--vehicles abc', /--vehicles: expected a number/],
    ['--duration forever', /--duration: expected a duration/],
    ['--connect-timeout 5ms', /--connect-timeout/],
    ['--sources 10.0.0.1-bad', /--sources: bad source/],
    ['--http localhost:8080 --verify', /--http: expected a URL/],
    ['stray', /unexpected argument "stray"/],
  ])('rejects %s, naming the flag', (line, message) => {
    expect(() => opts(line)).toThrow(message);
  });

  it('exits 2 on an unknown flag and on a bad --control, with the message on stderr', async () => {
    const r = await run(['--vehicles', '5', '--jwt-secret', 'x', '--vehicle', '5000']);
    expect(r.code).toBe(2);
    expect(r.err).toBe('vmcp sim: --vehicle: unknown option (did you mean --vehicles?)\n');
    const c = await run(['--jwt-secret', 'x', '--control', 'file']);
    expect(c.code).toBe(2);
    expect(c.err).toContain('--control');
  });

  it('spreads source addresses over 127.0.0.1–50 against a loopback target, none elsewhere', () => {
    const loopback = parseSources(DEFAULT_LOOPBACK_SOURCES);
    expect(loopback).toHaveLength(50);
    expect(opts('').sources).toEqual(loopback); // default target 127.0.0.1:7000
    expect(opts('--target 127.0.0.9:7000').sources).toEqual(loopback);
    expect(opts('--target 10.1.2.3:7000').sources).toEqual([]);
    expect(opts('--target localhost:7000').sources).toEqual([]);
    expect(opts('--target 127.0.0.1:7000 --sources 127.0.0.1').sources).toEqual(['127.0.0.1']);
    expect(opts('--sources 127.0.0.1-127.0.0.3').sources).toHaveLength(3);
  });
});

describe('vmcp sim exit status', () => {
  it('exits 1 with a line on stderr when nothing listens on the target', async () => {
    const port = await closedPort();
    const r = await run([
      '--target',
      `127.0.0.1:${port}`,
      '--vehicles',
      '3',
      '--duration',
      '1s',
      '--drain',
      '0s',
      '--jwt-secret',
      'x',
      '--progress',
      'none',
    ]);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(
      new RegExp(
        `vmcp sim: FAILED: no vehicle ever connected to 127\\.0\\.0\\.1:${port} \\(\\d+ attempts; ECONNREFUSED ×\\d+\\)`,
      ),
    );
    expect(JSON.parse(r.out)).toMatchObject({ connections: { accepted: 0 } }); // the summary still
  });

  it('exits 1 when every CONNECT is refused BAD_CREDENTIALS', async () => {
    gw = await startGateway();
    const r = await run([
      '--target',
      `127.0.0.1:${gw.port}`,
      '--vehicles',
      '3',
      '--duration',
      '1s',
      '--drain',
      '0s',
      '--jwt-secret',
      'not-the-gateways-secret',
      '--progress',
      'none',
    ]);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/FAILED: no vehicle ever connected .*BAD_CREDENTIALS ×\d+/);
  });

  it('exits 1 when its store check finds acked records missing', async () => {
    gw = await startGateway();
    // An API whose store has lost everything: every uplink page comes back empty.
    api = createHttpServer((req, res) => {
      req.resume();
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"items":[]}');
    });
    await new Promise<void>((r) => api!.listen(0, '127.0.0.1', r));
    const apiPort = (api.address() as { port: number }).port;
    const r = await run([
      '--target',
      `127.0.0.1:${gw.port}`,
      '--vehicles',
      '2',
      '--rate',
      '5',
      '--duration',
      '1s',
      '--jwt-secret',
      JWT_SECRET,
      '--verify',
      '--http',
      `http://127.0.0.1:${apiPort}`,
      '--admin-token',
      't',
      '--progress',
      'none',
    ]);
    const summary = JSON.parse(r.out) as SimSummary;
    expect(summary.store!.lostAcked).toBeGreaterThan(0);
    expect(r.code).toBe(1);
    expect(r.err).toContain(
      `vmcp sim: FAILED: ${summary.store!.lostAcked} acked records missing from the store (lostAcked)`,
    );
  });

  it('says nothing failed for a run that connected and lost nothing', () => {
    const ok = {
      target: '127.0.0.1:7000',
      connections: { accepted: 3, attempts: 3, refused: {} },
      errors: {},
      store: { lostAcked: 0 },
    } as unknown as SimSummary;
    expect(simFailures(ok)).toEqual([]);
  });
});
