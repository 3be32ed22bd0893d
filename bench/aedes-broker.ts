// An Aedes MQTT broker (in-memory persistence, defaults) for the peer-broker benchmark. Listens on
// 127.0.0.1 (port from argv[2], default 0 = ephemeral) and prints `AEDES_PORT <port>` once it listens.
// Stops on SIGTERM/SIGINT. Run: node --import tsx bench/aedes-broker.ts [port]
import { createServer } from 'node:net';
import { Aedes } from 'aedes';

const port = Number(process.argv[2] ?? 0);
const broker = await Aedes.createBroker();
const server = createServer(broker.handle);
server.maxConnections = 19_900;
server.listen({ host: '127.0.0.1', port, backlog: 4096 }, () => {
  const addr = server.address();
  if (addr !== null && typeof addr === 'object') process.stdout.write(`AEDES_PORT ${addr.port}\n`);
});

let stopping = false;
const stop = (): void => {
  if (stopping) return;
  stopping = true;
  server.close();
  broker.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 3_000).unref();
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
