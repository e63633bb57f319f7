//! The tokenizer a GGUF file carries in its `tokenizer.ggml.*` metadata:
//! SentencePiece-style (`tokenizer.ggml.model = "llama"`: Gemma, Mistral;
//! [`spm`]) or byte-level BPE (`"gpt2"`: Llama 3, Qwen; [`bpe`]), with the
//! vocabulary's special tokens. User-defined pieces (Gemma's runs of
//! newlines and spaces, for example) are matched in the raw text first,
//! longest first, and never split; control tokens (`<|im_start|>`, ...) are
//! matched too when the caller asks for special tokens to be parsed. BOS is
//! added as llama.cpp does (`tokenizer.ggml.add_bos_token`, else the
//! tokenizer type's default). The result matches llama.cpp's tokenisation
//! (checked against recorded fixtures in `tests/`).

mod bpe;
mod spm;

use std::collections::HashMap;

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

/// Pieces that end a chat turn in the supported chat templates.
const END_OF_TURN: &[&str] = &[
    "<end_of_turn>",
    "<|eot_id|>",
    "<|im_end|>",
    "<|end_of_text|>",
];

/// A vocabulary with how its text is split into tokens.
pub struct Tokenizer {
    pieces: Vec<String>,
    /// SentencePiece merge scores (zeros for BPE).
    scores: Vec<f32>,
    kinds: Vec<TokenKind>,
    by_text: HashMap<String, u32>,
    /// `<0xXX>` piece of each byte.
    byte_tokens: [Option<u32>; 256],
    /// User-defined and control pieces, longest first: matched in the text
    /// before the merges (control pieces only when asked to).
    specials: Vec<u32>,
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    /// End-of-turn tokens of chat templates the vocabulary has (`<|eot_id|>`,
    /// `<|im_end|>`, `<end_of_turn>`, ...): generation stops at them.
    pub eot: Vec<u32>,
    pub add_bos: bool,
    add_space_prefix: bool,
    /// Byte-level BPE (None: SentencePiece).
    bpe: Option<bpe::Bpe>,
}

