// Configuration: parsers, defaults, precedence flags > env > file > defaults, unknown keys, ranges, cross-checks, freezing (issue 3 start-up contract).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  DEFAULTS,
  SETTINGS,
  envName,
  flagName,
  loadConfig,
  parseBytes,
  parseDuration,
  parseFlags,
  parseHostPort,
  type ConfigSources,
} from '../../src/config/index.js';
import { isVmcpError } from '../../src/errors.js';

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'vmcp-config-'));
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

let fileCounter = 0;
function file(ext: 'json' | 'yaml' | 'yml', text: string): string {
  const path = join(dir, `config-${++fileCounter}.${ext}`);
  writeFileSync(path, text);
  return path;
}

/** The VMCP_ERR_CONFIG message loadConfig throws for `sources` (fails the test if it does not throw). */
function configError(sources: ConfigSources): string {
  try {
    loadConfig(sources);
  } catch (err) {
    expect(isVmcpError(err, 'VMCP_ERR_CONFIG')).toBe(true);
    return (err as Error).message;
  }
  throw new Error(`loadConfig accepted ${JSON.stringify(sources)}`);
}

describe('parseDuration', () => {
  it.each([
    ['7d', 7 * 86_400_000],
    ['1500ms', 1500],
    ['30s', 30_000],
    ['1.5s', 1500],
    ['2m', 120_000],
    ['1h', 3_600_000],
    ['100', 100],
    ['0', 0],
    [' 10s ', 10_000],
  ])('%j → %d ms', (text, ms) => {
    expect(parseDuration(text)).toBe(ms);
  });

  it.each(['', 'abc', '-1s', '1w', '1 s', 's', '1.s', '1e3', '10S'])('rejects %j', (text) => {
    expect(parseDuration(text)).toBeUndefined();
  });
});

describe('parseBytes', () => {
  it.each([
    ['4096', 4096],
    ['1GiB', 1024 ** 3],
    ['1gib', 1024 ** 3],
    ['512kb', 512_000],
    ['512KiB', 512 * 1024],
    ['1 MiB', 1024 ** 2],
    ['1.5KiB', 1536],
    ['2MB', 2_000_000],
    ['1TiB', 1024 ** 4],
    ['10b', 10],
  ])('%j → %d bytes', (text, n) => {
    expect(parseBytes(text)).toBe(n);
  });

  it.each(['', 'abc', '-1', '1PB', 'KiB', '1 k'])('rejects %j', (text) => {
    expect(parseBytes(text)).toBeUndefined();
  });
});

describe('parseHostPort', () => {
  it.each([
    ['127.0.0.1:7000', { host: '127.0.0.1', port: 7000 }],
    ['localhost:0', { host: 'localhost', port: 0 }],
    [':8080', { host: '0.0.0.0', port: 8080 }],
    ['[::1]:7000', { host: '::1', port: 7000 }],
    ['0.0.0.0:65535', { host: '0.0.0.0', port: 65535 }],
  ])('%j', (text, hp) => {
    expect(parseHostPort(text)).toEqual(hp);
  });

  it.each(['nonsense', '127.0.0.1', '127.0.0.1:65536', '1.2.3.4:abc', '::1:7000', '', 'host:'])(
    'rejects %j',
    (text) => {
      expect(parseHostPort(text)).toBeUndefined();
    },
  );
});

describe('parseFlags', () => {
  it('turns --kebab-case into camelCase keys, with separate or = values', () => {
    expect(
      parseFlags(['--max-connections', '5', '--listen=1.2.3.4:5', '--data-dir', '/tmp/x']),
    ).toEqual({
      flags: { maxConnections: '5', listen: '1.2.3.4:5', dataDir: '/tmp/x' },
      positional: [],
    });
  });

  it('makes flags without a value true and keeps positional arguments apart', () => {
    expect(parseFlags(['serve', '--help', '--verbose', '--x', 'v', 'extra'])).toEqual({
      flags: { help: true, verbose: true, x: 'v' },
      positional: ['serve', 'extra'],
    });
  });

  it('keeps a value that starts with a single dash and an empty = value', () => {
    expect(parseFlags(['--n', '-1', '--e=']).flags).toEqual({ n: '-1', e: '' });
  });
});

