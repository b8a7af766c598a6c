/**
 * `loraserve <command>`: render, batch, tokenize, synth, serve. Every failure prints one clear line and exits 2
 * (bad input) or 1 (runtime failure); no partial output file is left behind.
 */
import { isLoraserveError, toLoraserveError } from '../core/errors.js';

const USAGE = `usage: loraserve <command> [options]

commands:
  render     render images from a prompt on a model folder        (loraserve render --help)
  batch      render a prompt file with sweeps, resume, contact sheets (loraserve batch --help)
  tokenize   print the CLIP token ids of a text                    (loraserve tokenize --help)
  synth      write a synthetic random-weight pipeline              (loraserve synth --help)
  serve      start the HTTP server                                 (loraserve serve --help)
`;

type Command = (argv: string[]) => Promise<number>;

const commands: Record<string, () => Promise<Command>> = {
  render: async () => (await import('./render.js')).renderCommand,
  batch: async () => (await import('./batch.js')).batchCommand,
  tokenize: async () => (await import('./tokenize.js')).tokenizeCommand,
  synth: async () => (await import('./synth.js')).synthCommand,
  serve: async () => (await import('./serve.js')).serveCommand,
};

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(USAGE);
    return name ? 0 : 2;
  }
  const load = commands[name];
  if (!load) {
    process.stderr.write(`loraserve: unknown command '${name}'\n${USAGE}`);
    return 2;
  }
  try {
    return await (await load())(rest);
  } catch (e) {
    const err = toLoraserveError(e);
    process.stderr.write(`loraserve ${name}: ${err.message} [${err.code}]\n`);
    if (!isLoraserveError(e) && process.env.LORASERVE_DEBUG) console.error(e);
    return err.status < 500 || err.code === 'MODEL_INVALID' ? 2 : 1;
  }
}
