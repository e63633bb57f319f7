//! Floats written the way the papers' files write them (Python's `repr`,
//! which pandas uses): the shortest digits that read back to the same value,
//! `1.0` rather than `1`, and exponent notation below 1e-4 or from 1e16 on
//! (`1e-05`, `1.5e+16`), `inf`, `-inf` and `nan`.

/// Formats `x` like Python's `repr(float)`.
pub fn fmt_float(x: f64) -> String {
    if x.is_nan() {
        return "nan".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if x == 0.0 {
        return if x.is_sign_negative() {
            "-0.0".into()
        } else {
            "0.0".into()
        };
    }
    // Rust's `{:e}` gives the shortest round-trip digits: "-1.2345e-5".
    let sci = format!("{x:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let mut out = String::with_capacity(digits.len() + 8);
    out.push_str(sign);
    if (-4..16).contains(&exp) {
        if exp < 0 {
            out.push_str("0.");
            for _ in 0..(-exp - 1) {
                out.push('0');
            }
            out.push_str(&digits);
        } else {
            let int_len = exp as usize + 1;
            if digits.len() <= int_len {
                out.push_str(&digits);
                for _ in digits.len()..int_len {
                    out.push('0');
                }
                out.push_str(".0");
            } else {
                out.push_str(&digits[..int_len]);
                out.push('.');
                out.push_str(&digits[int_len..]);
            }
        }
    } else {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push('e');
        out.push(if exp < 0 { '-' } else { '+' });
        out.push_str(&format!("{:02}", exp.abs()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::fmt_float;

    #[test]
    fn like_python_repr() {
        let cases = [
            (0.1, "0.1"),
            (1.0, "1.0"),
            (0.35, "0.35"),
            (100.0, "100.0"),
            (-34.93767630742255, "-34.93767630742255"),
            (0.24499282696869512, "0.24499282696869512"),
            (1e-5, "1e-05"),
            (0.0001, "0.0001"),
            (1.5e-7, "1.5e-07"),
            (1e16, "1e+16"),
            (1.5e16, "1.5e+16"),
            (123456789012345.6, "123456789012345.6"),
            (-0.0, "-0.0"),
            (0.0, "0.0"),
            (f64::INFINITY, "inf"),
            (f64::NEG_INFINITY, "-inf"),
            (f64::NAN, "nan"),
            (1.3499999999999999, "1.3499999999999999"),
            (2e-308, "2e-308"),
        ];
        for (x, want) in cases {
            assert_eq!(fmt_float(x), want, "{x:?}");
        }
    }

    #[test]
    fn round_trips() {
        let mut x = 1.234_567_890_123e-12_f64;
        for _ in 0..200 {
            let s = fmt_float(x);
            assert_eq!(s.parse::<f64>().unwrap(), x, "{s}");
            x *= -3.7;
        }
    }
}
