//! Numbers formatted exactly as Python's format specifications do (`.1f`, `,.0f`, `g`, `.0%`),
//! because the committed docs/capacity-model.md was written by the Python model and `--check`
//! compares bytes. Rust's `{:.N}` rounds as Python's `.Nf` does (the exact binary value, ties to
//! even); what Rust lacks is the thousands separator, the `g` presentation and Python's spelling
//! of infinities.

/// Python's `f"{x:.{prec}f}"`.
pub fn fixed(x: f64, prec: usize) -> String {
    if x.is_nan() {
        "nan".into()
    } else if x.is_infinite() {
        if x > 0.0 { "inf" } else { "-inf" }.into()
    } else {
        format!("{x:.prec$}")
    }
}

/// Python's `f"{x:,.{prec}f}"`: [`fixed`] with a comma between thousands.
pub fn grouped(x: f64, prec: usize) -> String {
    group_thousands(&fixed(x, prec))
}

/// Python's `f"{n:,}"` for an integer.
pub fn grouped_int(n: impl std::fmt::Display) -> String {
    group_thousands(&n.to_string())
}

/// Python's `f"{x:g}"`: six significant digits, trailing zeros dropped, an exponent below 1e-4
/// and from 1e6 on.
pub fn general(x: f64) -> String {
    const PRECISION: i32 = 6;
    if !x.is_finite() {
        return fixed(x, 0);
    }
    if x == 0.0 {
        return if x.is_sign_negative() { "-0" } else { "0" }.into();
    }
    // The exponent after rounding to six digits decides the presentation (999999.5 is 1e+06).
    let scientific = format!("{x:.prec$e}", prec = (PRECISION - 1) as usize);
    let Some((mantissa, exponent)) = scientific.split_once('e') else { return scientific };
    let Ok(exponent) = exponent.parse::<i32>() else { return scientific };
    if (-4..PRECISION).contains(&exponent) {
        let decimals = (PRECISION - 1 - exponent) as usize;
        strip_fraction_zeros(&format!("{x:.decimals$}")).into()
    } else {
        let sign = if exponent < 0 { '-' } else { '+' };
        format!("{}e{sign}{:02}", strip_fraction_zeros(mantissa), exponent.abs())
    }
}

/// Python's `f"{x:.0%}"`.
pub fn percent(x: f64) -> String {
    format!("{}%", fixed(x * 100.0, 0))
}

/// "1234567.5" -> "1,234,567.5"; text that is not a number (inf, nan) is returned as it is.
fn group_thousands(number: &str) -> String {
    let (sign, unsigned) = number.strip_prefix('-').map_or(("", number), |rest| ("-", rest));
    let (int, fraction) = unsigned.split_once('.').map_or((unsigned, None), |(i, f)| (i, Some(f)));
    if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) {
        return number.into();
    }
    let mut out = String::from(sign);
    for (i, digit) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    if let Some(fraction) = fraction {
        out.push('.');
        out.push_str(fraction);
    }
    out
}

/// "1.50000" -> "1.5", "2.000" -> "2"; text without a decimal point is left alone.
fn strip_fraction_zeros(text: &str) -> &str {
    if text.contains('.') { text.trim_end_matches('0').trim_end_matches('.') } else { text }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expected strings are what CPython 3 prints for the same format specification.

    #[test]
    fn fixed_rounds_ties_to_even_as_python_does() {
        assert_eq!(fixed(0.625, 2), "0.62");
        assert_eq!(fixed(2.5, 0), "2");
        assert_eq!(fixed(2.675, 2), "2.67"); // 2.67499999... in binary
        assert_eq!(fixed(-0.4, 0), "-0");
        assert_eq!(fixed(f64::INFINITY, 1), "inf");
        assert_eq!(fixed(f64::NAN, 1), "nan");
    }

    #[test]
    fn grouped_puts_commas_between_thousands() {
        assert_eq!(grouped(1_234_567.5, 0), "1,234,568");
        assert_eq!(grouped(999.4, 0), "999");
        assert_eq!(grouped(-1_785_000.0, 1), "-1,785,000.0");
        assert_eq!(grouped(f64::NEG_INFINITY, 0), "-inf");
        assert_eq!(grouped_int(674_823), "674,823");
        assert_eq!(grouped_int(0), "0");
        assert_eq!(grouped_int(-1000), "-1,000");
    }

    #[test]
    fn general_matches_python_g() {
        for (x, want) in [
            (1.0, "1"),
            (10.0, "10"),
            (1.2, "1.2"),
            (0.7, "0.7"),
            (1.7, "1.7"),
            (60.0, "60"),
            (1_700_000.0, "1.7e+06"),
            (999_999.0, "999999"),
            (999_999.5, "1e+06"),
            (0.0001, "0.0001"),
            (0.00001234, "1.234e-05"),
            (123.456789, "123.457"),
            (-0.0, "-0"),
            (f64::INFINITY, "inf"),
        ] {
            assert_eq!(general(x), want, "{x}");
        }
    }

    #[test]
    fn percent_multiplies_by_100() {
        assert_eq!(percent(0.1), "10%");
        assert_eq!(percent(0.125), "12%");
        assert_eq!(percent(0.0), "0%");
    }
}
