//! The verdict procedure on simulated studies (docs/report.md's figures): with no true effect and
//! with an effect of twice the margin, with and without failures, seeds until decided (3, +2,
//! at most 20) against fixed seeds.
//!
//!     cargo run --release --example verdict_simulation [STUDIES]   (default 20 000)

use unet_lab::config::DecideRules;
use unet_lab::report::simulate::{Simulation, simulate};

fn main() {
    let studies: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20_000);
    println!(
        "{studies} simulated studies each: reference + 3 variants, scores 0.70 + seed N(0, 0.02) + \
         run N(0, 0.02), α = 0.05 family-wise, margin 0.02, at most 20 seeds\n"
    );
    println!(
        "| true effect of variant 1 | failures per run | seeds | any wrong better/worse [95% MC] | effect found | all contrasts decided | mean seeds per variant |"
    );
    println!("|---|---|---|---|---|---|---|");
    let sequential = DecideRules {
        first_seeds: 3,
        step: 2,
        ..DecideRules::default()
    };
    let fixed = DecideRules {
        first_seeds: 20,
        ..DecideRules::default()
    };
    for (effect, failure) in [(0.0, 0.03), (0.04, 0.03), (0.0, 0.0), (0.04, 0.0)] {
        for (name, rules) in [("until decided (3, +2)", &sequential), ("fixed 20", &fixed)] {
            let o = simulate(&Simulation {
                studies,
                effect,
                failure,
                rules: rules.clone(),
                ..Simulation::default()
            });
            let found = if effect == 0.0 {
                "—".to_string()
            } else {
                format!("{:.1}%", 100.0 * o.found_share())
            };
            println!(
                "| {effect:+.2} | {:.0}% | {name} | {:.2}% [{:.2}, {:.2}] | {found} | {:.1}% | {:.1} |",
                100.0 * failure,
                100.0 * o.any_wrong_share(),
                100.0 * o.any_wrong_ci.0,
                100.0 * o.any_wrong_ci.1,
                100.0 * o.all_decided as f64 / o.studies as f64,
                o.mean_seeds
            );
        }
    }
}
