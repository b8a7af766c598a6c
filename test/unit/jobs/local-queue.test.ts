/** The in-process queue on real render worker threads (tiny model), through the shared queue suite. */
import { before } from 'node:test';
import { LocalQueue } from '../../../src/jobs/local-queue.js';
import type { JobQueue } from '../../../src/jobs/queue.js';
import { RenderHost } from '../../../src/jobs/render-host.js';
import { tinyModelDir } from '../../helpers/tiny-model.js';
import { runQueueSuite } from './queue-suite.js';

let modelDir: string;
before(async () => {
  modelDir = await tinyModelDir();
});

const hosts = new WeakMap<JobQueue, RenderHost>();

runQueueSuite('LocalQueue', {
  async makeQueue({ maxQueued }) {
    let host: RenderHost | undefined;
    const q = new LocalQueue({
      maxQueued,
      devices: [{ kind: 'cpu', threads: 1 }],
      hostFactory: async (device, logger) => (host = await RenderHost.start(modelDir, device, logger)),
    });
    await q.ready();
    hosts.set(q, host!);
    return q;
  },
  async killWorkerDuringNextJob(queue) {
    // Test-only poke at the host's thread: a 'shutdown' message makes the worker release its model and exit;
    // the next render is then pending on a thread that is gone, exactly what a crash looks like to the host.
    const worker = (hosts.get(queue) as unknown as { worker: { postMessage(m: unknown): void } }).worker;
    worker.postMessage({ type: 'shutdown' });
  },
});
