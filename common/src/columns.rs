//! The column names of the metric files that an instrument's group label
//! must not take (`instrument/check.rs`), so they live with the domain; the
//! analysis writes them (`moralsweep_analysis::analyze`, which re-exports
//! them beside its other files' columns).

/// Column names of `persona_moral_metrics.csv`: the papers' columns, then ours.
pub const OVERALL_COLUMNS: [&str; 24] = [
    "model",
    "temperature",
    "uncertainty",
    "uncertainty_uncertainty",
    "robustness",
    "robustness_uncertainty",
    "susceptibility",
    "susceptibility_uncertainty",
    "uncertainty_persona_uncertainty",
    "uncertainty_response_uncertainty",
    "susceptibility_persona_uncertainty",
    "susceptibility_response_uncertainty",
    "personas",
    "questions",
    "min_runs_per_cell",
    "median_runs_per_cell",
    "max_runs_per_cell",
    "family",
    "variant",
    "s_band",
    "retained_persona_ids_json",
    "retained_question_ids_json",
    "source_file",
    "temperature_setting",
];

/// Column names of `trajectories.csv`.
pub const TRAJECTORY_COLUMNS: [&str; 13] = [
    "family",
    "temperature",
    "step",
    "model",
    "variant",
    "susceptibility",
    "susceptibility_uncertainty",
    "robustness",
    "robustness_uncertainty",
    "uncertainty",
    "uncertainty_uncertainty",
    "personas",
    "temperature_setting",
];

/// Column names of `self_profiles.csv`.
pub const SELF_PROFILE_COLUMNS: [&str; 10] = [
    "model",
    "family",
    "variant",
    "self_file",
    "foundation",
    "mean",
    "within_question_sd",
    "questions",
    "temperature",
    "temperature_setting",
];

/// The columns that name an item group, by instrument.
pub const GROUP_COLUMNS: [&str; 2] = ["foundation", "domain"];

/// Whether `name` is a column the metric files have besides the group
/// column (so a group label cannot be it): every column of the overall,
/// self-profile, trajectory and distribution files.
pub fn is_metric_column(name: &str) -> bool {
    const DISTRIBUTION_ONLY: [&str; 7] = [
        "ratings",
        "entropy_bits",
        "modal_rating",
        "modal_share",
        "collapsed",
        "base_model",
        "kl_from_base_bits",
    ];
    name.starts_with("rating_")
        || OVERALL_COLUMNS
            .iter()
            .chain(TRAJECTORY_COLUMNS.iter())
            .chain(DISTRIBUTION_ONLY.iter())
            .chain(
                SELF_PROFILE_COLUMNS
                    .iter()
                    .filter(|c| !GROUP_COLUMNS.contains(c)),
            )
            .any(|c| *c == name)
}
