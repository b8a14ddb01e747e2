// A hash pool worker (hash-pool.ts): runs the jobs it is sent with the shared core, taking items
// from the job's shared counter alongside the other threads.
import { parentPort } from 'node:worker_threads';
import { take, type HashJobMessage, type HashJobReply } from './hash-core.ts';

const port = parentPort;
if (port === null) throw new Error('hash-worker.ts runs as a worker thread of the hash pool');

port.on('message', (msg: HashJobMessage) => {
  let reply: HashJobReply;
  try {
    take({
      ...msg,
      counter: new Int32Array(msg.counter),
      digests: Buffer.from(msg.digests),
      staged: new Uint8Array(msg.staged),
    });
    reply = { id: msg.id, ok: true };
  } catch (e) {
    reply = { id: msg.id, ok: false, error: e instanceof Error ? e.message : String(e) };
  }
  port.postMessage(reply);
});
