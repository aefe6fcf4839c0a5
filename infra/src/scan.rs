//! Virus scanning of uploads (design 4.3) through a ClamAV daemon (`clamd`), over TCP or a Unix socket,
//! with its `INSTREAM` command: the file is streamed to the daemon in chunks, never held whole in memory,
//! and never needs to be readable by the daemon's own user.
//!
//! The daemon's `StreamMaxLength` must be at least the platform's upload limit: a longer stream is answered
//! with `INSTREAM size limit exceeded`, which is a [`ScanError::Refused`], never a clean verdict.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

/// Bytes per `INSTREAM` chunk.
const CHUNK: usize = 64 * 1024;
/// The longest reply we read (a verdict line is short).
const MAX_REPLY: usize = 4096;

/// Where `clamd` listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClamdAddress {
    /// `host:port`.
    Tcp(String),
    Unix(PathBuf),
}

impl std::str::FromStr for ClamdAddress {
    type Err = String;

    /// `tcp://host:port` or `host:port`; `unix:///path/clamd.ctl` or an absolute path.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if let Some(path) = s.strip_prefix("unix://") {
            return unix_path(path);
        }
        if s.starts_with('/') {
            return unix_path(s);
        }
        let hostport = s.strip_prefix("tcp://").unwrap_or(s);
        match hostport.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0) => {
                Ok(ClamdAddress::Tcp(hostport.to_owned()))
            }
            _ => Err(format!("`{s}` is neither tcp://host:port nor unix:///path")),
        }
    }
}

fn unix_path(path: &str) -> Result<ClamdAddress, String> {
    if path.starts_with('/') {
        Ok(ClamdAddress::Unix(PathBuf::from(path)))
    } else {
        Err(format!("`{path}`: a Unix socket path must be absolute"))
    }
}

impl std::fmt::Display for ClamdAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClamdAddress::Tcp(hostport) => write!(f, "tcp://{hostport}"),
            ClamdAddress::Unix(path) => write!(f, "unix://{}", path.display()),
        }
    }
}

/// What the scanner found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Clean,
    /// The daemon's name of what it found (`Win.Test.EICAR_HDB-1`, ...).
    Infected {
        signature: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// The daemon could not be reached, or the connection failed or timed out.
    #[error("the virus scanner at {address} is unavailable: {source}")]
    Unavailable { address: String, source: io::Error },
    /// The daemon answered with an error (a stream over its size limit, an unreadable database, ...).
    #[error("the virus scanner refused the scan: {0}")]
    Refused(String),
    /// Reading the file to scan failed.
    #[error("reading the file to scan: {0}")]
    Source(io::Error),
}

/// A `clamd` client. Its calls block (plain sockets with time limits): run them on a blocking thread.
#[derive(Debug, Clone)]
pub struct Clamd {
    address: ClamdAddress,
    timeout: Duration,
}

enum Conn {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Tcp(s) => s.read(buf),
            Conn::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Tcp(s) => s.write(buf),
            Conn::Unix(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Conn::Tcp(s) => s.flush(),
            Conn::Unix(s) => s.flush(),
        }
    }
}

impl Clamd {
    /// `timeout` bounds connecting and each read or write (a whole scan of a large file takes longer).
    pub fn new(address: ClamdAddress, timeout: Duration) -> Self {
        Self { address, timeout }
    }

    pub fn address(&self) -> &ClamdAddress {
        &self.address
    }

    fn unavailable(&self, source: io::Error) -> ScanError {
        ScanError::Unavailable { address: self.address.to_string(), source }
    }

    fn connect(&self) -> Result<Conn, ScanError> {
        let timeout = Some(self.timeout);
        let conn = match &self.address {
            ClamdAddress::Tcp(hostport) => {
                let mut last = io::Error::new(io::ErrorKind::NotFound, "the host name resolves to no address");
                let addrs =
                    std::net::ToSocketAddrs::to_socket_addrs(hostport.as_str()).map_err(|e| self.unavailable(e))?;
                let mut connected = None;
                for addr in addrs {
                    match TcpStream::connect_timeout(&addr, self.timeout) {
                        Ok(stream) => {
                            connected = Some(stream);
                            break;
                        }
                        Err(e) => last = e,
                    }
                }
                let stream = connected.ok_or_else(|| self.unavailable(last))?;
                stream
                    .set_read_timeout(timeout)
                    .and_then(|()| stream.set_write_timeout(timeout))
                    .map_err(|e| self.unavailable(e))?;
                Conn::Tcp(stream)
            }
            ClamdAddress::Unix(path) => {
                let stream = UnixStream::connect(path).map_err(|e| self.unavailable(e))?;
                stream
                    .set_read_timeout(timeout)
                    .and_then(|()| stream.set_write_timeout(timeout))
                    .map_err(|e| self.unavailable(e))?;
                Conn::Unix(stream)
            }
        };
        Ok(conn)
    }

    /// Reads the daemon's NUL-terminated reply.
    fn reply(&self, conn: &mut Conn) -> Result<String, ScanError> {
        let mut reply = Vec::new();
        let mut buf = [0u8; 512];
        loop {
            let n = conn.read(&mut buf).map_err(|e| self.unavailable(e))?;
            if n == 0 {
                break;
            }
            reply.extend_from_slice(&buf[..n]);
            if reply.last() == Some(&0) || reply.len() > MAX_REPLY {
                break;
            }
        }
        if reply.is_empty() {
            return Err(
                self.unavailable(io::Error::new(io::ErrorKind::UnexpectedEof, "the daemon closed without a reply"))
            );
        }
        Ok(String::from_utf8_lossy(&reply).trim_end_matches(['\0', '\n']).to_owned())
    }

