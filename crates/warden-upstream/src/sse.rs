//! The one server-sent-events parser: the fast path's answer streams and the legacy HTTP+SSE
//! transport both feed it chunk by chunk.
//!
//! It works line by line as the WHATWG spec says (lines end in CRLF, LF or a lone CR; a blank
//! line ends an event; a line starting with `:` is a comment). Each chunk is scanned once, and
//! only an unfinished line is copied (once), so the work is linear in the bytes received
//! however the stream is split. At most `max` bytes of an event are kept (its lines so far,
//! the unfinished one included): a server that never ends a line or an event cannot exhaust memory.

use std::collections::VecDeque;

/// One event. It is yielded as soon as it set any field (data, name, id or retry): an id alone
/// still moves the point a stream resumes from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Event {
    /// The `event:` field; empty means the default, `message`.
    pub(crate) name: String,
    pub(crate) id: Option<String>,
    pub(crate) retry: Option<u64>,
    /// The `data:` lines joined with `\n`.
    pub(crate) data: Vec<u8>,
}

/// An event (or one of its lines) grew past the parser's limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("an SSE event over {limit} bytes")]
pub(crate) struct TooLarge {
    pub(crate) limit: usize,
}

/// Splits an SSE byte stream into events.
#[derive(Debug)]
pub(crate) struct SseParser {
    max: usize,
    /// The unfinished line.
    line: Vec<u8>,
    /// Bytes of the current event's finished lines (without their line ends). The bound is
    /// on these plus the unfinished line: it does not depend on how the stream is split.
    raw: usize,
    /// The event being built, and whether any of its fields is set.
    current: Event,
    fields: bool,
    /// Whether `current` has a `data:` line (the next one is preceded by `\n`).
    has_data: bool,
    /// Events complete and not yet taken.
    ready: VecDeque<Event>,
    /// The previous chunk ended in CR: a LF starting this one belongs to that line end.
    after_cr: bool,
    failed: bool,
}

impl SseParser {
    /// A parser that refuses an event larger than `max` bytes.
    pub(crate) fn new(max: usize) -> Self {
        Self {
            max,
            line: Vec::new(),
            raw: 0,
            current: Event::default(),
            fields: false,
            has_data: false,
            ready: VecDeque::new(),
            after_cr: false,
            failed: false,
        }
    }

    /// Adds a chunk. Fails once the event being read is over the limit; the events complete
    /// before it can still be taken, and every later push fails.
    pub(crate) fn push(&mut self, mut chunk: &[u8]) -> Result<(), TooLarge> {
        if self.failed {
            return Err(TooLarge { limit: self.max });
        }
        if chunk.is_empty() {
            return Ok(());
        }
        if std::mem::take(&mut self.after_cr) && chunk[0] == b'\n' {
            chunk = &chunk[1..];
        }
        while let Some(i) = memchr::memchr2(b'\n', b'\r', chunk) {
            let end = chunk[i];
            self.raw += self.line.len() + i;
            if self.raw > self.max {
                return self.fail();
            }
            if self.line.is_empty() {
                self.take_line(&chunk[..i]);
            } else {
                self.line.extend_from_slice(&chunk[..i]);
                let line = std::mem::take(&mut self.line);
                self.take_line(&line);
                self.line = line;
                self.line.clear();
            }
            chunk = &chunk[i + 1..];
            if end == b'\r' {
                match chunk.first() {
                    Some(b'\n') => chunk = &chunk[1..],
                    Some(_) => {}
                    None => self.after_cr = true,
                }
            }
        }
        if self.raw + self.line.len() + chunk.len() > self.max {
            return self.fail();
        }
        self.line.extend_from_slice(chunk);
        Ok(())
    }

    /// The next complete event, if any.
    pub(crate) fn next_event(&mut self) -> Option<Event> {
        self.ready.pop_front()
    }

    fn fail(&mut self) -> Result<(), TooLarge> {
        self.failed = true;
        self.line = Vec::new();
        self.current = Event::default();
        Err(TooLarge { limit: self.max })
    }

    fn take_line(&mut self, line: &[u8]) {
        if line.is_empty() {
            self.raw = 0;
            self.has_data = false;
            if std::mem::take(&mut self.fields) {
                self.ready.push_back(std::mem::take(&mut self.current));
            }
            return;
        }
        let (field, value) = match line.iter().position(|b| *b == b':') {
            Some(0) => return,
            Some(p) => (&line[..p], &line[p + 1..]),
            None => (line, &line[line.len()..]),
        };
        let value = value.strip_prefix(b" ").unwrap_or(value);
        match field {
            b"data" => {
                if self.has_data {
                    self.current.data.push(b'\n');
                }
                self.current.data.extend_from_slice(value);
                self.has_data = true;
            }
            b"event" => self.current.name = String::from_utf8_lossy(value).into_owned(),
            // An id with a NUL is ignored (the spec's rule).
            b"id" if !value.contains(&0) => {
                self.current.id = Some(String::from_utf8_lossy(value).into_owned());
            }
            b"retry" if !value.is_empty() && value.iter().all(u8::is_ascii_digit) => {
                self.current.retry = std::str::from_utf8(value).ok().and_then(|v| v.parse().ok());
            }
            _ => return,
        }
        self.fields = true;
    }
}
