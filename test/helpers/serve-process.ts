/**
 * `loraserve serve` as a child process for process tests: its JSON log lines collected, a wait for the first line
 * that matches, and kill helpers. Each process listens on a free loopback port (`--port 0`) with one onnxruntime
 * thread; the caller passes the role, Redis URL, model and LoRA folder.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';

export type LogLine = Record<string, unknown>;

export interface ServeProcess {
  child: ChildProcess;
  logs: LogLine[];
  /** The exit code (null after a signal). */
  exited: Promise<number | null>;
  /** Resolves with the first log line that passes `match` (seen already or to come); rejects if the process exits first. */
  waitFor(match: (l: LogLine) => boolean, timeoutMs?: number): Promise<LogLine>;
  /** The HTTP base URL: the API's `url` log field (roles all and api). */
  url(): Promise<string>;
  /** The worker role's health URL and its worker ids. */
  worker(): Promise<{ health: string; ids: string[] }>;
  /** SIGKILL unless already gone; resolves once it exited. */
  kill(): Promise<void>;
  /** SIGTERM and its exit code. */
  stop(): Promise<number | null>;
}

export function spawnServe(args: string[], env: NodeJS.ProcessEnv = {}): ServeProcess {
  const child = spawn(process.execPath, ['bin/loraserve.js', 'serve', '--port', '0', '--threads', '1', ...args], {
    env: { ...process.env, HOST: '127.0.0.1', LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: LogLine[] = [];
  const waiters: Array<{ match: (l: LogLine) => boolean; resolve: (l: LogLine) => void }> = [];
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  createInterface({ input: child.stdout! }).on('line', (line) => {
    let entry: LogLine;
    try {
      entry = JSON.parse(line);
    } catch {
      return;
    }
    logs.push(entry);
    for (const w of waiters.splice(0)) (w.match(entry) ? w.resolve(entry) : waiters.push(w));
  });
  const gone = () => child.exitCode !== null || child.signalCode !== null;
  const waitFor = (match: (l: LogLine) => boolean, timeoutMs = 60_000) =>
    new Promise<LogLine>((resolve, reject) => {
      const seen = logs.find(match);
      if (seen) return resolve(seen);
      const timer = setTimeout(() => reject(new Error(`serve ${args.join(' ')}: no matching log line within ${timeoutMs} ms; stderr: ${stderr}`)), timeoutMs);
      waiters.push({
        match,
        resolve: (l) => {
          clearTimeout(timer);
          resolve(l);
        },
      });
      exited.then((code) => {
        clearTimeout(timer);
        reject(new Error(`serve ${args.join(' ')} exited early (${code}): ${stderr}`));
      });
    });
  return {
    child,
    logs,
    exited,
    waitFor,
    url: async () => String((await waitFor((l) => typeof l.url === 'string')).url),
    worker: async () => {
      const l = await waitFor((x) => typeof x.health === 'string' && Array.isArray(x.workers));
      return { health: String(l.health), ids: l.workers as string[] };
    },
    kill: async () => {
      if (!gone()) child.kill('SIGKILL');
      await exited;
    },
    stop: async () => {
      if (!gone()) child.kill('SIGTERM');
      return exited;
    },
  };
}
