// Worker thread of the SQLite store: owns a second connection and runs the uplink appends off the event loop.
import Database from 'better-sqlite3';
import { parentPort, workerData } from 'node:worker_threads';
import { UplinkAppender, runUpkeep, type WorkerCall, type WorkerInit } from './sqlite-append.js';

const { path, sync, background } = workerData as WorkerInit;
const db = new Database(path);
db.pragma('journal_mode = WAL');
db.pragma(`synchronous = ${sync === 'normal' ? 'NORMAL' : 'FULL'}`);
db.pragma('busy_timeout = 5000');
const appender = new UplinkAppender(db);

// The index and checkpoints every few seconds, as in-process.
if (background) appender.start();

const fail = (id: number, err: unknown): void =>
  parentPort!.postMessage({ id, error: err instanceof Error ? err.message : String(err) });

parentPort!.on('message', (msg: ({ id: number } & WorkerCall) | { close: true }) => {
  if ('close' in msg) {
    try {
      appender.stop();
    } finally {
      db.close();
      parentPort!.close();
    }
    return;
  }
  const { id } = msg;
  if ('upkeep' in msg) {
    // Retention asks for every vehicle's runs before it goes through them; tests drive the rest.
    runUpkeep(appender, msg.upkeep, msg.max).then(
      () => parentPort!.postMessage({ id, failures: [] }),
      (err: unknown) => fail(id, err),
    );
    return;
  }
  try {
    parentPort!.postMessage({ id, failures: appender.append(msg.rows) });
  } catch (err) {
    fail(id, err);
  }
});
