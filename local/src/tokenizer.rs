//! The SentencePiece-style tokenizer a GGUF file carries in its
//! `tokenizer.ggml.*` metadata (`tokenizer.ggml.model = "llama"`): pieces with
//! scores, merged pairwise by highest score, with byte fallback (`<0xXX>`
//! pieces) for characters no piece covers. User-defined pieces (Gemma's runs
//! of newlines and spaces, for example) are matched in the raw text first,
//! longest first, and never split. Spaces are written as U+2581 inside pieces.
//! The result matches llama.cpp's tokenisation of plain text (checked against
//! recorded fixtures in `tests/`).

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

use crate::gguf::{GgufFile, Value};
use crate::LocalError;

/// ggml's token types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    Normal,
    Unknown,
    Control,
    UserDefined,
    Unused,
    Byte,
}

impl TokenKind {
    fn from_i64(v: i64) -> TokenKind {
        match v {
            2 => TokenKind::Unknown,
            3 => TokenKind::Control,
            4 => TokenKind::UserDefined,
            5 => TokenKind::Unused,
            6 => TokenKind::Byte,
            _ => TokenKind::Normal,
        }
    }
}

const SPACE_MARK: &str = "\u{2581}";

/// A vocabulary with its merge scores.
pub struct Tokenizer {
    pieces: Vec<String>,
    scores: Vec<f32>,
    kinds: Vec<TokenKind>,
    by_text: HashMap<String, u32>,
    /// `<0xXX>` piece of each byte.
    byte_tokens: [Option<u32>; 256],
    /// User-defined pieces, longest first: matched before the merges.
    user_defined: Vec<u32>,
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub add_bos: bool,
    add_space_prefix: bool,
}

#[derive(PartialEq)]
struct Bigram {
    score: f32,
    left: usize,
    right: usize,
    size: usize,
}

impl Eq for Bigram {}

impl Ord for Bigram {
    fn cmp(&self, other: &Self) -> Ordering {
        // Highest score first; on a tie the leftmost pair.
        self.score
            .partial_cmp(&other.score)
            .unwrap_or(Ordering::Equal)
            .then_with(|| other.left.cmp(&self.left))
    }
}

impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

struct Symbol {
    start: usize,
    len: usize,
    prev: isize,
    next: isize,
}

