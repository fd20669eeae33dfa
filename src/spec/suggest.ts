import { closest, distance } from 'fastest-levenshtein';

/** `did you mean "x"? ` when a candidate is close to `word` (a typo), else ''. */
export function didYouMean(word: string, candidates: readonly string[]): string {
  if (!candidates.length) return '';
  const best = closest(word, candidates as string[]);
  const limit = Math.max(2, Math.floor(word.length / 3));
  return distance(word, best) <= limit ? `did you mean "${best}"? ` : '';
}
