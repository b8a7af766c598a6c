/**
 * A1111's composable-diffusion split of the positive prompt: `a cat AND a dog :0.5` → subprompts with weights.
 *
 * Port of AUTOMATIC1111/stable-diffusion-webui v1.9.4 `modules/prompt_parser.py` `get_multicond_prompt_list`
 * (`re_AND`, `re_weight`). A1111 runs every positive prompt through it — also one without AND — so a trailing
 * `:number` is always taken off the text and becomes that prompt's guidance weight (CFGDenoiser.combine_denoised
 * multiplies the CFG scale by it), and trailing whitespace is dropped. The negative prompt does not go through
 * this (it uses get_learned_conditioning directly).
 */
import { asciiDigits, PY_SPACE, pyWordBounded } from './python-regex.js';

export interface WeightedSubprompt {
  text: string;
  weight: number;
}

/** `re_AND = re.compile(r"\bAND\b")` */
const RE_AND = new RegExp(pyWordBounded('AND'), 'gu');
/** `re_weight = re.compile(r"^((?:\s|.)*?)(?:\s*:\s*([-+]?(?:\d+\.?|\d*\.\d+)))?\s*$")` */
const RE_WEIGHT = new RegExp(`^([\\s\\S]*?)(?:${PY_SPACE}*:${PY_SPACE}*([-+]?(?:\\p{Nd}+\\.?|\\p{Nd}*\\.\\p{Nd}+)))?${PY_SPACE}*$`, 'u');

/**
 * Splits on AND and reads each part's trailing weight. Examples:
 *   'a cat'              → [{ text: 'a cat', weight: 1 }]
 *   'a cat :1.5 '        → [{ text: 'a cat', weight: 1.5 }]
 *   'a cat AND a dog:0.5' → [{ text: 'a cat', weight: 1 }, { text: ' a dog', weight: 0.5 }]
 */
export function splitComposablePrompt(prompt: string): WeightedSubprompt[] {
  return prompt.split(RE_AND).map((sub) => {
    const m = RE_WEIGHT.exec(sub);
    if (!m) return { text: sub, weight: 1.0 };
    return { text: m[1], weight: m[2] !== undefined ? Number(asciiDigits(m[2])) : 1.0 };
  });
}
