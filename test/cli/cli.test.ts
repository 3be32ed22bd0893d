// The API client commands (`vmcp device|send|tail`) run in-process against a real gateway.
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { TokenService } from '../../src/auth/tokens.js';
import { device } from '../../src/cli/device.js';
import { main } from '../../src/cli/main.js';
import { send } from '../../src/cli/send.js';
import { tail, type TailOptions } from '../../src/cli/tail.js';
import {
  Cmd,
  CommandResult,
  ConnackStatus,
  DisconnectReason,
  encodeCommandAck,
  encodeTelemetry,
  type CommandMessage,
  type DisconnectMessage,
  type UplinkAckMessage,
} from '../../src/protocol/index.js';
import { ADMIN_TOKEN, startGateway, type TestGateway } from '../helpers/gateway.js';
import type { TestVehicle } from '../helpers/vehicle.js';

type Command = (
  argv: string[],
  out: (t: string) => void,
  err: (t: string) => void,
) => Promise<number>;

interface Run {
  code: number;
  out: string;
  err: string;
}

async function run(cmd: Command, argv: string[]): Promise<Run> {
  let out = '';
  let err = '';
  const code = await cmd(
    argv,
    (t) => (out += t),
    (t) => (err += t),
  );
  return { code, out, err };
}

let gw: TestGateway;
let conn: string[];
beforeAll(async () => {
  gw = await startGateway();
  conn = ['--url', gw.httpUrl, '--admin-token', ADMIN_TOKEN];
});
afterAll(async () => {
  await gw.stop();
});
afterEach(() => {
  vi.unstubAllEnvs();
});

let n = 0;
const vin = (): string => `VIN-CLI-${++n}`;
const T = 1764000000000;
const json = (text: string): Record<string, unknown> => JSON.parse(text) as Record<string, unknown>;

function ack(v: TestVehicle, seq: number, result: number, payload?: string): void {
  v.send(
    Cmd.COMMAND_ACK,
    encodeCommandAck({
      seq,
      result,
      resultPayload: payload === undefined ? undefined : new TextEncoder().encode(payload),
    }),
  );
}

describe('--help', () => {
  it.each([
    ['device', ['--help']],
    ['device add', ['add', '--help']],
    ['device revoke', ['revoke', '-h']],
    ['send', ['--help']],
    ['send (next to bad flags)', ['--bogus', '--help']],
    ['tail', ['--help']],
  ])('%s prints usage on stdout and exits 0', async (name, argv) => {
    const cmd = name.startsWith('device') ? device : name.startsWith('send') ? send : tail;
    const r = await run(cmd, argv);
    expect(r).toMatchObject({ code: 0, err: '' });
    expect(r.out).toMatch(/^Usage/);
    expect(r.out).toContain('--admin-token');
  });

  it('the vmcp usage lists the commands, and main dispatches to them', async () => {
    const usage = await run(main, ['--help']);
    for (const c of ['device', 'send', 'tail'])
      expect(usage.out).toMatch(new RegExp(`^  ${c} `, 'm'));
    const r = await run(main, ['tail', '--help']);
    expect(r.code).toBe(0);
    expect(r.out).toContain('Usage: vmcp tail');
  });
});

