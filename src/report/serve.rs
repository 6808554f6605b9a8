//! `unet-lab serve`: a study's pages, pictures and tables over HTTP on localhost, read-only —
//! for a study on a cluster, opened through an SSH port forward. The live page reloads
//! itself, so a study in training is followed through the server as it is on disk.

use std::fs::File;
use std::io::Cursor;
use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use anyhow::{Result, anyhow};
use tiny_http::{Header, Method, Request, Response, Server, StatusCode};

/// The studies a server shows: one at `/`, or several, each under `/<its directory name>/`.
#[derive(Debug, Clone)]
pub struct Site {
    mounts: Vec<(String, PathBuf)>,
}

/// Threads answering requests: a page asks for its pictures at once.
const THREADS: usize = 4;

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

    fn answer(&self, request: Request) {
        let url = request
            .url()
            .split(['?', '#'])
            .next()
            .unwrap_or("/")
            .to_string();
        let result = if !url.starts_with('/') {
            request.respond(text(400, "bad request\n"))
        } else if !matches!(request.method(), Method::Get | Method::Head) {
            request.respond(text(405, "read-only: GET and HEAD only\n"))
        } else if url == "/" && self.mounts.len() > 1 {
            request.respond(
                Response::from_string(self.listing())
                    .with_header(header("Content-Type", "text/html; charset=utf-8")),
            )
        } else if self.mounts.len() > 1 && !url[1..].contains('/') {
            // `/<study>` → `/<study>/`, so that the page's relative links resolve.
            request
                .respond(Response::empty(301).with_header(header("Location", &format!("{url}/"))))
        } else {
            match self
                .resolve(&url)
                .and_then(|p| File::open(&p).ok().map(|f| (p, f)))
            {
                Some((path, file)) => request.respond(
                    Response::from_file(file)
                        .with_header(header("Content-Type", content_type(&path)))
                        .with_header(header("Cache-Control", "no-store")),
                ),
                None => request.respond(text(404, "not found\n")),
            }
        };
        // A client gone before its answer is not the server's problem.
        let _ = result;
    }
}

/// Listens on localhost at `port` (0: a free one); `ready` is told the address, then the
/// server answers until the process ends.
pub fn serve(site: Site, port: u16, ready: impl FnOnce(SocketAddr)) -> Result<()> {
    let server = Server::http(("127.0.0.1", port)).map_err(|e| {
        anyhow!("--port {port}: cannot listen on 127.0.0.1:{port}: {e}; choose another port, or --port 0 for a free one")
    })?;
    let addr = server
        .server_addr()
        .to_ip()
        .ok_or_else(|| anyhow!("the server has no IP address"))?;
    ready(addr);
    let server = Arc::new(server);
    let site = Arc::new(site);
    let workers: Vec<_> = (0..THREADS)
        .map(|_| {
            let (server, site) = (Arc::clone(&server), Arc::clone(&site));
            std::thread::spawn(move || {
                while let Ok(request) = server.recv() {
                    site.answer(request);
                }
            })
        })
        .collect();
    for w in workers {
        let _ = w.join();
    }
    Ok(())
}

fn header(name: &str, value: &str) -> Header {
    Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("ASCII header")
}

fn text(code: u16, body: &str) -> Response<Cursor<Vec<u8>>> {
    Response::from_string(body)
        .with_status_code(StatusCode(code))
        .with_header(header("Content-Type", "text/plain; charset=utf-8"))
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
