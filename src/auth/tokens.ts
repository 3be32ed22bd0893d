// Vehicle JWTs (PROTOCOL.md 2.3): verification against configured keys, and HS256 issuing after registration.
import {
  createHmac,
  createPublicKey,
  timingSafeEqual,
  webcrypto,
  type KeyObject,
} from 'node:crypto';
import {
  SignJWT,
  UnsecuredJWT,
  decodeProtectedHeader,
  errors,
  jwtVerify,
  type JWTPayload,
} from 'jose';
import { VmcpError } from '../errors.js';

export interface TokenServiceOptions {
  /** VMCP_JWT_SECRET: verify HS256 and sign issued tokens. */
  hs256Secret?: string;
  /** VMCP_JWT_PUBLIC_KEYS: one or more PEM public keys (EC P-256 → ES256, Ed25519 → EdDSA), concatenated. */
  publicKeysPem?: string;
  /** Clock-skew allowance on `exp` and `nbf`, seconds (default 30, PROTOCOL.md 2.3). */
  leewaySec?: number;
  /** Optional `iss` put in issued tokens (not required when verifying). */
  issuer?: string;
}

/** Why a token was refused; every one of them is CONNACK BAD_CREDENTIALS (2.2). */
export type TokenFailure =
  'malformed' | 'algorithm' | 'signature' | 'claims' | 'expired' | 'not_yet_valid';

export interface VerifiedToken {
  /** `sub`, or `device_id` when `sub` is absent. The caller compares it to VEHICLE_ID (FORBIDDEN). */
  subject: string;
  /** `scope` split on spaces, duplicates dropped; unknown scopes are kept and grant nothing. */
  scopes: string[];
  /** `exp` in ms since the epoch, for DISCONNECT AUTH_EXPIRED. */
  expiresAtMs: number;
}

export type VerifyResult =
  { ok: true; token: VerifiedToken } | { ok: false; failure: TokenFailure; detail: string };

/** 30 s of clock skew on `exp` and `nbf` (PROTOCOL.md 2.3). */
const DEFAULT_LEEWAY_SEC = 30;

type AsymmetricAlg = 'ES256' | 'EdDSA';

/** Three base64url segments (RFC 7515 7.1): no padding, no whitespace. The payload may not be empty. */
const COMPACT_JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;

/** `{"alg":"none"}`: the header under which the HS256 path hands a payload to jose's claim checks. */
const NONE_HEADER = Buffer.from('{"alg":"none"}').toString('base64url');

const PEM_BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----[\s\S]*?-----END \1-----/g;

function configError(detail: string, cause?: unknown): VmcpError {
  return new VmcpError('VMCP_ERR_CONFIG', detail, { field: 'jwtPublicKeys', cause });
}

/** The algorithm a public key verifies: EC P-256 → ES256, Ed25519 → EdDSA; nothing else is allowed. */
function algorithmOf(key: KeyObject): AsymmetricAlg | undefined {
  if (key.asymmetricKeyType === 'ed25519') return 'EdDSA';
  if (key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'prime256v1') {
    return 'ES256';
  }
  return undefined;
}

function parsePublicKeys(pem: string): Map<AsymmetricAlg, KeyObject[]> {
  const keys = new Map<AsymmetricAlg, KeyObject[]>();
  const blocks = pem.match(PEM_BLOCK) ?? [];
  // Anything besides whitespace outside the blocks is a truncated or mangled value: say so now.
  if (pem.replace(PEM_BLOCK, '').trim() !== '') {
    throw configError('VMCP_JWT_PUBLIC_KEYS has text outside PEM blocks');
  }
  if (blocks.length === 0) throw configError('VMCP_JWT_PUBLIC_KEYS holds no PEM block');
  blocks.forEach((block, i) => {
    let key: KeyObject;
    try {
      key = createPublicKey(block);
    } catch (cause) {
      throw configError(`VMCP_JWT_PUBLIC_KEYS: PEM block ${i + 1} is not a public key`, cause);
    }
    const alg = algorithmOf(key);
    if (alg === undefined) {
      throw configError(
        `VMCP_JWT_PUBLIC_KEYS: PEM block ${i + 1} is ${key.asymmetricKeyType ?? 'unknown'}; only EC P-256 and Ed25519 keys are supported`,
      );
    }
    const list = keys.get(alg) ?? [];
    list.push(key);
    keys.set(alg, list);
  });
  return keys;
}

function failure(failure: TokenFailure, detail: string): VerifyResult {
  return { ok: false, failure, detail };
}

