//! Recorded answers: the papers' rating files, indexed by model key and cell,
//! and the prompt index that finds the cell (persona, item) a prompt asks
//! about.
//!
//! Each model key answers from its own files: `<key>_temp<TT>.csv` for persona
//! prompts and `<key>_temp<TT>_self.csv` / `<key>_self.csv` for prompts
//! without a persona. In `sample` mode a cell's answer is drawn with
//! replacement from its recorded valid ratings; in `deal` mode the ratings
//! are dealt without replacement like a deck of cards that is reshuffled once
//! it is empty, so that n requests to a cell of n recorded ratings return
//! exactly those ratings.
//!
//! A seeded request in deal mode is one slot asking: a provider answers the
//! same seeded request the same way, so a slot that asks again (its worker
//! died after the answer, or its client gave up on a late answer) gets the
//! card it was dealt instead of a new one. Workers send the slot's seed plus
//! the attempt number, so seeds within [`SLOT_SEED_SPAN`] of a dealt seed in
//! the same cell count as the same slot. This keeps a deal exact however
//! often a system redoes its work.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use moralsweep_analysis::formats::{
    parse_file_name, read_sampling_in, FileKind, FormatError, RowLimits,
};
use moralsweep_common::hash::fnv1a_parts;
use moralsweep_common::instrument::Scale;
use moralsweep_common::Instrument;

/// What a replayed file may hold: any built-in instrument's item ids, and
/// ratings 0-5 (the answers the simulator can give).
const REPLAY_ROWS: RowLimits<'static> = RowLimits {
    instrument: None,
    items: 255,
    scale: Scale { min: 0, max: 5 },
};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// How recorded ratings are handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReplayMode {
    /// Draw with replacement from the cell's recorded ratings.
    #[default]
    Sample,
    /// Deal without replacement; reshuffle when the cell's deck is empty.
    Deal,
}

impl std::str::FromStr for ReplayMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "sample" => Ok(ReplayMode::Sample),
            "deal" => Ok(ReplayMode::Deal),
            other => Err(format!(
                "unknown replay mode {other:?}; expected `sample` (draw with replacement) or `deal` (without replacement)"
            )),
        }
    }
}

/// Why recorded data could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("cannot read replay directory {path}: {error}")]
    Dir {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("replay directory {0} holds no rating files (expected <key>_temp<TT>.csv or <key>_self.csv files)")]
    Empty(PathBuf),
    #[error(transparent)]
    Format(#[from] FormatError),
    /// The persona file's problem is in the message (not a `source()`), so a
    /// printed chain shows it once.
    #[error("--personas: {0}")]
    Personas(moralsweep_common::personas::PersonaError),
    #[error("{path}: persona id {persona} is beyond the persona file ({count} personas); give the persona file the ratings were collected with")]
    PersonaRange {
        path: PathBuf,
        persona: u32,
        count: usize,
    },
}

impl From<moralsweep_common::personas::PersonaError> for ReplayError {
    fn from(e: moralsweep_common::personas::PersonaError) -> Self {
        ReplayError::Personas(e)
    }
}

/// Which cell of a model a prompt asks about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CellId {
    /// The prompt's instrument: its index in `Instrument::builtins()` (0
    /// the MFQ-30, 1 the BFI-44), so that one model key replaying files of
    /// both answers each from its own.
    pub instrument: u8,
    /// `None` for a self (no persona) prompt.
    pub persona: Option<u32>,
    /// Item id of the prompt's instrument (1-30 for the MFQ-30, 1-44 for
    /// the BFI-44).
    pub item: u8,
}

/// The text of a persona prompt around the persona, for one instrument.
#[derive(Debug, Default)]
struct Frame {
    head: String,
    tail: String,
}

