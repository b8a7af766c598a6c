/**
 * The API side of file notices: publishes what changed in its LoRA and embeddings folders on the queue's
 * files channel (src/jobs/file-wire.ts fileChannel), where every render worker's FileSync listens.
 *
 * Pub/sub is not durable: a worker that was disconnected when a notice went out catches up by a full manifest
 * sync when its subscription comes back, on a timer, and on the `resync` notice an API sends when it starts.
 */
import { Redis } from 'ioredis';
import { type Logger, silentLogger } from '../core/logger.js';
import { DEFAULT_PREFIX, DEFAULT_QUEUE_NAME, redisOptionsFromUrl } from './bullmq-wire.js';
import { fileChannel, type FileNotice } from './file-wire.js';

export interface FileNoticeOptions {
  redisUrl: string;
  prefix?: string;
  queueName?: string;
  logger?: Logger;
}

export class FileNoticePublisher {
  readonly channel: string;
  private readonly redis: Redis;
  private readonly log: Logger;

  constructor(opts: FileNoticeOptions) {
    this.channel = fileChannel(opts.prefix ?? DEFAULT_PREFIX, opts.queueName ?? DEFAULT_QUEUE_NAME);
    this.redis = new Redis({ ...redisOptionsFromUrl(opts.redisUrl), maxRetriesPerRequest: 3 });
    this.log = opts.logger ?? silentLogger;
    this.redis.on('error', (e) => this.log.debug({ err: String(e) }, 'file notices: Redis connection error'));
  }

  /** Publishes each notice; a failure is logged (workers catch up on their next full sync), never thrown. */
  async publish(notices: readonly FileNotice[]): Promise<void> {
    for (const n of notices) {
      try {
        await this.redis.publish(this.channel, JSON.stringify(n));
      } catch (e) {
        this.log.warn({ err: String(e), notice: n }, 'file notice not published; workers see the change on their next full sync');
      }
    }
    if (notices.length) this.log.info({ notices: notices.map((n) => ('resync' in n ? 'resync' : `${n.kind}:${n.name}${'deleted' in n ? ' deleted' : ''}`)) }, 'file notices published');
  }

  async close(): Promise<void> {
    await this.redis.quit().catch(() => this.redis.disconnect());
  }
}
