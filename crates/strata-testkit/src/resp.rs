//! Just enough of the Redis protocol (RESP2) to send a command and read the
//! reply over a blocking [`TcpStream`].

use std::fmt;
use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// How long [`command`] waits for the TCP connection to be accepted.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long [`command`] waits for the reply (and for the request to be sent).
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// A reply from Redis, as read by [`command`].
///
/// Redis errors (`-ERR ...`, `-MOVED ...`) are replies, not Rust errors:
/// they come back as [`Reply::Error`], while [`command`] returns `Err` only
/// when the connection or the protocol fails.
///
/// [`Display`](fmt::Display) renders the reply as plain text: a status or
/// bulk string as its text, an integer as its digits, an error as its
/// message, nil as `(nil)`, and an array as its items, one per line. So
/// `reply.to_string() == "hello"` is how a test checks a `GET`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// A simple string, such as `OK` or `PONG` (`+OK`).
    Status(String),
    /// An error reply, without the leading `-` (`ERR unknown command ...`).
    Error(String),
    /// An integer reply (`:1`).
    Integer(i64),
    /// A bulk string (`$5\r\nhello`).
    Bulk(Vec<u8>),
    /// A null bulk string or null array (`$-1`, `*-1`): a missing key.
    Nil,
    /// An array of replies (`*2\r\n...`).
    Array(Vec<Reply>),
}

impl Reply {
    /// The `+OK` status reply, to compare with: `assert_eq!(reply, Reply::ok())`.
    pub fn ok() -> Self {
        Self::Status("OK".to_owned())
    }

    /// A bulk string reply holding `text`, to compare with a `GET` result.
    pub fn bulk(text: &str) -> Self {
        Self::Bulk(text.as_bytes().to_vec())
    }

    /// Whether this is an error reply.
    pub fn is_error(&self) -> bool {
        matches!(self, Self::Error(_))
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Status(text) | Self::Error(text) => f.write_str(text),
            Self::Integer(value) => write!(f, "{value}"),
            Self::Bulk(bytes) => f.write_str(&String::from_utf8_lossy(bytes)),
            Self::Nil => f.write_str("(nil)"),
            Self::Array(items) => {
                for (index, item) in items.iter().enumerate() {
                    if index > 0 {
                        f.write_str("\n")?;
                    }
                    write!(f, "{item}")?;
                }
                Ok(())
            }
        }
    }
}

/// Sends one command to the Redis at `addr` on a new connection and reads
/// the reply.
///
/// `args` is the command and its arguments, as on the `redis-cli` command
/// line: `&["SET", "key", "value"]`. The connection is closed afterwards.
/// Connecting gives up after one second and reading after five.
///
/// # Errors
///
/// Returns the I/O error if the connection is refused (nothing listens on
/// `addr`), times out or breaks, or `InvalidData` if the reply is not RESP.
/// An error *reply* from Redis is `Ok(Reply::Error(..))`.
pub fn command(addr: SocketAddr, args: &[&str]) -> io::Result<Reply> {
    let stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    (&stream).write_all(&encode(args))?;
    read_reply(&mut BufReader::new(&stream))
}

/// Encodes a command as a RESP array of bulk strings.
fn encode(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Reads one complete reply, recursing into arrays.
fn read_reply(reader: &mut impl BufRead) -> io::Result<Reply> {
    let line = read_line(reader)?;
    let (kind, rest) = line
        .split_first()
        .ok_or_else(|| invalid("empty reply line".to_owned()))?;
    let rest = String::from_utf8_lossy(rest).into_owned();
    match kind {
        b'+' => Ok(Reply::Status(rest)),
        b'-' => Ok(Reply::Error(rest)),
        b':' => Ok(Reply::Integer(parse_int(&rest)?)),
        b'$' => {
            let Ok(len) = usize::try_from(parse_int(&rest)?) else {
                return Ok(Reply::Nil);
            };
            let mut bytes = vec![0; len + 2];
            reader.read_exact(&mut bytes)?;
            if !bytes.ends_with(b"\r\n") {
                return Err(invalid("bulk string not terminated by CRLF".to_owned()));
            }
            bytes.truncate(len);
            Ok(Reply::Bulk(bytes))
        }
        b'*' => {
            let Ok(len) = usize::try_from(parse_int(&rest)?) else {
                return Ok(Reply::Nil);
            };
            (0..len)
                .map(|_| read_reply(reader))
                .collect::<io::Result<_>>()
                .map(Reply::Array)
        }
        other => Err(invalid(format!(
            "unexpected reply type byte {:?}",
            char::from(*other)
        ))),
    }
}

/// Reads up to and including CRLF, and returns the line without it.
fn read_line(reader: &mut impl BufRead) -> io::Result<Vec<u8>> {
    let mut line = Vec::new();
    reader.read_until(b'\n', &mut line)?;
    if !line.ends_with(b"\r\n") {
        return Err(if line.is_empty() {
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed before a reply",
            )
        } else {
            invalid("reply line not terminated by CRLF".to_owned())
        });
    }
    line.truncate(line.len() - 2);
    Ok(line)
}

fn parse_int(text: &str) -> io::Result<i64> {
    text.parse()
        .map_err(|_| invalid(format!("{text:?} is not an integer")))
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: &[u8]) -> io::Result<Reply> {
        read_reply(&mut &bytes[..])
    }

    #[test]
    fn encodes_commands_as_arrays_of_bulk_strings() {
        assert_eq!(
            encode(&["SET", "key", ""]),
            b"*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$0\r\n\r\n"
        );
    }

    #[test]
    fn parses_every_reply_type() {
        assert_eq!(
            parse(b"+PONG\r\n").unwrap(),
            Reply::Status("PONG".to_owned())
        );
        assert_eq!(
            parse(b"-ERR no\r\n").unwrap(),
            Reply::Error("ERR no".to_owned())
        );
        assert_eq!(parse(b":-42\r\n").unwrap(), Reply::Integer(-42));
        assert_eq!(parse(b"$5\r\nhe\r\no\r\n").unwrap(), Reply::bulk("he\r\no"));
        assert_eq!(parse(b"$-1\r\n").unwrap(), Reply::Nil);
        assert_eq!(parse(b"*-1\r\n").unwrap(), Reply::Nil);
        assert_eq!(
            parse(b"*2\r\n:1\r\n*1\r\n$1\r\na\r\n").unwrap(),
            Reply::Array(vec![
                Reply::Integer(1),
                Reply::Array(vec![Reply::bulk("a")])
            ])
        );
    }

    #[test]
    fn rejects_truncated_and_malformed_replies() {
        assert_eq!(parse(b"").unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
        assert!(parse(b"+OK").is_err());
        assert!(parse(b"$5\r\nab\r\n").is_err());
        assert!(parse(b"?what\r\n").is_err());
        assert!(parse(b":x\r\n").is_err());
    }

    #[test]
    fn displays_as_plain_text() {
        assert_eq!(Reply::ok().to_string(), "OK");
        assert_eq!(Reply::bulk("v").to_string(), "v");
        assert_eq!(Reply::Nil.to_string(), "(nil)");
        assert_eq!(
            Reply::Array(vec![Reply::Integer(1), Reply::bulk("a")]).to_string(),
            "1\na"
        );
    }
}