/// Finds the cell of a prompt by its persona text and item prompt, for the
/// prompts of every built-in instrument (a model key's replayed files are
/// of one instrument).
#[derive(Debug, Default)]
pub struct PromptIndex {
    personas: HashMap<String, u32>,
    /// Item prompt -> (instrument, item id).
    items: HashMap<String, (u8, u8)>,
    /// Each instrument's persona frame, with the instrument's index.
    frames: Vec<(u8, Frame)>,
    /// Quoted item texts, for prompts that are not byte-exact.
    quoted: Vec<(String, (u8, u8))>,
}

impl PromptIndex {
    pub fn new(personas: &[String]) -> Self {
        let marker = "\u{0}";
        let mut items = HashMap::new();
        let mut frames = Vec::new();
        let mut quoted = Vec::new();
        for (i, inst) in Instrument::builtins().iter().enumerate() {
            let i = i as u8;
            for it in &inst.items {
                items.insert(inst.item_prompt(it), (i, it.id));
                quoted.push((format!("'{}'", it.text), (i, it.id)));
                let mut lc: String = it
                    .text
                    .chars()
                    .take(1)
                    .flat_map(char::to_lowercase)
                    .collect();
                lc.extend(it.text.chars().skip(1));
                quoted.push((format!(" {lc}'"), (i, it.id)));
            }
            let (before, _) = inst.persona_frame(marker);
            let (head, tail) = before.split_once(marker).unwrap_or((&before, ""));
            frames.push((
                i,
                Frame {
                    head: head.to_string(),
                    tail: tail.to_string(),
                },
            ));
        }
        PromptIndex {
            personas: personas
                .iter()
                .enumerate()
                .map(|(i, p)| (p.clone(), i as u32))
                .collect(),
            items,
            frames,
            quoted,
        }
    }

    /// The number of personas known.
    pub fn persona_count(&self) -> usize {
        self.personas.len()
    }

    /// The cell a prompt asks about; `None` when the item or the persona is
    /// not recognised.
    pub fn locate(&self, prompt: &str) -> Option<CellId> {
        let mut persona_prompt = false;
        for (inst, f) in &self.frames {
            let Some(rest) = prompt.strip_prefix(f.head.as_str()) else {
                continue;
            };
            persona_prompt = true;
            let Some(at) = rest.find(f.tail.as_str()) else {
                continue;
            };
            let (Some(&persona), Some((i, item))) = (
                self.personas.get(&rest[..at]),
                self.item_of(&rest[at + f.tail.len()..], Some(*inst)),
            ) else {
                continue;
            };
            return Some(CellId {
                instrument: i,
                persona: Some(persona),
                item,
            });
        }
        if persona_prompt {
            return None;
        }
        let (instrument, item) = self.item_of(prompt, None)?;
        Some(CellId {
            instrument,
            persona: None,
            item,
        })
    }

    /// The (instrument, item) of an item prompt, of instrument `only` when
    /// given.
    fn item_of(&self, text: &str, only: Option<u8>) -> Option<(u8, u8)> {
        let wanted = |id: &(u8, u8)| only.is_none_or(|i| id.0 == i);
        if let Some(id) = self.items.get(text).filter(|id| wanted(id)) {
            return Some(*id);
        }
        // Not byte-exact: recognise the quoted item text.
        self.quoted
            .iter()
            .find(|(q, id)| wanted(id) && text.contains(q.as_str()))
            .map(|(_, id)| *id)
    }
}

/// The recorded valid ratings of one model at one temperature, by
/// (instrument, persona, item) and (instrument, item).
#[derive(Debug, Default)]
struct Recorded {
    persona: HashMap<(u8, u32, u8), Vec<u8>>,
    selfs: HashMap<(u8, u8), Vec<u8>>,
}