    /// Asks the daemon its `VERSION`: whether it answers, and what it runs (engine and database version).
    pub fn version(&self) -> Result<String, ScanError> {
        let mut conn = self.connect()?;
        conn.write_all(b"zVERSION\0").map_err(|e| self.unavailable(e))?;
        self.reply(&mut conn)
    }

    /// Streams `content` to the daemon and returns its verdict.
    pub fn scan(&self, mut content: impl Read) -> Result<Verdict, ScanError> {
        let mut conn = self.connect()?;
        conn.write_all(b"zINSTREAM\0").map_err(|e| self.unavailable(e))?;
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = match content.read(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(ScanError::Source(e)),
            };
            let mut frame = Vec::with_capacity(4 + n);
            frame.extend_from_slice(&(n as u32).to_be_bytes());
            frame.extend_from_slice(&buf[..n]);
            if let Err(error) = conn.write_all(&frame) {
                // The daemon stops reading once the stream is over its limit and says why before it
                // closes: its reply, if there is one, is the better error.
                return match self.reply(&mut conn) {
                    Ok(reply) => parse_reply(&reply),
                    Err(_) => Err(self.unavailable(error)),
                };
            }
            if n == 0 {
                break;
            }
        }
        let reply = self.reply(&mut conn)?;
        parse_reply(&reply)
    }
}

/// `stream: OK`, `stream: <name> FOUND` or `... ERROR`.
fn parse_reply(reply: &str) -> Result<Verdict, ScanError> {
    let body = reply.strip_prefix("stream:").map(str::trim).unwrap_or(reply.trim());
    if body == "OK" {
        return Ok(Verdict::Clean);
    }
    if let Some(signature) = body.strip_suffix(" FOUND") {
        return Ok(Verdict::Infected { signature: signature.trim().to_owned() });
    }
    Err(ScanError::Refused(body.trim_end_matches(" ERROR").to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_in_their_usual_spellings() {
        assert_eq!("tcp://clamav:3310".parse(), Ok(ClamdAddress::Tcp("clamav:3310".into())));
        assert_eq!("127.0.0.1:3310".parse(), Ok(ClamdAddress::Tcp("127.0.0.1:3310".into())));
        assert_eq!("unix:///run/clamav/clamd.ctl".parse(), Ok(ClamdAddress::Unix("/run/clamav/clamd.ctl".into())));
        assert_eq!("/run/clamd.sock".parse(), Ok(ClamdAddress::Unix("/run/clamd.sock".into())));
        for bad in ["clamav", "tcp://clamav:", "tcp://:3310", "host:99999", "unix://relative.sock"] {
            assert!(bad.parse::<ClamdAddress>().is_err(), "{bad}");
        }
    }

    #[test]
    fn replies_become_verdicts_or_errors() {
        assert_eq!(parse_reply("stream: OK").unwrap(), Verdict::Clean);
        assert_eq!(
            parse_reply("stream: Win.Test.EICAR_HDB-1 FOUND").unwrap(),
            Verdict::Infected { signature: "Win.Test.EICAR_HDB-1".into() }
        );
        match parse_reply("INSTREAM size limit exceeded. ERROR") {
            Err(ScanError::Refused(why)) => assert_eq!(why, "INSTREAM size limit exceeded."),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_unreachable_daemon_is_unavailable_not_clean() {
        // A port nothing listens on: bind one, note it, close it.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let clamd = Clamd::new(ClamdAddress::Tcp(format!("127.0.0.1:{port}")), Duration::from_secs(1));
        assert!(matches!(clamd.scan(&b"hello"[..]), Err(ScanError::Unavailable { .. })));
    }

    /// A stand-in daemon on a Unix socket: checks the INSTREAM framing and answers as clamd does.
    #[test]
    fn instream_frames_the_content_and_reads_the_verdict() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("clamd.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut command = [0u8; 10];
            s.read_exact(&mut command).unwrap();
            assert_eq!(&command, b"zINSTREAM\0");
            let mut content = Vec::new();
            loop {
                let mut len = [0u8; 4];
                s.read_exact(&mut len).unwrap();
                let len = u32::from_be_bytes(len) as usize;
                if len == 0 {
                    break;
                }
                let mut chunk = vec![0u8; len];
                s.read_exact(&mut chunk).unwrap();
                content.extend(chunk);
            }
            let reply: &[u8] =
                if content.windows(4).any(|w| w == b"evil") { b"stream: Bad.Thing FOUND\0" } else { b"stream: OK\0" };
            s.write_all(reply).unwrap();
            content.len()
        });
        let clamd = Clamd::new(ClamdAddress::Unix(path), Duration::from_secs(5));
        let big = vec![b'a'; 3 * CHUNK + 17];
        let mut with_evil = big.clone();
        with_evil.extend_from_slice(b"evil");
        assert_eq!(clamd.scan(&with_evil[..]).unwrap(), Verdict::Infected { signature: "Bad.Thing".into() });
        assert_eq!(server.join().unwrap(), with_evil.len(), "every byte reached the daemon");
    }
}
