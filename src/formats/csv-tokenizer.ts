/**
 * An incremental RFC 4180 CSV tokenizer that keeps line numbers and the raw text of every record
 * and recovers from malformed input line by line (csv-parse, on a bad quote, drops the lines that
 * follow it; here only the bad line is lost).
 *
 * - A field that starts with the quote character is quoted: delimiters and line breaks inside it
 *   are data; the escape character followed by the quote (or by itself) stands for that character
 *   (with escape = quote this is the usual doubled quote `""`).
 * - A quote inside an unquoted field is kept as data (`5'10"`).
 * - Lines end with `\n` or `\r\n`. Empty lines are skipped. A leading byte order mark is dropped.
 * - Malformed input (a character other than a delimiter or a line end after a closing quote; a
 *   quoted field never closed, or longer than `maxRecordChars`) is reported with the raw text of
 *   the physical line where the record starts, and parsing resumes on the next line.
 */

export interface CsvDialect {
  delimiter: string;
  quote: string;
  escape: string;
}

export interface CsvRowHandler {
  /** A record: its fields, the line it starts on, and its raw text as `text.slice(start, end)`. */
  row(fields: string[], line: number, text: string, start: number, end: number): void;
  /** Malformed input starting on `line`: `raw` is the text that is dropped. */
  malformed(message: string, line: number, raw: string): void;
}

const NEED_MORE = -1;

/** A malformed record found by `#parseRecord`: the reason and where in the text it was noticed. */
interface Malformed {
  message: string;
  at: number;
  /** True: drop the record's first physical line only and re-read the following lines. */
  firstLineOnly: boolean;
}

export class CsvTokenizer {
  readonly #d: number;
  readonly #q: number;
  readonly #e: number;
  readonly #quote: string;
  readonly #maxRecordChars: number;
  /** Text not consumed yet; it always starts at a record boundary. */
  #text = '';
  /** Chunks received since the last parse attempt (joined lazily). */
  #pending: string[] = [];
  #pendingLength = 0;
  /** Do not retry a record that needed more input until this much text is buffered (amortised). */
  #retryAt = 0;
  /** Line number of the start of `#text`. */
  #line = 1;
  #first = true;
  #fields: string[] = [];
  #malformed: Malformed | undefined;
  #recordEndLine = 0;

  constructor(dialect: CsvDialect, maxRecordChars = 64 * 1024 * 1024) {
    if (dialect.delimiter.length !== 1 || dialect.quote.length !== 1 || dialect.escape.length !== 1)
      throw new RangeError('CSV delimiter, quote and escape must be one character each');
    this.#d = dialect.delimiter.charCodeAt(0);
    this.#q = dialect.quote.charCodeAt(0);
    this.#e = dialect.escape.charCodeAt(0);
    this.#quote = dialect.quote;
    this.#maxRecordChars = maxRecordChars;
  }

