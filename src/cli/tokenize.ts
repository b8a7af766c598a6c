/** `loraserve tokenize --model DIR --raw TEXT`: the plain CLIP token ids of TEXT as JSON. */
import { LoraserveError } from '../core/errors.js';
import { loadModelTokenizer } from '../engine/tokenize.js';
import { parseFlags, requireStr, str } from './args.js';

const HELP = `usage: loraserve tokenize --model DIR --raw TEXT

  --model DIR   model folder (its tokenizer/ is used) or a tokenizer folder
  --raw TEXT    print {"ids": [...]}: the tokenizer ids of TEXT without BOS/EOS and without truncation
`;

export async function tokenizeCommand(argv: string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(HELP);
    return 0;
  }
  const { flags } = parseFlags(argv, { model: { type: 'string' }, raw: { type: 'string' } });
  const model = requireStr(flags, 'model');
  const raw = str(flags, 'raw');
  if (raw === undefined) throw new LoraserveError('INVALID_ARGUMENT', '--raw TEXT is required');
  const tok = await loadModelTokenizer(model);
  process.stdout.write(JSON.stringify({ ids: tok.encode(raw) }) + '\n');
  return 0;
}