describe('vmcp token, and -h for every command', () => {
  it('-h prints help for every command through main, and starts nothing (serve, sim, token)', async () => {
    for (const c of ['serve', 'token', 'sim', 'device', 'send', 'tail']) {
      const r = await run(main, [c, '-h']);
      expect(r, c).toMatchObject({ code: 0 });
      expect(r.out, c).toMatch(/^Usage/);
    }
  });

  it('serve refuses a stray word or a short flag instead of ignoring it', async () => {
    const r = await run(main, ['serve', '-x']);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/unexpected argument "-x"/);
  });

  it('refuses unknown flags; --scopes (as in device add) and --scope set the scopes', async () => {
    const secret = ['--jwt-secret', 'cli-token-secret'];
    const typo = await run(main, [
      'token',
      '--vehicle',
      'V1',
      '--scoeps',
      'event:publish',
      ...secret,
    ]);
    expect(typo.code).toBe(2);
    expect(typo.err).toMatch(/--scoeps/);
    const tokens = await TokenService.create({ hs256Secret: 'cli-token-secret' });
    for (const flag of ['--scopes', '--scope']) {
      const r = await run(main, ['token', '--vehicle', 'V1', flag, 'event:publish', ...secret]);
      expect(r.code).toBe(0);
      const v = await tokens.verify(r.out.trim(), Date.now());
      expect(v).toMatchObject({ ok: true, token: { subject: 'V1', scopes: ['event:publish'] } });
    }
  });

  it("signs with the data dir's secret, and never invents one where the gateway has none", async () => {
    const empty = mkdtempSync(join(tmpdir(), 'vmcp-token-'));
    try {
      vi.stubEnv('VMCP_JWT_SECRET', '');
      const r = await run(main, ['token', '--vehicle', 'V1', '--data-dir', empty]);
      expect(r.code).toBe(2);
      expect(r.err).toMatch(/no JWT secret: pass --jwt-secret, set VMCP_JWT_SECRET/);
      expect(readdirSync(empty)).toEqual([]);
      writeFileSync(join(empty, 'jwt-secret'), 'the-gateways-secret\n');
      const ok = await run(main, ['token', '--vehicle', 'V1', '--data-dir', empty]);
      expect(ok.code).toBe(0);
      const tokens = await TokenService.create({ hs256Secret: 'the-gateways-secret' });
      expect(await tokens.verify(ok.out.trim(), Date.now())).toMatchObject({ ok: true });
    } finally {
      rmSync(empty, { recursive: true, force: true });
    }
  });
});

