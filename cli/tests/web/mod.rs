//! A `statelog serve --http` process and a small HTTP/1.1 client for the web
//! view's tests: plain requests over a TCP stream, chunked bodies decoded,
//! server-sent events read one at a time. Every read has a timeout.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, ChildStdout, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::cli::Scratch;

/// How long any one read may wait.
pub const READ_LIMIT: Duration = Duration::from_secs(30);

/// A `statelog serve --http 127.0.0.1:0` process.
pub struct Served {
    pub child: Child,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// The rest of its stdout.
    pub stdout: BufReader<ChildStdout>,
}

impl Served {
    /// Starts `statelog --json serve --http ADDR ARGS` and reads where it
    /// listens from its first line.
    pub fn start(s: &Scratch, addr: &str, args: &[&str], env: &[(&str, &str)]) -> Served {
        let mut all = vec!["--json", "serve", "--http", addr];
        all.extend_from_slice(args);
        let mut command = s.command(&all);
        command
            .env_remove("STATELOG_HTTP_TOKEN")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("start statelog serve");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut line = String::new();
            let _ = stdout.read_line(&mut line);
            let _ = tx.send(line);
            stdout
        });
        let line = match rx.recv_timeout(READ_LIMIT) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                panic!("statelog serve did not say it was serving within {READ_LIMIT:?}");
            }
        };
        let stdout = reader.join().expect("the reading thread");
        let started: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
        assert_eq!(started["event"], "serving", "{line}");
        let url = started["http"].as_str().expect("the web view's address");
        let addr = url
            .strip_prefix("http://")
            .and_then(|a| a.strip_suffix('/'))
            .expect("http://ADDR/")
            .to_owned();
        Served {
            child,
            addr,
            stdout,
        }
    }

    /// Sends SIGTERM and waits (bounded) for the exit; its status and the
    /// rest of stdout.
    pub fn stop(mut self) -> (std::process::ExitStatus, String) {
        // SAFETY: kill takes a pid and a signal number.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + READ_LIMIT;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("statelog serve did not stop within {READ_LIMIT:?} of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut rest = String::new();
        let _ = self.stdout.read_to_string(&mut rest);
        (status, rest)
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// An answer.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("the body is not JSON ({e}): {self:?}"))
    }
}

/// Sends one request (`Connection: close`) and reads the whole answer.
pub fn request(addr: &str, method: &str, path: &str, headers: &[(&str, &str)]) -> Response {
    let mut reader = send(addr, method, path, headers);
    let (status, headers) = read_head(&mut reader);
    let mut body = Vec::new();
    if method != "HEAD" {
        body_reader(reader, &headers)
            .read_to_end(&mut body)
            .expect("read the body");
    }
    Response {
        status,
        headers,
        body: String::from_utf8(body).expect("a UTF-8 body"),
    }
}

/// `GET path`.
pub fn get(addr: &str, path: &str) -> Response {
    request(addr, "GET", path, &[])
}

/// Opens a connection and sends a request.
pub fn send(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> BufReader<TcpStream> {
    let mut stream = TcpStream::connect(addr).expect("connect to the web view");
    stream
        .set_read_timeout(Some(READ_LIMIT))
        .expect("a read timeout");
    let mut text = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
        text.push_str(&format!("Host: {addr}\r\n"));
    }
    for (name, value) in headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    text.push_str("\r\n");
    stream.write_all(text.as_bytes()).expect("send the request");
    BufReader::new(stream)
}

/// The status line and headers.
pub fn read_head(reader: &mut impl BufRead) -> (u16, Vec<(String, String)>) {
    let mut line = String::new();
    reader.read_line(&mut line).expect("read the status line");
    let status = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not a status line: {line:?}"));
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line).expect("read a header");
        let trimmed = line.trim_end();
        if trimmed.is_empty() {
            break;
        }
        let (name, value) = trimmed.split_once(':').expect("name: value");
        headers.push((name.to_owned(), value.trim().to_owned()));
    }
    (status, headers)
}