describe('setting names', () => {
  it('maps every camelCase key to --kebab-case and VMCP_SNAKE_CASE', () => {
    expect(flagName('keepaliveMaxS')).toBe('keepalive-max-s');
    expect(envName('keepaliveMaxS')).toBe('VMCP_KEEPALIVE_MAX_S');
    expect(envName('maxConnections')).toBe('VMCP_MAX_CONNECTIONS');
    expect(envName('jwtSecret')).toBe('VMCP_JWT_SECRET');
    expect(envName('adminToken')).toBe('VMCP_ADMIN_TOKEN');
    expect(flagName('tlsListen')).toBe('tls-listen');
    expect(flagName('clientCa')).toBe('client-ca');
    // The table and the defaults describe the same settings.
    expect(SETTINGS.map((s) => s.key).sort()).toEqual(Object.keys(DEFAULTS).sort());
  });
});

describe('loadConfig: defaults', () => {
  it('gives the documented defaults with no sources', () => {
    const c = loadConfig();
    expect(c.listen).toEqual({ host: '127.0.0.1', port: 7000 });
    expect(c.http).toEqual({ host: '127.0.0.1', port: 8080 });
    expect(c.dataDir).toBe('./data');
    expect(c.store).toBe('sqlite');
    expect(c.tlsListen).toBeUndefined();
    expect(c.jwtSecret).toBeUndefined();
    expect(c.adminToken).toBeUndefined();
    expect(c).toMatchObject({
      connectTimeoutMs: 10_000, // 2
      keepaliveMinS: 1, // 2.1
      keepaliveMaxS: 3600,
      frameTimeoutMs: 2_000, // 1.1
      maxMessageBytes: 16_384, // 1.2
      uplinkRatePerSec: 50, // 3.2
      uplinkBurst: 100,
      badFrameLimit: 16, // 1.1
      garbageByteLimit: 4_096,
      badInputWindowMs: 60_000,
      commandWindow: 8, // 4.1
      tokenTtlMs: 24 * 3_600_000, // 2.3
      retentionMs: 7 * 86_400_000,
      diskFloorBytes: 1024 ** 3,
      sensorReadLimit: 256, // 4.3
    });
  });

  it('defaults let 1,000 vehicles behind one address connect within a second', () => {
    const c = loadConfig();
    expect(c.connectBurst).toBeGreaterThanOrEqual(1_000);
    expect(c.maxConnections).toBeGreaterThanOrEqual(1_000);
    expect(c.authFailureLimit).toBeGreaterThanOrEqual(1);
  });
});

describe('loadConfig: precedence flags > env > file > defaults', () => {
  const json = (): string =>
    file(
      'json',
      JSON.stringify({
        keepaliveMaxS: 100,
        maxConnections: 10,
        connectTimeoutMs: 5000,
        http: '127.0.0.1:9001',
      }),
    );
  const yaml = (): string =>
    file(
      'yaml',
      'keepaliveMaxS: 100\nmaxConnections: 10\nconnectTimeoutMs: 5s\nhttp: "127.0.0.1:9001"\n',
    );

  it.each([
    ['JSON', json],
    ['YAML', yaml],
  ])('%s file: each level overrides the ones below it', (_name, make) => {
    const path = make();
    const c = loadConfig({
      flags: { config: path, keepaliveMaxS: '20' },
      env: { VMCP_KEEPALIVE_MAX_S: '50', VMCP_MAX_CONNECTIONS: '7' },
    });
    expect(c.keepaliveMaxS).toBe(20); // flag over env and file
    expect(c.maxConnections).toBe(7); // env over file
    expect(c.connectTimeoutMs).toBe(5000); // file over default
    expect(c.http).toEqual({ host: '127.0.0.1', port: 9001 });
    expect(c.frameTimeoutMs).toBe(2000); // default
  });

  it('names the config file by flag, VMCP_CONFIG or the configFile source; the flag wins', () => {
    const a = file('json', '{"maxConnections": 11}');
    const b = file('yaml', 'maxConnections: 22\n');
    expect(loadConfig({ configFile: a }).maxConnections).toBe(11);
    expect(loadConfig({ env: { VMCP_CONFIG: b } }).maxConnections).toBe(22);
    expect(loadConfig({ flags: { config: a }, env: { VMCP_CONFIG: b } }).maxConnections).toBe(11);
  });

  it('reads a .yml file as YAML and takes units in durations and sizes', () => {
    const path = file(
      'yml',
      'retentionMs: 2d\ndiskFloorBytes: 512MiB\nwriteBufferBytes: 64KiB\nredisUrl:\n  - redis://a:6379\n  - redis://b:6379\n',
    );
    const c = loadConfig({ configFile: path });
    expect(c.retentionMs).toBe(2 * 86_400_000);
    expect(c.diskFloorBytes).toBe(512 * 1024 ** 2);
    expect(c.writeBufferBytes).toBe(64 * 1024);
    expect(c.redisUrl).toEqual(['redis://a:6379', 'redis://b:6379']);
  });

  it('reads every kind from the environment', () => {
    const c = loadConfig({
      env: {
        VMCP_LISTEN: '0.0.0.0:7100',
        VMCP_DATA_DIR: '/var/lib/vmcp',
        VMCP_DRAIN_TIMEOUT_MS: '2s',
        VMCP_WRITE_BUFFER_BYTES: '8KiB',
        VMCP_REDIS_URL: 'redis://a:1, redis://b:2',
        VMCP_JWT_SECRET: 's',
        VMCP_ADMIN_TOKEN: 'a',
      },
    });
    expect(c.listen).toEqual({ host: '0.0.0.0', port: 7100 });
    expect(c.dataDir).toBe('/var/lib/vmcp');
    expect(c.drainTimeoutMs).toBe(2000);
    expect(c.writeBufferBytes).toBe(8192);
    expect(c.redisUrl).toEqual(['redis://a:1', 'redis://b:2']);
    expect(c.jwtSecret).toBe('s');
    expect(c.adminToken).toBe('a');
  });

  it('ignores an empty environment value', () => {
    expect(loadConfig({ env: { VMCP_MAX_CONNECTIONS: '' } }).maxConnections).toBe(
      DEFAULTS.maxConnections,
    );
  });
});

