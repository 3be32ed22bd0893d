// The real CLI as a child process: zero-config start, readiness, SIGTERM drain, invalid configuration, precedence (issue 3 start-up contract, PROTOCOL.md 6, 9).
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TokenService } from '../../src/auth/tokens.js';
import {
  AckStatus,
  Cmd,
  ConnackStatus,
  DisconnectReason,
  encodeTelemetry,
  type DisconnectMessage,
  type UplinkAckMessage,
} from '../../src/protocol/index.js';
import { startServe, VMCP_BIN, type ServeProcess } from '../helpers/process.js';
import { TestVehicle } from '../helpers/vehicle.js';

// The zero-config test must not inherit any VMCP_* setting from the environment running the tests.
for (const k of Object.keys(process.env)) if (k.startsWith('VMCP_')) delete process.env[k];

const SECRET = 'process-test-secret';
const ADMIN = 'process-test-admin';
const ALL = ['telemetry:publish', 'event:publish', 'command:receive'];

const dirs: string[] = [];
const running: ServeProcess[] = [];

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'vmcp-proc-'));
  dirs.push(d);
  return d;
}

async function serve(args: string[], env: Record<string, string> = {}): Promise<ServeProcess> {
  const p = await startServe(args, env);
  running.push(p);
  return p;
}

/** SIGTERM, then SIGKILL if it has not exited within `ms`; resolves with the exit code or signal. */
async function stopProcess(p: ServeProcess, ms = 15_000): Promise<number | string> {
  if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGTERM');
  const t = setTimeout(() => p.child.kill('SIGKILL'), ms);
  try {
    return await p.exited;
  } finally {
    clearTimeout(t);
  }
}

interface CliResult {
  code: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
}