/** Maps a jose error to a failure; `undefined` for a bad signature (the next key may still match). */
function classify(err: unknown): VerifyResult | undefined {
  if (err instanceof errors.JWSSignatureVerificationFailed) return undefined;
  if (err instanceof errors.JWTExpired) return failure('expired', err.message);
  if (err instanceof errors.JWTClaimValidationFailed) {
    return err.claim === 'nbf' && err.reason === 'check_failed'
      ? failure('not_yet_valid', err.message)
      : failure('claims', err.message);
  }
  if (err instanceof errors.JOSEAlgNotAllowed) return failure('algorithm', err.message);
  // JWSInvalid, JWTInvalid (payload not a JSON object), unsupported `crit`, bad base64url…
  return failure('malformed', err instanceof Error ? err.message : 'unreadable token');
}

/** The claim rules jose does not know (PROTOCOL.md 2.3): subject, `scope`. */
function readClaims(payload: JWTPayload): VerifyResult {
  const { sub } = payload;
  const deviceId: unknown = payload['device_id'];
  if (sub !== undefined && typeof sub !== 'string')
    return failure('claims', '"sub" is not a string');
  if (deviceId !== undefined && typeof deviceId !== 'string') {
    return failure('claims', '"device_id" is not a string');
  }
  if (sub !== undefined && deviceId !== undefined && sub !== deviceId) {
    return failure('claims', '"sub" and "device_id" differ');
  }
  const subject = sub ?? deviceId;
  if (subject === undefined) return failure('claims', 'neither "sub" nor "device_id"');
  if (subject === '') return failure('claims', 'empty subject');

  const scope: unknown = payload['scope'];
  if (scope !== undefined && typeof scope !== 'string') {
    return failure('claims', '"scope" is not a space-separated string');
  }
  const scopes = scope === undefined ? [] : [...new Set(scope.split(' ').filter((s) => s !== ''))];

  // jose has checked `exp` is a number (requiredClaims) and not past.
  const expiresAtMs = (payload.exp as number) * 1000;
  return { ok: true, token: { subject, scopes, expiresAtMs } };
}

/** Verifies vehicle tokens against the configured keys and, with an HS256 secret, signs new ones. */
export class TokenService {
  /** True when an HS256 secret is configured, so registration can issue tokens. */
  readonly canSign: boolean;
  readonly #hmacKey: webcrypto.CryptoKey | undefined;
  /** The HS256 secret's bytes, for the synchronous verification (#verifyHs256). */
  readonly #hmacSecret: Uint8Array | undefined;
  readonly #publicKeys: ReadonlyMap<AsymmetricAlg, readonly KeyObject[]>;
  readonly #leewaySec: number;
  readonly #issuer: string | undefined;

  private constructor(
    hmacKey: webcrypto.CryptoKey | undefined,
    hmacSecret: Uint8Array | undefined,
    publicKeys: ReadonlyMap<AsymmetricAlg, readonly KeyObject[]>,
    leewaySec: number,
    issuer: string | undefined,
  ) {
    this.#hmacKey = hmacKey;
    this.#hmacSecret = hmacSecret;
    this.#publicKeys = publicKeys;
    this.#leewaySec = leewaySec;
    this.#issuer = issuer;
    this.canSign = hmacKey !== undefined;
  }

  /** Throws VmcpError VMCP_ERR_CONFIG when no key is configured at all or a PEM cannot be used. */
  static async create(opts: TokenServiceOptions): Promise<TokenService> {
    const leewaySec = opts.leewaySec ?? DEFAULT_LEEWAY_SEC;
    if (!Number.isFinite(leewaySec) || leewaySec < 0) {
      throw new VmcpError(
        'VMCP_ERR_CONFIG',
        'token leeway must be a non-negative number of seconds',
        {
          field: 'leewaySec',
        },
      );
    }
    // An empty value (an env var set to "") counts as not configured, never as an empty HMAC key.
    const secret =
      opts.hs256Secret === undefined || opts.hs256Secret === '' ? undefined : opts.hs256Secret;
    const pem = opts.publicKeysPem?.trim() ? opts.publicKeysPem : undefined;
    if (secret === undefined && pem === undefined) {
      throw new VmcpError(
        'VMCP_ERR_CONFIG',
        'no token key: set VMCP_JWT_SECRET and/or VMCP_JWT_PUBLIC_KEYS',
        { field: 'jwtSecret' },
      );
    }
    const publicKeys =
      pem === undefined ? new Map<AsymmetricAlg, KeyObject[]>() : parsePublicKeys(pem);
    const hmacSecret = secret === undefined ? undefined : new TextEncoder().encode(secret);
    // Imported once (for signing); jose would otherwise import the raw bytes on every call.
    const hmacKey =
      hmacSecret === undefined
        ? undefined
        : await webcrypto.subtle.importKey(
            'raw',
            hmacSecret,
            { name: 'HMAC', hash: 'SHA-256' },
            false,
            ['sign', 'verify'],
          );
    return new TokenService(hmacKey, hmacSecret, publicKeys, leewaySec, opts.issuer);
  }

