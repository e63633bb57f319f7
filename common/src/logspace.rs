//! Sums of probabilities held as logarithms.

/// log(exp(a) + exp(b)), exact when either side is minus infinity.
pub fn log_add(a: f64, b: f64) -> f64 {
    if a == f64::NEG_INFINITY {
        return b;
    }
    if b == f64::NEG_INFINITY {
        return a;
    }
    let m = a.max(b);
    m + ((a - m).exp() + (b - m).exp()).ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_add_is_log_of_sum() {
        let (a, b) = (0.3f64.ln(), 0.2f64.ln());
        assert!((log_add(a, b) - 0.5f64.ln()).abs() < 1e-12);
        assert_eq!(log_add(f64::NEG_INFINITY, a), a);
        assert_eq!(log_add(b, f64::NEG_INFINITY), b);
    }
}