/** Runs `node bin/vmcp.js …args` to completion (killed after `timeoutMs`). */
function runCli(args: string[], env: Record<string, string> = {}, timeoutMs = 20_000) {
  return new Promise<CliResult>((resolve, reject) => {
    const child = spawn(process.execPath, [VMCP_BIN, ...args], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

async function tokenFor(id: string, secret = SECRET): Promise<string> {
  const tokens = await TokenService.create({ hs256Secret: secret });
  return tokens.sign({ subject: id, scopes: ALL, ttlMs: 3600_000, nowMs: Date.now() });
}

async function connectTo(p: ServeProcess, id: string, token: string, keepalive?: number) {
  const v = await TestVehicle.open(p.vehiclePort);
  const ack = await v.connect({ vehicleId: id, token, ...(keepalive ? { keepalive } : {}) });
  return { v, ack };
}

beforeAll(() => {
  expect(existsSync(VMCP_BIN)).toBe(true);
  // bin/vmcp.js runs dist/: `npm run build` must have run.
  expect(existsSync(join(VMCP_BIN, '../../dist/cli/main.js'))).toBe(true);
});

afterAll(async () => {
  await Promise.all(running.map((p) => stopProcess(p, 5_000)));
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe('zero-config start', () => {
  it('generates jwt-secret and admin-token, prints how to mint a token; the minted token and the admin token work', async () => {
    const dir = tempDir();
    const gw = await serve(['--data-dir', dir]);
    try {
      expect(existsSync(join(dir, 'jwt-secret'))).toBe(true);
      expect(existsSync(join(dir, 'admin-token'))).toBe(true);
      expect(gw.stderr()).toMatch(/vmcp token .*--data-dir/);
      expect(gw.stderr()).toContain('admin-token');

      const minted = await runCli(['token', '--data-dir', dir, '--vehicle', 'V1']);
      expect(minted.stderr).toBe('');
      expect(minted.code).toBe(0);
      const token = minted.stdout.trim();
      expect(token).toMatch(/^[\w-]+\.[\w-]+\.[\w-]+$/);

      const { v, ack } = await connectTo(gw, 'V1', token);
      try {
        expect(ack.status).toBe(ConnackStatus.ACCEPTED);
        v.send(Cmd.TELEMETRY, encodeTelemetry({ seq: 1, timestamp: 1764000000000 }));
        expect(await v.nextDecoded<UplinkAckMessage>(Cmd.UPLINK_ACK)).toEqual({
          seq: 1,
          status: AckStatus.STORED,
        });
      } finally {
        v.close();
      }

      const admin = readFileSync(join(dir, 'admin-token'), 'utf8').trim();
      expect(admin.length).toBeGreaterThanOrEqual(16);
      const ok = await fetch(`${gw.httpUrl}/api/v1/vehicles/V1`, {
        headers: { authorization: `Bearer ${admin}` },
      });
      expect(ok.status).toBe(200);
      expect(await ok.json()).toMatchObject({ id: 'V1', lastUplinkSeq: 1 });
      const wrong = await fetch(`${gw.httpUrl}/api/v1/vehicles/V1`, {
        headers: { authorization: 'Bearer wrong' },
      });
      expect(wrong.status).toBe(401);
      expect(await wrong.json()).toMatchObject({ code: expect.any(String) });
    } finally {
      expect(await stopProcess(gw)).toBe(0);
    }

    // A restart on the same data dir keeps the generated secrets: the old token still works.
    const again = await serve(['--data-dir', dir]);
    try {
      expect(again.stderr()).not.toContain('generated secrets');
      const minted = await runCli(['token', '--data-dir', dir, '--vehicle', 'V1']);
      const { v, ack } = await connectTo(again, 'V1', minted.stdout.trim());
      expect(ack.status).toBe(ConnackStatus.ACCEPTED);
      expect(ack.nextUplinkSeq).toBe(2);
      v.close();
    } finally {
      expect(await stopProcess(again)).toBe(0);
    }
  }, 60_000);
});

describe("the first start's hints", () => {
  it('name only the files this start generated (an admin token from the environment has none)', async () => {
    const dir = tempDir();
    const gw = await serve(['--data-dir', dir], { VMCP_ADMIN_TOKEN: ADMIN });
    try {
      expect(gw.stderr()).toContain('Mint a vehicle token:  npx vmcp token');
      expect(gw.stderr()).not.toContain('admin-token');
      expect(existsSync(join(dir, 'admin-token'))).toBe(false);
    } finally {
      await stopProcess(gw);
    }
  });
});

describe('readiness and shutdown', () => {
  it('answers /readyz 200 within 30 s of start', async () => {
    const started = Date.now();
    const gw = await serve(['--data-dir', tempDir(), '--shutdown-timeout-ms', '1s'], {
      VMCP_JWT_SECRET: SECRET,
      VMCP_ADMIN_TOKEN: ADMIN,
    });
    try {
      let status = 0;
      while (Date.now() - started < 30_000) {
        status = (await fetch(`${gw.httpUrl}/readyz`)).status;
        if (status === 200) break;
        await new Promise((r) => setTimeout(r, 100));
      }
      expect(status).toBe(200);
      expect(Date.now() - started).toBeLessThan(30_000);
      expect((await fetch(`${gw.httpUrl}/healthz`)).status).toBe(200);
    } finally {
      await stopProcess(gw);
    }
  });

  it('on SIGTERM sends DISCONNECT SHUTDOWN to a connected vehicle, keeps acked uplink, exits 0 within 15 s', async () => {
    const dir = tempDir();
    const env = { VMCP_JWT_SECRET: SECRET, VMCP_ADMIN_TOKEN: ADMIN };
    const gw = await serve(['--data-dir', dir], env);
    const { v, ack } = await connectTo(gw, 'VIN-TERM-1', await tokenFor('VIN-TERM-1'));
    try {
      expect(ack.status).toBe(ConnackStatus.ACCEPTED);
      v.send(Cmd.TELEMETRY, encodeTelemetry({ seq: 1, timestamp: 1764000000000 }));
      expect((await v.nextDecoded<UplinkAckMessage>(Cmd.UPLINK_ACK)).status).toBe(AckStatus.STORED);
      const sentAt = Date.now();
      gw.child.kill('SIGTERM');
      const d = await v.nextDecoded<DisconnectMessage>(Cmd.DISCONNECT, 15_000);
      expect(d.reason).toBe(DisconnectReason.SHUTDOWN);
      await v.waitClosed(15_000);
      const code = await Promise.race([
        gw.exited,
        new Promise<string>((r) => setTimeout(() => r('still running after 15 s'), 15_000)),
      ]);
      expect(code).toBe(0);
      expect(Date.now() - sentAt).toBeLessThan(15_000);
    } finally {
      v.close();
      await stopProcess(gw, 1_000);
    }
    const again = await serve(['--data-dir', dir], env);
    try {
      const r = await connectTo(again, 'VIN-TERM-1', await tokenFor('VIN-TERM-1'));
      expect(r.ack.nextUplinkSeq).toBe(2);
      r.v.close();
    } finally {
      expect(await stopProcess(again)).toBe(0);
    }
  }, 60_000);
  it('exits as soon as the drain is done, not after the whole --shutdown-timeout-ms bound', async () => {
    // shutdownTimeoutMs bounds a graceful stop; an idle gateway has nothing to drain and must not
    // sit out the bound (here 60 s) before exiting.
    const gw = await serve(['--data-dir', tempDir(), '--shutdown-timeout-ms', '60s'], {
      VMCP_JWT_SECRET: SECRET,
      VMCP_ADMIN_TOKEN: ADMIN,
    });
    try {
      // startServe resolves on the "vehicles on …" line, printed just before the signal handlers are
      // installed; one HTTP round trip later they are.
      expect((await fetch(`${gw.httpUrl}/readyz`)).status).toBe(200);
      const sentAt = Date.now();
      gw.child.kill('SIGTERM');
      const code = await Promise.race([
        gw.exited,
        new Promise<string>((r) => setTimeout(() => r('still running 15 s after SIGTERM'), 15_000)),
      ]);
      expect(code, `idle gateway, SIGTERM sent ${Date.now() - sentAt} ms ago`).toBe(0);
    } finally {
      await stopProcess(gw, 1_000);
    }
  }, 30_000);
});

describe('a log reader that is gone', () => {
  it('stdout and stderr pipes closed before the first line: the gateway serves, and SIGTERM stops it', async () => {
    const free = async (): Promise<number> => {
      const srv = createServer();
      await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
      const { port } = srv.address() as AddressInfo;
      await new Promise<void>((r) => srv.close(() => r()));
      return port;
    };
    const [vport, hport] = [await free(), await free()];
    const child = spawn(
      process.execPath,
      [
        VMCP_BIN,
        'serve',
        '--listen',
        `127.0.0.1:${vport}`,
        '--http',
        `127.0.0.1:${hport}`,
        '--data-dir',
        tempDir(),
        '--log-level',
        'info',
      ],
      {
        env: { ...process.env, VMCP_JWT_SECRET: SECRET, VMCP_ADMIN_TOKEN: ADMIN },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    // Nobody reads: every write to stdout (logs) and stderr (the banner) fails with EPIPE.
    child.stdout!.destroy();
    child.stderr!.destroy();
    const exited = new Promise<number | string>((r) =>
      child.on('exit', (code, signal) => r(code ?? signal ?? -1)),
    );
    try {
      // Bounded: a hung gateway fails here (and is killed below), not by the test's timeout.
      let health = 0;
      for (const deadline = Date.now() + 10_000; health !== 200 && Date.now() < deadline;) {
        await new Promise((r) => setTimeout(r, 100));
        health = await fetch(`http://127.0.0.1:${hport}/healthz`, {
          signal: AbortSignal.timeout(1_000),
        }).then(
          (r) => r.status,
          () => 0,
        );
      }
      expect(health).toBe(200);
      const v = await TestVehicle.open(vport);
      const ack = await v.connect({ vehicleId: 'VIN-PIPE-1', token: await tokenFor('VIN-PIPE-1') });
      expect(ack.status).toBe(ConnackStatus.ACCEPTED);
      v.close();
      child.kill('SIGTERM');
      const code = await Promise.race([
        exited,
        new Promise<string>((r) => setTimeout(() => r('still running 15 s after SIGTERM'), 15_000)),
      ]);
      expect(code).toBe(0);
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }
  }, 40_000);
});

describe('invalid configuration', () => {
  const base = (dir: string): string[] => [
    'serve',
    '--listen',
    '127.0.0.1:0',
    '--http',
    '127.0.0.1:0',
    '--data-dir',
    dir,
    '--log-level',
    'warn',
  ];
  const env = { VMCP_JWT_SECRET: SECRET, VMCP_ADMIN_TOKEN: ADMIN };

  async function expectRefused(
    args: string[],
    names: RegExp,
    extraEnv: Record<string, string> = {},
  ) {
    const r = await runCli(args, { ...env, ...extraEnv });
    expect(r.signal, `did not exit by itself: ${r.stderr}`).toBeNull();
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(names);
  }

  it('--max-connections abc', async () => {
    const dir = tempDir();
    await expectRefused(
      [...base(dir), '--max-connections', 'abc'],
      /max-connections|maxConnections/,
    );
  });

  it('--max-connections 0 (out of range)', async () => {
    const dir = tempDir();
    await expectRefused([...base(dir), '--max-connections', '0'], /max-connections|maxConnections/);
  });

  it('--listen nonsense', async () => {
    const dir = tempDir();
    await expectRefused([...base(dir), '--listen', 'nonsense'], /listen/);
  });

  it('an unknown flag --bogus 1', async () => {
    const dir = tempDir();
    await expectRefused([...base(dir), '--bogus', '1'], /bogus/);
  });

  it('an invalid environment value names the variable', async () => {
    const dir = tempDir();
    await expectRefused(base(dir), /VMCP_KEEPALIVE_MAX_S/, { VMCP_KEEPALIVE_MAX_S: 'lots' });
  });

  it('a JSON config file with an unknown key names the key', async () => {
    const dir = tempDir();
    const file = join(dir, 'vmcp.json');
    writeFileSync(file, JSON.stringify({ maxConections: 5 }));
    await expectRefused([...base(dir), '--config', file], /maxConections/);
  });

  it('a YAML config file with an unknown key names the key', async () => {
    const dir = tempDir();
    const file = join(dir, 'vmcp.yaml');
    writeFileSync(file, 'keepaliveMaxS: 100\nfrobnicate: true\n');
    await expectRefused([...base(dir), '--config', file], /frobnicate/);
  });

  it('--tls-listen without a certificate', async () => {
    const dir = tempDir();
    await expectRefused([...base(dir), '--tls-listen', '127.0.0.1:0'], /tls/i);
  });

  it('--tls-cert naming a file that does not exist names the setting', async () => {
    const dir = tempDir();
    const missing = join(dir, 'missing.pem');
    await expectRefused(
      [
        ...base(dir),
        '--tls-listen',
        '127.0.0.1:0',
        '--tls-cert',
        missing,
        '--tls-key',
        missing,
        '--client-ca',
        missing,
      ],
      /tls-cert|tlsCert/,
    );
  });
});

describe('precedence flags > env > file > defaults (keepalive max granted to a vehicle)', () => {
  /** Starts the CLI with the given sources and returns the keepalive granted to a vehicle proposing 3600 s. */
  async function grantedKeepalive(args: string[], env: Record<string, string>): Promise<number> {
    const gw = await serve(args, { VMCP_JWT_SECRET: SECRET, VMCP_ADMIN_TOKEN: ADMIN, ...env });
    try {
      const { v, ack } = await connectTo(gw, 'VIN-PREC-1', await tokenFor('VIN-PREC-1'), 3600);
      v.close();
      expect(ack.status).toBe(ConnackStatus.ACCEPTED);
      return ack.keepalive!;
    } finally {
      expect(await stopProcess(gw)).toBe(0);
    }
  }

  it('resolves each level', async () => {
    const dir = tempDir();
    const file = join(dir, 'vmcp.yaml');
    writeFileSync(file, 'keepaliveMaxS: 100\n');
    // A short shutdown bound keeps the five starts and stops quick.
    const data = ['--data-dir', dir, '--shutdown-timeout-ms', '1s'];
    expect(await grantedKeepalive(data, {})).toBe(3600); // default
    expect(await grantedKeepalive([...data, '--config', file], {})).toBe(100); // file
    expect(await grantedKeepalive(data, { VMCP_CONFIG: file })).toBe(100); // file named by env
    expect(
      await grantedKeepalive([...data, '--config', file], { VMCP_KEEPALIVE_MAX_S: '50' }),
    ).toBe(50); // env over file
    expect(
      await grantedKeepalive([...data, '--config', file, '--keepalive-max-s', '20'], {
        VMCP_KEEPALIVE_MAX_S: '50',
      }),
    ).toBe(20); // flag over env over file
  }, 90_000);
});
