// `vmcp device add|revoke`: registers a device (id, secret, scopes) for CREDENTIAL login, or revokes it.
import { ALL_SCOPES, isKnownScope } from '../auth/scopes.js';
import { isValidVehicleId } from '../protocol/messages/connect.js';
import {
  CONNECTION_HELP,
  UsageError,
  createApiClient,
  encodeId,
  parseCommandArgs,
  runCommand,
  type Out,
} from './http.js';

export const DEVICE_HELP = `Usage:
  vmcp device add --id VIN --secret SECRET [--scopes "s1 s2"]
  vmcp device revoke --id VIN

add     registers a device: it may then CONNECT with CREDENTIAL = the secret's UTF-8 and is
        answered with a fresh token (POST /api/v1/devices). Prints the API's answer.
        --scopes: space- or comma-separated, of ${ALL_SCOPES.join(', ')} (default: all three).
revoke  revokes a device: its live session is kicked and its CONNECTs are refused
        (DELETE /api/v1/devices/{id}). Prints the API's answer.

${CONNECTION_HELP}

Exit codes: 0 done, 1 the API refused or could not be reached, 2 bad arguments.
`;

function vehicleId(value: string | undefined): string {
  if (value === undefined) throw new UsageError('--id is required');
  if (!isValidVehicleId(value))
    throw new UsageError(`--id must match [A-Za-z0-9._:-]{1,64}, got ${JSON.stringify(value)}`);
  return value;
}

function parseScopes(value: string | undefined): string[] {
  if (value === undefined) return [...ALL_SCOPES];
  const scopes = value.split(/[\s,]+/).filter((s) => s !== '');
  if (scopes.length === 0) throw new UsageError('--scopes must name at least one scope');
  const unknown = scopes.filter((s) => !isKnownScope(s));
  if (unknown.length > 0) {
    throw new UsageError(
      `--scopes: unknown scope(s) ${unknown.join(', ')} (known: ${ALL_SCOPES.join(', ')})`,
    );
  }
  return [...new Set(scopes)];
}

function printJson(out: Out, body: unknown): void {
  out(`${body === undefined ? '{}' : JSON.stringify(body)}\n`);
}

export async function device(argv: string[], out: Out, err: Out): Promise<number> {
  const [action, ...rest] = argv;
  const name = action === 'add' || action === 'revoke' ? `vmcp device ${action}` : 'vmcp device';
  return runCommand(name, err, async () => {
    if (action === undefined || action === '--help' || action === '-h' || action === 'help') {
      if (action === undefined) throw new UsageError('expected a subcommand: add or revoke');
      out(DEVICE_HELP);
      return 0;
    }
    if (action === 'add') {
      const args = parseCommandArgs(rest, { values: ['id', 'secret', 'scopes'] });
      if (args.help) {
        out(DEVICE_HELP);
        return 0;
      }
      if (args.positionals.length > 0)
        throw new UsageError(`unexpected argument ${JSON.stringify(args.positionals[0])}`);
      const id = vehicleId(args.values.id);
      const secret = args.values.secret;
      if (secret === undefined) throw new UsageError('--secret is required');
      if (secret === '') throw new UsageError('--secret must not be empty');
      const scopes = parseScopes(args.values.scopes);
      const api = createApiClient(args);
      printJson(out, await api.request('POST', '/api/v1/devices', { id, secret, scopes }));
      return 0;
    }
    if (action === 'revoke') {
      const args = parseCommandArgs(rest, { values: ['id'] });
      if (args.help) {
        out(DEVICE_HELP);
        return 0;
      }
      if (args.positionals.length > 0)
        throw new UsageError(`unexpected argument ${JSON.stringify(args.positionals[0])}`);
      const id = vehicleId(args.values.id);
      const api = createApiClient(args);
      printJson(out, await api.request('DELETE', `/api/v1/devices/${encodeId(id)}`));
      return 0;
    }
    throw new UsageError(`unknown subcommand ${JSON.stringify(action)} (expected add or revoke)`);
  });
}
