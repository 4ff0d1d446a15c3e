//! Durations and sizes as people write them: `250ms`, `5s`, `64MiB`.

use std::time::Duration;

/// Parses a duration like `250ms`, `5s` or `2m` (anything `humantime` reads).
///
/// # Errors
/// A message saying what is wrong with `text`, fit for a command-line error.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|error| format!("`{text}` is not a duration like 5s or 250ms: {error}"))
}

/// Parses `65536`, `64KiB`, `64MiB`, `1GiB` (K, M, G mean the same binary units).
///
/// # Errors
/// A message saying what is wrong with `text`, fit for a command-line error.
pub fn parse_size(text: &str) -> Result<usize, String> {
    let (number, unit) = split_unit(text);
    let value: usize = number
        .parse()
        .map_err(|_| format!("`{text}` is not a size like 64MiB"))?;
    let scale: usize = match unit {
        "" | "B" => 1,
        "K" | "KiB" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        _ => return Err(format!("unknown unit `{unit}` in `{text}` (use KiB, MiB or GiB)")),
    };
    value
        .checked_mul(scale)
        .ok_or_else(|| format!("`{text}` is too large"))
}

fn split_unit(text: &str) -> (&str, &str) {
    let text = text.trim();
    let split = text.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(text.len());
    (&text[..split], &text[split..])
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn durations_take_units() {
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("2").is_err(), "a unit is needed");
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn sizes_take_binary_units() {
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("1K"), Ok(1024));
        assert_eq!(parse_size("100"), Ok(100));
        assert!(parse_size("1TB").is_err());
        assert!(parse_size("lots").is_err());
    }
}
