//! The Moral Foundations Questionnaire (MFQ-30) as data: the 30 scored items,
//! their five foundations and their two response scales.
//!
//! Source: Graham, J., Nosek, B. A., Haidt, J., Iyer, R., Koleva, S., & Ditto,
//! P. H. (2011). Mapping the moral domain. *Journal of Personality and Social
//! Psychology*, 101(2), 366-385; the questionnaire is published at
//! moralfoundations.org. The two unscored catch items of the paper form are
//! not asked. Items 1-15 are relevance items, 16-30 agreement items, and the
//! foundations cycle in the order of [`Foundation::ALL`] within each half.

mod def;
pub use def::{
    builtin_names, clip, clip_words, Instrument, InstrumentError, InstrumentItem, Parser, Prompts,
    Scale, DEFAULT_INSTRUMENT,
};

use std::fmt;
use std::str::FromStr;

/// One of the five moral foundations scored by the MFQ-30.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Foundation {
    HarmCare,
    FairnessReciprocity,
    IngroupLoyalty,
    AuthorityRespect,
    PuritySanctity,
}

impl Foundation {
    /// The five foundations in questionnaire order.
    pub const ALL: [Foundation; 5] = [
        Foundation::HarmCare,
        Foundation::FairnessReciprocity,
        Foundation::IngroupLoyalty,
        Foundation::AuthorityRespect,
        Foundation::PuritySanctity,
    ];

    /// The name used in the papers' files, e.g. `Harm/Care`.
    pub fn name(self) -> &'static str {
        match self {
            Foundation::HarmCare => "Harm/Care",
            Foundation::FairnessReciprocity => "Fairness/Reciprocity",
            Foundation::IngroupLoyalty => "In-group/Loyalty",
            Foundation::AuthorityRespect => "Authority/Respect",
            Foundation::PuritySanctity => "Purity/Sanctity",
        }
    }

    /// The six item ids (1-based) of this foundation.
    pub fn item_ids(self) -> [u8; 6] {
        let k = Foundation::ALL.iter().position(|f| *f == self).unwrap_or(0) as u8;
        [1, 6, 11, 16, 21, 26].map(|base| base + k)
    }
}

impl fmt::Display for Foundation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Foundation {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Foundation::ALL
            .into_iter()
            .find(|f| f.name() == s)
            .ok_or_else(|| {
                format!(
                    "unknown moral foundation {s:?}; expected one of Harm/Care, Fairness/Reciprocity, In-group/Loyalty, Authority/Respect, Purity/Sanctity"
                )
            })
    }
}

/// A group of an instrument's items by name: a moral foundation, a Big
/// Five domain.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Group(pub String);

impl Group {
    /// The name used in the files, e.g. `Harm/Care`, `Openness`.
    pub fn name(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Group {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<Foundation> for Group {
    fn from(f: Foundation) -> Group {
        Group(f.name().to_string())
    }
}

/// Whether an item asks for relevance (items 1-15) or agreement (16-30).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ItemKind {
    Relevance,
    Agreement,
}

impl ItemKind {
    /// The name used in the papers' files (`relevance` / `agreement`).
    pub fn name(self) -> &'static str {
        match self {
            ItemKind::Relevance => "relevance",
            ItemKind::Agreement => "agreement",
        }
    }
}

/// One scored MFQ-30 item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Item {
    /// 1-based id in the papers' order (1-30).
    pub id: u8,
    pub kind: ItemKind,
    pub foundation: Foundation,
    /// The consideration (relevance) or statement (agreement) as printed.
    pub text: &'static str,
}

/// Number of scored items.
pub const ITEM_COUNT: usize = 30;

use Foundation::*;
use ItemKind::*;

const fn item(id: u8, kind: ItemKind, foundation: Foundation, text: &'static str) -> Item {
    Item {
        id,
        kind,
        foundation,
        text,
    }
}

