//! Instruments as data: a questionnaire is a definition file, not code.
//!
//! An instrument file (JSON) holds the items (id, text, group such as a
//! moral foundation or a Big Five domain, reverse flag, and the kind that
//! picks the item prompt template), the groups in order, the rating scale,
//! the persona and self prompt templates, and the rating parser. MFQ-30 and
//! BFI-44 ship built in (`common/instruments/*.json`, compiled into the
//! binary); a user's own file in the same format is loaded by path.
//!
//! Templates are plain text with placeholders: `{persona}` and `{item}` in
//! the persona and self templates; `{text}` (the item text as written) and
//! `{text_lcfirst}` (its first letter in lower case) in the item templates.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use serde::Deserialize;

use super::check::{clip, clip_words, group_problem, label_problem, MAX_GROUPS, MAX_ITEMS};

/// The built-in instruments: (name, definition file).
const BUILTIN: [(&str, &str); 2] = [
    ("mfq-30", include_str!("../../instruments/mfq-30.json")),
    ("bfi-44", include_str!("../../instruments/bfi-44.json")),
];

/// The name of the default instrument.
pub const DEFAULT_INSTRUMENT: &str = "mfq-30";

/// The names of the built-in instruments, in order.
pub fn builtin_names() -> Vec<&'static str> {
    BUILTIN.iter().map(|b| b.0).collect()
}

/// The rating scale: every integer from `min` to `max` is an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scale {
    pub min: u8,
    pub max: u8,
}

impl Scale {
    pub fn contains(&self, r: i64) -> bool {
        (self.min as i64..=self.max as i64).contains(&r)
    }

    /// Number of answer values.
    pub fn len(&self) -> usize {
        (self.max - self.min) as usize + 1
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    /// The reverse-keyed score of `r`: `min + max - r`.
    pub fn reverse(&self, r: u8) -> u8 {
        self.min + self.max - r
    }

    /// `"0-5"`.
    pub fn range(&self) -> String {
        format!("{}-{}", self.min, self.max)
    }
}

/// How an answer becomes a rating.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Parser {
    /// A one-token answer is a rating when, trimmed, it is a single digit
    /// of the scale; a longer answer gives its first standalone integer of
    /// the scale (a digit with no digit or letter next to it).
    #[serde(rename = "scale-digit")]
    ScaleDigit,
}

/// One item.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstrumentItem {
    /// 1-based id; ids run 1..=n in file order.
    pub id: u8,
    pub text: String,
    pub group: String,
    /// Reverse-keyed: its score is `min + max - rating` where a group's
    /// level is computed (self profiles); S and R do not depend on it.
    #[serde(default)]
    pub reverse: bool,
    /// The item prompt template (a key of `prompts.items`).
    pub kind: String,
}

/// The prompt templates.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Prompts {
    /// The whole prompt of a persona slot: `{persona}` and `{item}`.
    pub persona: String,
    /// The whole prompt of a self slot: `{item}`.
    pub self_: String,
    /// Item prompt templates by kind: `{text}`, `{text_lcfirst}`.
    pub items: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PromptsFile {
    persona: String,
    #[serde(rename = "self")]
    self_: String,
    items: BTreeMap<String, String>,
}

/// The scale as written: wide integers, so that a value out of range gets
/// this module's message (naming the limit) rather than serde's.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScaleFile {
    min: i64,
    max: i64,
}

/// An item as written (its id wide, like the scale's bounds).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ItemFile {
    id: i64,
    text: String,
    group: String,
    #[serde(default)]
    reverse: bool,
    kind: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InstrumentFile {
    name: String,
    title: String,
    #[serde(default)]
    source: String,
    group_label: String,
    groups: Vec<String>,
    scale: ScaleFile,
    prompts: PromptsFile,
    parser: Parser,
    items: Vec<ItemFile>,
}

/// A questionnaire: items, groups, scale, prompts and parser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instrument {
    /// Short name, e.g. `mfq-30`.
    pub name: String,
    pub title: String,
    pub source: String,
    /// What a group is called: `foundation`, `domain`.
    pub group_label: String,
    /// The groups in order.
    pub groups: Vec<String>,
    pub scale: Scale,
    pub prompts: Prompts,
    pub parser: Parser,
    /// Items in id order (index = id - 1).
    pub items: Vec<InstrumentItem>,
}

