//! SentencePiece merging (`tokenizer.ggml.model = "llama"`): the pieces of a
//! text fragment are merged pairwise, highest score first, and characters no
//! piece covers fall back to `<0xXX>` byte pieces.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use super::{Symbol, Tokenizer};

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

/// Appends the tokens of `text` (spaces already written as U+2581).
pub(super) fn encode_fragment(t: &Tokenizer, text: &str, out: &mut Vec<u32>) {
    let mut symbols = Symbol::chars_of(text);
    let mut queue = BinaryHeap::new();
    let try_add = |queue: &mut BinaryHeap<Bigram>, symbols: &[Symbol], l: isize, r: isize| {
        if l < 0 || r < 0 {
            return;
        }
        let (ls, rs) = (&symbols[l as usize], &symbols[r as usize]);
        let piece = &text[ls.start..rs.start + rs.len];
        if let Some(id) = t.token_id(piece) {
            queue.push(Bigram {
                score: t.scores[id as usize],
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
        let (prev, next) = Symbol::join(&mut symbols, b.left, b.right);
        try_add(&mut queue, &symbols, prev, b.left as isize);
        try_add(&mut queue, &symbols, b.left as isize, next);
    }
    let mut i = if symbols.is_empty() { -1 } else { 0 };
    while i >= 0 {
        let s = &symbols[i as usize];
        let piece = &text[s.start..s.start + s.len];
        match t.token_id(piece) {
            Some(id) => out.push(id),
            None => {
                for b in piece.bytes() {
                    // A vocabulary without byte pieces maps unknown bytes to <unk>.
                    if let Some(id) = t.byte_tokens[b as usize].or_else(|| t.token_id("<unk>")) {
                        out.push(id);
                    }
                }
            }
        }
        i = s.next;
    }
}