/// The 30 scored items in the papers' order (index = id - 1).
pub static ITEMS: [Item; ITEM_COUNT] = [
    item(1, Relevance, HarmCare, "Whether or not someone suffered emotionally"),
    item(2, Relevance, FairnessReciprocity, "Whether or not some people were treated differently than others"),
    item(3, Relevance, IngroupLoyalty, "Whether or not someone's action showed love for his or her country"),
    item(4, Relevance, AuthorityRespect, "Whether or not someone showed a lack of respect for authority"),
    item(5, Relevance, PuritySanctity, "Whether or not someone violated standards of purity and decency"),
    item(6, Relevance, HarmCare, "Whether or not someone cared for someone weak or vulnerable"),
    item(7, Relevance, FairnessReciprocity, "Whether or not someone acted unfairly"),
    item(8, Relevance, IngroupLoyalty, "Whether or not someone did something to betray his or her group"),
    item(9, Relevance, AuthorityRespect, "Whether or not someone conformed to the traditions of society"),
    item(10, Relevance, PuritySanctity, "Whether or not someone did something disgusting"),
    item(11, Relevance, HarmCare, "Whether or not someone was cruel"),
    item(12, Relevance, FairnessReciprocity, "Whether or not someone was denied his or her rights"),
    item(13, Relevance, IngroupLoyalty, "Whether or not someone showed a lack of loyalty"),
    item(14, Relevance, AuthorityRespect, "Whether or not an action caused chaos or disorder"),
    item(15, Relevance, PuritySanctity, "Whether or not someone acted in a way that God would approve of"),
    item(16, Agreement, HarmCare, "Compassion for those who are suffering is the most crucial virtue."),
    item(17, Agreement, FairnessReciprocity, "When the government makes laws, the number one principle should be ensuring that everyone is treated fairly."),
    item(18, Agreement, IngroupLoyalty, "I am proud of my country's history."),
    item(19, Agreement, AuthorityRespect, "Respect for authority is something all children need to learn."),
    item(20, Agreement, PuritySanctity, "People should not do things that are disgusting, even if no one is harmed."),
    item(21, Agreement, HarmCare, "One of the worst things a person could do is hurt a defenseless animal."),
    item(22, Agreement, FairnessReciprocity, "Justice is the most important requirement for a society."),
    item(23, Agreement, IngroupLoyalty, "People should be loyal to their family members, even when they have done something wrong."),
    item(24, Agreement, AuthorityRespect, "Men and women each have different roles to play in society."),
    item(25, Agreement, PuritySanctity, "I would call some acts wrong on the grounds that they are unnatural."),
    item(26, Agreement, HarmCare, "It can never be right to kill a human being."),
    item(27, Agreement, FairnessReciprocity, "I think it's morally wrong that rich children inherit a lot of money while poor children inherit nothing."),
    item(28, Agreement, IngroupLoyalty, "It is more important to be a team player than to express oneself."),
    item(29, Agreement, AuthorityRespect, "If I were a soldier and disagreed with my commanding officer's orders, I would obey anyway because that is my duty."),
    item(30, Agreement, PuritySanctity, "Chastity is an important and valuable virtue."),
];

/// The item with the given 1-based id, if it exists.
pub fn item_by_id(id: u8) -> Option<&'static Item> {
    ITEMS.get((id as usize).wrapping_sub(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn foundations_cycle_and_six_items_each() {
        for (i, it) in ITEMS.iter().enumerate() {
            assert_eq!(it.id as usize, i + 1);
            assert_eq!(it.foundation, Foundation::ALL[i % 5]);
            assert_eq!(it.kind, if i < 15 { Relevance } else { Agreement });
        }
        for f in Foundation::ALL {
            let ids = f.item_ids();
            assert!(ids
                .iter()
                .all(|&id| item_by_id(id).unwrap().foundation == f));
            assert_eq!(f.name().parse::<Foundation>().unwrap(), f);
        }
        assert!(item_by_id(0).is_none());
        assert!(item_by_id(31).is_none());
    }
}
