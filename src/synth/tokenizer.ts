/**
 * A small CLIP-format byte-level BPE tokenizer folder, built here instead of downloaded.
 *
 * Layout and conventions are CLIP's (openai/CLIP `clip/simple_tokenizer.py`, saved by transformers'
 * CLIPTokenizer.save_pretrained): vocab.json = the 256 byte characters of `bytes_to_unicode`, the same 256
 * with `</w>` (end of word), one token per merge in merge order, then `<|startoftext|>` and `<|endoftext|>`
 * (so the end token has the largest id, which the text encoder's pooler relies on); merges.txt starts with
 * `#version: 0.2`. The merges are learnt with plain BPE (Sennrich et al., subword-nmt `learn_bpe.py`) on a
 * small built-in corpus of prompt words, until every corpus word is a single token. Any other text still
 * tokenizes (down to single bytes), exactly as with the real vocabulary.
 */

/**
 * GPT-2 / CLIP `bytes_to_unicode`: printable bytes map to themselves, the others to U+0100 onwards.
 * Returns byte → character, and the characters in vocab.json order (printable bytes first).
 */
export function bytesToUnicode(): { byteToChar: string[]; vocabOrder: string[] } {
  const printable: number[] = [];
  for (let c = 0x21; c <= 0x7e; c++) printable.push(c);
  for (let c = 0xa1; c <= 0xac; c++) printable.push(c);
  for (let c = 0xae; c <= 0xff; c++) printable.push(c);
  const byteToChar = new Array<string>(256);
  for (const c of printable) byteToChar[c] = String.fromCharCode(c);
  const order = [...printable];
  let n = 0;
  for (let c = 0; c < 256; c++) {
    if (byteToChar[c] === undefined) {
      byteToChar[c] = String.fromCharCode(256 + n++);
      order.push(c);
    }
  }
  return { byteToChar, vocabOrder: order.map((c) => byteToChar[c]) };
}

const { byteToChar: BYTE_TO_CHAR, vocabOrder: BYTE_CHARS_IN_VOCAB_ORDER } = bytesToUnicode();

export const START_TOKEN = '<|startoftext|>';
export const END_TOKEN = '<|endoftext|>';

/**
 * Prompt words the merges are learnt from: the seed example's prompt and negative prompt plus common
 * booru/SD vocabulary, so typical prompts become a few whole-word tokens instead of dozens of bytes.
 */
export const TOKENIZER_CORPUS = [
  '//quality, (masterpiece:1.3), (detailed), ((,best quality,)),//,cute,1girl,//,brown cat ears,animal ear fluff,',
  '(light_brown hair:1.3),(red hair: 1.1),(red inner hair: 1.4), (straight bangs: 1.4),(,long_hair,single braid :1.4),',
  '(Ahoge),(detailed eyes,blue_eyes:1.4),medium chest,//, (yellow hairpin,crescent-shaped hairpin:1.4),off_shoulders,',
  'large red ribbon,(idol costume:1.4),thigh strap,frilled skirt,gloves,//,blush,smiling,upper_teeth,looking_down,//,',
  'hand_up,(holding microphone:1.3),(standing on stage),//,indoors,crowd of audience,Glow stick,scenery,',
  'colorful light particles,(colorful lights:1.3),(laser light:1.4),glow_in_the_dark,cowboy_shot,dynamic angle',
  'NSFW,text,(worst quality:1.331), (low quality:1.331), (normal quality:1.331), large head, extra digits, bad eye,',
  'extra fingers, fewer fingers, strange fingers, ((bad hands)), Strange eyes, Many hands, (Many arms), EasyNegativeV2,',
  'ng_deepnegative_v1_75t, pregnancy, badhandv4, six fingers, fused fingers, unclear eyes,poorly drawn,cloned face,bad face,',
  'cute 1girl, brown cat ears, idol costume, holding microphone, on stage, worst quality, low quality, bad hands',
  'a photo of an astronaut riding a horse on the moon, a painting of a castle in the mountains at sunset',
  'portrait of a woman with long black hair and green eyes, highly detailed, sharp focus, studio lighting',
  'landscape, forest, river, sky, clouds, night, city, street, rain, snow, flowers, tree, beach, ocean, sun',
  'smile, open mouth, closed eyes, looking at viewer, upper body, full body, solo, 1boy, 2girls, white dress',
  'black, white, blue, green, pink, purple, orange, silver, gold, dark, bright, soft, warm, cool, simple background',
  'best, high, resolution, 4k, 8k, realistic, photorealistic, anime, illustration, digital art, oil painting, sketch',
  'ugly, blurry, deformed, mutated, extra limbs, watermark, signature, username, jpeg artifacts, cropped, out of frame',
  'school uniform, shirt, jacket, hat, hood, boots, necklace, earrings, wings, tail, horns, sword, book, cup, cat, dog',
];

