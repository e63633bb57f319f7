//! Which class of kernels runs: the best the CPU has, or a lower one forced
//! by the environment variable [`CPU_ENV`] (`MORALSWEEP_CPU=avx512|avx2|portable`)
//! or by [`set_class`], so that the AVX2+FMA and portable paths can be
//! measured and tested on an AVX-512 machine.
//!
//! Every dispatch in `kernels/` asks [`class`]: the packed products' micro-
//! kernels and decoding paths, the code panels' widening, the half-precision
//! widening, the output head's Q8_0 product and the `f32` dot product. One
//! product the class does not reach: the attention's strided products go
//! through `matrixmultiply`, which picks its own kernel at run time (AVX2+FMA
//! where the CPU has it; it has no AVX-512 kernel) and offers no switch.
//!
//! A request above what the CPU has is clamped to the CPU's class, with a
//! warning; an unknown value is an error at [`crate::Engine::load`] (and a
//! warning, the CPU's class kept, where the kernels are used without it).

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Once;

/// The environment variable that forces a lower kernel class.
pub const CPU_ENV: &str = "MORALSWEEP_CPU";

/// A class of kernels, ordered: each CPU runs its own class and every lower
/// one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CpuClass {
    /// Plain Rust the compiler vectorises for the target's baseline (SSE2 on
    /// x86-64): what a CPU without AVX2 runs, and every non-x86 CPU.
    Portable,
    /// AVX2, FMA and F16C (x86-64 since 2013-2015): 6 x 16 micro-kernel,
    /// decoding straight from half-precision and code panels, the integer
    /// Q8_0 head.
    Avx2,
    /// AVX-512F on top of the above: the 12 x 32 prefill micro-kernel.
    Avx512,
}

impl CpuClass {
    /// Every class, lowest first.
    pub const ALL: [CpuClass; 3] = [CpuClass::Portable, CpuClass::Avx2, CpuClass::Avx512];

    /// The name [`CPU_ENV`] takes.
    pub fn name(self) -> &'static str {
        match self {
            CpuClass::Portable => "portable",
            CpuClass::Avx2 => "avx2",
            CpuClass::Avx512 => "avx512",
        }
    }

    /// A class from its name (case and surrounding spaces ignored).
    pub fn parse(s: &str) -> Option<CpuClass> {
        let s = s.trim().to_ascii_lowercase();
        CpuClass::ALL.into_iter().find(|c| c.name() == s)
    }
}

impl std::fmt::Display for CpuClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The best class this CPU runs.
pub fn detected() -> CpuClass {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        if has!("avx2") && has!("fma") && has!("f16c") {
            return if has!("avx512f") {
                CpuClass::Avx512
            } else {
                CpuClass::Avx2
            };
        }
    }
    CpuClass::Portable
}

/// A value of [`CPU_ENV`] that names no kernel class.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{CPU_ENV}={value:?} is not a kernel class; use one of {names} (or leave it unset for the best this CPU runs, here {cpu})", names = CpuClass::ALL.iter().rev().map(|c| c.name()).collect::<Vec<_>>().join(", "))]
pub struct UnknownClass {
    /// The variable's value.
    pub value: String,
    /// This CPU's class.
    pub cpu: CpuClass,
}

/// What a value of [`CPU_ENV`] asks for on a CPU of class `cpu`: the class
/// to run (the request clamped to `cpu`) and a warning if it was clamped, or
/// an error naming the variable and the accepted values. An empty value asks
/// for nothing (the CPU's class).
pub fn resolve(value: &str, cpu: CpuClass) -> Result<(CpuClass, Option<String>), UnknownClass> {
    if value.trim().is_empty() {
        return Ok((cpu, None));
    }
    let Some(asked) = CpuClass::parse(value) else {
        return Err(UnknownClass {
            value: value.to_string(),
            cpu,
        });
    };
    if asked > cpu {
        return Ok((
            cpu,
            Some(format!(
                "{CPU_ENV}={asked} asks for more than this CPU has; running the {cpu} kernels"
            )),
        ));
    }
    Ok((asked, None))
}