impl Tokenizer {
    /// Builds the tokenizer from a GGUF file's metadata.
    pub fn from_gguf(f: &GgufFile) -> Result<Tokenizer, LocalError> {
        let model = f.get_str("tokenizer.ggml.model")?;
        if model != "llama" && model != "gpt2" {
            return Err(LocalError::Unsupported(format!(
                "{}: tokenizer.ggml.model is {model:?}; this build reads SentencePiece (\"llama\") and byte-level BPE (\"gpt2\") vocabularies",
                f.path.display()
            )));
        }
        let format_err = |message: String| LocalError::Format {
            path: f.path.clone(),
            message,
        };
        let arr = |key: &str| -> Result<&[Value], LocalError> {
            f.get(key)?
                .as_array()
                .ok_or_else(|| format_err(format!("metadata key {key:?} should be an array")))
        };
        let strings = |key: &str| -> Result<Vec<String>, LocalError> {
            arr(key)?
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    v.as_str().map(str::to_string).ok_or_else(|| {
                        format_err(format!("metadata key {key:?}: entry {i} is not a string"))
                    })
                })
                .collect()
        };
        let pieces = strings("tokenizer.ggml.tokens")?;
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
            return Err(format_err(format!(
                "tokenizer.ggml.tokens has {n} entries but scores has {} and token_type {}",
                scores.len(),
                kinds.len()
            )));
        }
        let opt_u32 = |key: &str| {
            f.metadata
                .get(key)
                .and_then(Value::as_u64)
                .map(|v| v as u32)
        };
        let opt_bool = |key: &str| f.metadata.get(key).and_then(Value::as_bool);
        let (bpe, default_bos, default_space) = if model == "gpt2" {
            let merges = strings("tokenizer.ggml.merges")?;
            let pre = f.metadata.get("tokenizer.ggml.pre").and_then(Value::as_str);
            let (bpe, bos) = bpe::Bpe::new(&merges, pre)
                .map_err(|m| LocalError::Unsupported(format!("{}: {m}", f.path.display())))?;
            (Some(bpe), bos, false)
        } else {
            (None, true, true)
        };
        let mut t = Self::new(
            pieces,
            scores,
            kinds,
            opt_u32("tokenizer.ggml.bos_token_id"),
            opt_u32("tokenizer.ggml.eos_token_id"),
            opt_bool("tokenizer.ggml.add_bos_token").unwrap_or(default_bos),
            opt_bool("tokenizer.ggml.add_space_prefix").unwrap_or(default_space),
        );
        for (key, id) in [("bos", t.bos), ("eos", t.eos)] {
            if id.is_some_and(|id| id as usize >= n) {
                return Err(format_err(format!(
                    "tokenizer.ggml.{key}_token_id is {}, outside the vocabulary of {n}",
                    id.unwrap_or_default()
                )));
            }
        }
        if t.add_bos && t.bos.is_none() {
            return Err(format_err(
                "tokenizer.ggml.add_bos_token is set but tokenizer.ggml.bos_token_id is missing"
                    .into(),
            ));
        }
        if let Some(id) = opt_u32("tokenizer.ggml.eot_token_id").filter(|&id| (id as usize) < n) {
            if !t.eot.contains(&id) {
                t.eot.push(id);
            }
        }
        t.bpe = bpe;
        Ok(t)
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
        let mut specials = vec![];
        for (i, p) in pieces.iter().enumerate() {
            // The first of duplicate pieces wins, as in llama.cpp.
            by_text.entry(p.clone()).or_insert(i as u32);
            if kinds[i] == TokenKind::Byte {
                if let Some(b) = p
                    .strip_prefix("<0x")
                    .and_then(|s| s.strip_suffix('>'))
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    byte_tokens[b as usize] = Some(i as u32);
                }
            }
            if matches!(kinds[i], TokenKind::UserDefined | TokenKind::Control) && !p.is_empty() {
                specials.push(i as u32);
            }
        }
        specials.sort_by(|&a, &b| {
            pieces[b as usize]
                .len()
                .cmp(&pieces[a as usize].len())
                .then(a.cmp(&b))
        });
        let eot = END_OF_TURN
            .iter()
            .filter_map(|p| by_text.get(*p).copied())
            .collect::<Vec<_>>();
        Tokenizer {
            pieces,
            scores,
            kinds,
            by_text,
            byte_tokens,
            specials,
            bos,
            eos,
            eot,
            add_bos,
            add_space_prefix,
            bpe: None,
        }
    }

    /// Whether a space is written before the text (SentencePiece's
    /// `add_space_prefix`): decoding the tokens of `text` gives `" " + text`.
    pub fn adds_space_prefix(&self) -> bool {
        self.add_space_prefix && self.bpe.is_none()
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

    /// Tokenises plain text (control tokens written in it are not parsed),
    /// with a leading BOS when the vocabulary asks for one and `add_bos`.
    pub fn encode(&self, text: &str, add_bos: bool) -> Vec<u32> {
        self.encode_with(text, add_bos, false)
    }

    /// Tokenises text; with `parse_special`, control tokens written in it
    /// (`<|im_start|>`, `<start_of_turn>`, ...) become those tokens, as
    /// llama.cpp's `special = true`.
    pub fn encode_with(&self, text: &str, add_bos: bool, parse_special: bool) -> Vec<u32> {
        let mut out = vec![];
        if add_bos && self.add_bos {
            if let Some(b) = self.bos {
                out.push(b);
            }
        }
        // Split around special pieces, longest first.
        enum Frag<'a> {
            Text(&'a str),
            Token(u32),
        }
        // Empty text is no fragment (no space prefix either), as in llama.cpp.
        let mut frags = if text.is_empty() {
            vec![]
        } else {
            vec![Frag::Text(text)]
        };
        for &id in &self.specials {
            if !parse_special && self.kinds[id as usize] == TokenKind::Control {
                continue;
            }
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
                    match &self.bpe {
                        Some(b) => bpe::encode_fragment(self, b, t, &mut out),
                        None => {
                            let mut s = String::with_capacity(t.len() + 3);
                            if self.add_space_prefix && prev_special {
                                s.push(' ');
                            }
                            s.push_str(t);
                            let s = s.replace(' ', SPACE_MARK);
                            spm::encode_fragment(self, &s, &mut out);
                        }
                    }
                    prev_special = false;
                }
            }
        }
        out
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
            TokenKind::Normal => match &self.bpe {
                Some(b) => b.decode_piece(p),
                None => p.replace(SPACE_MARK, " ").into_bytes(),
            },
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

/// One piece of a word while merges join pieces (both tokenizers merge the
/// same way): its byte range, and its neighbours in a linked list over the
/// word's characters (-1 at either end).
pub(super) struct Symbol {
    start: usize,
    len: usize,
    prev: isize,
    next: isize,
}

impl Symbol {
    /// One symbol per character of `text`, linked in order.
    fn chars_of(text: &str) -> Vec<Symbol> {
        let mut symbols: Vec<Symbol> = text
            .char_indices()
            .enumerate()
            .map(|(i, (start, ch))| Symbol {
                start,
                len: ch.len_utf8(),
                prev: i as isize - 1,
                next: i as isize + 1,
            })
            .collect();
        if let Some(last) = symbols.last_mut() {
            last.next = -1;
        }
        symbols
    }

    /// Joins the symbol at `right` into its left neighbour `left`; returns
    /// the joined symbol's neighbours `(prev, next)`, whose pairs with it
    /// are queued again.
    fn join(symbols: &mut [Symbol], left: usize, right: usize) -> (isize, isize) {
        let rn = symbols[right].len;
        symbols[left].len += rn;
        symbols[right].len = 0;
        let next = symbols[right].next;
        symbols[left].next = next;
        if next >= 0 {
            symbols[next as usize].prev = left as isize;
        }
        (symbols[left].prev, next)
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