/// The body's bytes: chunked or up to the end of the connection.
pub fn body_reader(
    reader: BufReader<TcpStream>,
    headers: &[(String, String)],
) -> Box<dyn BufRead + Send> {
    let chunked = headers.iter().any(|(n, v)| {
        n.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    if chunked {
        Box::new(BufReader::new(Chunked {
            inner: reader,
            left: 0,
            done: false,
        }))
    } else {
        Box::new(reader)
    }
}

/// A chunked body, decoded.
struct Chunked {
    inner: BufReader<TcpStream>,
    left: usize,
    done: bool,
}

impl Read for Chunked {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.done {
            return Ok(0);
        }
        if self.left == 0 {
            let mut line = String::new();
            if self.inner.read_line(&mut line)? == 0 {
                self.done = true;
                return Ok(0);
            }
            let size = line.trim().split(';').next().unwrap_or("");
            self.left = usize::from_str_radix(size, 16).map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::InvalidData, format!("chunk {line:?}"))
            })?;
            if self.left == 0 {
                self.done = true;
                return Ok(0);
            }
        }
        let n = self.left.min(buf.len());
        let n = self.inner.read(&mut buf[..n])?;
        if n == 0 {
            self.done = true;
            return Ok(0);
        }
        self.left -= n;
        if self.left == 0 {
            let mut crlf = [0u8; 2];
            self.inner.read_exact(&mut crlf)?;
        }
        Ok(n)
    }
}

/// One server-sent event.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sse {
    pub event: String,
    pub id: Option<String>,
    pub data: String,
}

impl Sse {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.data).unwrap_or_else(|e| panic!("{e}: {self:?}"))
    }
}

/// An open event stream.
pub struct Events {
    pub reader: Box<dyn BufRead + Send>,
}

impl Events {
    /// `GET /api/v1/watch?QUERY` with `headers`; panics unless 200.
    pub fn open(addr: &str, query: &str, headers: &[(&str, &str)]) -> Events {
        let mut reader = send(addr, "GET", &format!("/api/v1/watch{query}"), headers);
        let (status, head) = read_head(&mut reader);
        assert_eq!(status, 200, "the event stream: {head:?}");
        let content_type = head
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-type"))
            .map(|(_, v)| v.clone());
        assert_eq!(content_type.as_deref(), Some("text/event-stream"));
        let mut events = Events {
            reader: body_reader(reader, &head),
        };
        // The stream opens with a retry time and a comment.
        let first = events.next_raw().expect("the stream's first lines");
        assert_eq!(first.event, "", "{first:?}");
        events
    }

    /// The next event with a name (comments and retry lines skipped); None
    /// at the end of the stream.
    pub fn next(&mut self) -> Option<Sse> {
        loop {
            let e = self.next_raw()?;
            if !e.event.is_empty() {
                return Some(e);
            }
        }
    }

    fn next_raw(&mut self) -> Option<Sse> {
        let mut event = Sse::default();
        let mut any = false;
        loop {
            let mut line = String::new();
            match self.reader.read_line(&mut line) {
                Ok(0) => return None,
                Ok(_) => {}
                Err(e) => panic!("reading the event stream: {e}"),
            }
            let line = line.trim_end_matches(['\r', '\n']);
            if line.is_empty() {
                if any {
                    return Some(event);
                }
                continue;
            }
            any = true;
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "event" => event.event = value.to_owned(),
                "id" => event.id = Some(value.to_owned()),
                "data" => {
                    if !event.data.is_empty() {
                        event.data.push('\n');
                    }
                    event.data.push_str(value);
                }
                _ => {}
            }
        }
    }

    /// The next `change` event (progress events skipped).
    pub fn next_change(&mut self) -> Option<Sse> {
        loop {
            let e = self.next()?;
            if e.event == "change" {
                return Some(e);
            }
        }
    }
}

/// Percent-encodes a path segment or query value.
pub fn encode(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