describe('loadConfig: unknown keys and bad values name the setting', () => {
  it('rejects an unknown key in a JSON file, naming the key', () => {
    const path = file('json', '{"maxConnections": 5, "maxConections": 5}');
    expect(configError({ configFile: path })).toMatch(/maxConections/);
  });

  it('rejects an unknown key in a YAML file, naming the key', () => {
    expect(configError({ configFile: file('yaml', 'frobnicate: 1\n') })).toMatch(/frobnicate/);
  });

  it('rejects an unknown flag, naming it as a flag', () => {
    expect(configError({ flags: { bogus: '1' } })).toMatch(/--bogus/);
  });

  it('rejects a file that is not an object, cannot be parsed or cannot be read', () => {
    expect(configError({ configFile: file('json', '[1, 2]') })).toMatch(/config/);
    expect(configError({ configFile: file('json', '{"a":') })).toMatch(/config/);
    expect(configError({ configFile: file('yaml', '- a\n- b\n') })).toMatch(/config/);
    expect(configError({ configFile: join(dir, 'missing.json') })).toMatch(/missing\.json/);
  });

  it.each([
    [{ maxConnections: 'abc' }, /maxConnections.*--max-connections/],
    [{ maxConnections: '5.5' }, /maxConnections/],
    [{ listen: 'nonsense' }, /listen/],
    [{ connectTimeoutMs: 'soon' }, /connectTimeoutMs/],
    [{ diskFloorBytes: '1PB' }, /diskFloorBytes/],
    [{ store: 'postgres' }, /store.*sqlite, redis/],
    [{ logLevel: 'loud' }, /logLevel/],
    [{ maxConnections: true }, /maxConnections/],
  ])('flag %j', (flags, re) => {
    expect(configError({ flags })).toMatch(re);
  });

  it('names the environment variable when the bad value came from it', () => {
    expect(configError({ env: { VMCP_MAX_CONNECTIONS: 'many' } })).toMatch(/VMCP_MAX_CONNECTIONS/);
  });

  it('names the file when the bad value came from it', () => {
    const path = file('json', '{"maxConnections": "many"}');
    const msg = configError({ configFile: path });
    expect(msg).toMatch(/maxConnections/);
    expect(msg).toContain(path);
  });

  it('does not echo a secret in its error', () => {
    const path = file('json', '{"jwtSecret": 987654321}');
    const msg = configError({ configFile: path });
    expect(msg).toMatch(/jwtSecret/);
    expect(msg).not.toContain('987654321');
  });
});

