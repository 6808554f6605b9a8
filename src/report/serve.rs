//! `unet-lab serve`: a study's pages, pictures and tables over HTTP on localhost, read-only —
//! for a study on a cluster, opened through an SSH port forward. The live page reloads
//! itself, so a study in training is followed through the server as it is on disk.
//!
//! One thread per connection, one answer per connection (`Connection: close`), requests parsed
//! by httparse. tiny_http 0.12 was used first: now and then it left one of a browser's burst
//! of keep-alive connections unread (the request waiting in the socket's receive queue, seen
//! with `ss`), and Chromium waited minutes for that picture (4 of 29 headless renders).

use std::fs::File;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, anyhow};

/// The studies a server shows: one at `/`, or several, each under `/<its directory name>/`.
#[derive(Debug, Clone)]
pub struct Site {
    mounts: Vec<(String, PathBuf)>,
}

/// The most a request's head may take; a GET has no business sending more.
const MAX_HEAD: usize = 16 * 1024;

/// How long a connection may stay silent before it is dropped (a browser's spare connection).
const IDLE: Duration = Duration::from_secs(10);

/// What a request is answered with.
enum Answer {
    File(PathBuf, File),
    Html(String),
    Text(u16, &'static str),
    Redirect(String),
}

impl Site {
    /// The site of these study directories (each checked to be a directory).
    pub fn new(dirs: &[PathBuf]) -> Result<Site> {
        let mut mounts: Vec<(String, PathBuf)> = Vec::new();
        for dir in dirs {
            let root = dir
                .canonicalize()
                .map_err(|e| anyhow!("{}: {e}", dir.display()))?;
            if !root.is_dir() {
                return Err(anyhow!(
                    "{} is a file; serve takes a study's directory (the one holding index.html)",
                    dir.display()
                ));
            }
            let base = root
                .file_name()
                .map_or_else(|| "study".to_string(), |n| n.to_string_lossy().into_owned());
            let mut name = base.clone();
            let mut k = 2;
            while mounts.iter().any(|(m, _)| *m == name) {
                name = format!("{base}-{k}");
                k += 1;
            }
            mounts.push((name, root));
        }
        Ok(Site { mounts })
    }

    /// The file a URL path names, if it is inside a served directory; a directory gives its
    /// `index.html`. `None` for anything else, `..` and links leading outside included.
    fn resolve(&self, url_path: &str) -> Option<PathBuf> {
        let decoded = percent_encoding::percent_decode_str(url_path)
            .decode_utf8()
            .ok()?;
        let relative = Path::new(decoded.trim_start_matches('/'));
        if relative
            .components()
            .any(|c| !matches!(c, Component::Normal(_)))
        {
            return None;
        }
        let (root, rest) = match self.mounts.as_slice() {
            [(_, root)] => (root, relative.to_path_buf()),
            _ => {
                let mut parts = relative.components();
                let first = parts.next()?.as_os_str().to_string_lossy().into_owned();
                let (_, root) = self.mounts.iter().find(|(m, _)| *m == first)?;
                (root, parts.as_path().to_path_buf())
            }
        };
        let mut path = root.join(rest).canonicalize().ok()?;
        if !path.starts_with(root) {
            return None;
        }
        if path.is_dir() {
            path = path.join("index.html");
        }
        path.is_file().then_some(path)
    }

    /// The page of several studies: a link to each.
    fn listing(&self) -> String {
        let items: String = self
            .mounts
            .iter()
            .map(|(name, root)| {
                let href: String =
                    percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC)
                        .to_string();
                format!(
                    "<li><a href=\"{href}/\">{}</a> <small>{}</small></li>",
                    escape(name),
                    escape(&root.display().to_string())
                )
            })
            .collect();
        format!(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>unet-lab studies</title>\
             </head><body><h1>Studies</h1><ul>{items}</ul></body></html>"
        )
    }

    /// The answer to `method url`.
    fn answer(&self, method: &str, url: &str) -> Answer {
        let url = url.split(['?', '#']).next().unwrap_or("/");
        if !url.starts_with('/') {
            Answer::Text(400, "bad request\n")
        } else if !matches!(method, "GET" | "HEAD") {
            Answer::Text(405, "read-only: GET and HEAD only\n")
        } else if url == "/" && self.mounts.len() > 1 {
            Answer::Html(self.listing())
        } else if self.mounts.len() > 1 && !url[1..].contains('/') {
            // `/<study>` → `/<study>/`, so that the page's relative links resolve.
            Answer::Redirect(format!("{url}/"))
        } else {
            match self
                .resolve(url)
                .and_then(|p| File::open(&p).ok().map(|f| (p, f)))
            {
                Some((path, file)) => Answer::File(path, file),
                None => Answer::Text(404, "not found\n"),
            }
        }
    }

