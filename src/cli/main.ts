// The `vmcp` command: parses the subcommand and hands off to its module.
import { createRequire } from 'node:module';
import { device } from './device.js';
import { send } from './send.js';
import { serve } from './serve.js';
import { sim } from './sim.js';
import { bench } from './bench.js';
import { tail } from './tail.js';
import { token } from './token.js';

const require = createRequire(import.meta.url);
const { version } = require('../../package.json') as { version: string };

const USAGE = `vmcp ${version} — VMCP gateway for connected-vehicle fleets

Usage: vmcp <command> [options]

Commands:
  serve     run the gateway
  token     mint a vehicle token
  device    register (add) or revoke a device
  send      queue a command for a vehicle (--wait for its result)
  tail      follow the event stream (uplink, presence, commands)
  sim       run a fleet of simulated vehicles against a gateway
  bench     run a load benchmark scenario (from a source checkout)
  help      show this help

Run 'vmcp <command> --help' for a command's options.
`;

type Out = (text: string) => void;

const COMMANDS: Record<string, (argv: string[], out: Out, err: Out) => Promise<number>> = {
  serve,
  token,
  device,
  send,
  tail,
  sim,
  bench,
};

export async function main(
  argv: string[],
  out: Out = (t) => process.stdout.write(t),
  err: Out = (t) => process.stderr.write(t),
): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === 'help' || command === '--help' || command === '-h') {
    out(USAGE);
    return 0;
  }
  if (command === '--version' || command === '-v') {
    out(`${version}\n`);
    return 0;
  }
  const run = COMMANDS[command];
  // `-h` asks for help as `--help` does, for every command (up to a `--`).
  const end = rest.indexOf('--');
  for (let i = 0; i < (end < 0 ? rest.length : end); i++) if (rest[i] === '-h') rest[i] = '--help';
  if (run === undefined) {
    err(`vmcp: unknown command '${command}'\n${USAGE}`);
    return 2;
  }
  return run(rest, out, err);
}
