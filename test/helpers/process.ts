// Runs `vmcp serve` as a child process (the built CLI), for crash and restart tests.
import { spawn, type ChildProcess } from 'node:child_process';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
export const VMCP_BIN = resolve(here, '../../bin/vmcp.js');

export interface ServeProcess {
  child: ChildProcess;
  vehiclePort: number;
  httpUrl: string;
  stderr: () => string;
  /** Resolves with the exit code or signal when the process ends. */
  exited: Promise<number | string>;
}

/** Starts `vmcp serve` on ephemeral ports and waits for its "vehicles on …, HTTP API on …" line. */
export async function startServe(
  args: string[],
  env: Record<string, string> = {},
): Promise<ServeProcess> {
  const child = spawn(
    process.execPath,
    [
      VMCP_BIN,
      'serve',
      '--listen',
      '127.0.0.1:0',
      '--http',
      '127.0.0.1:0',
      '--log-level',
      'warn',
      ...args,
    ],
    {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'ignore', 'pipe'],
    },
  );
  let err = '';
  const exited = new Promise<number | string>((resolve) =>
    child.on('exit', (code, signal) => resolve(code ?? signal ?? -1)),
  );
  const ports = await new Promise<{ vehicle: number; http: number }>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`vmcp serve did not start: ${err}`)), 20_000);
    child.stderr!.on('data', (chunk: Buffer) => {
      err += chunk.toString();
      const m = /vehicles on [^:]+:(\d+).*HTTP API on http:\/\/[^:]+:(\d+)/.exec(err);
      if (m) {
        clearTimeout(timer);
        resolve({ vehicle: Number(m[1]), http: Number(m[2]) });
      }
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`vmcp serve exited (${code}): ${err}`));
    });
  });
  return {
    child,
    vehiclePort: ports.vehicle,
    httpUrl: `http://127.0.0.1:${ports.http}`,
    stderr: () => err,
    exited,
  };
}
