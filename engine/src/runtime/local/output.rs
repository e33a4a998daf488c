//! A process's output kept in memory: the last lines of its stdout and stderr together,
//! bounded by lines and by bytes. The pipes are read as bytes until they close, whatever is
//! written to them (invalid UTF-8, a line of megabytes): a reader that stopped early would
//! close its pipe and break the app on its next write (EPIPE).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::io::{AsyncRead, AsyncReadExt};

/// Lines of output kept per process.
pub(crate) const OUTPUT_LINES: usize = 500;
/// Longest line kept; the rest of a longer one is dropped while it is read.
pub(crate) const OUTPUT_LINE_BYTES: usize = 4096;
/// Most bytes of output kept per process (the oldest lines go first).
pub(crate) const OUTPUT_BYTES: usize = 256 * 1024;
/// Ends a line that was cut.
pub(crate) const CUT_MARK: &str = " [cut]";
/// How much is read from a pipe at a time.
const READ_BYTES: usize = 8192;

/// The kept lines.
#[derive(Debug, Default)]
pub(crate) struct Output {
    lines: VecDeque<String>,
    bytes: usize,
}

impl Output {
    pub(crate) fn push(&mut self, line: String) {
        self.bytes += line.len();
        self.lines.push_back(line);
        while self.lines.len() > OUTPUT_LINES || self.bytes > OUTPUT_BYTES {
            match self.lines.pop_front() {
                Some(old) => self.bytes -= old.len(),
                None => break,
            }
        }
    }

    /// The last `n` lines, joined by newlines.
    pub(crate) fn tail(&self, n: usize) -> String {
        let skip = self.lines.len().saturating_sub(n);
        let mut text = String::new();
        for (i, line) in self.lines.iter().skip(skip).enumerate() {
            if i > 0 {
                text.push('\n');
            }
            text.push_str(line);
        }
        text
    }

    /// Bytes held by the kept lines.
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }
}

/// Locks `output`, whether or not a panicking holder poisoned it (the lines stay valid).
pub(crate) fn lock(output: &Mutex<Output>) -> MutexGuard<'_, Output> {
    match output.lock() {
        Ok(o) => o,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// The line of one stream being read: at most [`OUTPUT_LINE_BYTES`] of it are held, however
/// long it gets before its newline.
#[derive(Debug, Default)]
pub(crate) struct LineBuf {
    bytes: Vec<u8>,
    cut: bool,
}

impl LineBuf {
    /// Takes in `chunk`, handing each line it completes to `done`.
    pub(crate) fn feed(&mut self, mut chunk: &[u8], mut done: impl FnMut(String)) {
        if self.bytes.capacity() == 0 {
            // Once, and never more: the line never grows past this.
            self.bytes.reserve_exact(OUTPUT_LINE_BYTES);
        }
        while !chunk.is_empty() {
            let (part, rest, ended) = match chunk.iter().position(|&b| b == b'\n') {
                Some(i) => (&chunk[..i], &chunk[i + 1..], true),
                None => (chunk, &[][..], false),
            };
            let room = OUTPUT_LINE_BYTES.saturating_sub(self.bytes.len());
            if part.len() > room {
                self.bytes.extend_from_slice(&part[..room]);
                self.cut = true;
            } else {
                self.bytes.extend_from_slice(part);
            }
            if ended {
                done(self.take());
            }
            chunk = rest;
        }
    }

    /// At the end of the stream: its last line, when it did not end with a newline.
    pub(crate) fn finish(&mut self) -> Option<String> {
        (!self.bytes.is_empty() || self.cut).then(|| self.take())
    }

    /// Bytes held for the line being read.
    #[cfg(test)]
    pub(crate) fn held(&self) -> usize {
        self.bytes.capacity()
    }

    /// The line so far, decoded (invalid UTF-8 becomes U+FFFD), and a fresh start.
    fn take(&mut self) -> String {
        let cut = std::mem::take(&mut self.cut);
        let mut bytes = &self.bytes[..];
        if cut {
            // A character split by the cut is left out rather than shown as U+FFFD.
            bytes = &bytes[..complete_utf8_len(bytes)];
        } else if let Some(b) = bytes.strip_suffix(b"\r") {
            bytes = b;
        }
        let mut line = String::from_utf8_lossy(bytes).into_owned();
        self.bytes.clear();
        // Each invalid byte became three: the kept line stays within the limit all the same.
        let mut cut = cut;
        if line.len() > OUTPUT_LINE_BYTES {
            let mut end = OUTPUT_LINE_BYTES;
            while !line.is_char_boundary(end) {
                end -= 1;
            }
            line.truncate(end);
            cut = true;
        }
        if cut {
            line.push_str(CUT_MARK);
        }
        line
    }
}

/// The length of `bytes` without a UTF-8 sequence that is cut short at its end.
fn complete_utf8_len(bytes: &[u8]) -> usize {
    // The last character starts at one of the last four bytes.
    for back in 1..=bytes.len().min(4) {
        let i = bytes.len() - back;
        let b = bytes[i];
        if b & 0xC0 == 0x80 {
            continue; // a continuation byte
        }
        let want = match b {
            0x00..=0x7F => 1,
            0xC0..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF7 => 4,
            _ => 1, // not a leading byte: shown as U+FFFD, not cut
        };
        return if back < want { i } else { bytes.len() };
    }
    bytes.len()
}

/// Reads `stream` to its end into `output`, line by line.
pub(crate) fn read_output(
    mut stream: impl AsyncRead + Unpin + Send + 'static,
    output: Arc<Mutex<Output>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut buf = vec![0u8; READ_BYTES];
        let mut line = LineBuf::default();
        let mut done = Vec::new();
        loop {
            match stream.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => {
                    line.feed(&buf[..n], |l| done.push(l));
                    if !done.is_empty() {
                        let mut out = lock(&output);
                        for l in done.drain(..) {
                            out.push(l);
                        }
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                // A pipe does not fail otherwise; there is nothing more to read if it does.
                Err(_) => break,
            }
        }
        if let Some(l) = line.finish() {
            lock(&output).push(l);
        }
    })
}
