/**
 * Reads a fenced code block out of README.md, so a proxy test runs the recipe
 * users copy, verbatim. `substitute` changes only the strings a test names,
 * each of which must occur exactly once (a recipe that drifted fails loudly).
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';

const README = path.join(__dirname, '..', '..', 'README.md');

/** The only ```<lang> block of README.md; throws if there is none or more than one. */
export function readmeBlock(lang: string): string {
  const text = readFileSync(README, 'utf8');
  const fence = new RegExp('^```' + lang + '\\n([\\s\\S]*?)^```$', 'gm');
  const blocks = [...text.matchAll(fence)].map((m) => m[1]!);
  if (blocks.length !== 1) throw new Error(`README.md has ${blocks.length} \`\`\`${lang} blocks, expected exactly one`);
  return blocks[0]!;
}

/**
 * Replaces each key of `replacements` by its value. A key must occur exactly
 * once in `text`, or exactly `n` times when its value is given as `[value, n]`.
 */
export function substitute(text: string, replacements: Record<string, string | [string, number]>): string {
  let out = text;
  for (const [from, value] of Object.entries(replacements)) {
    const [to, times] = typeof value === 'string' ? [value, 1] : value;
    const count = out.split(from).length - 1;
    if (count !== times)
      throw new Error(`README recipe: expected ${JSON.stringify(from)} ${times} time(s), found it ${count} times`);
    out = out.split(from).join(to);
  }
  return out;
}
