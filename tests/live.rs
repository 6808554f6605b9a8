//! The live page: while `run` trains, `index.html` lists the running run and reloads itself;
//! once the study is finished it is a static page. Checked in headless Chromium where it is
//! installed (the page's text and its refresh tag otherwise).

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{Cli, Study, TempDir, chromium, chromium_dom};

/// One run of enough small epochs (~0.2 s each) to be caught running.
fn study() -> Study {
    Study::new("live").one_variant().seeds(&[0]).epochs(30)
}

#[test]
fn the_page_shows_running_runs_then_becomes_static() {
    let tmp = TempDir::new("live");
    let file = study().write(&tmp, "live.toml");
    let out = tmp.path().join("out");
    let mut child = Cli::run(&file, &out)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let page = out.join("live/index.html");
    // A copy of the page as it was while the run trained, beside it so its links resolve.
    let snapshot = out.join("live/while-running.html");
    let started = Instant::now();
    loop {
        let html = std::fs::read_to_string(&page).unwrap_or_default();
        if html.contains("Running now") {
            std::fs::write(&snapshot, &html).unwrap();
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before its page showed it running"
        );
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no live page after 60 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(child.wait().unwrap().success());
    let running = std::fs::read_to_string(&snapshot).unwrap();
    let finished = std::fs::read_to_string(&page).unwrap();
    assert!(running.contains(r#"<meta http-equiv="refresh" content="5">"#));
    assert!(
        running.contains("<td>base</td><td>seed 0</td>"),
        "{running}"
    );
    assert!(running.contains(" of 30</td>"), "{running}");
    assert!(!finished.contains("Running now") && !finished.contains("http-equiv"));
    assert!(finished.contains("1/1 completed"));
    let Some(chromium) = chromium() else {
        eprintln!("note: Chromium is not installed; skipping the browser check of the live page");
        return;
    };
    let dom = chromium_dom(chromium, &snapshot);
    assert!(dom.contains("<h2>Running now</h2>"), "{dom}");
    assert!(dom.contains(r#"http-equiv="refresh""#), "{dom}");
    let dom = chromium_dom(chromium, &page);
    assert!(
        dom.contains("1/1 completed") && !dom.contains("Running now"),
        "{dom}"
    );
    assert!(!dom.contains("http-equiv"), "{dom}");
}