describe('loadConfig: ranges', () => {
  it.each([
    ['maxConnections', '0'],
    ['keepaliveMinS', '0'],
    ['keepaliveMaxS', '65536'],
    ['connectTimeoutMs', '50'],
    ['maxMessageBytes', '254'],
    ['writeBufferBytes', '1000'],
    ['sensorReadLimit', '257'],
    ['commandWindow', '0'],
    ['uplinkRatePerSec', '0'],
    ['badInputWindowMs', '999'],
  ])('%s = %s is out of range', (key, value) => {
    expect(configError({ flags: { [key]: value } })).toMatch(new RegExp(key));
  });

  it.each([
    ['maxConnections', '1', 1],
    ['keepaliveMaxS', '65535', 65_535],
    ['sensorReadLimit', '256', 256],
    ['writeBufferBytes', '1KiB', 1024],
    ['maxMessageBytes', '255', 255],
  ])('%s = %s is at the edge and accepted', (key, value, n) => {
    expect(
      (loadConfig({ flags: { [key]: value } }) as unknown as Record<string, unknown>)[key],
    ).toBe(n);
  });

  it('refuses keepaliveMinS above keepaliveMaxS, wherever each came from', () => {
    expect(
      configError({ flags: { keepaliveMinS: '100' }, env: { VMCP_KEEPALIVE_MAX_S: '50' } }),
    ).toMatch(/keepaliveMinS/);
  });
});

describe('loadConfig: cross-checks', () => {
  it('refuses a TLS listener without certificate, key and client CA', () => {
    expect(configError({ flags: { tlsListen: '127.0.0.1:0' } })).toMatch(/tlsListen/);
    expect(configError({ flags: { tlsListen: '127.0.0.1:0', tlsCert: 'c.pem' } })).toMatch(
      /tlsListen/,
    );
    expect(
      configError({ flags: { tlsListen: '127.0.0.1:0', tlsCert: 'c.pem', tlsKey: 'k.pem' } }),
    ).toMatch(/tlsListen/);
    const ok = loadConfig({
      flags: { tlsListen: '127.0.0.1:0', tlsCert: 'c.pem', tlsKey: 'k.pem', clientCa: 'ca.pem' },
    });
    expect(ok.tlsListen).toEqual({ host: '127.0.0.1', port: 0 });
  });

  it('refuses the Redis store without a URL', () => {
    expect(configError({ flags: { store: 'redis' } })).toMatch(/redisUrl/);
    expect(configError({ flags: { store: 'redis', redisUrl: ' , ' } })).toMatch(/redisUrl/);
    const ok = loadConfig({ flags: { store: 'redis' }, env: { VMCP_REDIS_URL: 'redis://r:6379' } });
    expect(ok.redisUrl).toEqual(['redis://r:6379']);
  });
});

describe('loadConfig: the result is frozen', () => {
  it('cannot be changed after loading', () => {
    const c = loadConfig({ flags: { maxConnections: '5' } });
    expect(Object.isFrozen(c)).toBe(true);
    expect(() => {
      (c as unknown as Record<string, unknown>).maxConnections = 6;
    }).toThrow(TypeError);
    expect(c.maxConnections).toBe(5);
    expect(Object.isFrozen(DEFAULTS)).toBe(true);
  });

  it('freezes its nested values too (listen, http, redisUrl), so no load can change another', () => {
    const c = loadConfig();
    // A default nested value handed out unfrozen is shared with DEFAULTS and every later load:
    // `c.redisUrl.push(url)` would make `--store redis` pass the "needs a URL" check forever after.
    expect({
      listen: Object.isFrozen(c.listen),
      http: Object.isFrozen(c.http),
      redisUrl: Object.isFrozen(c.redisUrl),
    }).toEqual({ listen: true, http: true, redisUrl: true });
  });
});

describe('parseFlags: repeated flags', () => {
  it('accumulates a repeated flag into a list (--redis-url a --redis-url b)', () => {
    const { flags } = parseFlags([
      '--store',
      'redis',
      '--redis-url',
      'redis://a:1',
      '--redis-url=redis://b:2',
    ]);
    expect(flags.redisUrl).toBe('redis://a:1,redis://b:2');
    expect(loadConfig({ flags }).redisUrl).toEqual(['redis://a:1', 'redis://b:2']);
  });
});
