// Real redis-server processes for tests: one standalone server (AOF, fsync always, restartable on the
// same port and dir) or a Redis Cluster of N masters created with `redis-cli --cluster create`. Always
// 127.0.0.1 and ephemeral ports (never 6379); every process is stopped and every temp dir removed.
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const HOST = '127.0.0.1';
const START_TIMEOUT_MS = 15_000;

export interface RedisServer {
  url: string;
  port: number;
  dir: string;
  /**
   * Final stop: SIGTERM (Redis flushes the AOF), waits for the exit, removes the temp dir the helper
   * created (a dir passed in `opts.dir` is kept, and restart() still works). Harmless when stopped.
   */
  stop(): Promise<void>;
  /** Graceful stop that keeps the data for restart(). */
  shutdown(): Promise<void>;
  /** SIGKILL, waits for the exit: nothing is flushed beyond what Redis already wrote. */
  kill(): Promise<void>;
  /** Starts the server again on the same port and data dir (stopping it first if it runs). */
  restart(): Promise<void>;
  /** The server's stderr/stdout so far, for failure messages. */
  output(): string;
  /** The running process's pid (undefined while stopped). */
  pid(): number | undefined;
}

export interface RedisCluster {
  /** One seed URL per master. */
  urls: string[];
  nodes: RedisServer[];
  stop(): Promise<void>;
}

export interface StartRedisOptions {
  /** AOF with fsync on every write (default true): acked writes survive kill -9 and restart. */
  appendonly?: boolean;
  /** Extra redis-server arguments, e.g. ['--cluster-enabled', 'yes']. */
  args?: string[];
  /** An existing data dir to use (kept on stop); a new temp dir otherwise (removed on stop). */
  dir?: string;
  /** How long a start may take before it is given up (default 15 s; loading a big AOF takes longer). */
  startTimeoutMs?: number;
}

/** A port that was free a moment ago: listen on port 0 and close. Never 6379. */
export async function freePort(): Promise<number> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const port = await new Promise<number>((resolve, reject) => {
      const srv = createServer();
      srv.unref();
      srv.on('error', reject);
      srv.listen(0, HOST, () => {
        const addr = srv.address();
        const p = typeof addr === 'object' && addr !== null ? addr.port : 0;
        srv.close(() => resolve(p));
      });
    });
    if (port !== 6379 && port > 0 && port + 10_000 !== 6379) return port;
  }
  throw new Error('no free port found');
}

/** Sends one inline command over a raw socket and returns the first reply line ('' on failure). */
export function rawCommand(port: number, command: string, timeoutMs = 1000): Promise<string> {
  return new Promise((resolve) => {
    const sock = createConnection({ host: HOST, port });
    let buf = '';
    const done = (v: string) => {
      clearTimeout(timer);
      sock.destroy();
      resolve(v);
    };
    const timer = setTimeout(() => done(''), timeoutMs);
    sock.on('error', () => done(''));
    sock.on('connect', () => sock.write(`${command}\r\n`));
    sock.on('data', (chunk) => {
      buf += chunk.toString('utf8');
      // A bulk reply ($n) spans two lines; keep reading until it is complete.
      const m = /^\$(\d+)\r\n/.exec(buf);
      if (m) {
        const need = m[0].length + Number(m[1]) + 2;
        if (buf.length >= need) done(buf.slice(m[0].length, need - 2));
      } else if (buf.includes('\r\n')) done(buf.slice(0, buf.indexOf('\r\n')));
    });
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Drops every key and rewrites the AOF, waiting for the rewrite: a restart replays the whole AOF, so
 * tests that restart a server many times empty it between cases to keep restarts fast.
 */
export async function emptyRedis(server: RedisServer): Promise<void> {
  await rawCommand(server.port, 'FLUSHALL');
  await rawCommand(server.port, 'BGREWRITEAOF');
  for (let i = 0; i < 500; i++) {
    const info = await rawCommand(server.port, 'INFO persistence');
    if (/aof_rewrite_in_progress:0/.test(info) && /aof_rewrite_scheduled:0/.test(info)) return;
    await sleep(10);
  }
  throw new Error('the AOF rewrite did not finish');
}

/**
 * A crash of the server under a client that stays open: SIGKILL, restart on the same port and data,
 * then `ping` (the client's) until it answers again (its client reconnects by itself). Bounded by
 * the wall clock (performance.now: tests may fake Date): each ping may take 1 s, all of them 10 s,
 * then it fails saying so rather than hang.
 */
export async function crashRedis(server: RedisServer, ping: () => Promise<void>): Promise<void> {
  await server.kill();
  await server.restart();
  const deadline = performance.now() + 10_000;
  for (;;) {
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        ping(),
        new Promise((_, reject) => {
          timer = setTimeout(() => reject(new Error('ping took over 1 s')), 1_000);
        }),
      ]);
      return;
    } catch (err) {
      if (performance.now() > deadline)
        throw new Error(`the client did not reconnect within 10 s of the restart: ${String(err)}`);
      await sleep(20);
    } finally {
      clearTimeout(timer);
    }
  }
}

// Last resort: a test worker that exits without its cleanup (a timeout, a crash) takes its
// redis-server processes with it.
const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const c of live) c.kill('SIGKILL');
});

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

