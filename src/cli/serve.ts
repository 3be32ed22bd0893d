// `vmcp serve`: runs the gateway until SIGTERM/SIGINT, then drains gracefully.
import { basename } from 'node:path';
import { GatewayApp } from '../app.js';
import { formatHostPort, loadConfig, parseFlags, settingsHelp } from '../config/index.js';
import { isVmcpError } from '../errors.js';
import { createLogger } from '../observability/logger.js';

export const SERVE_HELP = `Usage: vmcp serve [options]

Runs the gateway. Every option also reads from the environment (VMCP_*) and a config file
(--config file.json|yaml, camelCase keys). Precedence: flags > env > file > defaults.
Durations take ms/s/m/h/d suffixes (7d, 1500ms); sizes take B/KiB/MiB/GiB.

  --config                   VMCP_CONFIG                  JSON or YAML configuration file
${settingsHelp()}
`;

export async function serve(
  argv: string[],
  out: (t: string) => void,
  err: (t: string) => void,
): Promise<number> {
  const { flags, positional } = parseFlags(argv);
  if (flags.help === true) {
    out(SERVE_HELP);
    return 0;
  }
  // Every option is a --flag: a stray word or a short flag is a mistake, not something to ignore.
  if (positional.length > 0) {
    err(
      `vmcp serve: unexpected argument ${JSON.stringify(positional[0])}\nRun 'vmcp serve --help' for usage.\n`,
    );
    return 2;
  }
  let config;
  try {
    config = loadConfig({ flags, env: process.env });
  } catch (e) {
    if (isVmcpError(e, 'VMCP_ERR_CONFIG')) {
      err(`vmcp serve: ${e.message}\n`);
      return 2;
    }
    throw e;
  }
  // stdout and stderr may be pipes whose reader is gone (`vmcp serve | head -1`): a failed write of
  // a log line or of the banner below is dropped, not fatal.
  for (const stream of [process.stdout, process.stderr]) stream.on('error', () => undefined);
  const logger = createLogger(config.logLevel);
  let app: GatewayApp;
  try {
    app = await GatewayApp.start(config, { logger });
  } catch (e) {
    if (isVmcpError(e, 'VMCP_ERR_CONFIG')) {
      err(`vmcp serve: ${e.message}\n`);
      return 2;
    }
    throw e;
  }
  // Signal handlers first: the "vehicles on …" line tells scripts the gateway can be stopped cleanly.
  const stopped = new Promise<void>((resolve) => {
    const stop = (signal: string): void => {
      logger.info({ signal }, 'shutting down');
      process.off('SIGTERM', onTerm);
      process.off('SIGINT', onInt);
      resolve();
    };
    const onTerm = (): void => stop('SIGTERM');
    const onInt = (): void => stop('SIGINT');
    process.on('SIGTERM', onTerm);
    process.on('SIGINT', onInt);
  });
  // A hint for each file this start generated, and only for those (a secret from the environment
  // has no file to point at).
  const generated = app.secrets.generated;
  if (generated.length > 0) {
    const made = (file: string): boolean => generated.some((p) => basename(p) === file);
    err(
      `vmcp: generated secrets in ${config.dataDir} (${generated.join(', ')}).\n` +
        (made('jwt-secret')
          ? `  Mint a vehicle token:  npx vmcp token --data-dir ${config.dataDir} --vehicle VIN --scope "telemetry:publish event:publish command:receive"\n`
          : '') +
        (made('admin-token') ? `  API bearer token:      cat ${config.dataDir}/admin-token\n` : ''),
    );
  }
  err(
    `vmcp: vehicles on ${formatHostPort(app.addresses.vehicle)}${app.addresses.tls ? `, mutual TLS on ${formatHostPort(app.addresses.tls)}` : ''}, ` +
      `HTTP API on http://${formatHostPort(app.addresses.http)}\n`,
  );
  await stopped;
  await app.stop();
  logger.flush();
  return 0;
}
