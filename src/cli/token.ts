// `vmcp token`: mints a vehicle JWT (HS256) with the configured or generated secret.
import { resolveSecrets } from '../app.js';
import { ALL_SCOPES, isKnownScope } from '../auth/scopes.js';
import { TokenService } from '../auth/tokens.js';
import { loadConfig, parseDuration, parseFlags } from '../config/index.js';
import { isValidVehicleId } from '../protocol/messages/connect.js';

export const TOKEN_HELP = `Usage: vmcp token --vehicle VIN [--scope "s1 s2"] [--ttl 1h] [--data-dir DIR]

Prints a vehicle token signed with VMCP_JWT_SECRET (or the secret generated in the data dir).
Scopes: ${ALL_SCOPES.join(', ')} (default: all three). --ttl takes ms/s/m/h/d (default 24h).
`;

export async function token(
  argv: string[],
  out: (t: string) => void,
  err: (t: string) => void,
): Promise<number> {
  const { flags } = parseFlags(argv);
  if (flags.help === true) {
    out(TOKEN_HELP);
    return 0;
  }
  const vehicle = flags.vehicle;
  if (typeof vehicle !== 'string' || !isValidVehicleId(vehicle)) {
    err(`vmcp token: --vehicle must match [A-Za-z0-9._:-]{1,64}\n${TOKEN_HELP}`);
    return 2;
  }
  const scopes =
    typeof flags.scope === 'string'
      ? flags.scope.split(/\s+/).filter((s) => s !== '')
      : [...ALL_SCOPES];
  const unknown = scopes.filter((s) => !isKnownScope(s));
  if (unknown.length > 0) {
    err(`vmcp token: unknown scope(s) ${unknown.join(', ')}\n`);
    return 2;
  }
  const ttlMs = typeof flags.ttl === 'string' ? parseDuration(flags.ttl) : 24 * 3600_000;
  if (ttlMs === undefined || ttlMs <= 0) {
    err('vmcp token: --ttl must be a duration like 1h or 30m\n');
    return 2;
  }
  const config = loadConfig({
    flags: typeof flags.dataDir === 'string' ? { dataDir: flags.dataDir } : {},
    env: process.env,
  });
  const { jwtSecret } = resolveSecrets(config);
  if (jwtSecret === undefined) {
    err('vmcp token: no HS256 secret (VMCP_JWT_SECRET) to sign with\n');
    return 2;
  }
  const service = await TokenService.create({ hs256Secret: jwtSecret });
  out(`${await service.sign({ subject: vehicle, scopes, ttlMs, nowMs: Date.now() })}\n`);
  return 0;
}
