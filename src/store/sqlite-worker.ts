// Worker thread of the SQLite store: owns a second connection and runs the uplink appends off the event loop.
import Database from 'better-sqlite3';
import { parentPort, workerData } from 'node:worker_threads';
import { UplinkAppender, type FlatRows } from './sqlite-append.js';

interface Init {
  path: string;
  sync: 'full' | 'normal';
}

const { path, sync } = workerData as Init;
const db = new Database(path);
db.pragma('journal_mode = WAL');
db.pragma(`synchronous = ${sync === 'normal' ? 'NORMAL' : 'FULL'}`);
db.pragma('busy_timeout = 5000');
const appender = new UplinkAppender(db);

// The index and checkpoints every few seconds, as in-process.
appender.start();

parentPort!.on(
  'message',
  (msg: { id: number; rows: FlatRows } | { id: number; index: true } | { close: true }) => {
    if ('close' in msg) {
      try {
        appender.stop();
      } finally {
        db.close();
        parentPort!.close();
      }
      return;
    }
    try {
      // Every vehicle's runs now (retention asks before it goes through them).
      if ('index' in msg) {
        appender.writeIndex();
        parentPort!.postMessage({ id: msg.id, failures: [] });
        return;
      }
      parentPort!.postMessage({ id: msg.id, failures: appender.append(msg.rows) });
    } catch (err) {
      parentPort!.postMessage({
        id: msg.id,
        error: err instanceof Error ? err.message : String(err),
      });
    }
  },
);