describe('bad arguments exit 2 with a message naming the flag', () => {
  it.each<[string, Command, string[], RegExp]>([
    ['unknown flag', send, ['V1', 'x', '--bogus'], /--bogus/],
    ['missing VIN/NAME', send, [], /VIN and NAME/],
    ['bad VIN', send, ['bad vin!', 'x'], /VIN must match/],
    ['extra positional', send, ['V1', 'x', 'y'], /unexpected argument "y"/],
    ['bad --params', send, ['V1', 'x', '--params', '{oops'], /--params is not valid JSON/],
    ['--params without value', send, ['V1', 'x', '--params'], /--params/],
    ['bad --ttl', send, ['V1', 'x', '--ttl', 'soon'], /--ttl must be a positive duration/],
    ['--ttl over 7 days', send, ['V1', 'x', '--ttl', '8d'], /--ttl must be at most 7d/],
    ['bad --timeout', send, ['V1', 'x', '--wait', '--timeout', '0'], /--timeout/],
    [
      '--timeout without --wait',
      send,
      ['V1', 'x', '--timeout', '1s'],
      /--timeout only applies with --wait/,
    ],
    ['value to --wait', send, ['V1', 'x', '--wait=yes'], /--wait/],
    ['bad --url', send, ['V1', 'x', '--url', 'ftp://x'], /--url must be an http/],
    ['empty --admin-token', send, ['V1', 'x', '--admin-token='], /--admin-token must not be empty/],
    ['no device subcommand', device, [], /add or revoke/],
    ['unknown device subcommand', device, ['frob'], /unknown subcommand "frob"/],
    ['device add without --id', device, ['add', '--secret', 's'], /--id is required/],
    ['device add bad --id', device, ['add', '--id', 'a b', '--secret', 's'], /--id must match/],
    ['device add without --secret', device, ['add', '--id', 'V1'], /--secret is required/],
    [
      'device add empty --secret',
      device,
      ['add', '--id', 'V1', '--secret='],
      /--secret must not be empty/,
    ],
    [
      'device add bad --scopes',
      device,
      ['add', '--id', 'V1', '--secret', 's', '--scopes', 'telemetry:publish fly'],
      /--scopes: unknown scope\(s\) fly/,
    ],
    ['device revoke unknown flag', device, ['revoke', '--id', 'V1', '--secret', 's'], /--secret/],
    ['tail --count 0', tail, ['--count', '0'], /--count must be a positive integer/],
    ['tail --count x', tail, ['--count', 'x'], /--count must be a positive integer/],
    ['tail bad --vehicle', tail, ['--vehicle', 'ok,not ok'], /--vehicle must match/],
    ['tail positional', tail, ['V1'], /unexpected argument "V1"/],
  ])('%s', async (_name, cmd, argv, message) => {
    // Connection flags first, so a case can override them (device takes its subcommand first).
    const r = await run(cmd, cmd === device ? [...argv, ...conn] : [...conn, ...argv]);
    expect(r.code).toBe(2);
    expect(r.out).toBe('');
    expect(r.err).toMatch(message);
    expect(r.err).toContain('--help');
  });

  it('no admin token anywhere: names the ways to give one', async () => {
    vi.stubEnv('VMCP_ADMIN_TOKEN', '');
    const dir = mkdtempSync(join(tmpdir(), 'vmcp-cli-'));
    try {
      const r = await run(send, ['V1', 'x', '--url', gw.httpUrl, '--data-dir', dir]);
      expect(r.code).toBe(2);
      expect(r.err).toMatch(/--admin-token.*VMCP_ADMIN_TOKEN.*--data-dir/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('connection and HTTP errors exit 1', () => {
  it('prints the API error body (401 with a wrong token)', async () => {
    const r = await run(send, ['V1', 'x', '--url', gw.httpUrl, '--admin-token', 'wrong']);
    expect(r.code).toBe(1);
    expect(r.out).toBe('');
    expect(r.err).toMatch(/401 \{"code":"unauthorized","message":/);
  });

  it('an unreachable gateway', async () => {
    const r = await run(send, ['V1', 'x', '--url', 'http://127.0.0.1:1', '--admin-token', 't']);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/cannot reach http:\/\/127\.0\.0\.1:1/);
  });

  it('takes the URL and token from VMCP_URL / VMCP_ADMIN_TOKEN, or the token from the data dir', async () => {
    vi.stubEnv('VMCP_URL', gw.httpUrl);
    vi.stubEnv('VMCP_ADMIN_TOKEN', ADMIN_TOKEN);
    const fromEnv = await run(send, [vin(), 'horn.honk']);
    expect(fromEnv.code).toBe(0);
    vi.stubEnv('VMCP_ADMIN_TOKEN', '');
    const dir = mkdtempSync(join(tmpdir(), 'vmcp-cli-'));
    try {
      writeFileSync(join(dir, 'admin-token'), `${ADMIN_TOKEN}\n`);
      const fromFile = await run(send, [vin(), 'horn.honk', '--data-dir', dir]);
      expect(fromFile.code).toBe(0);
      vi.stubEnv('VMCP_DATA_DIR', dir);
      expect((await run(send, [vin(), 'horn.honk'])).code).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('vmcp device', () => {
  it('add registers a device that then connects with CREDENTIAL; a second add is device_exists', async () => {
    const id = vin();
    const r = await run(device, [
      'add',
      '--id',
      id,
      '--secret',
      's3cret',
      '--scopes',
      'telemetry:publish,event:publish',
      ...conn,
    ]);
    expect(r).toMatchObject({ code: 0, err: '' });
    expect(json(r.out)).toMatchObject({ id });
    const v = await gw.vehicle();
    const connack = await v.connect({
      vehicleId: id,
      credential: new TextEncoder().encode('s3cret'),
    });
    expect(connack.status).toBe(ConnackStatus.ACCEPTED);
    expect(connack.token).toMatch(/^[\w-]+\.[\w-]+\.[\w-]+$/);
    v.close();
    const again = await run(device, ['add', '--id', id, '--secret', 'x', ...conn]);
    expect(again).toMatchObject({
      code: 1,
      err: expect.stringMatching(/409 \{"code":"device_exists"/),
    });
  });

  it('revoke kicks the live session and refuses later CONNECTs; revoking again is 404', async () => {
    const id = vin();
    expect((await run(device, ['add', '--id', id, '--secret', 'pw', ...conn])).code).toBe(0);
    const v = await gw.vehicle();
    expect(
      (await v.connect({ vehicleId: id, credential: new TextEncoder().encode('pw') })).status,
    ).toBe(ConnackStatus.ACCEPTED);
    const r = await run(device, ['revoke', '--id', id, ...conn]);
    expect(r).toMatchObject({ code: 0, err: '' });
    expect(() => json(r.out)).not.toThrow();
    expect((await v.nextDecoded<DisconnectMessage>(Cmd.DISCONNECT)).reason).toBe(
      DisconnectReason.KICKED,
    );
    const v2 = await gw.vehicle();
    expect(
      (await v2.connect({ vehicleId: id, credential: new TextEncoder().encode('pw') })).status,
    ).toBe(ConnackStatus.FORBIDDEN);
    const again = await run(device, ['revoke', '--id', id, ...conn]);
    expect(again).toMatchObject({
      code: 1,
      err: expect.stringMatching(/404 \{"code":"not_found"/),
    });
  });
});

describe('vmcp send', () => {
  it('queues a command and prints {id, seq, status}; the vehicle gets NAME and PARAMS', async () => {
    const id = vin();
    const v = await gw.connected(id);
    const r = await run(send, [
      id,
      'door.lock',
      '--params',
      '{"all": true, "id": 12345678901234567890}',
      '--ttl',
      '1h',
      ...conn,
    ]);
    expect(r).toMatchObject({ code: 0, err: '' });
    const accepted = json(r.out);
    expect(accepted).toMatchObject({ seq: 1, status: 'pending' });
    expect(typeof accepted.id).toBe('string');
    const cmd = await v.nextDecoded<CommandMessage>(Cmd.COMMAND);
    expect(cmd).toMatchObject({
      seq: 1,
      commandId: accepted.id,
      name: 'door.lock',
      // As written, compacted: a number past 2^53 keeps every digit.
      params: '{"all":true,"id":12345678901234567890}',
    });
    expect(cmd.expiresAt).toBeLessThanOrEqual(Date.now() + 3600_000);
    expect(cmd.expiresAt).toBeGreaterThan(Date.now() + 3500_000);
    v.close();
  });

  it('sends to the vehicle ids "." and ".." themselves, not as URL dot segments', async () => {
    // Valid ids (PROTOCOL.md 2.1); fetch would resolve /vehicles/%2E/commands to /vehicles/commands.
    for (const id of ['.', '..']) {
      const v = await gw.connected(id);
      const r = run(send, [id, 'door.lock', '--wait', '--timeout', '5s', ...conn]);
      const cmd = await v.nextDecoded<CommandMessage>(Cmd.COMMAND);
      expect(cmd.name).toBe('door.lock');
      ack(v, cmd.seq, CommandResult.SUCCEEDED);
      expect(await r).toMatchObject({ code: 0 });
      v.close();
    }
  });

  it('--wait: a vehicle acking SUCCEEDED → exit 0 and the final command', async () => {
    const id = vin();
    const v = await gw.connected(id);
    const pending = run(send, [id, 'horn.honk', '--wait', ...conn]);
    const cmd = await v.nextDecoded<CommandMessage>(Cmd.COMMAND);
    ack(v, cmd.seq, CommandResult.SUCCEEDED, '{"honked":2}');
    const r = await pending;
    expect(r.code).toBe(0);
    expect(r.out.trim().split('\n')).toHaveLength(1);
    expect(json(r.out)).toMatchObject({
      id: cmd.commandId,
      vehicleId: id,
      seq: 1,
      name: 'horn.honk',
      status: 'succeeded',
      result: { honked: 2 },
    });
    expect(r.err).toContain(`queued command ${cmd.commandId}`);
    v.close();
  });

  it('--wait: another final status (FAILED) → exit 1', async () => {
    const id = vin();
    const v = await gw.connected(id);
    const pending = run(send, [id, 'window.close', '--wait', ...conn]);
    const cmd = await v.nextDecoded<CommandMessage>(Cmd.COMMAND);
    ack(v, cmd.seq, CommandResult.FAILED);
    const r = await pending;
    expect(r.code).toBe(1);
    expect(json(r.out)).toMatchObject({ status: 'failed' });
    v.close();
  });

  it('--wait --timeout: no final status in time → exit 3, the command as last seen', async () => {
    const id = vin(); // never connects: the command stays pending
    const started = Date.now();
    const r = await run(send, [id, 'trunk.open', '--wait', '--timeout', '600ms', ...conn]);
    expect(r.code).toBe(3);
    expect(Date.now() - started).toBeGreaterThanOrEqual(550);
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(json(r.out)).toMatchObject({ vehicleId: id, status: 'pending' });
    expect(r.err).toMatch(/timed out after 600 ms/);
  });
});

describe('vmcp tail', () => {
  async function startTail(
    argv: string[],
    opts: TailOptions = {},
  ): Promise<{ done: Promise<Run> }> {
    let out = '';
    let err = '';
    let opened!: () => void;
    const open = new Promise<void>((resolve) => (opened = resolve));
    const done = tail(
      [...argv, ...conn],
      (t) => (out += t),
      (t) => (err += t),
      { ...opts, onOpen: opened },
    ).then((code) => ({ code, out, err }));
    await Promise.race([open, done]);
    return { done };
  }

  it("--count 1 --vehicle X prints X's uplink record, not another vehicle's", async () => {
    const id = vin();
    const other = vin();
    const v = await gw.connected(id);
    const o = await gw.connected(other);
    const { done } = await startTail(['--count', '1', '--vehicle', id]);
    o.send(Cmd.TELEMETRY, encodeTelemetry({ seq: 1, timestamp: T, speed: 1 }));
    await o.nextDecoded<UplinkAckMessage>(Cmd.UPLINK_ACK);
    v.send(Cmd.TELEMETRY, encodeTelemetry({ seq: 1, timestamp: T, speed: 88 }));
    await v.nextDecoded<UplinkAckMessage>(Cmd.UPLINK_ACK);
    const r = await done;
    expect(r).toMatchObject({ code: 0, err: '' });
    const lines = r.out.trim().split('\n');
    expect(lines).toHaveLength(1);
    const event = json(lines[0]!);
    expect(event.event).toBe('uplink');
    expect(event.data).toMatchObject({ vehicleId: id, seq: 1 });
    v.close();
    o.close();
  });

  it('follows presence and command events until stopped (exit 0)', async () => {
    const id = vin();
    const stop = new AbortController();
    const { done } = await startTail(['--vehicle', id], { signal: stop.signal });
    const v = await gw.connected(id);
    expect((await run(send, [id, 'horn.honk', ...conn])).code).toBe(0);
    await v.nextDecoded<CommandMessage>(Cmd.COMMAND);
    // Let the stream carry the presence and command events, then stop like Ctrl-C.
    await new Promise((r) => setTimeout(r, 300));
    stop.abort();
    const r = await done;
    expect(r.code).toBe(0);
    const events = r.out
      .trim()
      .split('\n')
      .map((l) => json(l));
    expect(events.map((e) => e.event)).toEqual(expect.arrayContaining(['presence', 'command']));
    for (const e of events) expect(e.data).toMatchObject({ vehicleId: id });
    v.close();
  });

  it('stops on SIGINT', async () => {
    const before = process.listenerCount('SIGINT');
    const { done } = await startTail(['--vehicle', vin()]);
    expect(process.listenerCount('SIGINT')).toBe(before + 1);
    // Call only the listener tail added (emitting the signal would reach the test runner's too).
    const listener = process.listeners('SIGINT').at(-1)!;
    (listener as () => void)();
    expect((await done).code).toBe(0);
    expect(process.listenerCount('SIGINT')).toBe(before);
  });

  it('an HTTP error (401) exits 1 with the API error', async () => {
    const r = await run(tail, ['--url', gw.httpUrl, '--admin-token', 'wrong']);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/401 \{"code":"unauthorized"/);
  });
});