/// Why an instrument could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum InstrumentError {
    #[error("instrument {0:?} is neither a built-in instrument ({names}) nor a readable file: {1}", names = builtin_names().join(", "))]
    Unknown(String, String),
    #[error("instrument file {path}: {message}")]
    Invalid { path: String, message: String },
}

/// Why `text` (the instrument file at `origin`) is not an instrument's
/// definition, naming the key when serde found the problem under one.
fn decode(text: &str, origin: &str) -> Result<InstrumentFile, InstrumentError> {
    let de = &mut serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = clip_words(&e.path().to_string());
        let at = if path == "." || path.is_empty() {
            String::new()
        } else {
            format!("at `{path}`: ")
        };
        InstrumentError::Invalid {
            path: origin.to_string(),
            message: format!(
                "{at}{} (expected a JSON object with name, title, group_label, groups, scale {{min, max}}, prompts {{persona, self, items}}, parser \"scale-digit\" and items [{{id, text, group, reverse, kind}}])",
                clip_words(&e.inner().to_string())
            ),
        }
    })
}

impl Instrument {
    /// A built-in instrument by name (`mfq-30`, `bfi-44`).
    pub fn builtin(name: &str) -> Option<Arc<Instrument>> {
        static CACHE: OnceLock<Vec<Arc<Instrument>>> = OnceLock::new();
        let all = CACHE.get_or_init(|| {
            BUILTIN
                .iter()
                .map(|(n, text)| {
                    Arc::new(
                        Instrument::parse_any(text, &format!("built-in {n}"))
                            .expect("built-in instrument files are valid (tested)"),
                    )
                })
                .collect()
        });
        all.iter().find(|i| i.name == name).cloned()
    }

    /// The default instrument, MFQ-30.
    pub fn mfq30() -> Arc<Instrument> {
        Instrument::builtin(DEFAULT_INSTRUMENT).expect("MFQ-30 is built in")
    }

    /// All built-in instruments, in order.
    pub fn builtins() -> Vec<Arc<Instrument>> {
        builtin_names()
            .into_iter()
            .filter_map(Instrument::builtin)
            .collect()
    }

    /// A built-in name, or else the path of an instrument file.
    pub fn resolve(name_or_path: &str) -> Result<Arc<Instrument>, InstrumentError> {
        if let Some(i) = Instrument::builtin(name_or_path) {
            return Ok(i);
        }
        let path = Path::new(name_or_path);
        match moralsweep_userfs::read_to_string_bounded(path, moralsweep_userfs::INSTRUMENT_LIMIT) {
            Ok(text) => Ok(Arc::new(Instrument::parse(&text, name_or_path)?)),
            Err(e) => Err(InstrumentError::Unknown(
                name_or_path.to_string(),
                e.to_string(),
            )),
        }
    }

    /// Parses and checks a user's instrument definition; `origin` names it
    /// in errors. Its `name` cannot be a built-in instrument's: the checks
    /// that hold for a built-in (logprob mode reads the MFQ-30's digits)
    /// go by name.
    pub fn parse(text: &str, origin: &str) -> Result<Instrument, InstrumentError> {
        let i = Instrument::parse_any(text, origin)?;
        if builtin_names().contains(&i.name.as_str()) {
            return Err(InstrumentError::Invalid {
                path: origin.to_string(),
                message: format!(
                    "`name` is {:?}, the name of a built-in instrument; to use the built-in one write instrument = {:?} in the spec, else give your instrument a name of its own (e.g. {:?})",
                    i.name,
                    i.name,
                    format!("{}-mine", i.name)
                ),
            });
        }
        Ok(i)
    }