  /** Checks a compact JWT at `nowMs` (PROTOCOL.md 2.3). Never throws. */
  async verify(token: string, nowMs: number): Promise<VerifyResult> {
    if (typeof token !== 'string' || !COMPACT_JWS.test(token)) {
      return failure('malformed', 'not a JWT compact serialization');
    }
    let header: ReturnType<typeof decodeProtectedHeader>;
    try {
      header = decodeProtectedHeader(token);
    } catch (err) {
      return failure('malformed', err instanceof Error ? err.message : 'unreadable header');
    }
    const alg: unknown = header.alg;
    // `alg: none` is always refused (2.3); beyond that only algorithms with a configured key.
    if (typeof alg !== 'string') return failure('algorithm', 'no "alg" header');
    if (alg.toLowerCase() === 'none') return failure('algorithm', 'unsecured tokens are refused');
    let keys: readonly (webcrypto.CryptoKey | KeyObject)[];
    if (alg === 'HS256' && this.#hmacKey !== undefined) {
      keys = [this.#hmacKey];
    } else if (alg === 'ES256' || alg === 'EdDSA') {
      keys = this.#publicKeys.get(alg) ?? [];
    } else {
      keys = [];
    }
    if (keys.length === 0) return failure('algorithm', `no key configured for "${alg}"`);

    const claimOptions = {
      currentDate: new Date(nowMs),
      clockTolerance: this.#leewaySec,
      requiredClaims: ['exp'],
    };
    // JWS extensions (`crit`, `b64`) take jose's full path, which knows their rules.
    if (alg === 'HS256' && this.#hmacSecret !== undefined && !('crit' in header || 'b64' in header))
      return this.#verifyHs256(token, this.#hmacSecret, claimOptions);
    const options = { ...claimOptions, algorithms: [alg] };
    for (const key of keys) {
      try {
        const { payload } = await jwtVerify(token, key, options);
        return readClaims(payload);
      } catch (err) {
        const result = classify(err);
        if (result !== undefined) return result;
        // Bad signature for this key: try the next key of the same algorithm.
      }
    }
    return failure('signature', `signature does not verify with any ${alg} key`);
  }

  /**
   * HS256 with node:crypto. jose verifies through WebCrypto, asynchronously: 95–160 µs of CPU per
   * token measured here, against 10–20 µs for this synchronous HMAC, and a reconnect storm pays it
   * on every CONNECT. Only the signature is checked here: jose still judges the claims, with the
   * same options, by decoding the (signed) payload as an unsecured JWT.
   */
  #verifyHs256(
    token: string,
    secret: Uint8Array,
    claimOptions: { currentDate: Date; clockTolerance: number; requiredClaims: string[] },
  ): VerifyResult {
    const second = token.lastIndexOf('.');
    const mac = createHmac('sha256', secret).update(token.slice(0, second)).digest();
    const signature = Buffer.from(token.slice(second + 1), 'base64url');
    if (signature.length !== mac.length || !timingSafeEqual(signature, mac))
      return failure('signature', 'signature does not verify with any HS256 key');
    const payload = token.slice(token.indexOf('.') + 1, second);
    try {
      return readClaims(UnsecuredJWT.decode(`${NONE_HEADER}.${payload}.`, claimOptions).payload);
    } catch (err) {
      return classify(err) ?? failure('malformed', 'unreadable token');
    }
  }

  /** Issues an HS256 token: `sub`, `scope` (space-separated), `iat`, `exp`, and `iss` when configured. */
  async sign(claims: {
    subject: string;
    scopes: readonly string[];
    ttlMs: number;
    nowMs: number;
  }): Promise<string> {
    if (this.#hmacKey === undefined) {
      throw new VmcpError('VMCP_ERR_CONFIG', 'issuing tokens needs VMCP_JWT_SECRET', {
        field: 'jwtSecret',
      });
    }
    const { subject, scopes, ttlMs, nowMs } = claims;
    if (subject === '') throw new VmcpError('VMCP_ERR_INTERNAL', 'token subject is empty');
    for (const s of scopes) {
      // A scope with a space would be read back as two (2.3).
      if (s === '' || /\s/.test(s)) {
        throw new VmcpError('VMCP_ERR_INTERNAL', `scope ${JSON.stringify(s)} cannot be issued`);
      }
    }
    if (!Number.isFinite(ttlMs) || ttlMs <= 0 || !Number.isFinite(nowMs)) {
      throw new VmcpError('VMCP_ERR_INTERNAL', 'token lifetime must be a positive number of ms');
    }
    const jwt = new SignJWT({ scope: scopes.join(' ') })
      .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
      .setSubject(subject)
      .setIssuedAt(Math.floor(nowMs / 1000))
      .setExpirationTime(Math.floor((nowMs + ttlMs) / 1000));
    if (this.#issuer !== undefined) jwt.setIssuer(this.#issuer);
    return jwt.sign(this.#hmacKey);
  }
}