/** CLIP's pre-tokenizer (simple_tokenizer.py `pat`), applied to lower-cased, whitespace-collapsed text. */
const PRETOKENIZE = /<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+/giu;

export function pretokenize(text: string): string[] {
  const clean = text.replace(/\s+/g, ' ').trim().toLowerCase();
  return clean.match(PRETOKENIZE) ?? [];
}

function byteEncode(word: string): string[] {
  return [...new TextEncoder().encode(word)].map((b) => BYTE_TO_CHAR[b]);
}

/**
 * Learns BPE merges on `corpus` until every word is one symbol (or `maxMerges`). Ties between equally
 * frequent pairs go to the lexicographically smallest pair, so the result is fully deterministic.
 */
export function learnMerges(corpus: readonly string[], maxMerges = 4000): Array<[string, string]> {
  const counts = new Map<string, number>();
  for (const line of corpus) for (const w of pretokenize(line)) counts.set(w, (counts.get(w) ?? 0) + 1);
  const words: Array<{ symbols: string[]; count: number }> = [...counts.entries()]
    .sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
    .map(([w, count]) => {
      const symbols = byteEncode(w);
      symbols[symbols.length - 1] += '</w>';
      return { symbols, count };
    });
  const merges: Array<[string, string]> = [];
  while (merges.length < maxMerges) {
    const pairCounts = new Map<string, number>();
    for (const { symbols, count } of words) {
      for (let i = 0; i + 1 < symbols.length; i++) {
        const key = `${symbols[i]} ${symbols[i + 1]}`;
        pairCounts.set(key, (pairCounts.get(key) ?? 0) + count);
      }
    }
    let best: string | undefined;
    let bestCount = 0;
    for (const [key, c] of pairCounts) {
      if (c > bestCount || (c === bestCount && best !== undefined && key < best)) {
        best = key;
        bestCount = c;
      }
    }
    if (best === undefined) break;
    const [left, right] = best.split(' ') as [string, string];
    merges.push([left, right]);
    for (const w of words) {
      const out: string[] = [];
      for (let i = 0; i < w.symbols.length; i++) {
        if (i + 1 < w.symbols.length && w.symbols[i] === left && w.symbols[i + 1] === right) {
          out.push(left + right);
          i++;
        } else out.push(w.symbols[i]);
      }
      w.symbols = out;
    }
  }
  return merges;
}

export interface TokenizerFiles {
  'vocab.json': string;
  'merges.txt': string;
  'tokenizer_config.json': string;
  'special_tokens_map.json': string;
}

/** The four files of a CLIPTokenizer folder, as transformers' save_pretrained writes them. */
export function buildTokenizerFiles(opts: { padToken: string; corpus?: readonly string[] }): { files: TokenizerFiles; vocabSize: number } {
  const merges = learnMerges(opts.corpus ?? TOKENIZER_CORPUS);
  const vocab = new Map<string, number>();
  const add = (t: string): void => {
    if (!vocab.has(t)) vocab.set(t, vocab.size);
  };
  for (const c of BYTE_CHARS_IN_VOCAB_ORDER) add(c);
  for (const c of BYTE_CHARS_IN_VOCAB_ORDER) add(`${c}</w>`);
  for (const [l, r] of merges) add(l + r);
  add(START_TOKEN);
  add(END_TOKEN);

  // json.dumps(indent=2, sort_keys=True, ensure_ascii=False): sorted by code point, written by hand because
  // a JS object would put integer-like keys ("0", "1", …) first.
  const entries = [...vocab.entries()].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  const vocabJson = `{\n${entries.map(([k, v]) => `  ${JSON.stringify(k)}: ${v}`).join(',\n')}\n}\n`;
  const mergesTxt = `#version: 0.2\n${merges.map(([l, r]) => `${l} ${r}`).join('\n')}\n`;

  const added = (content: string, withType: boolean) => ({
    ...(withType ? { __type: 'AddedToken' } : {}),
    content,
    lstrip: false,
    normalized: true,
    rstrip: false,
    single_word: false,
  });
  const tokenizerConfig = {
    bos_token: added(START_TOKEN, true),
    clean_up_tokenization_spaces: true,
    eos_token: added(END_TOKEN, true),
    errors: 'replace',
    model_max_length: 77,
    pad_token: opts.padToken,
    tokenizer_class: 'CLIPTokenizer',
    unk_token: added(END_TOKEN, true),
  };
  const specialTokens = {
    bos_token: added(START_TOKEN, false),
    eos_token: added(END_TOKEN, false),
    pad_token: opts.padToken,
    unk_token: added(END_TOKEN, false),
  };
  return {
    files: {
      'vocab.json': vocabJson,
      'merges.txt': mergesTxt,
      'tokenizer_config.json': `${JSON.stringify(tokenizerConfig, null, 2)}\n`,
      'special_tokens_map.json': `${JSON.stringify(specialTokens, null, 2)}\n`,
    },
    vocabSize: vocab.size,
  };
}
