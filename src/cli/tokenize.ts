/**
 * `loraserve tokenize`: `--raw TEXT` prints the plain CLIP ids of TEXT as JSON; `--prompt TEXT` prints the
 * chunks, token ids, token strings and per-token weights the text encoder will see (A1111's prompt language).
 */
import { join, resolve } from 'node:path';
import { LoraserveError } from '../core/errors.js';
import { describePrompt, loadModelTokenizer } from '../engine/tokenize.js';
import { num, parseFlags, requireStr, str } from './args.js';

const HELP = `usage: loraserve tokenize --model DIR (--raw TEXT | --prompt TEXT [--negative] [--steps N] [--embeddings-dir DIR])

  --model DIR           model folder (its tokenizer/ is used) or a tokenizer folder
  --raw TEXT            print {"ids": [...]}: the tokenizer ids of TEXT without BOS/EOS and without truncation
  --prompt TEXT         print the prompt as the text encoder sees it: <lora:> tags, prompt-editing schedule,
                        75-token chunks with ids, token strings and weights (JSON)
  --negative            treat --prompt as a negative prompt (tags stay text, as in A1111)
  --steps N             steps for the prompt-editing schedule (default 20)
  --embeddings-dir DIR  textual-inversion embeddings (default models/embeddings)
`;

export async function tokenizeCommand(argv: string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(HELP);
    return 0;
  }
  const { flags } = parseFlags(argv, {
    model: { type: 'string' },
    raw: { type: 'string' },
    prompt: { type: 'string' },
    negative: { type: 'boolean' },
    steps: { type: 'string' },
    'embeddings-dir': { type: 'string' },
  });
  const model = requireStr(flags, 'model');
  const raw = str(flags, 'raw');
  const prompt = str(flags, 'prompt');
  if ((raw === undefined) === (prompt === undefined)) throw new LoraserveError('INVALID_ARGUMENT', 'give exactly one of --raw TEXT or --prompt TEXT');
  if (raw !== undefined) {
    const tok = await loadModelTokenizer(model);
    process.stdout.write(JSON.stringify({ ids: tok.encode(raw) }) + '\n');
    return 0;
  }
  const described = await describePrompt(model, prompt!, {
    embeddingsDir: resolve(str(flags, 'embeddings-dir', join('models', 'embeddings'))!),
    steps: num(flags, 'steps', 20, { integer: true, min: 1, max: 10000 }),
    negative: Boolean(flags.negative),
  });
  process.stdout.write(JSON.stringify(described, null, 1) + '\n');
  return 0;
}
