// The gateway's /metrics text: prom-client defaults that scan every handle or descriptor on the
// event loop are left out, and process_open_fds is counted off the loop and reused for a while.
import { readdirSync } from 'node:fs';
import * as net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { GatewayMetrics } from '../../src/observability/metrics.js';

const linux = process.platform === 'linux';

/** The value of an unlabelled sample in Prometheus text, or undefined. */
function sample(text: string, name: string): number | undefined {
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
  return m === null ? undefined : Number(m[1]);
}

/** Opens `n` loopback connections (2n descriptors); close() ends them and the server. */
async function openSockets(n: number): Promise<{ close(): Promise<void> }> {
  const accepted: net.Socket[] = [];
  const server = net.createServer((s) => accepted.push(s));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  const clients = await Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<net.Socket>((resolve, reject) => {
          const c = net.connect(port, '127.0.0.1', () => resolve(c));
          c.once('error', reject);
        }),
    ),
  );
  while (accepted.length < n) await new Promise((r) => setTimeout(r, 5));
  return {
    async close() {
      for (const s of [...clients, ...accepted]) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

describe('GatewayMetrics defaults', () => {
  let sockets: { close(): Promise<void> } | undefined;
  afterEach(async () => {
    await sockets?.close();
    sockets = undefined;
  });

  it('follows Prometheus naming: every *_total is a counter, every counter ends in _total', async () => {
    const m = new GatewayMetrics();
    m.ack(0, 3);
    const text = await m.text();
    const types = [...text.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map(([, name, type]) => ({
      name: name!,
      type: type!,
    }));
    expect(types.length).toBeGreaterThan(10);
    for (const { name, type } of types) {
      expect(type === 'counter', `${name} is a ${type}`).toBe(name.endsWith('_total'));
    }
  });

  it('leaves out the collectors that walk every handle, keeps the process metrics', async () => {
    const text = await new GatewayMetrics().text();
    for (const name of ['nodejs_active_handles', 'nodejs_active_resources'])
      expect(text).not.toMatch(new RegExp(`^${name}`, 'm'));
    for (const name of [
      'process_cpu_user_seconds_total',
      'process_resident_memory_bytes',
      'nodejs_eventloop_lag_max_seconds',
      'nodejs_heap_size_used_bytes',
      'vmcp_connections',
    ])
      expect(text).toMatch(new RegExp(`^${name}`, 'm'));
    expect(text.match(/^# TYPE process_open_fds /gm) ?? []).toHaveLength(linux ? 1 : 0);
  });

  it.runIf(linux)('counts open file descriptors as /proc/self/fd lists them', async () => {
    const metrics = new GatewayMetrics({ openFdsRefreshMs: 0 });
    const before = sample(await metrics.text(), 'process_open_fds')!;
    sockets = await openSockets(40);
    const after = sample(await metrics.text(), 'process_open_fds')!;
    // Two descriptors per connection: the accepted socket and the client's.
    expect(after - before).toBeGreaterThanOrEqual(80);
    const listed = readdirSync('/proc/self/fd').length - 1;
    expect(Math.abs(after - listed)).toBeLessThanOrEqual(4);
  });

  it.runIf(linux)('reuses a count within the refresh interval, counts again after it', async () => {
    const cached = new GatewayMetrics({ openFdsRefreshMs: 3_600_000 });
    const fresh = new GatewayMetrics({ openFdsRefreshMs: 0 });
    const first = sample(await cached.text(), 'process_open_fds')!;
    sockets = await openSockets(30);
    expect(sample(await cached.text(), 'process_open_fds')).toBe(first);
    expect(sample(await fresh.text(), 'process_open_fds')!).toBeGreaterThanOrEqual(first + 60);
  });

  it.runIf(linux)('answers concurrent scrapes from one count', async () => {
    const metrics = new GatewayMetrics({ openFdsRefreshMs: 0 });
    const texts = await Promise.all([metrics.text(), metrics.text(), metrics.text()]);
    const values = texts.map((t) => sample(t, 'process_open_fds'));
    expect(values[0]).toBeGreaterThan(0);
    expect(new Set(values).size).toBe(1);
  });
});
