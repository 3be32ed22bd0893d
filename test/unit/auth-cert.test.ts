// Mutual-TLS identity (PROTOCOL.md 2.3): certificateIdentity on real client certificates over real TLS.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import * as tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  certificateIdentity,
  certificateMatches,
  type CertIdentity,
} from '../../src/auth/index.js';
import { splitSubjectAltNames } from '../../src/auth/certificate.js';
import { makePki, type PemPair, type Pki } from '../helpers/pki.js';

/** Only the fields certificateIdentity reads; the rest of PeerCertificate does not matter here. */
function fakeCert(fields: { subject?: Record<string, unknown>; subjectaltname?: string }) {
  return { raw: Buffer.alloc(1), ...fields } as unknown as tls.PeerCertificate;
}

describe('certificateIdentity on parsed fields', () => {
  it('is undefined without a certificate', () => {
    expect(certificateIdentity(undefined)).toBeUndefined();
    expect(certificateIdentity({} as tls.PeerCertificate)).toBeUndefined();
  });

  it('reads CN and urn:vin SANs, ignoring other SANs', () => {
    const id = certificateIdentity(
      fakeCert({
        subject: { O: 'Fleet', CN: 'VIN0001' },
        subjectaltname:
          'DNS:car.example, URI:urn:vin:VIN0002, URI:https://x.example/, URI:URN:VIN:VIN0003, IP Address:10.0.0.1, URI:urn:vin:',
      }),
    );
    expect(id).toEqual({ commonName: 'VIN0001', vins: ['VIN0002', 'VIN0003'] });
  });

  it('has no CN when the subject has none or several', () => {
    expect(certificateIdentity(fakeCert({ subject: { O: 'Fleet' } }))).toEqual({ vins: [] });
    expect(certificateIdentity(fakeCert({ subject: { CN: ['A', 'B'] } }))).toEqual({ vins: [] });
    expect(certificateIdentity(fakeCert({}))).toEqual({ vins: [] });
  });

  it('does not let a quoted SAN value smuggle in another entry', () => {
    // Node quotes values holding ", " as JSON strings; a naive split would find urn:vin:VICTIM.
    const id = certificateIdentity(
      fakeCert({ subjectaltname: 'URI:"https://a.example/?q=1, URI:urn:vin:VICTIM"' }),
    )!;
    expect(id.vins).toEqual([]);
    expect(certificateMatches(id, 'VICTIM')).toBe(false);
    // An unreadable list yields nothing rather than a guess.
    expect(certificateIdentity(fakeCert({ subjectaltname: 'URI:"urn:vin:X' }))!.vins).toEqual([]);
  });

  it('splits subjectaltname as Node writes it', () => {
    expect(splitSubjectAltNames('DNS:a, URI:"x,\\"y", URI:urn:vin:Z')).toEqual([
      { type: 'DNS', value: 'a' },
      { type: 'URI', value: 'x,"y' },
      { type: 'URI', value: 'urn:vin:Z' },
    ]);
    expect(splitSubjectAltNames('')).toEqual([]);
    expect(splitSubjectAltNames('nocolon')).toBeUndefined();
    expect(splitSubjectAltNames('URI:"a"junk')).toBeUndefined();
  });
});

describe('certificateMatches', () => {
  const id: CertIdentity = { commonName: 'CN-ID', vins: ['VIN-A', 'VIN-B'] };
  it('matches the CN or any urn:vin SAN, exactly', () => {
    expect(certificateMatches(id, 'CN-ID')).toBe(true);
    expect(certificateMatches(id, 'VIN-A')).toBe(true);
    expect(certificateMatches(id, 'VIN-B')).toBe(true);
    expect(certificateMatches(id, 'cn-id')).toBe(false);
    expect(certificateMatches(id, 'VIN-')).toBe(false);
    expect(certificateMatches(id, 'OTHER')).toBe(false);
    expect(certificateMatches({ vins: [] }, '')).toBe(false);
    expect(certificateMatches({ vins: [] }, 'CN-ID')).toBe(false);
  });
});

describe('certificateIdentity over mutual TLS', () => {
  let dir: string;
  let pki: Pki;
  let server: tls.Server;
  let port: number;
  const seen: { peer: tls.PeerCertificate; authorized: boolean }[] = [];
  const open = new Set<tls.TLSSocket>();

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'vmcp-auth-pki-'));
    pki = makePki(dir);
    server = tls.createServer({
      cert: pki.server.certPem,
      key: pki.server.keyPem,
      ca: pki.deviceCa.certPem,
      requestCert: true,
      // Let untrusted and missing certificates through so the test can look at them.
      rejectUnauthorized: false,
    });
    server.on('secureConnection', (socket) => {
      open.add(socket);
      socket.on('close', () => open.delete(socket));
      socket.on('error', () => undefined);
      seen.push({ peer: socket.getPeerCertificate(), authorized: socket.authorized });
      socket.end('done');
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    port = (server.address() as AddressInfo).port;
  });

  afterAll(async () => {
    for (const s of open) s.destroy();
    if (server?.listening) {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** Connects (optionally with a client certificate) and returns what the server saw. */
  async function handshake(client?: PemPair) {
    const before = seen.length;
    const socket = tls.connect({
      host: '127.0.0.1',
      port,
      servername: 'localhost',
      ca: pki.serverCa.certPem,
      ...(client ? { cert: client.certPem, key: client.keyPem } : {}),
    });
    socket.resume();
    await once(socket, 'end');
    socket.destroy();
    expect(seen.length).toBe(before + 1);
    const entry = seen[before]!;
    return { identity: certificateIdentity(entry.peer), authorized: entry.authorized };
  }

  it('sees no identity when the client sends no certificate', async () => {
    const r = await handshake();
    expect(r.authorized).toBe(false);
    expect(r.identity).toBeUndefined();
  });

  it('reads the CN of a device-CA certificate', async () => {
    const r = await handshake(pki.issueClientCert('WVWZZZ1JZXW000001'));
    expect(r.authorized).toBe(true);
    expect(r.identity).toEqual({ commonName: 'WVWZZZ1JZXW000001', vins: [] });
    expect(certificateMatches(r.identity!, 'WVWZZZ1JZXW000001')).toBe(true);
    expect(certificateMatches(r.identity!, 'WVWZZZ1JZXW000002')).toBe(false);
  });

  it('reads a SAN urn:vin next to a CN', async () => {
    const r = await handshake(pki.issueClientCert('telematics-unit-7', { sanVin: 'VIN-7' }));
    expect(r.authorized).toBe(true);
    expect(r.identity).toEqual({ commonName: 'telematics-unit-7', vins: ['VIN-7'] });
    expect(certificateMatches(r.identity!, 'VIN-7')).toBe(true);
    expect(certificateMatches(r.identity!, 'telematics-unit-7')).toBe(true);
    expect(certificateMatches(r.identity!, 'VIN-8')).toBe(false);
  });

  it('reads a SAN urn:vin without any CN', async () => {
    const r = await handshake(pki.issueClientCert('', { sanVin: 'VIN.9:x-y_z' }));
    expect(r.authorized).toBe(true);
    expect(r.identity).toEqual({ vins: ['VIN.9:x-y_z'] });
    expect(certificateMatches(r.identity!, 'VIN.9:x-y_z')).toBe(true);
  });

  it('still reports the identity of an untrusted certificate (chaining is the TLS layer’s job)', async () => {
    const r = await handshake(pki.issueClientCert('VIN-OTHER', { ca: 'other' }));
    expect(r.authorized).toBe(false);
    expect(r.identity).toEqual({ commonName: 'VIN-OTHER', vins: [] });
  });
});
