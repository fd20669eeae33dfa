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
 * - A bad record is reported with the raw text of the physical line where it starts, and parsing
 *   resumes on the next line. Bad means malformed (a character other than a delimiter or a line
 *   end after a closing quote; a quoted field never closed, or longer than `maxRecordChars`) or
 *   refused by the handler (a wrong field count, a value that does not convert). A bad record
 *   that runs over several lines through a quoted field is most likely an opening quote never
 *   closed, which swallowed the lines after it: so only its first line is dropped, and the lines
 *   after it are read again as records of their own (a record on one line is dropped whole).
 *   Valid input never takes this path, so recovery costs it nothing.
 */

export interface CsvDialect {
  delimiter: string;
  quote: string;
  escape: string;
}

/** Why a record is bad: what the error says, and details for its error record. */
export interface CsvProblem {
  message: string;
  details?: Record<string, unknown>;
}

export interface CsvRowHandler {
  /**
   * A record: its fields and the line it starts on. Returns undefined when it took the record,
   * or the problem that makes the record bad: the tokenizer then hands it to `bad` with the
   * text it drops (see the recovery rule above).
   */
  row(fields: string[], line: number): CsvProblem | undefined;
  /**
   * A bad record starting on `line`: `raw` is the text that is dropped; `resumeLine` is set when
   * only the first line of a record that ran over several lines was dropped, and is the line
   * parsing resumes on.
   */
  bad(problem: CsvProblem, line: number, raw: string, resumeLine?: number): void;
}

const NEED_MORE = -1;

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
  /** Set by `#parseRecord` when the record is malformed; `at` is where in the text it was seen. */
  #malformed: (CsvProblem & { at: number }) | undefined;
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
      let problem: CsvProblem | undefined;
      /** Where the problem was seen: the end of the record when the handler refused it. */
      let seenAt = n;
      let malformed = false;
      if (end === NEED_MORE) {
        if (n - pos <= this.#maxRecordChars) break;
        problem = {
          message: `a record is longer than ${this.#maxRecordChars} characters (is a quoted field not closed?)`,
        };
      } else if (this.#malformed) {
        problem = this.#malformed;
        seenAt = this.#malformed.at;
        this.#malformed = undefined;
        malformed = true;
      } else {
        const fields = this.#fields;
        this.#fields = [];
        problem = handler.row(fields, line);
        seenAt = end;
      }
      if (problem === undefined) {
        line += this.#recordEndLine;
        pos = end;
        continue;
      }
      // A bad record: its first physical line is dropped and parsing resumes on the next one.
      let stop = text.indexOf('\n', pos);
      if (stop === -1) {
        // Malformed on its first line, whose end is still to come.
        if (malformed && !final) break;
        stop = n;
      }
      const rawEnd = stop > pos && text.charCodeAt(stop - 1) === 13 ? stop - 1 : stop;
      const resumeAt = stop < n ? stop + 1 : n;
      handler.bad(problem, line, text.slice(pos, rawEnd), seenAt > resumeAt ? line + 1 : undefined);
      line += stop < n ? 1 : 0;
      pos = resumeAt;
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