/// [`resolve`] of the environment's value against this CPU; `Ok` with the
/// CPU's class when the variable is unset.
pub fn from_env() -> Result<(CpuClass, Option<String>), UnknownClass> {
    match std::env::var(CPU_ENV) {
        Ok(v) => resolve(&v, detected()),
        Err(std::env::VarError::NotPresent) => Ok((detected(), None)),
        Err(std::env::VarError::NotUnicode(v)) => resolve(&v.to_string_lossy(), detected()),
    }
}

const UNSET: u8 = u8::MAX;
static CLASS: AtomicU8 = AtomicU8::new(UNSET);
static INIT: Once = Once::new();

fn encode(c: CpuClass) -> u8 {
    c as u8
}

fn decode(v: u8) -> CpuClass {
    match v {
        0 => CpuClass::Portable,
        1 => CpuClass::Avx2,
        _ => CpuClass::Avx512,
    }
}

/// Reads [`CPU_ENV`] once per process (warning, not failing, on a bad value).
fn init() {
    INIT.call_once(|| {
        let class = match from_env() {
            Ok((c, warning)) => {
                if let Some(w) = warning {
                    tracing::warn!("{w}");
                }
                c
            }
            Err(e) => {
                tracing::warn!("{e}; running the {} kernels", detected());
                detected()
            }
        };
        // A `set_class` that ran first wins.
        let _ = CLASS.compare_exchange(UNSET, encode(class), Ordering::Relaxed, Ordering::Relaxed);
    });
}

/// The class every kernel runs now: [`CPU_ENV`]'s (clamped), else the CPU's,
/// unless [`set_class`] changed it. Never above [`detected`].
pub fn class() -> CpuClass {
    let v = CLASS.load(Ordering::Relaxed);
    if v != UNSET {
        return decode(v);
    }
    init();
    decode(CLASS.load(Ordering::Relaxed))
}

/// Makes every kernel run `want`, clamped to this CPU's class, for the whole
/// process (tests and benchmarks comparing the classes); returns the class
/// now in effect. Products already running finish on the class they started
/// with or the new one; both give the same values within rounding.
pub fn set_class(want: CpuClass) -> CpuClass {
    init();
    let c = want.min(detected());
    CLASS.store(encode(c), Ordering::Relaxed);
    c
}

/// Whether the AVX2+FMA+F16C kernels may run.
#[cfg(target_arch = "x86_64")]
pub(super) fn avx2() -> bool {
    class() >= CpuClass::Avx2
}

/// Whether the AVX-512 kernels may run.
#[cfg(target_arch = "x86_64")]
pub(super) fn avx512() -> bool {
    class() >= CpuClass::Avx512
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_order() {
        for c in CpuClass::ALL {
            assert_eq!(CpuClass::parse(c.name()), Some(c));
            assert_eq!(
                CpuClass::parse(&format!(" {} ", c.name().to_uppercase())),
                Some(c)
            );
        }
        assert!(CpuClass::Portable < CpuClass::Avx2 && CpuClass::Avx2 < CpuClass::Avx512);
        assert_eq!(CpuClass::parse("sse4"), None);
    }

    #[test]
    fn requests_are_clamped_to_the_cpu_and_unknown_values_named() {
        use CpuClass::*;
        assert_eq!(resolve("avx2", Avx512), Ok((Avx2, None)));
        assert_eq!(resolve("portable", Avx2), Ok((Portable, None)));
        assert_eq!(resolve("", Avx2), Ok((Avx2, None)));
        let (c, w) = resolve("avx512", Avx2).unwrap();
        assert_eq!(c, Avx2);
        let w = w.unwrap();
        assert!(
            w.contains("MORALSWEEP_CPU=avx512") && w.contains("avx2 kernels"),
            "{w}"
        );
        let e = resolve("avx3", Avx512).unwrap_err().to_string();
        assert!(
            e.contains("MORALSWEEP_CPU=\"avx3\"") && e.contains("avx512, avx2, portable"),
            "{e}"
        );
    }

    #[test]
    fn set_class_never_exceeds_the_cpu() {
        let before = class();
        assert_eq!(set_class(CpuClass::Avx512), detected());
        assert_eq!(set_class(CpuClass::Portable), CpuClass::Portable);
        assert_eq!(class(), CpuClass::Portable);
        set_class(before);
    }
}
