//! Small pieces of inference shared by the paired comparisons and the
//! planner: percentile quantiles, p-value adjustment for many comparisons
//! (Holm, Benjamini-Hochberg) and the standard normal distribution.
//!
//! Each is a few lines of textbook arithmetic; a crate for them would add
//! more surface (and a dependency) than code.

/// The `p` quantile (0..=1) of `sorted` (ascending, no NaN), by linear
/// interpolation between order statistics (Hyndman and Fan's type 7, the
/// default of R and NumPy). NaN for an empty slice.
pub fn quantile_sorted(sorted: &[f64], p: f64) -> f64 {
    match sorted.len() {
        0 => f64::NAN,
        1 => sorted[0],
        n => {
            let h = (n - 1) as f64 * p.clamp(0.0, 1.0);
            let lo = h.floor() as usize;
            let hi = (lo + 1).min(n - 1);
            let (a, b) = (sorted[lo], sorted[hi]);
            if a == b || !a.is_finite() || !b.is_finite() {
                // Avoids inf - inf; an infinite end stays infinite.
                if h - lo as f64 > 0.5 {
                    b
                } else {
                    a
                }
            } else {
                a + (h - lo as f64) * (b - a)
            }
        }
    }
}

/// Holm's step-down adjustment (Holm 1979): family-wise error control for
/// any dependence between the tests. Same order as `p`; NaN stays NaN and
/// is not counted in the family.
pub fn holm(p: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..p.len()).filter(|&i| !p[i].is_nan()).collect();
    idx.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    let m = idx.len();
    let mut out = vec![f64::NAN; p.len()];
    let mut running = 0.0f64;
    for (rank, &i) in idx.iter().enumerate() {
        let adj = ((m - rank) as f64 * p[i]).min(1.0);
        running = running.max(adj);
        out[i] = running;
    }
    out
}

/// Benjamini-Hochberg's step-up adjustment (false discovery rate under
/// independence or positive dependence). Same order as `p`; NaN stays NaN
/// and is not counted in the family.
pub fn benjamini_hochberg(p: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..p.len()).filter(|&i| !p[i].is_nan()).collect();
    idx.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    let m = idx.len();
    let mut out = vec![f64::NAN; p.len()];
    let mut running = 1.0f64;
    for (rank, &i) in idx.iter().enumerate().rev() {
        let adj = (m as f64 / (rank + 1) as f64 * p[i]).min(1.0);
        running = running.min(adj);
        out[i] = running;
    }
    out
}

/// The standard normal distribution function Phi(x), from the
/// complementary error function below (fractional error below 1.2e-7, also
/// far out in the tails).
pub fn normal_cdf(x: f64) -> f64 {
    0.5 * erfc(-x / std::f64::consts::SQRT_2)
}

/// The two-sided tail probability of a standard normal: P(|Z| >= |z|).
pub fn normal_two_sided(z: f64) -> f64 {
    erfc(z.abs() / std::f64::consts::SQRT_2).min(1.0)
}

/// The standard normal quantile (Acklam's rational approximation,
/// relative error below 1.2e-9).
pub fn normal_quantile(p: f64) -> f64 {
    if p <= 0.0 {
        return f64::NEG_INFINITY;
    }
    if p >= 1.0 {
        return f64::INFINITY;
    }
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    let low = 0.02425;
    if p < low {
        let q = (-2.0 * p.ln()).sqrt();
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    } else if p <= 1.0 - low {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    } else {
        -normal_quantile(1.0 - p)
    }
}

/// The complementary error function (Numerical Recipes' Chebyshev fit,
/// fractional error below 1.2e-7).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate() {
        let xs = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(quantile_sorted(&xs, 0.0), 1.0);
        assert_eq!(quantile_sorted(&xs, 1.0), 5.0);
        assert_eq!(quantile_sorted(&xs, 0.5), 3.0);
        assert!((quantile_sorted(&xs, 0.1) - 1.4).abs() < 1e-12);
        assert!(quantile_sorted(&[], 0.5).is_nan());
        assert_eq!(quantile_sorted(&[1.0, f64::INFINITY], 0.9), f64::INFINITY);
    }

    #[test]
    fn adjustments_match_the_textbook_example() {
        // R: p.adjust(c(0.01, 0.04, 0.03, 0.005), "holm") and "BH".
        let p = [0.01, 0.04, 0.03, 0.005];
        let h = holm(&p);
        let want_h = [0.03, 0.06, 0.06, 0.02];
        for (a, b) in h.iter().zip(want_h) {
            assert!((a - b).abs() < 1e-12, "{h:?}");
        }
        let bh = benjamini_hochberg(&p);
        let want_bh = [0.02, 0.04, 0.04, 0.02];
        for (a, b) in bh.iter().zip(want_bh) {
            assert!((a - b).abs() < 1e-12, "{bh:?}");
        }
        let with_nan = holm(&[0.01, f64::NAN, 0.02]);
        assert!(with_nan[1].is_nan());
        assert!((with_nan[0] - 0.02).abs() < 1e-12 && (with_nan[2] - 0.02).abs() < 1e-12);
    }

    #[test]
    fn normal_distribution() {
        assert!((normal_cdf(0.0) - 0.5).abs() < 1e-7);
        assert!((normal_cdf(1.959_963_985) - 0.975).abs() < 1e-7);
        assert!((normal_two_sided(1.959_963_985) - 0.05).abs() < 1e-7);
        assert!((normal_quantile(0.975) - 1.959_963_985).abs() < 1e-6);
        assert!((normal_quantile(0.8) - 0.841_621_234).abs() < 1e-6);
        assert!((normal_quantile(0.001) + 3.090_232_306).abs() < 1e-6);
        // Far tails keep their relative precision.
        let p = normal_two_sided(8.0);
        assert!((p / 1.244_192_114e-15 - 1.0).abs() < 1e-5, "{p}");
    }
}
