//! Byte-level BPE (`tokenizer.ggml.model = "gpt2"`: Llama 3, Qwen): the text
//! is split into words by the pre-tokenizer's regular expressions (chosen by
//! `tokenizer.ggml.pre`, as llama.cpp does), each word's bytes are written as
//! GPT-2's printable characters (`bytes_to_unicode`), and adjacent symbols
//! are merged by the rank of their pair in `tokenizer.ggml.merges`, lowest
//! rank first.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

use fancy_regex::Regex;

use super::{Symbol, Tokenizer};

const LLAMA3: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";
const DEFAULT: &[&str] = &[r"[\p{P}\$\+<=>\^~\|]+", GPT2, r"\p{N}+", r"[0-9][0-9][0-9]"];

/// The `tokenizer.ggml.pre` values this build knows.
pub(super) const SUPPORTED_PRE: &str =
    "\"llama-bpe\" (also \"llama3\", \"llama-v3\"), \"qwen2\" (also \"deepseek-r1-qwen\"), \"gpt-2\", \"default\"";

/// What the byte-level BPE adds to a vocabulary.
pub(super) struct Bpe {
    /// Rank of each merge `(left, right)`.
    ranks: HashMap<(String, String), u32>,
    /// Pre-tokenizer expressions, applied one after the other.
    pre: Vec<Regex>,
    /// A word that is itself a token is not merged (llama.cpp's
    /// `ignore_merges`, set for Llama 3).
    ignore_merges: bool,
    /// GPT-2's character of each byte.
    byte_char: [char; 256],
    char_byte: HashMap<char, u8>,
}

/// GPT-2's `bytes_to_unicode`: printable bytes stand for themselves, the
/// others for the characters from U+0100 on, in byte order.
fn bytes_to_unicode() -> [char; 256] {
    let printable = |b: u32| {
        (0x21..=0x7E).contains(&b) || (0xA1..=0xAC).contains(&b) || (0xAE..=0xFF).contains(&b)
    };
    let mut out = ['\0'; 256];
    let mut next = 0x100u32;
    for b in 0..256u32 {
        out[b as usize] = if printable(b) {
            char::from_u32(b).unwrap_or('\0')
        } else {
            let c = char::from_u32(next).unwrap_or('\0');
            next += 1;
            c
        };
    }
    out
}

impl Bpe {
    /// `pre` is `tokenizer.ggml.pre` (None: llama.cpp's default); returns
    /// the tokenizer and whether the pre-tokenizer implies a BOS by default.
    pub(super) fn new(merges: &[String], pre: Option<&str>) -> Result<(Bpe, bool), String> {
        let (exprs, ignore_merges, add_bos): (Vec<&str>, bool, bool) = match pre {
            None | Some("default") => (DEFAULT.to_vec(), false, false),
            Some("llama3" | "llama-v3" | "llama-bpe") => (vec![LLAMA3], true, true),
            Some("qwen2" | "deepseek-r1-qwen") => (vec![QWEN2], false, false),
            Some("gpt-2") => (vec![GPT2], false, false),
            Some(other) => {
                return Err(format!(
                    "tokenizer.ggml.pre is {other:?}, a pre-tokenizer this build does not know; known: {SUPPORTED_PRE}"
                ))
            }
        };
        let pre = exprs
            .iter()
            .map(|e| Regex::new(e).map_err(|err| format!("pre-tokenizer {e:?}: {err}")))
            .collect::<Result<Vec<_>, _>>()?;
        let mut ranks = HashMap::with_capacity(merges.len());
        for (i, m) in merges.iter().enumerate() {
            // Split at the first space after the first character (a merge's
            // left part may itself start with a space in some vocabularies).
            let at = m
                .char_indices()
                .skip(1)
                .find(|&(_, c)| c == ' ')
                .map(|(i, _)| i)
                .ok_or_else(|| format!("tokenizer.ggml.merges entry {i} ({m:?}) has no space between its two parts"))?;
            ranks
                .entry((m[..at].to_string(), m[at + 1..].to_string()))
                .or_insert(i as u32);
        }
        let byte_char = bytes_to_unicode();
        let char_byte = byte_char
            .iter()
            .enumerate()
            .map(|(b, &c)| (c, b as u8))
            .collect();
        Ok((
            Bpe {
                ranks,
                pre,
                ignore_merges,
                byte_char,
                char_byte,
            },
            add_bos,
        ))
    }

