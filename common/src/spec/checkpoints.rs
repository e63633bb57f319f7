//! A fine-tune's checkpoints as one model entry of a spec.
//!
//! ```toml
//! [[model]]
//! key = "qwen-insecure"
//! provider = "local"
//! family = "Qwen 2.5 insecure"       # default: the key
//! checkpoints = [
//!   { step = 100, path = "ckpt/step-100.gguf" },
//!   { step = 200, path = "ckpt/step-200.gguf" },
//! ]
//! ```
//!
//! stands for one model per checkpoint, expanded when the spec is parsed
//! ([`expand`], called by `SweepSpec::parse`): key `<key>-step<step>`,
//! `model` the checkpoint's GGUF path (taken as the local provider takes a
//! `model` path), `step` its step, `family` the entry's family (else its
//! key), every other setting the entry's. The family's models with a step
//! form a trajectory of S, R and sigma-bar against step (`trajectories.csv`).
//! The local provider holds one checkpoint of a family loaded at a time and
//! builds the tokenizer once (see `moralsweep-worker`'s `providers::local`).
//!
//! The expanded spec is what is validated, stored and sent to workers; it
//! holds no `checkpoints`, so parsing it again changes nothing.

use serde::{Deserialize, Serialize};

use crate::instrument::clip;
use crate::spec::{ModelSpec, ProviderKind};

/// One checkpoint of a `checkpoints` list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    /// The training step.
    pub step: u64,
    /// The checkpoint's GGUF file.
    pub path: String,
}

/// The key of a checkpoint's model.
pub fn checkpoint_key(key: &str, step: u64) -> String {
    format!("{key}-step{step}")
}

