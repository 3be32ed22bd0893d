// The bench's command line (bench/scenarios/options.ts), its verdicts (no vehicle connected, acked
// messages lost), which side saturated, the HTML report's headline and command charts, and the
// registry that ends every process and temp dir the bench started (bench/scenarios/common.ts).
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import {
  ADMIN_TOKEN,
  JWT_SECRET,
  Owned,
  saturatedSide,
  type TimelineRow,
} from '../../bench/scenarios/common.js';
import { withVerdict, type ScenarioResult } from '../../bench/scenarios/context.js';
import { benchArgs } from '../../bench/scenarios/options.js';
import { openTarget } from '../../bench/scenarios/targets.js';
import { fleetFailures, storeCheck } from '../../bench/scenarios/uplink.js';
import { renderReport } from '../../bench/report.js';

const args = (line: string, env: NodeJS.ProcessEnv = {}) =>
  benchArgs(
    line.split(' ').filter((a) => a !== ''),
    env,
  );

describe('bench options', () => {
  it.each([
    ['uplink --vehicles abc', /--vehicles: expected a whole number/],
    ['uplink --vehicles 0', /--vehicles/],
    ['uplink --duration forever', /--duration: expected a duration/],
    ['uplink --rate x', /--rate: expected a number/],
    ['uplink --store-sync maybe', /--store-sync: expected full or normal, got "maybe"/],
    ['uplink --store mongo', /--store: expected sqlite or redis/],
    ['saturation --steps a,b', /--steps: expected a comma list/],
    ['downlink --command-rates -5', /--command-rates: expected a comma list/],
    ['uplink --target ftp://x', /--target: expected host:port/],
    ['uplink --http localhost:8080', /--http: expected a URL/],
    ['uplink --batch 300', /--batch/],
    ['uplink --bogus-flag 1', /--bogus-flag: unknown option/],
    ['uplink --vehicle 5000', /--vehicle: unknown option \(did you mean --vehicles\?\)/],
    ['uplink --cpu-prof yes', /--cpu-prof takes no value/],
    ['uplink --jwt-secret', /--jwt-secret: expected a value/],
    ['nosuch', /unknown scenario "nosuch"/],
    ['uplink extra', /unexpected argument "extra"/],
  ])('rejects %s, naming the flag', (line, message) => {
    expect(() => args(line)).toThrow(message);
  });

  it('parses good values', () => {
    const { scenario, help, opts } = args(
      'saturation --vehicles 500 --steps 5,10.5,20 --step-duration 12s --store-sync normal --no-verify --gateway-flag=--commit-interval-ms,1 --sim-flag=--max-connecting,200',
    );
    expect(scenario).toBe('saturation');
    expect(help).toBe(false);
    expect(opts).toMatchObject({
      vehicles: 500,
      steps: [5, 10.5, 20],
      stepMs: 12_000,
      storeSync: 'normal',
      verify: false,
      gatewayFlags: ['--store-sync', 'normal', '--commit-interval-ms', '1'],
      simFlags: ['--max-connecting', '200'],
    });
    expect(args('').help).toBe(true);
    expect(args('uplink --help').help).toBe(true);
  });

  it('takes the secrets from the flags, from the environment for a --target gateway, else the built-in ones', () => {
    const env = { VMCP_JWT_SECRET: 'env-jwt', VMCP_ADMIN_TOKEN: 'env-admin' };
    const builtIn = { jwtSecret: JWT_SECRET, adminToken: ADMIN_TOKEN };
    // Its own gateway: the built-in secrets, whatever the environment says.
    expect(args('uplink', env).opts.secrets).toEqual(builtIn);
    // An external gateway: the environment's, or the built-in ones without it.
    expect(args('uplink --target 127.0.0.1:7000', env).opts.secrets).toEqual({
      jwtSecret: 'env-jwt',
      adminToken: 'env-admin',
    });
    expect(args('uplink --target 127.0.0.1:7000', {}).opts.secrets).toEqual(builtIn);
    // A broker is not a gateway.
    expect(args('uplink --target mqtt://127.0.0.1:1883', env).opts.secrets).toEqual(builtIn);
    // The flags win, for an external gateway and for the bench's own.
    expect(
      args('uplink --target 127.0.0.1:7000 --jwt-secret j --admin-token a', env).opts.secrets,
    ).toEqual({ jwtSecret: 'j', adminToken: 'a' });
    expect(args('uplink --jwt-secret j', env).opts.secrets).toEqual({
      jwtSecret: 'j',
      adminToken: ADMIN_TOKEN,
    });
  });
});

