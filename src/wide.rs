//! Hot float loops built twice: for the baseline x86-64 CPU and for AVX2 / AVX-512, chosen at run
//! time, so one portable binary runs eight or sixteen floats per instruction where the CPU can.

/// `widen!(pub(crate) fn name(args) -> T = body)` defines `name`, which calls `body` (an
/// `#[inline(always)]` function) compiled for AVX2 (eight floats per instruction instead of four)
/// where the CPU has it. The loops here are written lane by lane, so both builds do the same float
/// operations in the same order: the answer does not depend on the CPU.
macro_rules! widen {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),*) $(-> $ret:ty)? = $body:path) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                fn avx512($($arg: $ty),*) $(-> $ret)? {
                    $body($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU has AVX-512F, checked just above.
                    return unsafe { avx512($($arg),*) };
                }
                #[target_feature(enable = "avx2")]
                fn avx2($($arg: $ty),*) $(-> $ret)? {
                    $body($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: the CPU has AVX2, checked just above.
                    return unsafe { avx2($($arg),*) };
                }
            }
            $body($($arg),*)
        }
    };
}
pub(crate) use widen;
