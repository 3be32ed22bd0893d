// Unit tests of src/auth: scopes, token verification and issuing (PROTOCOL.md 2.3), registration secrets.
import { createHmac, generateKeyPairSync } from 'node:crypto';
import {
  SignJWT,
  decodeJwt,
  errors,
  exportSPKI,
  generateKeyPair,
  jwtVerify,
  type CryptoKey,
} from 'jose';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  ALL_SCOPES,
  Scope,
  TokenService,
  hashSecret,
  isKnownScope,
  verifySecret,
  type VerifyResult,
} from '../../src/auth/index.js';
import { isVmcpError } from '../../src/errors.js';

const SECRET = 'test-secret-0123456789-abcdefghijklmnop';
/** A fixed "now" (2023-11-14T22:13:20Z) so nothing depends on the wall clock. */
const NOW_MS = 1_700_000_000_000;
const NOW = NOW_MS / 1000;

function b64url(v: string | Uint8Array): string {
  return Buffer.from(v).toString('base64url');
}

/** A hand-made HS256 token: any header, any payload (wrong types included), real signature. */
function hs256(
  payload: Record<string, unknown>,
  opts: { secret?: string; header?: Record<string, unknown> } = {},
): string {
  const header = opts.header ?? { alg: 'HS256', typ: 'JWT' };
  const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(payload))}`;
  const sig = createHmac('sha256', opts.secret ?? SECRET)
    .update(input)
    .digest('base64url');
  return `${input}.${sig}`;
}

function failureOf(r: VerifyResult): string {
  return r.ok ? 'ok' : r.failure;
}

function okToken(r: VerifyResult) {
  if (!r.ok) throw new Error(`expected ok, got ${r.failure}: ${r.detail}`);
  return r.token;
}

async function expectConfigError(p: Promise<unknown>): Promise<void> {
  const err: unknown = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(isVmcpError(err, 'VMCP_ERR_CONFIG'), String(err)).toBe(true);
}

describe('scopes', () => {
  it('lists the three protocol scopes', () => {
    expect([...ALL_SCOPES].sort()).toEqual([
      'command:receive',
      'event:publish',
      'telemetry:publish',
    ]);
    expect(Scope.TELEMETRY_PUBLISH).toBe('telemetry:publish');
    expect(Scope.EVENT_PUBLISH).toBe('event:publish');
    expect(Scope.COMMAND_RECEIVE).toBe('command:receive');
  });

  it('knows only those', () => {
    for (const s of ALL_SCOPES) expect(isKnownScope(s)).toBe(true);
    expect(isKnownScope('telemetry:Publish')).toBe(false);
    expect(isKnownScope('admin')).toBe(false);
    expect(isKnownScope('')).toBe(false);
  });
});

describe('TokenService.create', () => {
  it('refuses a configuration without any key', async () => {
    await expectConfigError(TokenService.create({}));
    await expectConfigError(TokenService.create({ hs256Secret: '', publicKeysPem: '  \n' }));
  });

  it('refuses PEM text it cannot use', async () => {
    await expectConfigError(TokenService.create({ publicKeysPem: 'not a pem' }));
    await expectConfigError(
      TokenService.create({
        publicKeysPem: '-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n',
      }),
    );
    const rsa = generateKeyPairSync('rsa', { modulusLength: 1024 });
    await expectConfigError(
      TokenService.create({
        publicKeysPem: rsa.publicKey.export({ type: 'spki', format: 'pem' }).toString(),
      }),
    );
    const p384 = generateKeyPairSync('ec', { namedCurve: 'P-384' });
    await expectConfigError(
      TokenService.create({
        publicKeysPem: p384.publicKey.export({ type: 'spki', format: 'pem' }).toString(),
      }),
    );
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const good = ec.publicKey.export({ type: 'spki', format: 'pem' }).toString();
    // Truncated: the END line is missing, so text remains outside any block.
    await expectConfigError(
      TokenService.create({ publicKeysPem: `${good}\n${good.slice(0, 60)}` }),
    );
  });

  it('refuses a negative leeway', async () => {
    await expectConfigError(TokenService.create({ hs256Secret: SECRET, leewaySec: -1 }));
  });

  it('can sign only with an HS256 secret', async () => {
    const { publicKey } = await generateKeyPair('ES256', { extractable: true });
    const pem = await exportSPKI(publicKey);
    expect((await TokenService.create({ hs256Secret: SECRET })).canSign).toBe(true);
    const verifyOnly = await TokenService.create({ publicKeysPem: pem });
    expect(verifyOnly.canSign).toBe(false);
    await expectConfigError(
      verifyOnly.sign({ subject: 'V1', scopes: [], ttlMs: 60_000, nowMs: NOW_MS }),
    );
  });
});

describe('TokenService.verify: HS256', () => {
  let svc: TokenService;
  beforeAll(async () => {
    svc = await TokenService.create({ hs256Secret: SECRET });
  });

  it('accepts a valid token and reports subject, scopes and expiry', async () => {
    const t = okToken(
      await svc.verify(
        hs256({ sub: 'WVW123', scope: 'telemetry:publish event:publish', exp: NOW + 3600 }),
        NOW_MS,
      ),
    );
    expect(t).toEqual({
      subject: 'WVW123',
      scopes: ['telemetry:publish', 'event:publish'],
      expiresAtMs: (NOW + 3600) * 1000,
    });
  });

  it('refuses a token signed with another secret', async () => {
    const r = await svc.verify(hs256({ sub: 'V', exp: NOW + 60 }, { secret: 'other' }), NOW_MS);
    expect(failureOf(r)).toBe('signature');
  });

  it('refuses a tampered payload', async () => {
    const good = hs256({ sub: 'V1', exp: NOW + 60 });
    const [h, , s] = good.split('.');
    const forged = `${h}.${b64url(JSON.stringify({ sub: 'V2', exp: NOW + 60 }))}.${s}`;
    expect(failureOf(await svc.verify(forged, NOW_MS))).toBe('signature');
  });

  it('always refuses alg none', async () => {
    const payload = b64url(JSON.stringify({ sub: 'V', exp: NOW + 60 }));
    for (const alg of ['none', 'None', 'NONE']) {
      const header = b64url(JSON.stringify({ alg, typ: 'JWT' }));
      expect(failureOf(await svc.verify(`${header}.${payload}.`, NOW_MS))).toBe('algorithm');
    }
    // Even with a "signature" appended.
    const header = b64url(JSON.stringify({ alg: 'none' }));
    expect(failureOf(await svc.verify(`${header}.${payload}.${b64url('x')}`, NOW_MS))).toBe(
      'algorithm',
    );
  });

  it('refuses algorithms without a configured key', async () => {
    const payload = b64url(JSON.stringify({ sub: 'V', exp: NOW + 60 }));
    const hs512 = `${b64url(JSON.stringify({ alg: 'HS512' }))}.${payload}`;
    const sig = createHmac('sha512', SECRET).update(hs512).digest('base64url');
    expect(failureOf(await svc.verify(`${hs512}.${sig}`, NOW_MS))).toBe('algorithm');

    const { privateKey } = await generateKeyPair('ES256');
    const es = await new SignJWT({ sub: 'V' })
      .setProtectedHeader({ alg: 'ES256' })
      .setExpirationTime(NOW + 60)
      .sign(privateKey);
    expect(failureOf(await svc.verify(es, NOW_MS))).toBe('algorithm');

    const noAlg = hs256({ sub: 'V', exp: NOW + 60 }, { header: { typ: 'JWT' } });
    expect(failureOf(await svc.verify(noAlg, NOW_MS))).toBe('algorithm');
  });

  it('calls anything that is not a JWT malformed', async () => {
    const good = hs256({ sub: 'V', exp: NOW + 60 });
    const [h, p, s] = good.split('.') as [string, string, string];
    const cases = [
      '',
      'abc',
      'a.b',
      'a.b.c',
      `${good}.x`,
      `${b64url('{not json')}.${p}.${s}`,
      `${b64url('"a string"')}.${p}.${s}`,
      `${h}.${p}.%%%`,
      ` ${good}`,
    ];
    for (const c of cases) expect(failureOf(await svc.verify(c, NOW_MS)), c).toBe('malformed');
    // A correctly signed payload that is not a JSON object.
    const input = `${h}.${b64url('[1,2]')}`;
    const sig = createHmac('sha256', SECRET).update(input).digest('base64url');
    expect(failureOf(await svc.verify(`${input}.${sig}`, NOW_MS))).toBe('malformed');
  });

  it('requires exp as a NumericDate', async () => {
    expect(failureOf(await svc.verify(hs256({ sub: 'V' }), NOW_MS))).toBe('claims');
    for (const exp of [String(NOW + 60), null, [NOW + 60], true]) {
      const r = await svc.verify(hs256({ sub: 'V', exp }), NOW_MS);
      expect(failureOf(r), JSON.stringify(exp)).toBe('claims');
    }
  });

  it('allows 30 s of leeway on exp', async () => {
    const at = async (exp: number) => failureOf(await svc.verify(hs256({ sub: 'V', exp }), NOW_MS));
    expect(await at(NOW + 1)).toBe('ok');
    expect(await at(NOW - 29)).toBe('ok');
    expect(await at(NOW - 31)).toBe('expired');
    expect(await at(NOW - 3600)).toBe('expired');
  });

  it('honours nbf with 30 s of leeway', async () => {
    const at = async (nbf: unknown) =>
      failureOf(await svc.verify(hs256({ sub: 'V', exp: NOW + 3600, nbf }), NOW_MS));
    expect(await at(NOW - 10)).toBe('ok');
    expect(await at(NOW + 29)).toBe('ok');
    expect(await at(NOW + 31)).toBe('not_yet_valid');
    expect(await at(String(NOW))).toBe('claims');
  });

  it('judges time by nowMs, not the wall clock', async () => {
    // Expired long ago in wall-clock terms, valid at the given instant.
    const old = hs256({ sub: 'V', exp: 1_000_000_000 + 60 });
    expect(failureOf(await svc.verify(old, 1_000_000_000_000))).toBe('ok');
    expect(failureOf(await svc.verify(old, NOW_MS))).toBe('expired');
    // Not yet valid at the given instant although long past in wall-clock terms.
    const early = hs256({ sub: 'V', nbf: 1_000_000_000, exp: 1_000_000_000 + 3600 });
    expect(failureOf(await svc.verify(early, 999_000_000_000))).toBe('not_yet_valid');
  });

  it('applies a configured leeway', async () => {
    const strict = await TokenService.create({ hs256Secret: SECRET, leewaySec: 0 });
    expect(failureOf(await strict.verify(hs256({ sub: 'V', exp: NOW - 1 }), NOW_MS))).toBe(
      'expired',
    );
    expect(failureOf(await strict.verify(hs256({ sub: 'V', exp: NOW + 1 }), NOW_MS))).toBe('ok');
  });

  it('takes the subject from sub or device_id', async () => {
    const subjectOf = async (claims: Record<string, unknown>) => {
      const r = await svc.verify(hs256({ ...claims, exp: NOW + 60 }), NOW_MS);
      return r.ok ? r.token.subject : `!${r.failure}`;
    };
    expect(await subjectOf({ sub: 'A1' })).toBe('A1');
    expect(await subjectOf({ device_id: 'B2' })).toBe('B2');
    expect(await subjectOf({ sub: 'C3', device_id: 'C3' })).toBe('C3');
    expect(await subjectOf({ sub: 'C3', device_id: 'D4' })).toBe('!claims');
    expect(await subjectOf({})).toBe('!claims');
    expect(await subjectOf({ sub: 42 })).toBe('!claims');
    expect(await subjectOf({ device_id: ['B2'] })).toBe('!claims');
    expect(await subjectOf({ sub: 'A1', device_id: 7 })).toBe('!claims');
    expect(await subjectOf({ sub: null })).toBe('!claims');
    expect(await subjectOf({ sub: '' })).toBe('!claims');
  });

  it('parses scope as a space-separated list', async () => {
    const scopesOf = async (claims: Record<string, unknown>) => {
      const r = await svc.verify(hs256({ sub: 'V', exp: NOW + 60, ...claims }), NOW_MS);
      return r.ok ? r.token.scopes : `!${r.failure}`;
    };
    expect(await scopesOf({})).toEqual([]);
    expect(await scopesOf({ scope: '' })).toEqual([]);
    expect(await scopesOf({ scope: 'command:receive' })).toEqual(['command:receive']);
    expect(await scopesOf({ scope: '  telemetry:publish   event:publish ' })).toEqual([
      'telemetry:publish',
      'event:publish',
    ]);
    expect(await scopesOf({ scope: 'event:publish event:publish' })).toEqual(['event:publish']);
    // Unknown scopes are carried, not refused; they grant nothing.
    expect(await scopesOf({ scope: 'admin telemetry:publish' })).toEqual([
      'admin',
      'telemetry:publish',
    ]);
    expect(await scopesOf({ scope: ['telemetry:publish'] })).toBe('!claims');
    expect(await scopesOf({ scope: 1 })).toBe('!claims');
  });
});

describe('TokenService.verify: HS256 with node:crypto agrees with jose', () => {
  // verify() checks HS256 signatures itself (synchronous HMAC) and leaves the claims to jose. Every
  // token of this matrix must get the answer jose's own jwtVerify gives, mapped as verify() maps it.
  async function joseAnswer(token: string): Promise<string> {
    try {
      const { payload } = await jwtVerify(token, new TextEncoder().encode(SECRET), {
        algorithms: ['HS256'],
        currentDate: new Date(NOW_MS),
        clockTolerance: 30,
        requiredClaims: ['exp'],
      });
      return typeof payload.sub === 'string' && payload.sub !== '' ? 'ok' : 'claims';
    } catch (err) {
      if (err instanceof errors.JWSSignatureVerificationFailed) return 'signature';
      if (err instanceof errors.JWTExpired) return 'expired';
      if (err instanceof errors.JWTClaimValidationFailed)
        return err.claim === 'nbf' && err.reason === 'check_failed' ? 'not_yet_valid' : 'claims';
      return 'malformed';
    }
  }

  const headers: Record<string, unknown>[] = [
    { alg: 'HS256', typ: 'JWT' },
    { alg: 'HS256' },
    { alg: 'HS256', crit: ['exp'] },
    { alg: 'HS256', b64: false, crit: ['b64'] },
  ];
  const payloads: (Record<string, unknown> | string)[] = [
    { sub: 'V1', exp: NOW + 3600 },
    { sub: 'V1', exp: NOW - 31 },
    { sub: 'V1', exp: NOW - 29 },
    { sub: 'V1', exp: NOW + 3600, nbf: NOW + 31 },
    { sub: 'V1', exp: NOW + 3600, nbf: NOW + 29 },
    { sub: 'V1', exp: NOW + 3600, iat: 'yesterday' },
    { sub: 'V1' },
    { sub: 'V1', exp: String(NOW + 3600) },
    { sub: 'V1', exp: NOW + 3600.5 },
    '[1,2]',
    '"just a string"',
    '{"sub":"V1","exp":', // not JSON
  ];
  const signatures: ((input: string) => string)[] = [
    (input) => createHmac('sha256', SECRET).update(input).digest('base64url'),
    (input) => createHmac('sha256', 'another secret').update(input).digest('base64url'),
    (input) =>
      createHmac('sha256', SECRET).update(input).digest().subarray(0, 31).toString('base64url'),
    () => '',
    (input) => {
      const mac = createHmac('sha256', SECRET).update(input).digest();
      mac[7]! ^= 1;
      return mac.toString('base64url');
    },
  ];

  it('gives jose’s answer for every header × payload × signature', async () => {
    const svc = await TokenService.create({ hs256Secret: SECRET });
    const answers = new Set<string>();
    for (const header of headers)
      for (const payload of payloads)
        for (const sign of signatures) {
          const body = typeof payload === 'string' ? payload : JSON.stringify(payload);
          const input = `${b64url(JSON.stringify(header))}.${b64url(body)}`;
          const token = `${input}.${sign(input)}`;
          const expected = await joseAnswer(token);
          answers.add(expected);
          expect([
            JSON.stringify(header),
            body,
            failureOf(await svc.verify(token, NOW_MS)),
          ]).toEqual([JSON.stringify(header), body, expected]);
        }
    // The matrix reaches every answer jose can give here.
    expect([...answers].sort()).toEqual(
      ['claims', 'expired', 'malformed', 'not_yet_valid', 'ok', 'signature'].sort(),
    );
  });
});

describe('TokenService.verify: ES256 and EdDSA', () => {
  let es1: { publicKey: CryptoKey; privateKey: CryptoKey };
  let es2: { publicKey: CryptoKey; privateKey: CryptoKey };
  let ed: { publicKey: CryptoKey; privateKey: CryptoKey };
  let svc: TokenService;

  const sign = (alg: string, key: CryptoKey, claims: Record<string, unknown> = {}) =>
    new SignJWT({ sub: 'VIN-PK', scope: 'telemetry:publish', exp: NOW + 600, ...claims })
      .setProtectedHeader({ alg })
      .sign(key);

  beforeAll(async () => {
    es1 = await generateKeyPair('ES256', { extractable: true });
    es2 = await generateKeyPair('ES256', { extractable: true });
    ed = await generateKeyPair('EdDSA', { extractable: true });
    const pems = [await exportSPKI(es1.publicKey), await exportSPKI(es2.publicKey)];
    pems.push(await exportSPKI(ed.publicKey));
    svc = await TokenService.create({ publicKeysPem: pems.join('\n') });
  });

  it('accepts ES256 tokens from any configured P-256 key', async () => {
    for (const k of [es1, es2]) {
      const t = okToken(await svc.verify(await sign('ES256', k.privateKey), NOW_MS));
      expect(t).toEqual({
        subject: 'VIN-PK',
        scopes: ['telemetry:publish'],
        expiresAtMs: (NOW + 600) * 1000,
      });
    }
  });

  it('accepts EdDSA tokens', async () => {
    const t = okToken(await svc.verify(await sign('EdDSA', ed.privateKey), NOW_MS));
    expect(t.subject).toBe('VIN-PK');
  });

  it('refuses a token from an unconfigured key', async () => {
    const stranger = await generateKeyPair('ES256');
    expect(failureOf(await svc.verify(await sign('ES256', stranger.privateKey), NOW_MS))).toBe(
      'signature',
    );
    const edStranger = await generateKeyPair('EdDSA');
    expect(failureOf(await svc.verify(await sign('EdDSA', edStranger.privateKey), NOW_MS))).toBe(
      'signature',
    );
  });

  it('checks claims after the signature', async () => {
    const expired = await sign('ES256', es2.privateKey, { exp: NOW - 120 });
    expect(failureOf(await svc.verify(expired, NOW_MS))).toBe('expired');
    const both = await sign('EdDSA', ed.privateKey, { device_id: 'OTHER' });
    expect(failureOf(await svc.verify(both, NOW_MS))).toBe('claims');
  });

  it('refuses HS256 when only public keys are configured (no key confusion)', async () => {
    // The classic confusion attack: HMAC keyed with the public key's PEM text.
    const pem = await exportSPKI(es1.publicKey);
    const forged = hs256({ sub: 'VIN-PK', exp: NOW + 60 }, { secret: pem });
    expect(failureOf(await svc.verify(forged, NOW_MS))).toBe('algorithm');
  });

  it('does not verify an ES256 token with an EdDSA-only configuration', async () => {
    const edOnly = await TokenService.create({ publicKeysPem: await exportSPKI(ed.publicKey) });
    expect(failureOf(await edOnly.verify(await sign('ES256', es1.privateKey), NOW_MS))).toBe(
      'algorithm',
    );
  });

  it('verifies HS256 and public-key tokens side by side', async () => {
    const both = await TokenService.create({
      hs256Secret: SECRET,
      publicKeysPem: await exportSPKI(es1.publicKey),
    });
    expect(failureOf(await both.verify(hs256({ sub: 'V', exp: NOW + 60 }), NOW_MS))).toBe('ok');
    expect(failureOf(await both.verify(await sign('ES256', es1.privateKey), NOW_MS))).toBe('ok');
  });
});

describe('TokenService.sign', () => {
  let svc: TokenService;
  beforeAll(async () => {
    svc = await TokenService.create({ hs256Secret: SECRET, issuer: 'vmcp-test' });
  });

  it('issues an HS256 token that verifies back', async () => {
    const ttlMs = 24 * 3600 * 1000;
    const nowMs = NOW_MS + 789;
    const jwt = await svc.sign({
      subject: 'WVWZZZ1JZXW000001',
      scopes: [Scope.TELEMETRY_PUBLISH, Scope.COMMAND_RECEIVE],
      ttlMs,
      nowMs,
    });
    const t = okToken(await svc.verify(jwt, nowMs));
    expect(t.subject).toBe('WVWZZZ1JZXW000001');
    expect(t.scopes).toEqual(['telemetry:publish', 'command:receive']);
    expect(t.expiresAtMs).toBe(Math.floor((nowMs + ttlMs) / 1000) * 1000);

    const claims = decodeJwt(jwt);
    expect(claims).toEqual({
      sub: 'WVWZZZ1JZXW000001',
      scope: 'telemetry:publish command:receive',
      iat: NOW,
      exp: NOW + 24 * 3600,
      iss: 'vmcp-test',
    });
    expect(JSON.parse(Buffer.from(jwt.split('.')[0]!, 'base64url').toString())).toMatchObject({
      alg: 'HS256',
    });
  });

  it('issues tokens that expire like any other', async () => {
    const jwt = await svc.sign({ subject: 'V', scopes: [], ttlMs: 60_000, nowMs: NOW_MS });
    expect(okToken(await svc.verify(jwt, NOW_MS)).scopes).toEqual([]);
    expect(failureOf(await svc.verify(jwt, NOW_MS + 60_000 + 29_000))).toBe('ok');
    expect(failureOf(await svc.verify(jwt, NOW_MS + 60_000 + 31_000))).toBe('expired');
  });

  it('is verified by another service with the same secret only', async () => {
    const jwt = await svc.sign({ subject: 'V', scopes: [], ttlMs: 60_000, nowMs: NOW_MS });
    const same = await TokenService.create({ hs256Secret: SECRET });
    const other = await TokenService.create({ hs256Secret: `${SECRET}x` });
    expect(failureOf(await same.verify(jwt, NOW_MS))).toBe('ok');
    expect(failureOf(await other.verify(jwt, NOW_MS))).toBe('signature');
  });

  it('refuses scopes that would not read back, and bad lifetimes', async () => {
    const bad = [
      { subject: 'V', scopes: ['a b'], ttlMs: 1000, nowMs: NOW_MS },
      { subject: 'V', scopes: [''], ttlMs: 1000, nowMs: NOW_MS },
      { subject: '', scopes: [], ttlMs: 1000, nowMs: NOW_MS },
      { subject: 'V', scopes: [], ttlMs: 0, nowMs: NOW_MS },
      { subject: 'V', scopes: [], ttlMs: Number.NaN, nowMs: NOW_MS },
    ];
    for (const c of bad) {
      const err: unknown = await svc.sign(c).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(isVmcpError(err), JSON.stringify(c)).toBe(true);
    }
  });
});

describe('registration secrets', () => {
  it('hashes with scrypt and a random salt', async () => {
    const a = await hashSecret('s3cret');
    const b = await hashSecret('s3cret');
    expect(a).toMatch(/^scrypt\$16384\$8\$1\$[A-Za-z0-9+/]{22}==\$[A-Za-z0-9+/]{43}=$/);
    expect(a).not.toBe(b);
    expect(Buffer.from(a.split('$')[4]!, 'base64')).toHaveLength(16);
    expect(Buffer.from(a.split('$')[5]!, 'base64')).toHaveLength(32);
  });

  it('verifies the right secret and refuses a wrong one', async () => {
    const h = await hashSecret('correct horse');
    expect(await verifySecret('correct horse', h)).toBe(true);
    expect(await verifySecret('correct hors', h)).toBe(false);
    expect(await verifySecret('correct horse ', h)).toBe(false);
    expect(await verifySecret('', h)).toBe(false);
  });

  it('treats a string as its UTF-8 bytes', async () => {
    const h = await hashSecret(new TextEncoder().encode('clé-ü'));
    expect(await verifySecret('clé-ü', h)).toBe(true);
    expect(await verifySecret(Buffer.from('clé-ü', 'utf8'), h)).toBe(true);
    expect(await verifySecret(Buffer.from('clé-ü', 'latin1'), h)).toBe(false);
    const bin = new Uint8Array([0, 255, 1, 254]);
    expect(await verifySecret(bin, await hashSecret(bin))).toBe(true);
  });

  it('returns false, never throws, on malformed hashes', async () => {
    const h = await hashSecret('x');
    const [, , , , salt, hash] = h.split('$') as [string, string, string, string, string, string];
    const flipped = Buffer.from(hash, 'base64');
    flipped[0]! ^= 1;
    const cases = [
      '',
      'x',
      '$2b$10$abcdefghijklmnopqrstuv',
      h.replace(/^scrypt/, 'bcrypt'),
      `${h}$extra`,
      h.split('$').slice(0, 5).join('$'),
      `scrypt$16000$8$1$${salt}$${hash}`, // N not a power of two
      `scrypt$1$8$1$${salt}$${hash}`,
      `scrypt$1073741824$8$1$${salt}$${hash}`, // N far too large to try
      `scrypt$16384$0$1$${salt}$${hash}`,
      `scrypt$16384$8$1000$${salt}$${hash}`,
      `scrypt$16384$8$1$!!!$${hash}`,
      `scrypt$16384$8$1$${salt}$`,
      `scrypt$16384$8$1$$${hash}`,
      `scrypt$16384$8$1$${salt}$${hash.slice(0, 10)}`,
      `scrypt$0x4000$8$1$${salt}$${hash}`,
      `scrypt$16384$8$1$${salt}$${flipped.toString('base64')}`,
    ];
    for (const c of cases) expect(await verifySecret('x', c), c).toBe(false);
    // Same parameters spelled correctly still work.
    expect(await verifySecret('x', `scrypt$16384$8$1$${salt}$${hash}`)).toBe(true);
  });
});