function summary(accepted: number, store?: Record<string, number>): Record<string, unknown> {
  return {
    connections: { accepted, refused: accepted === 0 ? { BAD_CREDENTIALS: 12 } : {} },
    errors: {},
    errorsTotal: 0,
    uplink: { sent: 0, stored: 0 },
    ...(store === undefined
      ? {}
      : {
          store: {
            vehicles: accepted,
            records: 10,
            sent: 10,
            acked: 10,
            loss: 0,
            lostAcked: 0,
            disorder: 0,
            extra: 0,
            httpErrors: 0,
            unchecked: 0,
            elapsedMs: 5,
            ...store,
          },
        }),
  };
}

describe('bench verdicts', () => {
  it('fails a run where no vehicle connected, and says the store was not checked', () => {
    const s = [summary(0, {}), summary(0, {})];
    const check = storeCheck(s);
    expect(check.checked).toBe(false); // nothing connected: nothing was checked
    expect(fleetFailures(s, 1000, check)).toEqual([
      'no vehicle connected (0 of 1000): BAD_CREDENTIALS ×24',
    ]);
  });

  it('fails a run whose store check found acked messages missing', () => {
    const s = [summary(5, { lostAcked: 100 }), summary(5, {})];
    const check = storeCheck(s);
    expect(check).toMatchObject({ checked: true, vehicles: 10, lostAcked: 100 });
    expect(fleetFailures(s, 10, check)).toEqual([
      '100 acked messages missing from the store (lostAcked)',
    ]);
    expect(fleetFailures([summary(5, {})], 5, storeCheck([summary(5, {})]))).toEqual([]);
  });

  it('marks the result failed, notes first, and the report headline says so', () => {
    const base: ScenarioResult = {
      scenario: 'uplink',
      target: 'vmcp gateway at 127.0.0.1:7000',
      targetId: 'gateway-external',
      startedAt: 0,
      params: {},
      figures: { ackedPerSec: 0, store: { lostAcked: 100 } },
      timeline: [],
      notes: ['a note'],
    };
    expect(withVerdict(base, [])).toBe(base);
    const r = withVerdict(base, ['100 acked messages missing from the store (lostAcked)']);
    expect(r.failed).toBe(true);
    expect(r.notes[0]).toBe('FAILED: 100 acked messages missing from the store (lostAcked)');
    const html = renderReport([r], {});
    const headline = html.slice(html.indexOf('<table>'), html.indexOf('</table>'));
    expect(headline).toContain('FAILED: 100 acked messages missing from the store (lostAcked)');
  });
});

describe('which side saturated', () => {
  it('names the target, the simulators, the machine or neither from their CPU shares', () => {
    const two = { simProcesses: 1, cores: 2 };
    expect(saturatedSide(97, 40, two)).toMatch(/^target/);
    expect(saturatedSide(50, 95, two)).toMatch(/^simulators/);
    expect(saturatedSide(50, 100, { simProcesses: 2, cores: 2 })).toMatch(/^neither/);
    expect(saturatedSide(85, 100, { simProcesses: 2, cores: 2 })).toMatch(/^machine/);
    expect(saturatedSide(20, 10, two)).toMatch(/^neither/);
  });
});