    /// Words of `text` by the pre-tokenizer: each expression splits the
    /// pieces the previous one left, keeping the text between matches as
    /// pieces of its own.
    fn split<'a>(&self, text: &'a str) -> Vec<&'a str> {
        let mut pieces = vec![text];
        for re in &self.pre {
            let mut next = Vec::with_capacity(pieces.len() * 2);
            for p in pieces {
                let mut at = 0;
                for m in re.find_iter(p) {
                    let Ok(m) = m else {
                        // The backtracking limit: keep the rest whole.
                        break;
                    };
                    if m.start() > at {
                        next.push(&p[at..m.start()]);
                    }
                    if m.end() > m.start() {
                        next.push(m.as_str());
                    }
                    at = m.end();
                }
                if at < p.len() {
                    next.push(&p[at..]);
                }
            }
            pieces = next;
        }
        pieces
    }

    /// The bytes a normal token's text stands for.
    pub(super) fn decode_piece(&self, piece: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(piece.len());
        for c in piece.chars() {
            match self.char_byte.get(&c) {
                Some(&b) => out.push(b),
                None => {
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
            }
        }
        out
    }
}

#[derive(PartialEq, Eq)]
struct Bigram {
    rank: u32,
    left: usize,
    right: usize,
    text: String,
}

impl Ord for Bigram {
    fn cmp(&self, other: &Self) -> Ordering {
        // Lowest rank first; on a tie the leftmost pair.
        other
            .rank
            .cmp(&self.rank)
            .then_with(|| other.left.cmp(&self.left))
    }
}

impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Appends the tokens of a text fragment.
pub(super) fn encode_fragment(t: &Tokenizer, bpe: &Bpe, text: &str, out: &mut Vec<u32>) {
    for word in bpe.split(text) {
        let word: String = word.bytes().map(|b| bpe.byte_char[b as usize]).collect();
        if bpe.ignore_merges {
            if let Some(id) = t.token_id(&word) {
                out.push(id);
                continue;
            }
        }
        let mut symbols = Symbol::chars_of(&word);
        let mut queue = BinaryHeap::new();
        let try_add = |queue: &mut BinaryHeap<Bigram>, symbols: &[Symbol], l: isize, r: isize| {
            if l < 0 || r < 0 {
                return;
            }
            let (ls, rs) = (&symbols[l as usize], &symbols[r as usize]);
            let left = &word[ls.start..ls.start + ls.len];
            let right = &word[rs.start..rs.start + rs.len];
            if let Some(&rank) = bpe.ranks.get(&(left.to_string(), right.to_string())) {
                queue.push(Bigram {
                    rank,
                    left: l as usize,
                    right: r as usize,
                    text: format!("{left}{right}"),
                });
            }
        };
        for i in 1..symbols.len() {
            try_add(&mut queue, &symbols, i as isize - 1, i as isize);
        }
        while let Some(b) = queue.pop() {
            let (ls, rs) = (&symbols[b.left], &symbols[b.right]);
            if ls.len == 0 || rs.len == 0 {
                continue;
            }
            // Skip a pair whose symbols changed since it was queued.
            if ls.start + ls.len != rs.start
                || word[ls.start..rs.start + rs.len] != *b.text.as_str()
            {
                continue;
            }
            let (prev, next) = Symbol::join(&mut symbols, b.left, b.right);
            try_add(&mut queue, &symbols, prev, b.left as isize);
            try_add(&mut queue, &symbols, b.left as isize, next);
        }
        let mut i = if symbols.is_empty() { -1 } else { 0 };
        while i >= 0 {
            let s = &symbols[i as usize];
            let piece = &word[s.start..s.start + s.len];
            match t.token_id(piece) {
                Some(id) => out.push(id),
                None => {
                    // As llama.cpp: each character's own token, where the
                    // vocabulary has one.
                    for c in piece.chars() {
                        let mut buf = [0u8; 4];
                        if let Some(id) = t.token_id(c.encode_utf8(&mut buf)) {
                            out.push(id);
                        }
                    }
                }
            }
            i = s.next;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_characters_are_gpt2s() {
        let m = bytes_to_unicode();
        assert_eq!(m[b'a' as usize], 'a');
        assert_eq!(m[b' ' as usize], '\u{120}'); // Ġ
        assert_eq!(m[b'\n' as usize], '\u{10A}'); // Ċ
        let (bpe, _) = Bpe::new(&[], Some("llama-bpe")).unwrap();
        assert_eq!(bpe.decode_piece("\u{120}hi\u{10A}"), b" hi\n");
    }

    #[test]
    fn llama3_pre_tokenizer_splits_as_its_regex() {
        let (bpe, add_bos) = Bpe::new(&[], Some("llama-bpe")).unwrap();
        assert!(add_bos);
        assert_eq!(
            bpe.split("Hello world's 12345  x\n\n"),
            vec!["Hello", " world", "'s", " ", "123", "45", " ", " x", "\n\n"]
        );
        let (qwen, _) = Bpe::new(&[], Some("qwen2")).unwrap();
        assert_eq!(qwen.split("a 123"), vec!["a", " ", "1", "2", "3"]);
        let e = Bpe::new(&[], Some("tekken-x")).err().unwrap();
        assert!(e.contains("tekken-x") && e.contains("llama-bpe"), "{e}");
    }
}