  /** Feeds decoded text; complete records are handed to `handler` synchronously. */
  feed(chunk: string, handler: CsvRowHandler): void {
    if (chunk.length === 0) return;
    this.#pending.push(chunk);
    this.#pendingLength += chunk.length;
    if (this.#text.length + this.#pendingLength < this.#retryAt) return;
    this.#parse(false, handler);
  }

  /** The input has ended: whatever is left is parsed as the last record(s). */
  end(handler: CsvRowHandler): void {
    this.#parse(true, handler);
  }

  #parse(final: boolean, handler: CsvRowHandler): void {
    let text = this.#text;
    if (this.#pending.length) {
      text += this.#pending.length === 1 ? this.#pending[0] : this.#pending.join('');
      this.#pending = [];
      this.#pendingLength = 0;
    }
    if (this.#first && text.length > 0) {
      this.#first = false;
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    }
    const n = text.length;
    let pos = 0;
    let line = this.#line;
    while (pos < n) {
      // Skip empty lines.
      const c = text.charCodeAt(pos);
      if (c === 10) {
        pos++;
        line++;
        continue;
      }
      if (c === 13 && pos + 1 < n && text.charCodeAt(pos + 1) === 10) {
        pos += 2;
        line++;
        continue;
      }
      const end = this.#parseRecord(text, pos, final);
      if (end === NEED_MORE) {
        if (n - pos > this.#maxRecordChars) {
          this.#malformed = {
            message: `a record is longer than ${this.#maxRecordChars} characters (is a quoted field not closed?)`,
            at: n,
            firstLineOnly: true,
          };
        } else break;
      }
      const malformed = this.#malformed;
      if (malformed) {
        this.#malformed = undefined;
        // The text dropped: the record's first line (unclosed quote), or up to the end of the
        // line where the problem was seen.
        let stop = text.indexOf('\n', malformed.firstLineOnly ? pos : malformed.at);
        if (stop === -1) {
          if (!final && !malformed.firstLineOnly) break;
          stop = n;
        }
        const rawEnd = stop > pos && text.charCodeAt(stop - 1) === 13 ? stop - 1 : stop;
        handler.malformed(malformed.message, line, text.slice(pos, rawEnd));
        line += countNewlines(text, pos, stop) + (stop < n ? 1 : 0);
        pos = stop < n ? stop + 1 : n;
        continue;
      }
      // `end` is the index after the record's line break (or n at the end of the input).
      let rawEnd = end;
      if (rawEnd > pos && text.charCodeAt(rawEnd - 1) === 10) rawEnd--;
      if (rawEnd > pos && text.charCodeAt(rawEnd - 1) === 13) rawEnd--;
      const fields = this.#fields;
      this.#fields = [];
      handler.row(fields, line, text, pos, rawEnd);
      line += this.#recordEndLine;
      pos = end;
    }
    this.#line = line;
    this.#text = pos >= n ? '' : text.slice(pos);
    this.#retryAt = 2 * this.#text.length;
  }

  /**
   * Parses one record starting at `p` into `#fields`. Returns the index after its line break,
   * NEED_MORE when the text ends inside it (and the input has not), or sets `#malformed`.
   * Sets `#recordEndLine` to the number of line breaks the record spans (including its own).
   */
  #parseRecord(s: string, p: number, final: boolean): number {
    const n = s.length;
    const D = this.#d;
    const Q = this.#q;
    const E = this.#e;
    const fields: string[] = [];
    this.#fields = fields;
    let newlines = 0;
    let i = p;
    for (;;) {
      if (i < n && s.charCodeAt(i) === Q) {
        // Quoted field.
        let value = '';
        let seg = i + 1;
        let j = seg;
        for (;;) {
          if (j >= n) {
            if (!final) return NEED_MORE;
            this.#malformed = {
              message: `a quoted field is not closed (${this.#quote} opened on this line)`,
              at: n,
              firstLineOnly: true,
            };
            return 0;
          }
          const c = s.charCodeAt(j);
          if (c === E && E !== Q) {
            if (j + 1 >= n) {
              if (!final) return NEED_MORE;
              j++;
              continue;
            }
            const next = s.charCodeAt(j + 1);
            if (next === Q || next === E) {
              value += s.slice(seg, j);
              seg = j + 1;
              j += 2;
              continue;
            }
            j++;
            continue;
          }
          if (c === Q) {
            if (E === Q) {
              if (j + 1 >= n && !final) return NEED_MORE;
              if (j + 1 < n && s.charCodeAt(j + 1) === Q) {
                value += s.slice(seg, j + 1);
                j += 2;
                seg = j;
                continue;
              }
            }
            // Closing quote.
            value += s.slice(seg, j);
            newlines += countNewlines(s, i, j);
            i = j + 1;
            break;
          }
          j++;
        }
        fields.push(value);
        if (i >= n) {
          if (!final) return NEED_MORE;
          this.#recordEndLine = newlines;
          return n;
        }
        const c = s.charCodeAt(i);
        if (c === D) {
          i++;
          continue;
        }
        if (c === 10) {
          this.#recordEndLine = newlines + 1;
          return i + 1;
        }
        if (c === 13) {
          if (i + 1 >= n) {
            if (!final) return NEED_MORE;
            this.#recordEndLine = newlines;
            return n;
          }
          if (s.charCodeAt(i + 1) === 10) {
            this.#recordEndLine = newlines + 1;
            return i + 2;
          }
        }
        this.#malformed = {
          message: `unexpected character ${JSON.stringify(s[i])} after the closing ${this.#quote} of field ${fields.length}`,
          at: i,
          firstLineOnly: false,
        };
        return 0;
      }
      // Unquoted field: up to the delimiter or the line end.
      let j = i;
      while (j < n) {
        const c = s.charCodeAt(j);
        if (c === D || c === 10) break;
        j++;
      }
      if (j >= n) {
        if (!final) return NEED_MORE;
        fields.push(s.slice(i, j > i && s.charCodeAt(j - 1) === 13 ? j - 1 : j));
        this.#recordEndLine = newlines;
        return n;
      }
      if (s.charCodeAt(j) === D) {
        fields.push(s.slice(i, j));
        i = j + 1;
        continue;
      }
      fields.push(s.slice(i, j > i && s.charCodeAt(j - 1) === 13 ? j - 1 : j));
      this.#recordEndLine = newlines + 1;
      return j + 1;
    }
  }
}

function countNewlines(s: string, from: number, to: number): number {
  let count = 0;
  let i = s.indexOf('\n', from);
  while (i !== -1 && i < to) {
    count++;
    i = s.indexOf('\n', i + 1);
  }
  return count;
}
