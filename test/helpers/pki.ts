// Test PKI built with the openssl CLI: device CA, server CA + server cert, an untrusted CA, client certs.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const OPENSSL = process.env['OPENSSL'] ?? '/usr/bin/openssl';

export interface PemPair {
  certPem: string;
  keyPem: string;
  certPath: string;
  keyPath: string;
}

export interface ClientCertOptions {
  /** Adds SAN `URI:urn:vin:<sanVin>`. */
  sanVin?: string;
  /** Issuer: the trusted device CA (default) or the untrusted "other" CA. */
  ca?: 'device' | 'other';
}

export interface Pki {
  dir: string;
  /** The CA client certificates must chain to (the gateway's client CA). */
  deviceCa: PemPair;
  /** Issues the server certificate; clients trust it. */
  serverCa: PemPair;
  /** Certificate for `localhost` and `127.0.0.1`, signed by serverCa. */
  server: PemPair;
  /** A CA nobody trusts, for negative tests. */
  otherCa: PemPair;
  /** A client certificate with subject CN `cn` (no CN when `cn` is ''), signed by the chosen CA. */
  issueClientCert(cn: string, opts?: ClientCertOptions): PemPair;
}

export interface PkiOptions {
  /** Certificate lifetime in days (default 2). */
  days?: number;
}

function openssl(args: string[]): void {
  execFileSync(OPENSSL, args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

function newKey(path: string): void {
  // EC P-256: generating and using it is fast, unlike RSA.
  openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', path]);
}

function pair(certPath: string, keyPath: string): PemPair {
  return {
    certPath,
    keyPath,
    certPem: readFileSync(certPath, 'utf8'),
    keyPem: readFileSync(keyPath, 'utf8'),
  };
}

function serial(): string {
  return `0x${randomBytes(12).toString('hex')}`;
}

/** Only names the test controls; a '/' would start a new RDN in openssl's -subj syntax. */
function rdnValue(v: string): string {
  if (/[/\\+=,\n]/.test(v)) throw new Error(`pki: unsupported character in ${JSON.stringify(v)}`);
  return v;
}

/** Creates every file under `dir` (made if missing) and returns PEM strings and paths. */
export function makePki(dir: string, opts: PkiOptions = {}): Pki {
  const days = String(opts.days ?? 2);
  mkdirSync(dir, { recursive: true });
  let counter = 0;

  const makeCa = (name: string): PemPair => {
    const keyPath = join(dir, `${name}.key`);
    const certPath = join(dir, `${name}.crt`);
    newKey(keyPath);
    openssl([
      'req',
      '-x509',
      '-new',
      '-key',
      keyPath,
      '-out',
      certPath,
      '-days',
      days,
      '-subj',
      `/O=VMCP Test/CN=${name}`,
      '-set_serial',
      serial(),
      '-addext',
      'basicConstraints=critical,CA:TRUE',
      '-addext',
      'keyUsage=critical,keyCertSign,cRLSign',
    ]);
    return pair(certPath, keyPath);
  };

  const issue = (name: string, subject: string, ca: PemPair, extensions: string): PemPair => {
    const keyPath = join(dir, `${name}.key`);
    const csrPath = join(dir, `${name}.csr`);
    const extPath = join(dir, `${name}.ext`);
    const certPath = join(dir, `${name}.crt`);
    newKey(keyPath);
    openssl(['req', '-new', '-key', keyPath, '-out', csrPath, '-subj', subject]);
    writeFileSync(extPath, extensions);
    openssl([
      'x509',
      '-req',
      '-in',
      csrPath,
      '-CA',
      ca.certPath,
      '-CAkey',
      ca.keyPath,
      '-set_serial',
      serial(),
      '-days',
      days,
      '-sha256',
      '-extfile',
      extPath,
      '-out',
      certPath,
    ]);
    return pair(certPath, keyPath);
  };

  const deviceCa = makeCa('device-ca');
  const serverCa = makeCa('server-ca');
  const otherCa = makeCa('other-ca');
  const server = issue(
    'server',
    '/O=VMCP Test/CN=localhost',
    serverCa,
    [
      'basicConstraints=critical,CA:FALSE',
      'keyUsage=critical,digitalSignature',
      'extendedKeyUsage=serverAuth',
      'subjectAltName=DNS:localhost,IP:127.0.0.1',
      '',
    ].join('\n'),
  );

  const issueClientCert = (cn: string, o: ClientCertOptions = {}): PemPair => {
    const ca = o.ca === 'other' ? otherCa : deviceCa;
    const subject = cn === '' ? '/O=VMCP Test' : `/O=VMCP Test/CN=${rdnValue(cn)}`;
    const ext = [
      'basicConstraints=critical,CA:FALSE',
      'keyUsage=critical,digitalSignature',
      'extendedKeyUsage=clientAuth',
    ];
    if (o.sanVin !== undefined) ext.push(`subjectAltName=URI:urn:vin:${rdnValue(o.sanVin)}`);
    counter += 1;
    return issue(`client-${counter}`, subject, ca, `${ext.join('\n')}\n`);
  };

  return { dir, deviceCa, serverCa, server, otherCa, issueClientCert };
}
