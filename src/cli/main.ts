// The `vmcp` command: parses the subcommand and hands off to its module.
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const { version } = require('../../package.json') as { version: string };

const USAGE = `vmcp ${version} — VMCP gateway for connected-vehicle fleets

Usage: vmcp <command> [options]

Commands:
  serve     run the gateway
  help      show this help

Run 'vmcp <command> --help' for a command's options.
`;

type Out = (text: string) => void;

export async function main(
  argv: string[],
  out: Out = (t) => process.stdout.write(t),
): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      out(USAGE);
      return 0;
    case '--version':
    case '-v':
      out(`${version}\n`);
      return 0;
    default:
      process.stderr.write(
        `vmcp: unknown command '${command}' (args: ${rest.join(' ')})\n${USAGE}`,
      );
      return 2;
  }
}