/// The instrument of a rating file's rows, as `analyze` recognises it (the
/// first built-in instrument every row fits; else the first with the
/// highest item id), as its index in `Instrument::builtins()`.
fn instrument_of(rows: &[moralsweep_analysis::formats::RatingRow]) -> u8 {
    let pairs: Vec<(i64, i64)> = rows
        .iter()
        .map(|r| (r.item as i64, r.rating as i64))
        .collect();
    let max_item = rows.iter().map(|r| r.item as i64).max().unwrap_or(1);
    let builtins = Instrument::builtins();
    let name = Instrument::recognise(&pairs)
        .or_else(|| builtins.iter().find(|i| i.has_item(max_item)).cloned())
        .map(|i| i.name.clone());
    builtins
        .iter()
        .position(|i| Some(&i.name) == name.as_ref())
        .unwrap_or(0) as u8
}

/// Seeds of one cell closer than this (wrapping) belong to the same slot:
/// a worker sends the slot's seed plus the attempt number (at most ten
/// one-token attempts and one longer one).
pub const SLOT_SEED_SPAN: u64 = 16;

/// A cell's deck in deal mode.
#[derive(Debug)]
struct Deck {
    cards: Vec<u8>,
    /// Cards dealt from the current shuffle.
    next: usize,
    shuffles: u64,
    /// The seed of each seeded request that was dealt a card, with the
    /// card: a slot asking again gets the same one.
    seeded: Vec<(u64, u8)>,
}

impl Deck {
    /// The card already dealt to the slot of `seed`, if any.
    fn dealt_to(&self, seed: u64) -> Option<u8> {
        self.seeded
            .iter()
            .find(|(s, _)| s.wrapping_sub(seed).min(seed.wrapping_sub(*s)) < SLOT_SEED_SPAN)
            .map(|(_, c)| *c)
    }
}

/// All recorded data of a replay directory.
#[derive(Debug)]
pub struct Replay {
    mode: ReplayMode,
    seed: u64,
    /// key -> temperature tag (tenths) -> ratings.
    models: HashMap<String, BTreeMap<u64, Recorded>>,
    /// key -> self ratings of a self file without a temperature.
    selfs: HashMap<String, HashMap<(u8, u8), Vec<u8>>>,
    decks: Mutex<HashMap<(String, u64, CellId), Deck>>,
}

/// Where an answer came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Recalled {
    pub rating: u8,
    /// The cell's recorded rating distribution (probability of each digit).
    pub distribution: [f64; 6],
    /// Deal mode: the card had been dealt before to the same slot (same
    /// seed), so no new card left the deck.
    pub repeated: bool,
}

