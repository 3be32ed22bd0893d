// Device registration secrets (PROTOCOL.md 2.3, CREDENTIAL): salted scrypt hashes, constant-time checks.
import { randomBytes, scrypt, timingSafeEqual, type ScryptOptions } from 'node:crypto';

const PREFIX = 'scrypt';
/** Cost parameters of new hashes: OWASP's scrypt baseline (N=2^14, r=8, p=1), 16 MiB and tens of ms. */
const N = 16_384;
const R = 8;
const P = 1;
const KEYLEN = 32;
const SALT_BYTES = 16;

/**
 * Bounds on the parameters read back from a stored hash. A corrupted or hostile string must not
 * make verification allocate gigabytes or spin for minutes; anything outside is "no match".
 */
const MAX_N = 1 << 20;
const MAX_R = 32;
const MAX_P = 16;
const MAX_MEM_BYTES = 256 * 1024 * 1024;
const MIN_KEYLEN = 16;
const MAX_KEYLEN = 64;
const MAX_SALT_BYTES = 64;

const B64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const DECIMAL = /^[1-9][0-9]{0,9}$/;

function toBytes(secret: Uint8Array | string): Uint8Array {
  return typeof secret === 'string' ? new TextEncoder().encode(secret) : secret;
}

function derive(
  secret: Uint8Array,
  salt: Uint8Array,
  keylen: number,
  options: ScryptOptions,
): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    scrypt(secret, salt, keylen, options, (err, key) => (err ? reject(err) : resolve(key)));
  });
}

/** Hash a secret for storage: `scrypt$N$r$p$saltB64$hashB64` with a fresh random 16-byte salt. */
export async function hashSecret(secret: Uint8Array | string): Promise<string> {
  const salt = randomBytes(SALT_BYTES);
  const hash = await derive(toBytes(secret), salt, KEYLEN, { N, r: R, p: P });
  return [PREFIX, N, R, P, salt.toString('base64'), hash.toString('base64')].join('$');
}

interface Parsed {
  n: number;
  r: number;
  p: number;
  salt: Buffer;
  hash: Buffer;
}

function parse(encoded: string): Parsed | undefined {
  const parts = encoded.split('$');
  if (parts.length !== 6 || parts[0] !== PREFIX) return undefined;
  const [, nText, rText, pText, saltText, hashText] = parts as [
    string,
    string,
    string,
    string,
    string,
    string,
  ];
  if (!DECIMAL.test(nText) || !DECIMAL.test(rText) || !DECIMAL.test(pText)) return undefined;
  const n = Number(nText);
  const r = Number(rText);
  const p = Number(pText);
  // scrypt needs N a power of two above 1.
  if (n < 2 || n > MAX_N || (n & (n - 1)) !== 0) return undefined;
  if (r > MAX_R || p > MAX_P) return undefined;
  if (!B64.test(saltText) || !B64.test(hashText) || saltText === '') return undefined;
  const salt = Buffer.from(saltText, 'base64');
  const hash = Buffer.from(hashText, 'base64');
  if (salt.length > MAX_SALT_BYTES) return undefined;
  if (hash.length < MIN_KEYLEN || hash.length > MAX_KEYLEN) return undefined;
  return { n, r, p, salt, hash };
}

/** Whether `secret` matches a hashSecret() string. False, never a throw, for a malformed string. */
export async function verifySecret(secret: Uint8Array | string, encoded: string): Promise<boolean> {
  if (typeof encoded !== 'string') return false;
  const parsed = parse(encoded);
  if (parsed === undefined) return false;
  const { n, r, p, salt, hash } = parsed;
  // scrypt's memory is about 128 * N * r bytes; refuse before asking for it.
  if (128 * n * r * p > MAX_MEM_BYTES) return false;
  let candidate: Buffer;
  try {
    candidate = await derive(toBytes(secret), salt, hash.length, {
      N: n,
      r,
      p,
      maxmem: MAX_MEM_BYTES + 1024 * 1024,
    });
  } catch {
    return false;
  }
  return timingSafeEqual(candidate, hash);
}
