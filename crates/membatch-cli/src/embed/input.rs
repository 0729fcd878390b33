//! The texts to embed, read a window at a time: lines of text, or one
//! field of each line of JSON Lines.

use std::io::{BufRead, Read};

use membatch_bin::{fail, Failure};

/// The most bytes one text (a line) may have. Far more than any model
/// reads (a text is cut to its first few hundred tokens): the limit is
/// there so that one runaway line cannot take the memory of thousands.
pub(super) const MAX_LINE_BYTES: usize = 16 << 20;

/// How each line becomes a text.
#[derive(Debug, Clone)]
pub(super) enum Layout {
    /// The line is the text (a trailing `\r` dropped).
    Lines,
    /// The line is a JSON object; the text is its string field `field`.
    /// Blank lines are skipped.
    JsonLines { field: String },
}

/// Reads texts from `reader`, a window at a time.
pub(super) struct Texts<R> {
    reader: R,
    layout: Layout,
    /// What the input is called in messages (`stdin`, a path).
    name: String,
    /// Lines read so far.
    line: usize,
    buf: Vec<u8>,
}

impl<R: BufRead> Texts<R> {
    pub(super) fn new(reader: R, layout: Layout, name: String) -> Self {
        Texts {
            reader,
            layout,
            name,
            line: 0,
            buf: Vec::new(),
        }
    }

    /// Fills `window` (cleared first) with up to `max_texts` texts, or
    /// fewer once they hold `max_bytes`; `false` when the input is done and
    /// nothing was read.
    pub(super) fn next_window(
        &mut self,
        window: &mut Vec<String>,
        max_texts: usize,
        max_bytes: usize,
    ) -> Result<bool, Failure> {
        window.clear();
        let mut bytes = 0;
        while window.len() < max_texts && bytes < max_bytes {
            match self.next_text()? {
                Some(text) => {
                    bytes += text.len();
                    window.push(text);
                }
                None => break,
            }
        }
        Ok(!window.is_empty())
    }

    /// The next text, or `None` at the end of the input.
    fn next_text(&mut self) -> Result<Option<String>, Failure> {
        loop {
            if !self.read_line()? {
                return Ok(None);
            }
            let at = || format!("{} line {}", self.name, self.line);
            match &self.layout {
                Layout::Lines => {
                    let text = String::from_utf8(std::mem::take(&mut self.buf))
                        .map_err(|_| fail(format!("{} is not valid UTF-8", at())))?;
                    return Ok(Some(text));
                }
                Layout::JsonLines { field } => {
                    if self.buf.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    let record: serde_json::Value = serde_json::from_slice(&self.buf)
                        .map_err(|e| fail(format!("{} is not a JSON object: {e}", at())))?;
                    return match record.get(field) {
                        Some(serde_json::Value::String(text)) => Ok(Some(text.clone())),
                        Some(other) => Err(fail(format!(
                            "{}: field {field:?} is {}, not a string",
                            at(),
                            kind(other)
                        ))),
                        None => Err(fail(format!(
                            "{} has no field {field:?} (choose it with --field)",
                            at()
                        ))),
                    };
                }
            }
        }
    }

    /// Reads the next line into `buf` without its `\n` (or `\r\n`);
    /// `false` at the end of the input. A final newline ends the last line:
    /// it does not start an empty one.
    fn read_line(&mut self) -> Result<bool, Failure> {
        self.buf.clear();
        let limit = MAX_LINE_BYTES as u64 + 2;
        let n = (&mut self.reader)
            .take(limit)
            .read_until(b'\n', &mut self.buf)
            .map_err(|e| fail(format!("cannot read {}: {e}", self.name)))?;
        if n == 0 {
            return Ok(false);
        }
        self.line += 1;
        if self.buf.last() == Some(&b'\n') {
            self.buf.pop();
            if self.buf.last() == Some(&b'\r') {
                self.buf.pop();
            }
        }
        if self.buf.len() > MAX_LINE_BYTES {
            return Err(fail(format!(
                "{} line {} is longer than {} (the most one text may have; a model reads only \
                 its first few hundred tokens): split it",
                self.name,
                self.line,
                bytesize::ByteSize(MAX_LINE_BYTES as u64)
            )));
        }
        Ok(true)
    }
}

/// A JSON value's kind, for messages.
fn kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(input: &[u8], layout: Layout) -> Result<Vec<String>, String> {
        let mut texts = Texts::new(input, layout, "stdin".into());
        let mut out = Vec::new();
        let mut window = Vec::new();
        while texts
            .next_window(&mut window, 2, usize::MAX)
            .map_err(|e| e.0)?
        {
            out.append(&mut window);
        }
        Ok(out)
    }

    #[test]
    fn lines_keep_inner_empty_lines_and_drop_the_final_newline() {
        assert_eq!(
            all(b"a\r\n\nb\nc\n", Layout::Lines).unwrap(),
            ["a", "", "b", "c"]
        );
        assert_eq!(all(b"a\nb", Layout::Lines).unwrap(), ["a", "b"]);
        assert!(all(b"", Layout::Lines).unwrap().is_empty());
    }

    #[test]
    fn invalid_utf8_names_the_line() {
        let e = all(b"ok\n\xff\xfe\n", Layout::Lines).unwrap_err();
        assert_eq!(e, "stdin line 2 is not valid UTF-8");
    }

    #[test]
    fn json_lines_take_the_field_and_skip_blank_lines() {
        let layout = Layout::JsonLines {
            field: "text".into(),
        };
        let input = b"{\"text\": \"a\", \"id\": 1}\n\n  \n{\"text\": \"b\\nc\"}\n";
        assert_eq!(all(input, layout.clone()).unwrap(), ["a", "b\nc"]);
        let e = all(b"{\"text\": \"a\"}\n{\"body\": \"b\"}\n", layout.clone()).unwrap_err();
        assert_eq!(
            e,
            "stdin line 2 has no field \"text\" (choose it with --field)"
        );
        let e = all(b"{\"text\": 3}\n", layout.clone()).unwrap_err();
        assert_eq!(e, "stdin line 1: field \"text\" is a number, not a string");
        let e = all(b"not json\n", layout).unwrap_err();
        assert!(e.starts_with("stdin line 1 is not a JSON object"), "{e}");
    }

    #[test]
    fn a_window_stops_at_its_byte_limit() {
        let mut texts = Texts::new(&b"aaaa\nbbbb\ncccc\n"[..], Layout::Lines, "stdin".into());
        let mut window = Vec::new();
        assert!(texts.next_window(&mut window, 100, 8).unwrap());
        assert_eq!(window, ["aaaa", "bbbb"]);
        assert!(texts.next_window(&mut window, 100, 8).unwrap());
        assert_eq!(window, ["cccc"]);
        assert!(!texts.next_window(&mut window, 100, 8).unwrap());
    }

    #[test]
    fn a_line_over_the_limit_is_refused_without_reading_it_whole() {
        let mut input = vec![b'x'; MAX_LINE_BYTES + 10];
        input.push(b'\n');
        let e = all(&input, Layout::Lines).unwrap_err();
        assert!(e.starts_with("stdin line 1 is longer than"), "{e}");
        // Exactly at the limit is a text.
        let mut input = vec![b'x'; MAX_LINE_BYTES];
        input.extend_from_slice(b"\r\n");
        assert_eq!(all(&input, Layout::Lines).unwrap()[0].len(), MAX_LINE_BYTES);
    }
}