fn visit(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), ReplayError> {
    let entries = std::fs::read_dir(dir).map_err(|error| ReplayError::Dir {
        path: dir.to_path_buf(),
        error,
    })?;
    for e in entries {
        let e = e.map_err(|error| ReplayError::Dir {
            path: dir.to_path_buf(),
            error,
        })?;
        let path = e.path();
        // Links to directories are never followed (`up -> ..` would loop).
        let is_link = e.file_type().map(|t| t.is_symlink()).unwrap_or(false);
        if is_link && path.is_dir() {
            tracing::info!("{}: a link to a directory, not followed", path.display());
        } else if path.is_dir() {
            visit(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

fn distribution(ratings: &[u8]) -> [f64; 6] {
    let mut d = [0.0; 6];
    for r in ratings {
        d[*r as usize] += 1.0;
    }
    let n = ratings.len().max(1) as f64;
    d.map(|c| c / n)
}

impl Replay {
    /// Loads every rating file under `dir` (recursively). `persona_count`
    /// bounds the persona ids the files may use.
    pub fn load(
        dir: &Path,
        persona_count: usize,
        mode: ReplayMode,
        seed: u64,
    ) -> Result<Replay, ReplayError> {
        let mut files = Vec::new();
        visit(dir, &mut files)?;
        files.sort();
        let mut models: HashMap<String, BTreeMap<u64, Recorded>> = HashMap::new();
        let mut selfs: HashMap<String, HashMap<(u8, u8), Vec<u8>>> = HashMap::new();
        let mut found = 0;
        for path in files {
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let Some(parsed) = parse_file_name(name) else {
                continue;
            };
            let tag = |t: f64| (t * 10.0).round() as u64;
            match parsed.kind {
                FileKind::Sampling { temperature } => {
                    let file = read_sampling_in(&path, false, &REPLAY_ROWS)?;
                    let inst = instrument_of(&file.rows);
                    let rec = models
                        .entry(parsed.key)
                        .or_default()
                        .entry(tag(temperature))
                        .or_default();
                    for row in file.rows {
                        let persona = row.persona.unwrap_or(0);
                        if persona as usize >= persona_count {
                            return Err(ReplayError::PersonaRange {
                                path: path.clone(),
                                persona,
                                count: persona_count,
                            });
                        }
                        let cell = rec.persona.entry((inst, persona, row.item)).or_default();
                        if (0..=5).contains(&row.rating) {
                            cell.push(row.rating as u8);
                        }
                    }
                }
                FileKind::SelfRatings { temperature } => {
                    let file = read_sampling_in(&path, true, &REPLAY_ROWS)?;
                    let inst = instrument_of(&file.rows);
                    let cells = match temperature {
                        Some(t) => {
                            &mut models
                                .entry(parsed.key)
                                .or_default()
                                .entry(tag(t))
                                .or_default()
                                .selfs
                        }
                        None => selfs.entry(parsed.key).or_default(),
                    };
                    for row in file.rows {
                        let cell = cells.entry((inst, row.item)).or_default();
                        if (0..=5).contains(&row.rating) {
                            cell.push(row.rating as u8);
                        }
                    }
                }
                FileKind::Logprobs => continue,
            }
            found += 1;
        }
        if found == 0 {
            return Err(ReplayError::Empty(dir.to_path_buf()));
        }
        tracing::info!(
            files = found,
            models = models.len() + selfs.len(),
            "replay data loaded"
        );
        Ok(Replay {
            mode,
            seed,
            models,
            selfs,
            decks: Mutex::new(HashMap::new()),
        })
    }

    pub fn mode(&self) -> ReplayMode {
        self.mode
    }

    /// Whether recorded data exists for the model key.
    pub fn knows(&self, key: &str) -> bool {
        self.models.contains_key(key) || self.selfs.contains_key(key)
    }

    /// The model keys with recorded data.
    pub fn keys(&self) -> Vec<String> {
        let mut k: Vec<String> = self
            .models
            .keys()
            .chain(self.selfs.keys())
            .cloned()
            .collect();
        k.sort();
        k.dedup();
        k
    }

    /// The recorded ratings of a cell at the temperature closest to
    /// `temperature`, with the tag of the temperature chosen.
    fn cell(&self, key: &str, temperature: f64, cell: CellId) -> Option<(u64, &[u8])> {
        let want = (temperature * 10.0).round() as i64;
        let by_temp = self.models.get(key);
        let closest = by_temp.and_then(|m| {
            m.iter()
                .filter(|(_, r)| match cell.persona {
                    Some(p) => r.persona.contains_key(&(cell.instrument, p, cell.item)),
                    None => r.selfs.contains_key(&(cell.instrument, cell.item)),
                })
                .min_by_key(|(t, _)| (**t as i64 - want).abs())
        });
        let found = match (closest, cell.persona) {
            (Some((t, r)), Some(p)) => Some((
                *t,
                r.persona.get(&(cell.instrument, p, cell.item))?.as_slice(),
            )),
            (Some((t, r)), None) => {
                Some((*t, r.selfs.get(&(cell.instrument, cell.item))?.as_slice()))
            }
            (None, None) => self
                .selfs
                .get(key)
                .and_then(|s| s.get(&(cell.instrument, cell.item)))
                .map(|v| (u64::MAX, v.as_slice())),
            (None, Some(_)) => None,
        }?;
        (!found.1.is_empty()).then_some(found)
    }

    /// The recorded rating distribution of a cell, or `None` when the
    /// model has no recorded valid rating for it.
    pub fn distribution(&self, key: &str, temperature: f64, cell: CellId) -> Option<[f64; 6]> {
        self.cell(key, temperature, cell)
            .map(|(_, ratings)| distribution(ratings))
    }

    /// A rating for one request to a cell, or `None` when the model has no
    /// recorded valid rating for it. In sample mode `seed` makes the draw a
    /// pure function of the request (`draw` supplies randomness otherwise);
    /// in deal mode it names the slot, which keeps its card.
    pub fn recall(
        &self,
        key: &str,
        temperature: f64,
        cell: CellId,
        seed: Option<u64>,
        draw: impl FnOnce(usize) -> usize,
    ) -> Option<Recalled> {
        let (tag, ratings) = self.cell(key, temperature, cell)?;
        let distribution = distribution(ratings);
        let rating = match self.mode {
            ReplayMode::Sample => {
                let i = match seed {
                    Some(s) => {
                        let h = fnv1a_parts(&[
                            key.as_bytes(),
                            &tag.to_le_bytes(),
                            &cell.persona.map(|p| p as i64).unwrap_or(-1).to_le_bytes(),
                            &[cell.item],
                            &s.to_le_bytes(),
                            &self.seed.to_le_bytes(),
                        ]);
                        (h % ratings.len() as u64) as usize
                    }
                    None => draw(ratings.len()),
                };
                ratings[i]
            }
            ReplayMode::Deal => {
                let mut decks = self.decks.lock().unwrap_or_else(|e| e.into_inner());
                let deck = decks
                    .entry((key.to_string(), tag, cell))
                    .or_insert_with(|| Deck {
                        cards: ratings.to_vec(),
                        next: ratings.len(),
                        shuffles: 0,
                        seeded: Vec::new(),
                    });
                if let Some(card) = seed.and_then(|s| deck.dealt_to(s)) {
                    return Some(Recalled {
                        rating: card,
                        distribution,
                        repeated: true,
                    });
                }
                if deck.next >= deck.cards.len() {
                    let mut rng = ChaCha8Rng::seed_from_u64(fnv1a_parts(&[
                        key.as_bytes(),
                        &tag.to_le_bytes(),
                        &cell.persona.map(|p| p as i64).unwrap_or(-1).to_le_bytes(),
                        &[cell.item],
                        &deck.shuffles.to_le_bytes(),
                        &self.seed.to_le_bytes(),
                    ]));
                    deck.cards.shuffle(&mut rng);
                    deck.shuffles += 1;
                    deck.next = 0;
                }
                let r = deck.cards[deck.next];
                deck.next += 1;
                if let Some(s) = seed {
                    deck.seeded.push((s, r));
                }
                r
            }
        };
        Some(Recalled {
            rating,
            distribution,
            repeated: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use moralsweep_common::prompt::{persona_prompt, self_prompt};
    use moralsweep_common::ITEMS;

    fn personas() -> Vec<String> {
        vec!["a nurse".into(), "a pilot who flies at night".into()]
    }

    #[test]
    fn prompts_find_their_cells() {
        let idx = PromptIndex::new(&personas());
        let p = persona_prompt("a pilot who flies at night", &ITEMS[6]);
        assert_eq!(
            idx.locate(&p),
            Some(CellId {
                instrument: 0,
                persona: Some(1),
                item: 7
            })
        );
        assert_eq!(
            idx.locate(&self_prompt(&ITEMS[29])),
            Some(CellId {
                instrument: 0,
                persona: None,
                item: 30
            })
        );
        assert_eq!(idx.locate(&persona_prompt("a stranger", &ITEMS[0])), None);
        assert_eq!(idx.locate("hello"), None);
    }

    #[test]
    fn bfi_prompts_find_their_cells() {
        let idx = PromptIndex::new(&personas());
        let bfi = Instrument::builtin("bfi-44").unwrap();
        let p = bfi.persona_prompt("a pilot who flies at night", &bfi.items[43]);
        assert_eq!(
            idx.locate(&p),
            Some(CellId {
                instrument: 1,
                persona: Some(1),
                item: 44
            })
        );
        assert_eq!(
            idx.locate(&bfi.self_prompt(&bfi.items[30])),
            Some(CellId {
                instrument: 1,
                persona: None,
                item: 31
            })
        );
        assert_eq!(
            idx.locate(&bfi.persona_prompt("a stranger", &bfi.items[0])),
            None
        );
    }

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::write(dir.join(name), text).unwrap();
    }

    #[test]
    fn deal_returns_each_recorded_rating_once_per_shuffle() {
        let dir = tempfile::tempdir().unwrap();
        let mut csv = String::from(
            "persona_id,question_id,run_index,rating,failures,response,collected_at\n",
        );
        for (i, r) in [0, 1, 1, 5, -1, 3].iter().enumerate() {
            csv.push_str(&format!("1,2,{},{r},0,{r},2026-01-01T00:00:00\n", i + 1));
        }
        write(dir.path(), "m_temp01.csv", &csv);
        write(
            dir.path(),
            "m_self.csv",
            "question_id,run_index,rating,failures,response,collected_at\n3,1,4,0,4,x\n",
        );
        let replay = Replay::load(dir.path(), 2, ReplayMode::Deal, 7).unwrap();
        assert!(replay.knows("m") && !replay.knows("n"));
        let cell = CellId {
            instrument: 0,
            persona: Some(1),
            item: 2,
        };
        for _ in 0..3 {
            let mut got: Vec<u8> = (0..5)
                .map(|_| replay.recall("m", 0.1, cell, None, |_| 0).unwrap().rating)
                .collect();
            got.sort();
            assert_eq!(got, vec![0, 1, 1, 3, 5]);
        }
        let r = replay
            .recall(
                "m",
                0.1,
                CellId {
                    instrument: 0,
                    persona: None,
                    item: 3,
                },
                None,
                |_| 0,
            )
            .unwrap();
        assert_eq!(r.rating, 4);
        assert_eq!(r.distribution, [0.0, 0.0, 0.0, 0.0, 1.0, 0.0]);
        assert!(replay
            .recall(
                "m",
                0.1,
                CellId {
                    instrument: 0,
                    persona: Some(0),
                    item: 2
                },
                None,
                |_| 0
            )
            .is_none());
    }

    #[test]
    fn a_slot_asking_again_keeps_its_card() {
        let dir = tempfile::tempdir().unwrap();
        let mut csv = String::from(
            "persona_id,question_id,run_index,rating,failures,response,collected_at\n",
        );
        for (i, r) in [0, 1, 2, 3, 4, 5].iter().enumerate() {
            csv.push_str(&format!("0,1,{},{r},0,{r},t\n", i + 1));
        }
        write(dir.path(), "m_temp01.csv", &csv);
        let replay = Replay::load(dir.path(), 1, ReplayMode::Deal, 3).unwrap();
        let cell = CellId {
            instrument: 0,
            persona: Some(0),
            item: 1,
        };
        let ask = |seed: u64| replay.recall("m", 0.1, cell, Some(seed), |_| 0).unwrap();
        // Six slots, far-apart seeds; each asks twice, once on a later attempt.
        let seeds: Vec<u64> = (0..6u64)
            .map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15))
            .collect();
        let first: Vec<Recalled> = seeds.iter().map(|s| ask(*s)).collect();
        assert!(first.iter().all(|r| !r.repeated));
        let mut got: Vec<u8> = first.iter().map(|r| r.rating).collect();
        got.sort();
        assert_eq!(got, vec![0, 1, 2, 3, 4, 5], "one full deck, no card twice");
        for (s, r) in seeds.iter().zip(&first) {
            let again = ask(s.wrapping_add(3));
            assert!(again.repeated);
            assert_eq!(again.rating, r.rating);
            assert_eq!(ask(*s).rating, r.rating);
        }
        // A new slot starts the next shuffle; an unseeded request is dealt too.
        assert!(!ask(1 << 40).repeated);
        assert!(!replay.recall("m", 0.1, cell, None, |_| 0).unwrap().repeated);
    }

    #[test]
    fn one_key_replaying_both_instruments_answers_each_from_its_own_file() {
        // The same key and temperature, an MFQ-30 file (items up to 30) and
        // a BFI-44 file (items up to 44): item 1 of each is its own cell.
        let dir = tempfile::tempdir().unwrap();
        for sub in ["mfq", "bfi"] {
            std::fs::create_dir(dir.path().join(sub)).unwrap();
        }
        let head = "persona_id,question_id,run_index,rating,failures,response,collected_at\n";
        let mut mfq = String::from(head);
        for run in 1..=3 {
            mfq.push_str(&format!("0,1,{run},0,0,0,t\n0,30,{run},2,0,2,t\n"));
        }
        let mut bfi = String::from(head);
        for run in 1..=3 {
            bfi.push_str(&format!("0,1,{run},5,0,5,t\n0,44,{run},4,0,4,t\n"));
        }
        write(&dir.path().join("mfq"), "m_temp01.csv", &mfq);
        write(&dir.path().join("bfi"), "m_temp01.csv", &bfi);
        let replay = Replay::load(dir.path(), 1, ReplayMode::Deal, 5).unwrap();
        let ask = |instrument: u8, item: u8| {
            let cell = CellId {
                instrument,
                persona: Some(0),
                item,
            };
            (0..3)
                .map(|_| replay.recall("m", 0.1, cell, None, |_| 0).unwrap().rating)
                .collect::<Vec<u8>>()
        };
        assert_eq!(ask(0, 1), vec![0, 0, 0], "MFQ item 1");
        assert_eq!(ask(1, 1), vec![5, 5, 5], "BFI item 1");
        assert_eq!(ask(0, 30), vec![2, 2, 2]);
        assert_eq!(ask(1, 44), vec![4, 4, 4]);
        // And the prompts find those cells.
        let idx = PromptIndex::new(&["a nurse".to_string()]);
        let bfi = Instrument::builtin("bfi-44").unwrap();
        let mfq = Instrument::mfq30();
        assert_eq!(
            idx.locate(&mfq.persona_prompt("a nurse", &mfq.items[0])),
            Some(CellId {
                instrument: 0,
                persona: Some(0),
                item: 1
            })
        );
        assert_eq!(
            idx.locate(&bfi.persona_prompt("a nurse", &bfi.items[0])),
            Some(CellId {
                instrument: 1,
                persona: Some(0),
                item: 1
            })
        );
    }

    #[test]
    fn seeded_samples_repeat() {
        let dir = tempfile::tempdir().unwrap();
        let mut csv = String::from(
            "persona_id,question_id,run_index,rating,failures,response,collected_at\n",
        );
        for i in 0..10 {
            csv.push_str(&format!("0,1,{},{},0,x,t\n", i + 1, i % 6));
        }
        write(dir.path(), "m_temp01.csv", &csv);
        let replay = Replay::load(dir.path(), 1, ReplayMode::Sample, 1).unwrap();
        let cell = CellId {
            instrument: 0,
            persona: Some(0),
            item: 1,
        };
        for s in 0..20 {
            let a = replay.recall("m", 0.1, cell, Some(s), |_| 0).unwrap();
            let b = replay.recall("m", 0.1, cell, Some(s), |_| 9).unwrap();
            assert_eq!(a, b);
        }
        let e = Replay::load(dir.path(), 0, ReplayMode::Sample, 1).unwrap_err();
        assert!(e.to_string().contains("persona id 0"), "{e}");
    }
}
