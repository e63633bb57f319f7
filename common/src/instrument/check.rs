//! The checks of what in an instrument file becomes part of a file name, a
//! CSV header or a message: the group label, the group names, the sizes;
//! and the cutting of long user text in messages.

/// The most items an instrument may have (ids are 8-bit).
pub const MAX_ITEMS: usize = 255;

/// The most groups an instrument may have.
pub const MAX_GROUPS: usize = 64;

/// The longest group label and group name, in characters.
pub(super) const MAX_LABEL_CHARS: usize = 32;
pub(super) const MAX_GROUP_CHARS: usize = 64;

/// Shows at most the first 40 characters of `s` (a long key or name is
/// cut in messages, with the count of the rest).
pub fn clip(s: &str) -> String {
    const SHOWN: usize = 40;
    let n = s.chars().count();
    if n <= SHOWN {
        format!("{s:?}")
    } else {
        let head: String = s.chars().take(SHOWN).collect();
        format!("{head:?}... ({} more characters)", n - SHOWN)
    }
}

/// `message` with every word (a run without spaces) longer than 60
/// characters cut like [`clip`] does, so a 10,000-character key in a
/// parser's message is not echoed whole.
pub fn clip_words(message: &str) -> String {
    const LONG: usize = 60;
    const SHOWN: usize = 40;
    let mut out = String::with_capacity(message.len().min(4096));
    for (i, word) in message.split(' ').enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let n = word.chars().count();
        if n > LONG {
            out.extend(word.chars().take(SHOWN));
            out.push_str(&format!("... ({} more characters)", n - SHOWN));
        } else {
            out.push_str(word);
        }
    }
    out
}

/// Why a group label cannot name the per-group files and columns, if it
/// cannot: it becomes part of the file name
/// `persona_moral_metrics_per_<label>.csv` and a CSV column name beside
/// the metric columns, so it is a short lower-case word that is not one
/// of those columns.
pub(super) fn label_problem(label: &str) -> Option<String> {
    let well_formed = (1..=MAX_LABEL_CHARS).contains(&label.len())
        && label.starts_with(|c: char| c.is_ascii_lowercase())
        && label
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !well_formed {
        return Some(format!(
            "is {}; it names the per-group files (persona_moral_metrics_per_<group_label>.csv) and their column, so it must be 1-{MAX_LABEL_CHARS} characters: a lower-case letter, then lower-case letters, digits or '_' (e.g. \"foundation\", \"domain\", \"facet\")",
            clip(label)
        ));
    }
    if crate::columns::is_metric_column(label) {
        return Some(format!(
            "is {label:?}, the name of a column of the metric files beside it; call the groups something else (e.g. \"facet\", \"scale_group\")"
        ));
    }
    None
}

/// Why a group name cannot be one, if it cannot.
pub(super) fn group_problem(group: &str) -> Option<String> {
    if group.trim().is_empty() {
        return Some("is empty; every group needs a name".into());
    }
    if group.trim() != group {
        return Some(format!(
            "is {}, with spaces around it (the metric files trim fields, so it would not match its items); remove them",
            clip(group)
        ));
    }
    if group.chars().count() > MAX_GROUP_CHARS {
        return Some(format!(
            "is {}; a group name has at most {MAX_GROUP_CHARS} characters",
            clip(group)
        ));
    }
    if group.chars().any(char::is_control) {
        return Some(format!(
            "is {}, which holds a control character (a line break or tab); use printable characters only",
            clip(group)
        ));
    }
    None
}