    /// Parses and checks an instrument definition, built-in or a user's.
    fn parse_any(text: &str, origin: &str) -> Result<Instrument, InstrumentError> {
        let bad = |message: String| InstrumentError::Invalid {
            path: origin.to_string(),
            message,
        };
        let f = decode(text, origin)?;
        if f.name.trim().is_empty() || f.name.chars().any(char::is_control) {
            return Err(bad(format!(
                "`name` is {}; give the instrument a short name of printable characters",
                clip(&f.name)
            )));
        }
        if f.name.chars().count() > 64 {
            return Err(bad(format!(
                "`name` is {}; a name has at most 64 characters",
                clip(&f.name)
            )));
        }
        if !(0..=9).contains(&f.scale.min)
            || !(0..=9).contains(&f.scale.max)
            || f.scale.min > f.scale.max
        {
            return Err(bad(format!(
                "`scale` is {}-{}; expected 0 <= min <= max <= 9 (ratings are single digits)",
                f.scale.min, f.scale.max
            )));
        }
        let scale = Scale {
            min: f.scale.min as u8,
            max: f.scale.max as u8,
        };
        if let Some(p) = label_problem(&f.group_label) {
            return Err(bad(format!("`group_label` {p}")));
        }
        if f.groups.is_empty() || f.groups.len() > MAX_GROUPS {
            return Err(bad(format!(
                "`groups` holds {} names; expected 1-{MAX_GROUPS}",
                f.groups.len()
            )));
        }
        for (i, g) in f.groups.iter().enumerate() {
            if let Some(p) = group_problem(g) {
                return Err(bad(format!("`groups[{i}]` {p}")));
            }
            if let Some(j) = f.groups[..i].iter().position(|h| h == g) {
                return Err(bad(format!(
                    "`groups[{i}]` is {}, like `groups[{j}]`; each group is named once (a repeated group would repeat every per-group row)",
                    clip(g)
                )));
            }
        }
        if f.items.is_empty() || f.items.len() > MAX_ITEMS {
            return Err(bad(format!(
                "`items` holds {} items; expected 1-{MAX_ITEMS}",
                f.items.len()
            )));
        }
        for (i, it) in f.items.iter().enumerate() {
            if it.id != i as i64 + 1 {
                return Err(bad(format!(
                    "item {} of `items` has id {}; expected ids 1, 2, 3, ... in order",
                    i + 1,
                    it.id
                )));
            }
            if it.text.trim().is_empty() {
                return Err(bad(format!(
                    "item {} has an empty `text`; give the item's wording",
                    it.id
                )));
            }
            if !f.groups.contains(&it.group) {
                return Err(bad(format!(
                    "item {} has group {}; expected one of `groups`: {}",
                    it.id,
                    clip(&it.group),
                    f.groups.join(", ")
                )));
            }
            if !f.prompts.items.contains_key(&it.kind) {
                return Err(bad(format!(
                    "item {} has kind {}; expected a key of `prompts.items`: {}",
                    it.id,
                    clip(&it.kind),
                    f.prompts
                        .items
                        .keys()
                        .map(|k| clip(k))
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        }
        if let Some(g) = f
            .groups
            .iter()
            .find(|g| !f.items.iter().any(|it| &it.group == *g))
        {
            return Err(bad(format!(
                "group {} of `groups` has no item; give it items or remove it",
                clip(g)
            )));
        }
        if !f.prompts.persona.contains("{persona}") || !f.prompts.persona.contains("{item}") {
            return Err(bad(
                "`prompts.persona` must contain {persona} and {item}".into()
            ));
        }
        if !f.prompts.self_.contains("{item}") {
            return Err(bad("`prompts.self` must contain {item}".into()));
        }
        let items = f
            .items
            .into_iter()
            .map(|it| InstrumentItem {
                // In 1..=MAX_ITEMS (checked above).
                id: it.id as u8,
                text: it.text,
                group: it.group,
                reverse: it.reverse,
                kind: it.kind,
            })
            .collect();
        Ok(Instrument {
            name: f.name,
            title: f.title,
            source: f.source,
            group_label: f.group_label,
            groups: f.groups,
            scale,
            prompts: Prompts {
                persona: f.prompts.persona,
                self_: f.prompts.self_,
                items: f.prompts.items,
            },
            parser: f.parser,
            items,
        })
    }

    /// Number of items.
    pub fn item_count(&self) -> usize {
        self.items.len()
    }

    /// The item with the given 1-based id.
    pub fn item(&self, id: u8) -> Option<&InstrumentItem> {
        self.items.get((id as usize).wrapping_sub(1))
    }

    /// Whether `id` is an item id of this instrument.
    pub fn has_item(&self, id: i64) -> bool {
        (1..=self.items.len() as i64).contains(&id)
    }

    /// Whether a rating row fits: its item is one of the instrument's and
    /// its rating on the scale (-1: no rating).
    pub fn fits(&self, item: i64, rating: i64) -> bool {
        self.has_item(item) && (rating == -1 || self.scale.contains(rating))
    }

    /// How a rating file's instrument is recognised: the first built-in
    /// instrument every (item, rating) row fits.
    pub fn recognise(rows: &[(i64, i64)]) -> Option<Arc<Instrument>> {
        Instrument::builtins()
            .into_iter()
            .find(|i| rows.iter().all(|&(item, rating)| i.fits(item, rating)))
    }

    /// The ids of a group's items, in order.
    pub fn group_items(&self, group: &str) -> Vec<u8> {
        self.items
            .iter()
            .filter(|i| i.group == group)
            .map(|i| i.id)
            .collect()
    }

    /// The item prompt alone (the whole prompt in self mode for both
    /// built-in instruments).
    pub fn item_prompt(&self, item: &InstrumentItem) -> String {
        let template = &self.prompts.items[&item.kind];
        let mut lc = String::with_capacity(item.text.len());
        let mut chars = item.text.chars();
        if let Some(c) = chars.next() {
            lc.extend(c.to_lowercase());
            lc.push_str(chars.as_str());
        }
        fill(template, &[("text", &item.text), ("text_lcfirst", &lc)])
    }

    /// The prompt of a persona slot.
    pub fn persona_prompt(&self, persona: &str, item: &InstrumentItem) -> String {
        fill(
            &self.prompts.persona,
            &[("persona", persona), ("item", &self.item_prompt(item))],
        )
    }

    /// The prompt of a self (no persona) slot.
    pub fn self_prompt(&self, item: &InstrumentItem) -> String {
        fill(&self.prompts.self_, &[("item", &self.item_prompt(item))])
    }

    /// The persona template split at `{item}`: the text before and after
    /// the item prompt once the persona is filled in.
    pub fn persona_frame(&self, persona: &str) -> (String, String) {
        let filled = fill(&self.prompts.persona, &[("persona", persona)]);
        match filled.split_once("{item}") {
            Some((a, b)) => (a.to_string(), b.to_string()),
            None => (filled, String::new()),
        }
    }

    /// The rating of a one-token answer: trimmed, a single digit of the scale.
    pub fn one_token_rating(&self, text: &str) -> Option<i8> {
        match self.parser {
            Parser::ScaleDigit => match text.trim().as_bytes() {
                [d] if d.is_ascii_digit() && self.scale.contains((d - b'0') as i64) => {
                    Some((d - b'0') as i8)
                }
                _ => None,
            },
        }
    }

    /// The first standalone integer of the scale in a longer answer.
    pub fn standalone_rating(&self, text: &str) -> Option<i8> {
        match self.parser {
            Parser::ScaleDigit => {
                let chars: Vec<char> = text.chars().collect();
                let blocks = |o: Option<&char>| o.is_some_and(|n| n.is_alphanumeric());
                for (i, &c) in chars.iter().enumerate() {
                    let Some(d) = c.to_digit(10) else { continue };
                    if !c.is_ascii_digit() || !self.scale.contains(d as i64) {
                        continue;
                    }
                    let before = if i == 0 { None } else { chars.get(i - 1) };
                    if !blocks(before) && !blocks(chars.get(i + 1)) {
                        return Some(d as i8);
                    }
                }
                None
            }
        }
    }
}

/// Replaces each `{key}` of `template` by its value, in one pass (a value
/// containing braces is never expanded again).
fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len() + 256);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let hit = after.find('}').and_then(|close| {
            let key = &after[..close];
            values
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| (close, *v))
        });
        match hit {
            Some((close, v)) => {
                out.push_str(v);
                rest = &after[close + 1..];
            }
            None => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::instrument::ITEMS;

    #[test]
    fn builtins_parse_and_mfq_file_matches_the_typed_table() {
        let mfq = Instrument::mfq30();
        assert_eq!(mfq.item_count(), 30);
        assert_eq!(mfq.scale, Scale { min: 0, max: 5 });
        for (ours, typed) in mfq.items.iter().zip(ITEMS.iter()) {
            assert_eq!(ours.id, typed.id);
            assert_eq!(ours.text, typed.text);
            assert_eq!(ours.group, typed.foundation.name());
            assert_eq!(ours.kind, typed.kind.name());
            assert_eq!(
                mfq.persona_prompt("a nurse", ours),
                crate::prompt::persona_prompt("a nurse", typed)
            );
            assert_eq!(mfq.self_prompt(ours), crate::prompt::self_prompt(typed));
        }
        let bfi = Instrument::builtin("bfi-44").unwrap();
        assert_eq!(bfi.item_count(), 44);
        assert_eq!(bfi.scale.range(), "1-5");
        assert_eq!(
            bfi.group_items("Openness"),
            vec![5, 10, 15, 20, 25, 30, 35, 40, 41, 44]
        );
    }

    #[test]
    fn parser_follows_the_scale() {
        let bfi = Instrument::builtin("bfi-44").unwrap();
        assert_eq!(bfi.one_token_rating(" 5\n"), Some(5));
        assert_eq!(bfi.one_token_rating("0"), None);
        assert_eq!(bfi.one_token_rating("6"), None);
        assert_eq!(bfi.standalone_rating("0 or maybe 4."), Some(4));
        assert_eq!(bfi.standalone_rating("I'd say 45"), None);
        let mfq = Instrument::mfq30();
        assert_eq!(mfq.one_token_rating("0"), Some(0));
        assert_eq!(mfq.standalone_rating("x5 and 0"), Some(0));
    }

    #[test]
    fn bad_files_name_the_key() {
        let e = Instrument::resolve("no-such-instrument")
            .unwrap_err()
            .to_string();
        assert!(e.contains("mfq-30, bfi-44"), "{e}");
        let good = include_str!("../../instruments/bfi-44.json");
        let e = Instrument::parse(
            &good.replace(
                "\"kind\": \"statement\", \"text\": \"Is talkative\"",
                "\"kind\": \"stmt\", \"text\": \"Is talkative\"",
            ),
            "mine.json",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("mine.json") && e.contains("item 1") && e.contains("stmt"),
            "{e}"
        );
        let e = Instrument::parse(&good.replace("\"max\": 5", "\"max\": 12"), "mine.json")
            .unwrap_err()
            .to_string();
        assert!(e.contains("`scale`"), "{e}");
        let e = Instrument::parse("{}", "mine.json")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("mine.json") && e.contains("missing field"),
            "{e}"
        );
    }

    #[test]
    fn labels_groups_names_and_sizes_are_checked() {
        let good = include_str!("../../instruments/bfi-44.json").replace("\"bfi-44\"", "\"mine\"");
        let e = |text: String| {
            Instrument::parse(&text, "mine.json")
                .unwrap_err()
                .to_string()
        };
        for label in [
            "a/b", "", "x,y", "a\nb", "Domain", "model", "rating_1", "9lives",
        ] {
            let m = e(good.replace("\"domain\"", &serde_json::to_string(label).unwrap()));
            assert!(
                m.contains("mine.json") && m.contains("`group_label`"),
                "{label:?}: {m}"
            );
        }
        assert!(Instrument::parse(&good.replace("\"domain\"", "\"facet_2\""), "m").is_ok());
        let m = e(good.replace("\"Openness\"\n", "\"Openness\", \"Openness\"\n"));
        assert!(m.contains("`groups[5]`") && m.contains("once"), "{m}");
        let m = e(good.replace("\"Openness\"\n", "\"Openness\", \"Unused\"\n"));
        assert!(m.contains("\"Unused\"") && m.contains("no item"), "{m}");
        let m = e(good.replace("\"mine\"", "\"mfq-30\""));
        assert!(m.contains("`name`") && m.contains("built-in"), "{m}");
        // The built-ins themselves still load under their names.
        assert_eq!(Instrument::mfq30().name, "mfq-30");
        let m = e(good.replace("\"id\": 44,", "\"id\": 256,"));
        assert!(m.contains("item 44") && m.contains("256"), "{m}");
        let m = e(good.replace(
            "\"reverse\": false, \"kind\": \"statement\", \"text\": \"Is talkative\"",
            "\"reverse\": \"no\", \"kind\": \"statement\", \"text\": \"Is talkative\"",
        ));
        assert!(m.contains("`items[0].reverse`"), "{m}");
        let long = "k".repeat(10_000);
        let m = e(good.replace(
            "\"kind\": \"statement\", \"text\": \"Is talkative\"",
            &format!("\"kind\": \"{long}\", \"text\": \"Is talkative\""),
        ));
        assert!(m.contains("9960 more characters") && m.len() < 1000, "{m}");
    }

    #[test]
    fn fill_expands_once() {
        assert_eq!(
            fill("a {x} {y} {z}", &[("x", "{y}"), ("y", "2")]),
            "a {y} 2 {z}"
        );
    }
}