function row(t: number, over: Partial<TimelineRow>): TimelineRow {
  return {
    t,
    connected: 10,
    sentPerSec: 0,
    storedPerSec: 0,
    deliveredPerSec: 0,
    commandsPerSec: 0,
    commandsAckedPerSec: 0,
    cmdP50: 0,
    cmdP99: 0,
    p50: 0,
    p99: 0,
    backlog: 0,
    throttled: 0,
    gwCpuPct: 5,
    gwRssMb: 100,
    simCpuPct: 5,
    simRssMb: 80,
    gwLoopMaxMs: null,
    simLoopMaxMs: 0,
    stored: 0,
    gwCpuMs: 0,
    ...over,
  };
}

describe('bench report', () => {
  it('charts command throughput and latency for a downlink run, not an empty uplink', () => {
    const r: ScenarioResult = {
      scenario: 'downlink',
      target: 'vmcp gateway ×1 (store-sync full)',
      targetId: 'gateway-full',
      startedAt: 0,
      params: {},
      figures: { maxAckedCommandsPerSec: 250 },
      timeline: [1, 2, 3].map((t) =>
        row(t, {
          deliveredPerSec: 250,
          commandsPerSec: 250,
          commandsAckedPerSec: 248,
          cmdP50: 4,
          cmdP99: 12,
        }),
      ),
      steps: [{ commandsPerSecOffered: 250, ackedPerSec: 248 }],
      notes: [],
    };
    const html = renderReport([r], {});
    expect(html).toContain('Command throughput');
    expect(html).toContain('Command latency, POST → succeeded');
    expect(html).toContain('Downlink: commands acked vs offered');
    expect(html).not.toContain('Send → ack latency');
    expect(html).not.toContain('no data');
  });

  it('says when saturation did not reach the limit', () => {
    const r: ScenarioResult = {
      scenario: 'saturation',
      target: 'vmcp gateway ×1 (store-sync full)',
      targetId: 'gateway-full',
      startedAt: 0,
      params: {},
      figures: { limitReached: false, maxSustainablePerSec: null, atLeastPerSec: 5_000 },
      timeline: [],
      notes: [],
    };
    expect(renderReport([r], {})).toContain('at least 5000/s at p99 ≤ 100 ms (limit not reached');
  });
});

describe('what the bench started is ended on every exit path', () => {
  const tmp: string[] = [];
  const savedTmp = process.env.TMPDIR;
  afterEach(() => {
    if (savedTmp === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = savedTmp;
    for (const d of tmp.splice(0)) rmSync(d, { recursive: true, force: true });
  });

  it('stops registered processes (SIGKILL after the grace period) and removes registered paths', async () => {
    const owned = new Owned();
    const dir = mkdtempSync(join(tmpdir(), 'vmcp-owned-'));
    tmp.push(dir);
    const path = join(dir, 'data');
    mkdirSync(path);
    owned.path(path, 'data dir');
    // A server that ignores SIGTERM, and a client.
    const server = spawn(
      process.execPath,
      ['-e', "process.on('SIGTERM', () => {}); setInterval(() => {}, 1000)"],
      { stdio: 'ignore' },
    );
    const client = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], {
      stdio: 'ignore',
    });
    owned.process(server, 'server', 'server', 300);
    owned.process(client, 'client', 'client');
    await new Promise((r) => setTimeout(r, 300));
    expect(owned.pending).toHaveLength(3);
    await owned.stopAll();
    expect(server.signalCode).toBe('SIGKILL');
    expect(client.signalCode).toBe('SIGKILL');
    expect(existsSync(path)).toBe(false);
    expect(owned.pending).toEqual([]);
  });

  it('removes the data dir of a gateway that failed to start', async () => {
    // The bench's temp dirs go under TMPDIR: a private one shows whatever is left.
    const dir = mkdtempSync(join(tmpdir(), 'vmcp-bench-test-'));
    tmp.push(dir);
    process.env.TMPDIR = dir;
    await expect(
      openTarget({
        target: undefined,
        shards: 1,
        gatewayFlags: ['--no-such-gateway-flag', '1'],
      }),
    ).rejects.toThrow(/did not become ready/);
    expect(readdirSync(dir)).toEqual([]);
  });
});
