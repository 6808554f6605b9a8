//! `summary.json`: the page's tables — variants, main effects, interactions — for scripts and
//! notebooks (`json.load(open("reports/mse_adam/summary.json"))`).

use std::path::PathBuf;

use anyhow::Result;
use serde_json::{Value, json};

use super::Renderer;
use super::effects::AxisEffect;
use super::interactions::Interaction;
use super::load::ExperimentData;
use super::stats::{mean, sd};
use super::summary::{self, VariantRow};
use crate::track::write_atomic;

pub(crate) struct JsonRenderer;

impl Renderer for JsonRenderer {
    fn render(&self, exp: &ExperimentData) -> Result<Vec<PathBuf>> {
        let path = exp.dir.join("summary.json");
        write_atomic(&path, &serde_json::to_vec_pretty(&summary_json(exp))?)?;
        Ok(vec![path])
    }
}

/// Mean, sd and the values themselves (one per scored seed).
fn stat(values: &[f64]) -> Value {
    json!({ "mean": mean(values), "sd": sd(values), "values": values })
}

fn ci(ci95: Option<(f64, f64)>) -> Value {
    ci95.map_or(Value::Null, |(lo, hi)| json!([lo, hi]))
}

pub(crate) fn variant(r: &VariantRow) -> Value {
    json!({
        "name": r.name,
        "slug": r.slug,
        "levels": r
            .levels
            .iter()
            .map(|(axis, level)| (axis.clone(), Value::String(level.clone())))
            .collect::<serde_json::Map<_, _>>(),
        "status": r.status.as_str(),
        "status_counts": r.status_counts,
        "seeds": r.seeds,
        "scored_seeds": r.scored_seeds,
        "failed_seeds": r.failed_seeds,
        "scored_as_predicting_nothing": r.nothing_seeds,
        "completed_seeds_only": stat(&r.completed_scores),
        "learned_nothing": r.learned_nothing,
        "folds": r.folds,
        "best_dice": stat(&r.best_dice),
        "final_dice": stat(&r.final_dice),
        "test_dice": stat(&r.test_dice),
        "best_epochs": r.best_epochs,
        "breakdown": {
            "empty_correct": r.empty_correct,
            "found": r.found,
            "dice_found": r.dice_found,
        },
        "tuning": r.tuning.as_ref().map(|t| json!({
            "seeds": t.seeds,
            "threshold": t.threshold,
            "min_area_share": t.min_area_share,
            "presence_threshold": t.presence_threshold,
            "val_before": t.val_before,
            "val_after": t.val_after,
            "test_before": t.test_before,
            "test_after": t.test_after,
        })),
        "notes": r.notes,
        "epochs": r.epochs,
        "parameters": r.parameters,
        "train_seconds": r.train_seconds,
        "images_per_sec": r.images_per_sec,
    })
}

fn effect(e: &AxisEffect) -> Value {
    json!({
        "axis": e.axis,
        "score": e.score,
        "reference": e.reference,
        "verdict": summary::verdict(e),
        "levels": e.levels.iter().map(|l| json!({
            "level": l.level,
            "mean": l.mean_dice,
            "difference": l.difference,
            "ci95": ci(l.ci95),
            "seeds": l.seeds,
        })).collect::<Vec<_>>(),
    })
}

fn interaction(t: &Interaction) -> Value {
    json!({
        "axes": [t.first, t.second],
        "score": t.score,
        "levels": [t.first_levels, t.second_levels],
        "cells": t.cells.iter().map(|row| row.iter().map(|c| c.as_ref().map(|c| json!({
            "mean": c.mean,
            "ci95": ci(c.ci95),
            "seeds": c.seeds,
        }))).collect::<Vec<_>>()).collect::<Vec<_>>(),
        "contrasts": t.contrasts.iter().map(|c| json!({
            "levels": [c.first, c.second],
            "value": c.value,
            "ci95": ci(c.ci95),
            "seeds": c.seeds,
        })).collect::<Vec<_>>(),
        "verdict": t.verdict(),
    })
}

fn summary_json(exp: &ExperimentData) -> Value {
    let effects = summary::effects(exp);
    let all_verdicts = super::verdicts::Verdicts::of(exp);
    json!({
        "experiment": exp.manifest.name,
        "description": exp.manifest.description,
        "seeds": exp.manifest.seeds,
        "axes": exp.manifest.axes,
        "ranked_by": summary::ranked_by(&effects),
        "all_empty_score": summary::all_empty_score(exp),
        "variants": summary::rows_with(exp, all_verdicts.as_ref()).iter().map(variant).collect::<Vec<_>>(),
        "main_effects": effects.iter().map(effect).collect::<Vec<_>>(),
        "interactions": summary::interactions(exp).iter().map(interaction).collect::<Vec<_>>(),
        "verdicts": all_verdicts.as_ref().map(verdicts),
    })
}

fn verdicts(v: &super::verdicts::Verdicts) -> Value {
    json!({
        "alpha": v.rules.alpha,
        "margin": v.rules.margin,
        "score": v.score,
        "looks": v.looks,
        "max_seeds": v.max_seeds,
        "undecided": v.undecided(),
        "next_look": v.next.as_ref().map(|(n, variants)| json!({"seeds": n, "variants": variants})),
        "contrasts": v.contrasts.iter().map(|c| json!({
            "contrast": c.label,
            "kind": format!("{:?}", c.kind).to_lowercase(),
            "difference": c.difference,
            "interval": ci(c.interval),
            "level": c.level,
            "p_value": c.p_value,
            "correlation": c.correlation,
            "p_improvement": c.improvement.map(|(p, _)| p),
            "p_improvement_ci95": ci(c.improvement.map(|(_, i)| i)),
            "seeds": c.seeds,
            "decided_at_seeds": c.look_seeds,
            "verdict": c.verdict.key(),
            "verdict_text": c.verdict.words(),
            "degenerate": c.degenerate,
        })).collect::<Vec<_>>(),
        "failures": v.failures.iter().map(|f| json!({
            "variant": f.variant,
            "failed": f.failed,
            "seeds": f.seeds,
            "ci95": ci(f.interval),
        })).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_json_holds_the_pages_tables() {
        let s = summary_json(&super::super::html::tests::grid());
        assert_eq!(s["ranked_by"], "best validation Dice");
        let variants = s["variants"].as_array().unwrap();
        assert_eq!(variants.len(), 6);
        let ce_sgd = variants.iter().find(|v| v["name"] == "ce-sgd").unwrap();
        assert_eq!(ce_sgd["levels"]["train.optimizer"], "sgd");
        assert_eq!(ce_sgd["status_counts"], "3/3 completed");
        assert!((ce_sgd["best_dice"]["mean"].as_f64().unwrap() - 0.48).abs() < 1e-12);
        assert_eq!(ce_sgd["best_dice"]["values"].as_array().unwrap().len(), 3);
        let effects = s["main_effects"].as_array().unwrap();
        assert_eq!(effects[1]["axis"], "train.optimizer");
        let t = &s["interactions"][0];
        assert_eq!(t["axes"], json!(["train.loss", "train.optimizer"]));
        assert!((t["cells"][2][1]["mean"].as_f64().unwrap() - 0.48).abs() < 1e-12);
        let ce = &t["contrasts"][1];
        assert_eq!(ce["levels"], json!(["ce", "sgd"]));
        assert!((ce["value"].as_f64().unwrap() + 0.24).abs() < 1e-9);
        assert!(
            t["verdict"]
                .as_str()
                .unwrap()
                .contains("depends on train.optimizer")
        );
    }
}
