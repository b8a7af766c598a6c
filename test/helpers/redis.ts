/**
 * A private redis-server for one test process: a free loopback port, no persistence (`--save ''`,
 * `--appendonly no`), its working folder in a temp directory, stopped (and the folder removed) by `stop()` or
 * when the process exits. Needs Debian's `redis-server` on PATH (`.ci/run` installs it); `startRedis` throws a
 * message saying so when it is missing. `kill`/`restart` simulate an outage (tests of the 503 and the recovery).
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface TestRedis {
  url: string;
  port: number;
  /** Kills the server (an outage); its data is gone (no persistence). */
  kill(): Promise<void>;
  /** Starts it again on the same port, empty. */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

export function redisServerAvailable(): boolean {
  return spawnSync('redis-server', ['--version'], { stdio: 'ignore' }).status === 0;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

async function launch(port: number, dir: string): Promise<ChildProcess> {
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--daemonize', 'no', '--loglevel', 'warning'];
  const child = spawn('redis-server', args, { stdio: ['ignore', 'ignore', 'inherit'] });
  const deadline = Date.now() + 10_000;
  while (!(await accepts(port))) {
    if (child.exitCode !== null) throw new Error(`redis-server exited with code ${child.exitCode}`);
    if (Date.now() > deadline) throw new Error('redis-server did not start within 10 s');
    await new Promise((r) => setTimeout(r, 25));
  }
  return child;
}

function halt(child: ChildProcess): Promise<void> {
  return new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once('exit', () => resolve());
    child.kill('SIGKILL');
  });
}

export async function startRedis(): Promise<TestRedis> {
  if (!redisServerAvailable()) throw new Error('redis-server is not installed (apt-get install -y redis-server); .ci/run installs it');
  const dir = mkdtempSync(join(tmpdir(), 'loraserve-redis-'));
  const port = await freePort();
  let child = await launch(port, dir);
  const onExit = () => {
    child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  };
  process.once('exit', onExit);
  let stopped: Promise<void> | undefined;
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    kill: () => halt(child),
    async restart() {
      await halt(child);
      child = await launch(port, dir);
    },
    stop() {
      stopped ??= (async () => {
        process.removeListener('exit', onExit);
        await halt(child);
        rmSync(dir, { recursive: true, force: true });
      })();
      return stopped;
    },
  };
}