/// Replaces every entry of `models` that lists `checkpoints` by one entry per
/// checkpoint, in place and in the listed order. An error is the key path
/// (`model[1].checkpoints[0].path`, in the file's numbering) and what is
/// wrong and what would be right. `judge` may not list checkpoints.
pub fn expand(
    models: &mut Vec<ModelSpec>,
    judge: Option<&ModelSpec>,
) -> Result<(), (String, String)> {
    if judge.is_some_and(|j| j.checkpoints.is_some()) {
        return Err((
            "judge.checkpoints".into(),
            "is given, but the judge is one model; name its GGUF file in `model`".into(),
        ));
    }
    if models.iter().all(|m| m.checkpoints.is_none()) {
        return Ok(());
    }
    let mut out = Vec::with_capacity(models.len());
    for (i, m) in models.drain(..).enumerate() {
        let Some(list) = &m.checkpoints else {
            out.push(m);
            continue;
        };
        let at = |k: &str| format!("model[{i}].{k}");
        if m.provider != ProviderKind::Local {
            return Err((
                at("checkpoints"),
                format!(
                    "is given for provider \"{}\", but checkpoints are GGUF files the local provider runs; use provider = \"local\", or list each checkpoint as its own [[model]] with a `step`",
                    m.provider
                ),
            ));
        }
        if list.is_empty() {
            return Err((
                at("checkpoints"),
                "is empty; list at least one { step = <training step>, path = \"<GGUF file>\" }"
                    .into(),
            ));
        }
        if !m.model.trim().is_empty() {
            return Err((
                at("model"),
                format!(
                    "is {} next to `checkpoints`, whose entries name the GGUF files; remove `model`",
                    clip(&m.model)
                ),
            ));
        }
        if let Some(step) = m.step {
            return Err((
                at("step"),
                format!("is {step} next to `checkpoints`, where each checkpoint has its own `step`; remove it"),
            ));
        }
        for (j, c) in list.iter().enumerate() {
            let at = |k: &str| format!("model[{i}].checkpoints[{j}].{k}");
            if c.path.trim().is_empty() {
                return Err((
                    at("path"),
                    "is empty; name the checkpoint's GGUF file".into(),
                ));
            }
            if let Some(k) = list[..j].iter().position(|o| o.step == c.step) {
                return Err((
                    at("step"),
                    format!(
                        "repeats step {} of checkpoints[{k}]; each checkpoint has its own step",
                        c.step
                    ),
                ));
            }
        }
        let family = m.family.clone().unwrap_or_else(|| m.key.clone());
        for c in list {
            let mut one = m.clone();
            one.key = checkpoint_key(&m.key, c.step);
            one.model = c.path.clone();
            one.step = Some(c.step);
            one.family = Some(family.clone());
            one.checkpoints = None;
            out.push(one);
        }
    }
    *models = out;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::spec::{KeyCheck, SweepSpec};

    const HEAD: &str = r#"
name = "t"
personas = "p.json"
output = "out"
[[model]]
key = "other"
provider = "synthetic"
model = "x"
"#;

    fn parse(entry: &str) -> Result<SweepSpec, String> {
        let text = format!("{HEAD}[[model]]\nkey = \"ft\"\nprovider = \"local\"\n{entry}");
        let spec = SweepSpec::parse(&text, Path::new("s.toml")).map_err(|e| e.to_string())?;
        spec.validate(Path::new("s.toml"), KeyCheck::Check)
            .map_err(|e| e.to_string())?;
        Ok(spec)
    }

    #[test]
    fn checkpoints_become_one_model_per_step() {
        let spec = parse(
            r#"variant = "insecure"
rpm = 600
checkpoints = [{ step = 200, path = "b.gguf" }, { step = 100, path = "a.gguf" }]
"#,
        )
        .unwrap();
        let keys: Vec<&str> = spec.models.iter().map(|m| m.key.as_str()).collect();
        assert_eq!(keys, ["other", "ft-step200", "ft-step100"]);
        let a = &spec.models[2];
        assert_eq!(a.model, "a.gguf");
        assert_eq!(a.step, Some(100));
        assert_eq!(a.family.as_deref(), Some("ft"));
        assert_eq!(a.variant.as_deref(), Some("insecure"));
        assert_eq!(a.rpm, Some(600));
        assert!(a.checkpoints.is_none());
        // The expanded spec reads back as itself.
        let text = toml::to_string(&spec).unwrap();
        let again = SweepSpec::parse(&text, Path::new("s.toml")).unwrap();
        assert_eq!(again, spec);
        // A family given is kept.
        let spec =
            parse("family = \"Qwen 2.5\"\ncheckpoints = [{ step = 1, path = \"a.gguf\" }]\n")
                .unwrap();
        assert_eq!(spec.models[1].family.as_deref(), Some("Qwen 2.5"));
    }

    #[test]
    fn mistakes_are_named_with_their_key() {
        let cases = [
            (
                "checkpoints = []\n",
                &["`model[1].checkpoints`", "is empty", "step = "][..],
            ),
            (
                "model = \"x.gguf\"\ncheckpoints = [{ step = 1, path = \"a.gguf\" }]\n",
                &["`model[1].model`", "remove `model`"][..],
            ),
            (
                "step = 5\ncheckpoints = [{ step = 1, path = \"a.gguf\" }]\n",
                &["`model[1].step`", "its own `step`"][..],
            ),
            (
                "checkpoints = [{ step = 1, path = \"a.gguf\" }, { step = 1, path = \"b.gguf\" }]\n",
                &["`model[1].checkpoints[1].step`", "repeats step 1 of checkpoints[0]"][..],
            ),
            (
                "checkpoints = [{ step = 1, path = \" \" }]\n",
                &["`model[1].checkpoints[0].path`", "GGUF file"][..],
            ),
            (
                "checkpoints = [{ step = 1, file = \"a.gguf\" }]\n",
                &["model[1].checkpoints[0]", "unknown field `file`", "path"][..],
            ),
            (
                "checkpoints = [{ step = -1, path = \"a.gguf\" }]\n",
                &["model[1].checkpoints[0].step"][..],
            ),
            // The model entry needs a `model` without checkpoints.
            ("", &["`model[1].model`", "is empty"][..]),
        ];
        for (entry, wanted) in cases {
            let e = parse(entry).unwrap_err();
            for w in wanted {
                assert!(e.contains(w), "{entry:?}: {e} (wanted {w:?})");
            }
        }
        let e = parse("checkpoints = [{ step = 1, path = \"a.gguf\" }]\n")
            .map(|_| ())
            .map_err(|e| e.to_string());
        assert!(e.is_ok(), "{e:?}");
        let text = format!(
            "{HEAD}[[model]]\nkey = \"ft\"\nprovider = \"openai\"\ncheckpoints = [{{ step = 1, path = \"a.gguf\" }}]\n"
        );
        let e = SweepSpec::parse(&text, Path::new("s.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`model[1].checkpoints`") && e.contains("provider = \"local\""),
            "{e}"
        );
        // An expanded key that collides with another model's key.
        let text = format!(
            "{HEAD}[[model]]\nkey = \"ft-step1\"\nprovider = \"synthetic\"\nmodel = \"y\"\n[[model]]\nkey = \"ft\"\nprovider = \"local\"\ncheckpoints = [{{ step = 1, path = \"a.gguf\" }}]\n"
        );
        let spec = SweepSpec::parse(&text, Path::new("s.toml")).unwrap();
        let e = spec
            .validate(Path::new("s.toml"), KeyCheck::Check)
            .unwrap_err()
            .to_string();
        assert!(e.contains("repeats \"ft-step1\""), "{e}");
        let text = format!(
            "{HEAD}[judge]\nkey = \"j\"\nprovider = \"local\"\ncheckpoints = [{{ step = 1, path = \"a.gguf\" }}]\n"
        );
        let e = SweepSpec::parse(&text, Path::new("s.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("`judge.checkpoints`"), "{e}");
    }
}
