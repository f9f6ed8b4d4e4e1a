//! Reading lines a child writes, with a bound: a child that never writes a newline cannot make
//! Warden hold more than the bound (the rest of an over-long line is read and dropped).

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, BufReader};

use crate::Activity;

/// The longest stderr line kept (for a check's reason, or the log).
pub(crate) const MAX_STDERR_LINE: usize = 4 * 1024;

/// Reads one line into `buf`, keeping at most `max` bytes of it (the rest of an over-long line
/// is consumed and discarded, so a child writing without newlines cannot exhaust memory), and
/// counts every byte as liveness the moment it arrives. Returns the bytes consumed (0 at EOF)
/// and whether the line was cut.
pub async fn read_line<R: AsyncBufRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
    activity: &Activity,
) -> std::io::Result<(usize, bool)> {
    let mut total = 0;
    let mut cut = false;
    loop {
        let chunk = r.fill_buf().await?;
        if chunk.is_empty() {
            return Ok((total, cut));
        }
        let (take, done) = match memchr::memchr(b'\n', chunk) {
            Some(i) => (i + 1, true),
            None => (chunk.len(), false),
        };
        let room = max.saturating_sub(buf.len());
        if take <= room {
            buf.extend_from_slice(&chunk[..take]);
        } else {
            buf.extend_from_slice(&chunk[..room]);
            cut = true;
        }
        activity.touch(take);
        r.consume(take);
        total += take;
        if done {
            return Ok((total, cut));
        }
    }
}

/// The last non-empty line of `r` (a command's stderr), at most [`MAX_STDERR_LINE`] bytes of
/// it, and whether it was cut.
pub(crate) async fn last_line<R: AsyncRead + Unpin>(r: R) -> (String, bool) {
    let mut reader = BufReader::new(r);
    let activity = Activity::new();
    let mut line = Vec::new();
    let mut last = (String::new(), false);
    loop {
        line.clear();
        match read_line(&mut reader, &mut line, MAX_STDERR_LINE, &activity).await {
            Ok((0, _)) | Err(_) => return last,
            Ok((_, cut)) => {
                let text = String::from_utf8_lossy(&line);
                if !text.trim().is_empty() {
                    last = (text.trim().to_owned(), cut);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_endless_line_is_cut_at_the_cap_and_every_byte_counts_as_activity() {
        let mut data = vec![b'x'; 1_000_000];
        data.extend_from_slice(b"\n{\"jsonrpc\":\"2.0\"}\n");
        let mut reader = BufReader::with_capacity(4096, &data[..]);
        let activity = Activity::new();
        let mut line = Vec::new();
        let (n, cut) = read_line(&mut reader, &mut line, 1024, &activity).await.unwrap();
        assert_eq!(n, 1_000_001);
        assert!(cut);
        assert_eq!(line.len(), 1024, "memory stays bounded");
        assert_eq!(activity.bytes(), 1_000_001);
        line.clear();
        let (_, cut) = read_line(&mut reader, &mut line, 1024, &activity).await.unwrap();
        assert!(!cut);
        assert_eq!(line, b"{\"jsonrpc\":\"2.0\"}\n", "the next line is intact");
        line.clear();
        assert_eq!(read_line(&mut reader, &mut line, 1024, &activity).await.unwrap().0, 0, "EOF");
    }

    #[tokio::test]
    async fn the_last_stderr_line_is_kept_to_its_bound() {
        let mut data = b"first\n".to_vec();
        data.extend(std::iter::repeat_n(b'x', 10_000_000));
        let (line, cut) = last_line(&data[..]).await;
        assert!(cut);
        assert_eq!(line.len(), MAX_STDERR_LINE, "memory stays bounded");
        let (line, cut) = last_line(&b"one\n  \ntwo\n\n"[..]).await;
        assert_eq!((line.as_str(), cut), ("two", false));
    }

    /// Bytes that look like a child's stdout: JSON-RPC lines, noise, long runs without newline.
    fn stdout_like() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        let piece = prop_oneof![
            Just(br#"{"jsonrpc":"2.0","id":1,"result":{}}"#.to_vec()),
            Just(br#"{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"x"}}"#.to_vec()),
            Just(b"[".to_vec()),
            Just(b"{".to_vec()),
            Just(b"\n".to_vec()),
            Just(b"\r\n".to_vec()),
            Just(vec![b'x'; 300]),
            proptest::collection::vec(any::<u8>(), 0..32),
        ];
        proptest::collection::vec(piece, 0..40).prop_map(|p| p.concat())
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 1000, ..Default::default() })]

        /// The stdio framing: any bytes, read in any buffer size, become lines that add up to
        /// the input, none kept past the bound, each parsed as a message or refused (no panic).
        #[test]
        fn any_stdout_bytes_become_bounded_lines(
            bytes in proptest::prop_oneof![stdout_like(), proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2048)],
            capacity in 1usize..64,
            max in proptest::prop_oneof![proptest::strategy::Just(16usize), proptest::strategy::Just(256usize)],
        ) {
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            rt.block_on(async {
                let mut reader = BufReader::with_capacity(capacity, &bytes[..]);
                let activity = Activity::new();
                let mut consumed = 0;
                let mut line = Vec::new();
                loop {
                    line.clear();
                    let (n, cut) = read_line(&mut reader, &mut line, max, &activity).await.unwrap();
                    if n == 0 {
                        break;
                    }
                    assert!(line.len() <= max);
                    assert_eq!(cut, n > max);
                    assert_eq!(&line[..], &bytes[consumed..consumed + line.len()]);
                    consumed += n;
                    assert!(bytes[..consumed].ends_with(b"\n") || consumed == bytes.len());
                    let _ = serde_json::from_slice::<rmcp::model::ServerJsonRpcMessage>(&line);
                }
                assert_eq!(consumed, bytes.len());
                assert_eq!(activity.bytes(), bytes.len() as u64);
            });
        }
    }
}
