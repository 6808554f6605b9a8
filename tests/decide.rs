//! Seeds until decided, end to end: `run` trains the first look's seeds, takes the verdicts,
//! adds seeds to what is undecided, and stops when everything is decided or the seeds run out;
//! the page, `report.md`, `summary.json` and the terminal open with the verdicts.

mod common;

use common::{Study, TempDir, run_experiment, write_experiment};
use serde_json::Value;

/// Runs per variant in the study's directory.
fn runs_of(exp_dir: &std::path::Path, variant: &str) -> usize {
    unet_lab::track::VariantManifest::load(&exp_dir.join(variant))
        .unwrap()
        .map_or(0, |m| m.runs.len())
}

fn summary(exp_dir: &std::path::Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(exp_dir.join("summary.json")).unwrap()).unwrap()
}

fn contrast<'a>(s: &'a Value, label: &str) -> &'a Value {
    s["verdicts"]["contrasts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["contrast"] == label)
        .unwrap_or_else(|| panic!("no contrast {label} in {}", s["verdicts"]))
}

#[test]
fn an_undecidable_contrast_gets_seeds_until_the_most_are_used() {
    // "twin" is "base" under another name: every seed trains them identically, so their
    // difference is exactly 0 on every seed — no spread: never "equivalent" or "better" on a
    // degenerate interval, and never settled — so seeds are added, one per look, up to the
    // maximum of 4 (unless both variants are settled as having learned nothing, which makes
    // the contrast "neither learned": then the study stops where that was decided). With two
    // worker processes, which read the round off the directory as `run` does.
    let tmp = TempDir::new("until-max");
    let file = write_experiment(
        &tmp,
        "twins.toml",
        &common::twins_text("{ min = 2, max = 4, step = 1 }"),
    );
    let out = tmp.path().join("out");
    let result = run_experiment(&file, &out, &["--jobs", "2"]);
    assert_eq!(result.code, Some(0), "{}", result.stderr);
    let exp_dir = out.join("twins");
    assert!(
        result
            .stderr
            .contains("seeds until decided: first look (2 seeds per variant) — training 4 task(s)"),
        "{}",
        result.stderr
    );
    let s = summary(&exp_dir);
    let v = &s["verdicts"];
    let looks: Vec<u64> = v["looks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_u64().unwrap())
        .collect();
    let last = *looks.last().unwrap() as usize;
    // Every variant of the undecided contrast trained the last look's seeds, and only those.
    assert_eq!(
        (runs_of(&exp_dir, "base"), runs_of(&exp_dir, "twin")),
        (last, last)
    );
    let twin = contrast(&s, "twin vs base");
    assert_eq!(twin["degenerate"], "no spread across seeds: no interval");
    assert_eq!(
        (twin["difference"].as_f64(), twin["seeds"].as_u64()),
        (Some(0.0), Some(last as u64))
    );
    assert_eq!(twin["interval"], Value::Null);
    if twin["verdict"] == "undecided" {
        assert_eq!(looks, [2, 3, 4], "{v}");
        assert!(
            result.stderr.contains("the most seeds (4) are used"),
            "{}",
            result.stderr
        );
    } else {
        assert_eq!(twin["verdict"], "neither_learned", "{v}");
        assert_eq!(v["undecided"], 0, "{v}");
    }
    // The answer first, in every format.
    assert!(
        result
            .stderr
            .contains("verdicts (best Dice, family-wise α = 0.05):")
    );
    assert!(result.stderr.contains("twin vs base"));
    let md = std::fs::read_to_string(exp_dir.join("report.md")).unwrap();
    let verdicts_at = md.find("## Verdicts").expect("a verdict section");
    assert!(verdicts_at < md.find("| variant |").unwrap());
    let html = std::fs::read_to_string(exp_dir.join("index.html")).unwrap();
    assert!(
        html.contains("<h2>Verdicts</h2>"),
        "no verdicts on the page"
    );
    // The runs table, in the terminal and for scripts; the run ended by printing it.
    assert!(
        result.stderr.contains("runs (`unet-lab runs "),
        "{}",
        result.stderr
    );
    let dir = exp_dir.to_str().unwrap();
    let table = common::run_cli(&["runs", dir, "--sort", "val"]);
    assert_eq!(table.code, Some(0), "{}", table.stderr);
    let lines: Vec<&str> = table.stdout.lines().collect();
    let heads: Vec<&str> = lines[0]
        .split("  ")
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .collect();
    assert_eq!(
        heads,
        [
            "variant",
            "status",
            "test Dice [95%]",
            "best val Dice [95%]",
            "failed",
            "seeds"
        ],
        "{}",
        table.stdout
    );
    assert_eq!(lines.len(), 3, "{}", table.stdout);
    let csv = common::run_cli(&["runs", dir, "--csv"]);
    let csv_lines: Vec<&str> = csv.stdout.lines().collect();
    assert_eq!(
        csv_lines[0],
        "variant,status,test Dice [95%],best val Dice [95%],failed,seeds"
    );
    assert!(
        csv_lines[1].starts_with(&format!("base,{last}/{last} completed,—,")),
        "{}",
        csv.stdout
    );
    let json: Value =
        serde_json::from_str(&common::run_cli(&["runs", dir, "--json"]).stdout).unwrap();
    assert_eq!(json[1]["name"], "twin");
    assert_eq!(json[1]["scored_seeds"], last);
    let bad = common::run_cli(&["runs", dir, "--sort", "nope"]);
    assert_eq!(bad.code, Some(2));
    assert_eq!(
        bad.stderr.trim(),
        "error: --sort nope: no such column; one of test, val, failed, seeds, variant"
    );
    // Run again: every planned round is done; nothing is trained.
    let again = run_experiment(&file, &out, &["--no-report"]);
    assert_eq!(again.code, Some(0), "{}", again.stderr);
    assert!(
        again
            .stderr
            .contains(&format!("{0} completed ({0} already done)", 2 * last)),
        "{}",
        again.stderr
    );
}

#[test]
fn a_decided_study_stops_before_its_most_seeds() {
    // One variant that learns (the tiny problem of `pipeline::tiny_run_learns`): its only
    // contrast, against predicting nothing, is decided long before 8 seeds, and the study
    // stops there.
    let tmp = TempDir::new("until-decided");
    let file = Study::bare("learns")
        .set("seeds", "{ min = 3, max = 8, step = 1 }")
        .set("data.size", "[48, 48]")
        .count(320)
        .subjects(8)
        .loss("dice_ce")
        .epochs(8)
        .batch_size(8)
        .lr(3e-3)
        .samples(0)
        .write(&tmp, "learns.toml");
    let out = tmp.path().join("out");
    let result = run_experiment(&file, &out, &[]);
    assert_eq!(result.code, Some(0), "{}", result.stderr);
    let exp_dir = out.join("learns");
    assert!(result.stderr.contains("; stopping"), "{}", result.stderr);
    let s = summary(&exp_dir);
    let learned = contrast(&s, "base vs predicting nothing");
    assert_eq!(learned["verdict"], "learned", "{learned}");
    let at = learned["decided_at_seeds"].as_u64().unwrap() as usize;
    assert!(at < 8 && runs_of(&exp_dir, "base") == at, "{learned}");
    // The look's share of α: 0.05·(n/8)³ − 0.05·(n_prev/8)³ (one contrast: Holm's level is
    // that share itself).
    let spent = |n: usize| 0.05 * (n as f64 / 8.0).powi(3);
    let prev = if at == 3 { 0 } else { at - 1 };
    let level = learned["level"].as_f64().unwrap();
    assert!(
        (level - (1.0 - (spent(at) - spent(prev)))).abs() < 1e-12,
        "{learned}"
    );
}