impl Tokenizer {
    /// Builds the tokenizer from a GGUF file's metadata.
    pub fn from_gguf(f: &GgufFile) -> Result<Tokenizer, LocalError> {
        let model = f.get_str("tokenizer.ggml.model")?;
        if model != "llama" {
            return Err(LocalError::Unsupported(format!(
                "{}: tokenizer.ggml.model is {model:?}; this build reads SentencePiece vocabularies (\"llama\") only",
                f.path.display()
            )));
        }
        let arr = |key: &str| -> Result<&[Value], LocalError> {
            f.get(key)?.as_array().ok_or_else(|| LocalError::Format {
                path: f.path.clone(),
                message: format!("metadata key {key:?} should be an array"),
            })
        };
        let pieces: Vec<String> = arr("tokenizer.ggml.tokens")?
            .iter()
            .map(|v| v.as_str().unwrap_or_default().to_string())
            .collect();
        let n = pieces.len();
        let scores: Vec<f32> = match f.metadata.get("tokenizer.ggml.scores") {
            Some(Value::Array(a)) => a.iter().map(|v| v.as_f64().unwrap_or(0.0) as f32).collect(),
            _ => vec![0.0; n],
        };
        let kinds: Vec<TokenKind> = match f.metadata.get("tokenizer.ggml.token_type") {
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| TokenKind::from_i64(v.as_f64().unwrap_or(1.0) as i64))
                .collect(),
            _ => vec![TokenKind::Normal; n],
        };
        if scores.len() != n || kinds.len() != n {
            return Err(LocalError::Format {
                path: f.path.clone(),
                message: format!(
                    "tokenizer.ggml.tokens has {n} entries but scores has {} and token_type {}",
                    scores.len(),
                    kinds.len()
                ),
            });
        }
        let opt_u32 = |key: &str| {
            f.metadata
                .get(key)
                .and_then(Value::as_u64)
                .map(|v| v as u32)
        };
        let opt_bool =
            |key: &str, d: bool| f.metadata.get(key).and_then(Value::as_bool).unwrap_or(d);
        Ok(Self::new(
            pieces,
            scores,
            kinds,
            opt_u32("tokenizer.ggml.bos_token_id"),
            opt_u32("tokenizer.ggml.eos_token_id"),
            opt_bool("tokenizer.ggml.add_bos_token", true),
            opt_bool("tokenizer.ggml.add_space_prefix", true),
        ))
    }

    /// Builds a tokenizer from its parts.
    pub fn new(
        pieces: Vec<String>,
        scores: Vec<f32>,
        kinds: Vec<TokenKind>,
        bos: Option<u32>,
        eos: Option<u32>,
        add_bos: bool,
        add_space_prefix: bool,
    ) -> Tokenizer {
        let mut by_text = HashMap::with_capacity(pieces.len());
        let mut byte_tokens = [None; 256];
        let mut user_defined = vec![];
        for (i, p) in pieces.iter().enumerate() {
            by_text.insert(p.clone(), i as u32);
            if kinds[i] == TokenKind::Byte {
                if let Some(b) = p
                    .strip_prefix("<0x")
                    .and_then(|s| s.strip_suffix('>'))
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    byte_tokens[b as usize] = Some(i as u32);
                }
            }
            if kinds[i] == TokenKind::UserDefined && !p.is_empty() {
                user_defined.push(i as u32);
            }
        }
        user_defined.sort_by(|&a, &b| {
            pieces[b as usize]
                .len()
                .cmp(&pieces[a as usize].len())
                .then(a.cmp(&b))
        });
        Tokenizer {
            pieces,
            scores,
            kinds,
            by_text,
            byte_tokens,
            user_defined,
            bos,
            eos,
            add_bos,
            add_space_prefix,
        }
    }

    pub fn vocab_size(&self) -> usize {
        self.pieces.len()
    }

    /// The piece of a token as stored in the vocabulary.
    pub fn piece(&self, id: u32) -> &str {
        self.pieces.get(id as usize).map_or("", String::as_str)
    }

    pub fn kind(&self, id: u32) -> TokenKind {
        self.kinds
            .get(id as usize)
            .copied()
            .unwrap_or(TokenKind::Normal)
    }

    /// The id of a piece, if the vocabulary has it.
    pub fn token_id(&self, piece: &str) -> Option<u32> {
        self.by_text.get(piece).copied()
    }

    /// Tokenises plain text (special tokens written in it are not parsed),
    /// with a leading BOS when the vocabulary asks for one and `add_bos`.
    pub fn encode(&self, text: &str, add_bos: bool) -> Vec<u32> {
        let mut out = vec![];
        if add_bos && self.add_bos {
            if let Some(b) = self.bos {
                out.push(b);
            }
        }
        // Split around user-defined pieces, longest first.
        enum Frag<'a> {
            Text(&'a str),
            Token(u32),
        }
        let mut frags = vec![Frag::Text(text)];
        for &id in &self.user_defined {
            let pat = self.pieces[id as usize].as_str();
            let mut next = Vec::with_capacity(frags.len());
            for f in frags {
                match f {
                    Frag::Text(t) if t.contains(pat) => {
                        let mut rest = t;
                        while let Some(at) = rest.find(pat) {
                            if at > 0 {
                                next.push(Frag::Text(&rest[..at]));
                            }
                            next.push(Frag::Token(id));
                            rest = &rest[at + pat.len()..];
                        }
                        if !rest.is_empty() {
                            next.push(Frag::Text(rest));
                        }
                    }
                    other => next.push(other),
                }
            }
            frags = next;
        }
        let mut prev_special = true;
        for f in frags {
            match f {
                Frag::Token(id) => {
                    out.push(id);
                    prev_special = true;
                }
                Frag::Text(t) => {
                    let mut s = String::with_capacity(t.len() + 3);
                    if self.add_space_prefix && prev_special {
                        s.push(' ');
                    }
                    s.push_str(t);
                    let s = s.replace(' ', SPACE_MARK);
                    self.encode_fragment(&s, &mut out);
                    prev_special = false;
                }
            }
        }
        out
    }

    fn encode_fragment(&self, text: &str, out: &mut Vec<u32>) {
        let mut symbols: Vec<Symbol> = Vec::with_capacity(text.len());
        for (i, (start, ch)) in text.char_indices().enumerate() {
            symbols.push(Symbol {
                start,
                len: ch.len_utf8(),
                prev: i as isize - 1,
                next: i as isize + 1,
            });
        }
        if let Some(last) = symbols.last_mut() {
            last.next = -1;
        }
        let mut queue = BinaryHeap::new();
        let try_add = |queue: &mut BinaryHeap<Bigram>, symbols: &[Symbol], l: isize, r: isize| {
            if l < 0 || r < 0 {
                return;
            }
            let (ls, rs) = (&symbols[l as usize], &symbols[r as usize]);
            let piece = &text[ls.start..rs.start + rs.len];
            if let Some(&id) = self.by_text.get(piece) {
                queue.push(Bigram {
                    score: self.scores[id as usize],
                    left: l as usize,
                    right: r as usize,
                    size: piece.len(),
                });
            }
        };
        for i in 1..symbols.len() {
            try_add(&mut queue, &symbols, i as isize - 1, i as isize);
        }
        while let Some(b) = queue.pop() {
            let (ln, rn) = (symbols[b.left].len, symbols[b.right].len);
            if ln == 0 || rn == 0 || ln + rn != b.size {
                continue;
            }
            symbols[b.left].len += rn;
            symbols[b.right].len = 0;
            let next = symbols[b.right].next;
            symbols[b.left].next = next;
            if next >= 0 {
                symbols[next as usize].prev = b.left as isize;
            }
            let prev = symbols[b.left].prev;
            try_add(&mut queue, &symbols, prev, b.left as isize);
            try_add(&mut queue, &symbols, b.left as isize, next);
        }
        let mut i = if symbols.is_empty() { -1 } else { 0 };
        while i >= 0 {
            let s = &symbols[i as usize];
            let piece = &text[s.start..s.start + s.len];
            match self.by_text.get(piece) {
                Some(&id) => out.push(id),
                None => {
                    for b in piece.bytes() {
                        // A vocabulary without byte pieces maps unknown bytes to <unk>.
                        if let Some(id) =
                            self.byte_tokens[b as usize].or_else(|| self.token_id("<unk>"))
                        {
                            out.push(id);
                        }
                    }
                }
            }
            i = s.next;
        }
    }

    /// The bytes a token stands for in generated text (control tokens: none).
    pub fn token_bytes(&self, id: u32) -> Vec<u8> {
        let p = self.piece(id);
        match self.kind(id) {
            TokenKind::Control | TokenKind::Unknown | TokenKind::Unused => vec![],
            TokenKind::Byte => p
                .strip_prefix("<0x")
                .and_then(|s| s.strip_suffix('>'))
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .map_or_else(Vec::new, |b| vec![b]),
            TokenKind::UserDefined => p.as_bytes().to_vec(),
            TokenKind::Normal => p.replace(SPACE_MARK, " ").into_bytes(),
        }
    }

    /// The text of a token sequence (invalid UTF-8 replaced).
    pub fn decode(&self, ids: &[u32]) -> String {
        let bytes: Vec<u8> = ids.iter().flat_map(|&i| self.token_bytes(i)).collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// The text of one token on its own, as a provider would report it.
    pub fn token_text(&self, id: u32) -> String {
        String::from_utf8_lossy(&self.token_bytes(id)).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toy() -> Tokenizer {
        let mut pieces = vec!["<unk>".to_string(), "<bos>".into(), "\n\n".into()];
        let mut kinds = vec![
            TokenKind::Unknown,
            TokenKind::Control,
            TokenKind::UserDefined,
        ];
        let mut scores = vec![0.0, 0.0, 0.0];
        for b in 0..=255u8 {
            pieces.push(format!("<0x{b:02X}>"));
            kinds.push(TokenKind::Byte);
            scores.push(0.0);
        }
        for (p, s) in [
            ("a", -1.0),
            ("b", -1.0),
            ("ab", -2.0),
            ("▁", -1.0),
            ("▁ab", -3.0),
            ("c", -1.0),
        ] {
            pieces.push(p.into());
            kinds.push(TokenKind::Normal);
            scores.push(s);
        }
        Tokenizer::new(pieces, scores, kinds, Some(1), None, true, false)
    }

    #[test]
    fn merges_bytes_and_user_defined() {
        let t = toy();
        let ids = t.encode("ab ab\n\nc€", true);
        let pieces: Vec<&str> = ids.iter().map(|&i| t.piece(i)).collect();
        assert_eq!(
            pieces,
            vec!["<bos>", "ab", "▁ab", "\n\n", "c", "<0xE2>", "<0x82>", "<0xAC>"]
        );
        assert_eq!(t.decode(&ids), "ab ab\n\nc€");
    }
}
