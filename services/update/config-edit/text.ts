// The line model shared by the editors: lines with their own endings, and a UTF-8 BOM kept
// aside, so an edit changes only the lines it means to (CRLF stays CRLF).

// ---------------------------------------------------------------------------------------------
// Line model shared by the INI editor (and the EOL/BOM handling of the others)

export interface Line {
  text: string;
  /** The terminator that followed the line in the original ('' for the last line). */
  eol: string;
}

export interface SplitText {
  bom: string;
  lines: Line[];
  /** The terminator new lines get: the first one of the file, else "\n". */
  eol: string;
}

export function splitText(text: string): SplitText {
  const bom = text.startsWith('\uFEFF') ? '\uFEFF' : '';
  const parts = text.slice(bom.length).split(/(\r?\n)/);
  const lines: Line[] = [];
  for (let i = 0; i < parts.length; i += 2) {
    lines.push({ text: parts[i] as string, eol: parts[i + 1] ?? '' });
  }
  // "a\n" splits into ["a", "\n", ""]: the empty tail is no line of its own.
  const last = lines[lines.length - 1];
  if (last !== undefined && last.text === '' && last.eol === '') lines.pop();
  return { bom, lines, eol: parts[1] ?? '\n' };
}

export function joinText(split: SplitText): string {
  return split.bom + split.lines.map((l) => l.text + l.eol).join('');
}
