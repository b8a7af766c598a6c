/** The logger interface every layer takes (pino satisfies it). Lower layers never import pino. */
export interface Logger {
  debug(obj: object | string, msg?: string): void;
  info(obj: object | string, msg?: string): void;
  warn(obj: object | string, msg?: string): void;
  error(obj: object | string, msg?: string): void;
  child?(bindings: Record<string, unknown>): Logger;
}

const noop = () => {};
export const silentLogger: Logger = { debug: noop, info: noop, warn: noop, error: noop };

/** A plain stderr logger for the CLI and tests: one human line per message. */
export function consoleLogger(minLevel: 'debug' | 'info' | 'warn' | 'error' = 'info'): Logger {
  const order = { debug: 0, info: 1, warn: 2, error: 3 } as const;
  const make = (level: keyof typeof order) => (obj: object | string, msg?: string) => {
    if (order[level] < order[minLevel]) return;
    const text = typeof obj === 'string' ? obj : msg ?? '';
    const extra = typeof obj === 'string' ? '' : ' ' + JSON.stringify(obj);
    process.stderr.write(`[${level}] ${text}${extra === ' {}' ? '' : extra}\n`);
  };
  return { debug: make('debug'), info: make('info'), warn: make('warn'), error: make('error') };
}
