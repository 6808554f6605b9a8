//! A property test of "no panic on any input": mutated copies of every shipped experiment file
//! (keys deleted, lines duplicated, values retyped or replaced by random ones, unicode, cut
//! short) go to `validate` and to `run --no-report` on tiny data. The exit code is always 0 or
//! 2 (`run` may also end with 3: a random learning rate can make the recipe diverge, which is
//! a result, recorded as such) — never a panic (101), never a crash.

mod common;

use std::path::{Path, PathBuf};

use common::{TempDir, run_cli};

/// A small deterministic generator (xorshift64*), so a failure names a reproducible case.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

const VALUES: [&str; 22] = [
    "\"text\"",
    "\"\"",
    "-1",
    "0",
    "1",
    "3",
    "0.5",
    "1e308",
    "-1e-308",
    "nan",
    "inf",
    "true",
    "[]",
    "{}",
    "[1, \"a\"]",
    "[0, 0, 0]",
    "[[1]]",
    "99999999999999999999",
    "\"ü🦀\\u0007\\n\"",
    "\"../../etc\"",
    "{ a = 1 }",
    "1979-05-27T07:32:00Z",
];

fn shipped_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
}

/// One mutation of `text`: a line deleted or duplicated, a value retyped, unicode in a key,
/// or the text cut short.
fn mutate(text: &str, rng: &mut Rng) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let settings: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i].contains('=') && !lines[i].trim_start().starts_with('#'))
        .collect();
    let at = settings[rng.below(settings.len())];
    match rng.below(6) {
        0 => {
            lines.remove(at);
        }
        1 => {
            let line = lines[at].clone();
            lines.insert(at, line);
        }
        2 | 3 => {
            let key = lines[at].split('=').next().unwrap_or("").to_string();
            lines[at] = format!("{key}= {}", rng.pick(&VALUES));
        }
        4 => lines[at] = format!("ü{}", lines[at].trim_start()),
        _ => {
            let joined = lines.join("\n");
            let cut = joined
                .char_indices()
                .map(|(i, _)| i)
                .nth(rng.below(joined.chars().count()))
                .unwrap_or(0);
            return joined[..cut].to_string();
        }
    }
    lines.join("\n")
}

/// The mutated study on tiny data, one seed (no seeds until decided) and one epoch (when it
/// still parses as TOML):
/// whatever the mutation did elsewhere stays.
fn tiny(text: &str) -> Option<String> {
    let mut doc: toml::Table = text.parse().ok()?;
    doc.insert("seeds".into(), toml::Value::Array(vec![0.into()]));
    // One seed means one: no seeds added until decided (`validate` still sees the [decide]
    // table as mutated).
    doc.remove("decide");
    let set = |doc: &mut toml::Table, section: &str, key: &str, value: toml::Value| {
        if let toml::Value::Table(t) = doc
            .entry(section)
            .or_insert_with(|| toml::Value::Table(Default::default()))
        {
            t.insert(key.into(), value);
        }
    };
    let pair = |a: i64, b: i64| toml::Value::Array(vec![a.into(), b.into()]);
    set(&mut doc, "data", "size", pair(32, 32));
    set(&mut doc, "data", "count", 24.into());
    set(&mut doc, "data", "subjects", 4.into());
    set(&mut doc, "model", "widths", pair(3, 6));
    set(&mut doc, "train", "epochs", 1.into());
    set(&mut doc, "train", "batch_size", 4.into());
    set(&mut doc, "report", "samples", 1.into());
    toml::to_string(&doc).ok()
}

fn assert_clean_exit(what: &str, allowed: &[i32], code: Option<i32>, stderr: &str, text: &str) {
    assert!(
        code.is_some_and(|c| allowed.contains(&c)),
        "{what}: exit {code:?} (want one of {allowed:?})\n--- file ---\n{text}\n--- stderr ---\n{stderr}"
    );
    assert!(
        !stderr.contains("panicked"),
        "{what}: panicked\n{text}\n{stderr}"
    );
}

#[test]
fn mutated_shipped_files_never_panic_in_validate_or_run() {
    let tmp = TempDir::new("mutated");
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut validated, mut trained) = (0, 0);
    for file in shipped_files() {
        let original = std::fs::read_to_string(&file).unwrap();
        let stem = file.file_stem().unwrap().to_string_lossy().into_owned();
        for k in 0..12 {
            let text = mutate(&original, &mut rng);
            let path = tmp.path().join(format!("{stem}-{k}.toml"));
            std::fs::write(&path, &text).unwrap();
            let what = format!("{} mutation {k}", file.display());
            let r = run_cli(&["validate", path.to_str().unwrap()]);
            assert_clean_exit(
                &format!("validate {what}"),
                &[0, 2],
                r.code,
                &r.stderr,
                &text,
            );
            validated += 1;
            // Training every mutation would take minutes: a third of them, on tiny data.
            if k % 3 != 0 {
                continue;
            }
            let Some(small) = tiny(&text) else { continue };
            std::fs::write(&path, &small).unwrap();
            let out = tmp.path().join(format!("out-{stem}-{k}"));
            let r = run_cli(&[
                "run",
                path.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
                "--no-report",
                "--task",
                "0",
            ]);
            assert_clean_exit(
                &format!("run {what}"),
                &[0, 2, 3],
                r.code,
                &r.stderr,
                &small,
            );
            trained += (r.code == Some(0)) as usize;
        }
    }
    eprintln!("{validated} mutated files validated, {trained} trained on tiny data");
    assert!(validated >= 12 * 5, "too few shipped files: {validated}");
    assert!(trained >= 3, "almost no mutation trained: {trained}");
}