    /// Reads one request from `stream`, answers it and closes the connection. A client that
    /// is gone, silent or malformed is not the server's problem.
    fn converse(&self, mut stream: TcpStream) {
        let _ = stream.set_read_timeout(Some(IDLE));
        let _ = stream.set_write_timeout(Some(IDLE));
        let Some(head) = read_head(&mut stream) else {
            return;
        };
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut request = httparse::Request::new(&mut headers);
        let answer = match request.parse(&head) {
            Ok(httparse::Status::Complete(_)) => self.answer(
                request.method.unwrap_or_default(),
                request.path.unwrap_or_default(),
            ),
            _ => Answer::Text(400, "bad request\n"),
        };
        let _ = write_answer(&mut stream, answer, request.method == Some("HEAD"));
        // Half-close, then take what the client still sends, so that closing does not reset
        // the connection under an answer it has not read yet.
        let _ = stream.shutdown(Shutdown::Write);
        let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
        let _ = std::io::copy(&mut stream.take(1 << 20), &mut std::io::sink());
    }
}

/// Listens on localhost at `port` (0: a free one); `ready` is told the address, then the
/// server answers until the process ends.
pub fn serve(site: Site, port: u16, ready: impl FnOnce(SocketAddr)) -> Result<()> {
    let listener = TcpListener::bind(("127.0.0.1", port)).map_err(|e| {
        anyhow!("--port {port}: cannot listen on 127.0.0.1:{port}: {e}; choose another port, or --port 0 for a free one")
    })?;
    ready(listener.local_addr()?);
    let site = Arc::new(site);
    for stream in listener.incoming() {
        // A connection that failed while being accepted is the client's loss, not the server's.
        let Ok(stream) = stream else { continue };
        let site = Arc::clone(&site);
        std::thread::spawn(move || site.converse(stream));
    }
    Ok(())
}

/// The request's head, through its blank line; `None` when the client closed, went silent or
/// sent more than [`MAX_HEAD`] without ending it.
fn read_head(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if head.len() > MAX_HEAD {
            return None;
        }
        let n = stream.read(&mut chunk).ok().filter(|&n| n > 0)?;
        head.extend_from_slice(&chunk[..n]);
    }
    Some(head)
}

fn write_answer(stream: &mut TcpStream, answer: Answer, head_only: bool) -> std::io::Result<()> {
    let (code, content_type, length, location) = match &answer {
        Answer::File(path, file) => (200, content_type(path), file.metadata()?.len(), None),
        Answer::Html(page) => (200, "text/html; charset=utf-8", page.len() as u64, None),
        Answer::Text(code, body) => (*code, "text/plain; charset=utf-8", body.len() as u64, None),
        Answer::Redirect(to) => (301, "text/plain; charset=utf-8", 0, Some(to.as_str())),
    };
    let mut head = format!(
        "HTTP/1.1 {code} {}\r\nContent-Type: {content_type}\r\nContent-Length: {length}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n",
        reason(code)
    );
    if let Some(to) = location {
        head.push_str(&format!("Location: {to}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    if !head_only {
        match answer {
            Answer::File(_, mut file) => {
                std::io::copy(&mut file, stream)?;
            }
            Answer::Html(page) => stream.write_all(page.as_bytes())?,
            Answer::Text(_, body) => stream.write_all(body.as_bytes())?,
            Answer::Redirect(_) => {}
        }
    }
    stream.flush()
}

fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        301 => "Moved Permanently",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "",
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn content_type(path: &Path) -> &'static str {
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" => "text/javascript; charset=utf-8",
        "json" => "application/json",
        "png" => "image/png",
        "gif" => "image/gif",
        "jpg" | "jpeg" => "image/jpeg",
        "svg" => "image/svg+xml",
        "md" | "txt" | "csv" | "log" | "toml" | "sbatch" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_inside_the_served_directories() {
        let root = std::env::temp_dir().join(format!("unet-lab-serve-{}", std::process::id()));
        std::fs::create_dir_all(root.join("a/plots")).unwrap();
        std::fs::write(root.join("a/index.html"), "page").unwrap();
        std::fs::write(root.join("a/plots/x y.png"), "png").unwrap();
        std::fs::write(root.join("secret"), "no").unwrap();
        let site = Site::new(&[root.join("a")]).unwrap();
        let a = root.join("a").canonicalize().unwrap();
        assert_eq!(site.resolve("/"), Some(a.join("index.html")));
        assert_eq!(
            site.resolve("/plots/x%20y.png"),
            Some(a.join("plots/x y.png"))
        );
        assert_eq!(site.resolve("/../secret"), None);
        assert_eq!(site.resolve("/%2e%2e/secret"), None);
        assert_eq!(site.resolve("/plots/missing.png"), None);
        let two = Site::new(&[root.join("a"), root.join("a")]).unwrap();
        assert_eq!(two.resolve("/a-2/"), Some(a.join("index.html")));
        assert!(Site::new(&[root.join("secret")]).is_err());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