/** Spawns redis-server on `port` with `dir` and waits for PONG; rejects when it exits or times out. */
async function launch(
  port: number,
  dir: string,
  opts: StartRedisOptions,
  log: { text: string },
): Promise<ChildProcess> {
  const appendonly = opts.appendonly ?? true;
  const args = [
    '--port',
    String(port),
    '--bind',
    HOST,
    '--protected-mode',
    'no',
    '--daemonize',
    'no',
    '--save',
    '',
    '--appendonly',
    appendonly ? 'yes' : 'no',
    '--appendfsync',
    'always',
    '--dir',
    dir,
    '--loglevel',
    'warning',
    ...(opts.args ?? []),
  ];
  const child = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  live.add(child);
  child.once('exit', () => live.delete(child));
  const collect = (chunk: Buffer) => {
    log.text += chunk.toString('utf8');
    if (log.text.length > 64_000) log.text = log.text.slice(-32_000);
  };
  child.stdout!.on('data', collect);
  child.stderr!.on('data', collect);
  let spawnError: Error | undefined;
  child.on('error', (err) => (spawnError = err));
  const deadline = Date.now() + (opts.startTimeoutMs ?? START_TIMEOUT_MS);
  while (Date.now() < deadline) {
    if (spawnError !== undefined) throw spawnError;
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(
        `redis-server on port ${port} exited (${child.exitCode ?? child.signalCode}):\n${log.text}`,
      );
    }
    // PONG from OUR process: another server may have taken the port between freePort() and now.
    if ((await rawCommand(port, 'PING', 500)) === '+PONG') {
      const info = await rawCommand(port, 'INFO server', 500);
      if (info.includes(`process_id:${child.pid}\r\n`)) return child;
    }
    await sleep(50);
  }
  child.kill('SIGKILL');
  await exited(child);
  throw new Error(`redis-server on port ${port} did not answer PING:\n${log.text}`);
}

/** Starts a standalone redis-server on a free ephemeral port (retrying when the port is taken). */
export async function startRedis(opts: StartRedisOptions = {}): Promise<RedisServer> {
  const ownDir = opts.dir === undefined;
  const dir = opts.dir ?? (await mkdtemp(join(tmpdir(), 'vmcp-redis-')));
  const log = { text: '' };
  let child: ChildProcess | undefined;
  let port = 0;
  let lastError: unknown;
  for (let attempt = 0; attempt < 5 && child === undefined; attempt++) {
    port = await freePort();
    try {
      child = await launch(port, dir, opts, log);
    } catch (err) {
      lastError = err;
    }
  }
  if (child === undefined) {
    if (ownDir) await rm(dir, { recursive: true, force: true });
    throw lastError instanceof Error ? lastError : new Error(String(lastError));
  }
  let current: ChildProcess | undefined = child;
  let removed = false;
  const halt = async (signal: NodeJS.Signals) => {
    const c = current;
    current = undefined;
    if (c === undefined) return;
    c.kill(signal);
    await exited(c);
  };
  return {
    url: `redis://${HOST}:${port}`,
    port,
    dir,
    output: () => log.text,
    pid: () => current?.pid,
    stop: async () => {
      await halt('SIGTERM');
      if (ownDir && !removed) {
        removed = true;
        await rm(dir, { recursive: true, force: true });
      }
    },
    kill: () => halt('SIGKILL'),
    shutdown: () => halt('SIGTERM'),
    restart: async () => {
      if (removed) throw new Error('the server was stopped for good (stop()); use shutdown()');
      await halt('SIGTERM');
      let err: unknown;
      // The port may be briefly unavailable (TIME_WAIT is not a problem for a listener, but
      // another process could grab it): retry a few times.
      for (let attempt = 0; attempt < 10; attempt++) {
        try {
          current = await launch(port, dir, opts, log);
          return;
        } catch (e) {
          err = e;
          await sleep(200);
        }
      }
      throw err instanceof Error ? err : new Error(String(err));
    },
  };
}

function run(cmd: string, args: string[], timeoutMs = 30_000): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { timeout: timeoutMs }, (err, stdout, stderr) => {
      if (err)
        reject(new Error(`${cmd} ${args.join(' ')} failed: ${err.message}\n${stdout}\n${stderr}`));
      else resolve(stdout);
    });
  });
}

/**
 * A Redis Cluster of `masters` masters (no replicas) on loopback, created with
 * `redis-cli --cluster create`; resolves once every node reports cluster_state:ok.
 */
export async function startRedisCluster(
  masters = 3,
  opts: { requireFullCoverage?: boolean; nodeTimeoutMs?: number; appendonly?: boolean } = {},
): Promise<RedisCluster> {
  const nodes: RedisServer[] = [];
  const stopAll = async () => {
    // Sequential: each stop waits for its process.
    for (const n of nodes) await n.stop();
  };
  try {
    for (let i = 0; i < masters; i++) {
      // The cluster bus gets its own free port (the default, port + 10000, may be taken or > 65535).
      const busPort = await freePort();
      nodes.push(
        await startRedis({
          appendonly: opts.appendonly ?? true,
          args: [
            '--cluster-enabled',
            'yes',
            '--cluster-config-file',
            'nodes.conf',
            '--cluster-node-timeout',
            String(opts.nodeTimeoutMs ?? 5000),
            '--cluster-port',
            String(busPort),
            '--cluster-require-full-coverage',
            opts.requireFullCoverage === false ? 'no' : 'yes',
          ],
        }),
      );
    }
    await run('redis-cli', [
      '--cluster',
      'create',
      ...nodes.map((n) => `${HOST}:${n.port}`),
      '--cluster-replicas',
      '0',
      '--cluster-yes',
    ]);
    const deadline = Date.now() + 20_000;
    for (;;) {
      const infos = await Promise.all(nodes.map((n) => rawCommand(n.port, 'CLUSTER INFO', 1000)));
      if (infos.every((i) => i.includes('cluster_state:ok'))) break;
      if (Date.now() > deadline) throw new Error(`cluster not ok:\n${infos.join('\n')}`);
      await sleep(100);
    }
    return { urls: nodes.map((n) => n.url), nodes, stop: stopAll };
  } catch (err) {
    await stopAll();
    throw err;
  }
}
