// Mutual-TLS identity (PROTOCOL.md 2.3): the vehicle ids a client certificate names (CN, SAN urn:vin:).
import type { PeerCertificate } from 'node:tls';

export interface CertIdentity {
  /** Subject CN; undefined when absent or when the subject carries several (ambiguous). */
  commonName?: string;
  /** Ids from SAN entries `URI:urn:vin:<id>`, in certificate order. */
  vins: string[];
}

/** `urn:vin:` — URN scheme and namespace are case-insensitive (RFC 8141); the id is compared exactly. */
const VIN_URN = /^urn:vin:/i;

/**
 * Splits Node's `subjectaltname` ("DNS:a, URI:b, …"). Since the CVE-2021-44532 fix Node writes a
 * value holding `,`, `"`, `\`, `'` or control characters as a JSON string (`URI:"…"`), so the list
 * is split by reading each entry rather than on ", " (which a crafted value could smuggle in).
 * Returns undefined when the text does not follow that grammar.
 */
export function splitSubjectAltNames(text: string): { type: string; value: string }[] | undefined {
  const out: { type: string; value: string }[] = [];
  let i = 0;
  while (i < text.length) {
    const colon = text.indexOf(':', i);
    if (colon < 0) return undefined;
    const type = text.slice(i, colon);
    let value: string;
    let end: number;
    if (text[colon + 1] === '"') {
      // A JSON string: find its closing quote, skipping escaped characters.
      let j = colon + 2;
      while (j < text.length && text[j] !== '"') j += text[j] === '\\' ? 2 : 1;
      if (j >= text.length) return undefined;
      end = j + 1;
      try {
        const parsed: unknown = JSON.parse(text.slice(colon + 1, end));
        if (typeof parsed !== 'string') return undefined;
        value = parsed;
      } catch {
        return undefined;
      }
    } else {
      const sep = text.indexOf(', ', colon + 1);
      end = sep < 0 ? text.length : sep;
      value = text.slice(colon + 1, end);
    }
    out.push({ type, value });
    if (end === text.length) break;
    if (text.slice(end, end + 2) !== ', ') return undefined;
    i = end + 2;
  }
  return out;
}

/**
 * The identity a peer certificate claims, or undefined when the peer sent none (`getPeerCertificate()`
 * returns `{}` then). Chaining to the device CA is the TLS layer's job (`socket.authorized`).
 */
export function certificateIdentity(cert: PeerCertificate | undefined): CertIdentity | undefined {
  if (cert === undefined || cert === null || Object.keys(cert).length === 0) return undefined;
  // Node gives an array when the subject has several CNs; which one is "the" CN is ambiguous.
  const cn: unknown = (cert.subject as Record<string, unknown> | undefined)?.['CN'];
  const identity: CertIdentity = { vins: [] };
  if (typeof cn === 'string') identity.commonName = cn;
  const san: unknown = cert.subjectaltname;
  if (typeof san === 'string' && san !== '') {
    // An unreadable SAN list yields no ids: refusing is safer than guessing.
    for (const { type, value } of splitSubjectAltNames(san) ?? []) {
      if (type === 'URI' && VIN_URN.test(value)) {
        const id = value.slice('urn:vin:'.length);
        if (id !== '') identity.vins.push(id);
      }
    }
  }
  return identity;
}

/** PROTOCOL.md 2.3: the subject CN, or a SAN URI `urn:vin:<id>`, equals VEHICLE_ID. */
export function certificateMatches(identity: CertIdentity, vehicleId: string): boolean {
  if (vehicleId === '') return false;
  return identity.commonName === vehicleId || identity.vins.includes(vehicleId);
}
