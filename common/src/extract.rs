//! Rating extraction (METHOD.md, "Rating extraction, per slot").

/// The rating of a one-token answer: the token, trimmed, is one of `0`-`5`.
pub fn one_token_rating(text: &str) -> Option<i8> {
    match text.trim() {
        t if t.len() == 1 && (b'0'..=b'5').contains(&t.as_bytes()[0]) => {
            Some((t.as_bytes()[0] - b'0') as i8)
        }
        _ => None,
    }
}

/// The first standalone integer 0-5 in a longer answer: a digit with no other
/// digit or letter directly next to it.
pub fn first_standalone_rating(text: &str) -> Option<i8> {
    let chars: Vec<char> = text.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        if !('0'..='5').contains(&c) {
            continue;
        }
        let blocks = |o: Option<&char>| o.is_some_and(|n| n.is_alphanumeric());
        let before = if i == 0 { None } else { chars.get(i - 1) };
        if !blocks(before) && !blocks(chars.get(i + 1)) {
            return Some(c as i8 - b'0' as i8);
        }
    }
    None
}

/// How much of a raw response is kept in the recorded row.
pub const RESPONSE_KEEP_CHARS: usize = 200;

/// The start of a raw response, as kept in the recorded row.
pub fn response_head(text: &str) -> String {
    text.chars().take(RESPONSE_KEEP_CHARS).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_token() {
        assert_eq!(one_token_rating(" 3\n"), Some(3));
        assert_eq!(one_token_rating("5"), Some(5));
        assert_eq!(one_token_rating("6"), None);
        assert_eq!(one_token_rating("As"), None);
        assert_eq!(one_token_rating(""), None);
        assert_eq!(one_token_rating("34"), None);
    }

    #[test]
    fn standalone() {
        assert_eq!(first_standalone_rating("As a pilot, I'd say 4."), Some(4));
        assert_eq!(first_standalone_rating("In 2024 I rate it 3"), Some(3));
        assert_eq!(first_standalone_rating("a1 b2 (5)"), Some(5));
        assert_eq!(first_standalone_rating("rating: 7, 9"), None);
        assert_eq!(first_standalone_rating("0"), Some(0));
        assert_eq!(first_standalone_rating("x5"), None);
    }
}
