// `vmcp token`: mints a vehicle JWT (HS256) with the gateway's secret.
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { ALL_SCOPES, isKnownScope } from '../auth/scopes.js';
import { TokenService } from '../auth/tokens.js';
import { isVmcpError } from '../errors.js';
import { loadConfig, parseDuration } from '../config/index.js';
import { isValidVehicleId } from '../protocol/messages/connect.js';

export const TOKEN_HELP = `Usage: vmcp token --vehicle VIN [--scopes "s1 s2"] [--ttl 1h]
                  [--jwt-secret SECRET | --data-dir DIR]

Prints a vehicle token (HS256) signed with the gateway's secret: --jwt-secret, else
VMCP_JWT_SECRET (or jwtSecret in the VMCP_CONFIG file), else the jwt-secret file the gateway
generated in its data dir (--data-dir, VMCP_DATA_DIR, default ./data). The file is only read: a
token signed with a secret the gateway does not have would be refused.
  --scopes   space- or comma-separated, of ${ALL_SCOPES.join(', ')} (default: all three);
             --scope is the same option
  --ttl      ms/s/m/h/d (default 24h)
`;

class TokenUsageError extends Error {}

function secretFor(values: { 'jwt-secret'?: string; 'data-dir'?: string }): string {
  const flag = values['jwt-secret'];
  if (flag !== undefined) {
    if (flag === '') throw new TokenUsageError('--jwt-secret must not be empty');
    return flag;
  }
  const config = loadConfig({
    flags: values['data-dir'] === undefined ? {} : { dataDir: values['data-dir'] },
    env: process.env,
  });
  if (config.jwtSecret !== undefined) return config.jwtSecret;
  const file = join(resolve(config.dataDir), 'jwt-secret');
  if (!existsSync(file))
    throw new TokenUsageError(
      `no JWT secret: pass --jwt-secret, set VMCP_JWT_SECRET, or point --data-dir at the gateway's data dir (${file} does not exist)`,
    );
  return readFileSync(file, 'utf8').trim();
}

export async function token(
  argv: string[],
  out: (t: string) => void,
  err: (t: string) => void,
): Promise<number> {
  const usage = (message: string): number => {
    err(`vmcp token: ${message}\nRun 'vmcp token --help' for usage.\n`);
    return 2;
  };
  let values: {
    vehicle?: string;
    scope?: string;
    scopes?: string;
    ttl?: string;
    'jwt-secret'?: string;
    'data-dir'?: string;
    help?: boolean;
  };
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        vehicle: { type: 'string' },
        scope: { type: 'string' },
        scopes: { type: 'string' },
        ttl: { type: 'string' },
        'jwt-secret': { type: 'string' },
        'data-dir': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (e) {
    return usage((e as Error).message);
  }
  if (values.help === true) {
    out(TOKEN_HELP);
    return 0;
  }
  const vehicle = values.vehicle;
  if (vehicle === undefined || !isValidVehicleId(vehicle))
    return usage('--vehicle must match [A-Za-z0-9._:-]{1,64}');
  if (values.scope !== undefined && values.scopes !== undefined)
    return usage('give --scopes once (--scope is the same option)');
  const scopeText = values.scopes ?? values.scope;
  const scopes =
    scopeText === undefined ? [...ALL_SCOPES] : scopeText.split(/[\s,]+/).filter((s) => s !== '');
  if (scopes.length === 0) return usage('--scopes must name at least one scope');
  const unknown = scopes.filter((s) => !isKnownScope(s));
  if (unknown.length > 0)
    return usage(`unknown scope(s) ${unknown.join(', ')} (known: ${ALL_SCOPES.join(', ')})`);
  const ttlMs = values.ttl === undefined ? 24 * 3600_000 : parseDuration(values.ttl);
  if (ttlMs === undefined || ttlMs <= 0) return usage('--ttl must be a duration like 1h or 30m');
  let secret: string;
  try {
    secret = secretFor(values);
  } catch (e) {
    if (e instanceof TokenUsageError || isVmcpError(e, 'VMCP_ERR_CONFIG'))
      return usage((e as Error).message);
    throw e;
  }
  const service = await TokenService.create({ hs256Secret: secret });
  out(`${await service.sign({ subject: vehicle, scopes, ttlMs, nowMs: Date.now() })}\n`);
  return 0;
}
