import { type Document, isMap, isScalar, isSeq, type LineCounter, type Node, Scalar } from 'yaml';

export type SpecPath = (string | number)[];

export interface SourceLocation {
  line: number;
  col: number;
}

/**
 * Maps a path in the parsed spec back to a YAML line:column. When the path goes deeper than the
 * document (a shorthand string expanded to an object, a missing key), the deepest node that exists
 * is used, so every issue still points somewhere useful.
 */
export class SourceMap {
  readonly #doc: Document;
  readonly #lines: LineCounter;
  readonly #text: string;

  constructor(doc: Document, lines: LineCounter, text: string) {
    this.#doc = doc;
    this.#lines = lines;
    this.#text = text;
  }

  /** Position of the value at `path`, or of its key when `atKey` is set (for unknown keys). */
  locate(path: SpecPath, atKey = false): SourceLocation {
    const offset = this.#offsetOf(path, atKey);
    return this.#toLocation(offset);
  }

  /** Position of a character offset inside the string scalar at `path` (a SQL expression). */
  locateInScalar(path: SpecPath, offset: number): SourceLocation {
    const node = this.#nodeAt(path).node;
    if (!isScalar(node) || !node.range || typeof node.value !== 'string') return this.locate(path);
    const start = node.range[0];
    switch (node.type) {
      case Scalar.QUOTE_DOUBLE:
      case Scalar.QUOTE_SINGLE:
        if (!node.value.slice(0, offset).includes('\n')) return this.#toLocation(start + 1 + offset);
        return this.#toLocation(start);
      case Scalar.PLAIN:
        if (!node.value.slice(0, offset).includes('\n')) return this.#toLocation(start + offset);
        return this.#toLocation(start);
      default: {
        // Block scalar: the header line, then content lines at a fixed indentation.
        const before = node.value.slice(0, offset).split('\n');
        const lineInValue = before.length - 1;
        const colInLine = before.at(-1)?.length ?? 0;
        const headerEnd = this.#text.indexOf('\n', start);
        const body = this.#text.slice(headerEnd + 1);
        const indent = /^( *)/.exec(body)?.[1]?.length ?? 0;
        const header = this.#toLocation(start);
        return { line: header.line + 1 + lineInValue, col: indent + colInLine + 1 };
      }
    }
  }

  #toLocation(offset: number): SourceLocation {
    const pos = this.#lines.linePos(offset);
    return { line: pos.line, col: pos.col };
  }

  #nodeAt(path: SpecPath): { node: Node | null; keyNode: Node | null; complete: boolean } {
    let node: Node | null = (this.#doc.contents as Node | null) ?? null;
    let keyNode: Node | null = null;
    for (const segment of path) {
      if (isMap(node)) {
        const pair = node.items.find((p) => isScalar(p.key) && p.key.value === segment);
        if (!pair) return { node, keyNode: null, complete: false };
        keyNode = (pair.key as Node) ?? null;
        node = (pair.value as Node | null) ?? keyNode;
      } else if (isSeq(node) && typeof segment === 'number') {
        const item = node.items[segment] as Node | undefined;
        if (!item) return { node, keyNode: null, complete: false };
        keyNode = null;
        node = item;
      } else {
        return { node, keyNode: null, complete: false };
      }
    }
    return { node, keyNode, complete: true };
  }

  #offsetOf(path: SpecPath, atKey: boolean): number {
    const { node, keyNode, complete } = this.#nodeAt(path);
    if (atKey && complete && keyNode?.range) return keyNode.range[0];
    if (node?.range) return node.range[0];
    return 0;
  }
}

export function formatPath(path: SpecPath): string {
  let out = '';
  for (const segment of path) {
    if (typeof segment === 'number') out += `[${segment}]`;
    else out += out ? `.${segment}` : segment;
  }
  return out || '(root)';
}
