//! serde's type errors in the words of a config's reader: `invalid type: string "abc", expected usize` becomes
//! `` `abc` is text, expected a whole number (0 or more) ``; Rust type names (`usize`, `u128`, `struct
//! FreezeConfig`, `unit value`) never reach the user. Messages this does not recognise pass unchanged.

/// What serde calls the value found (`string "abc"`, ``integer `-1` as u128``, `unit value`, `map`), in plain words.
fn found(what: &str) -> String {
    let tick = |s: &str| s.split('`').nth(1).unwrap_or(s).to_string();
    if let Some(s) = what.strip_prefix("string ") {
        return format!("`{}` is text", s.trim_matches('"'));
    }
    if what.starts_with("integer ") && what.ends_with(" as u128") || what.ends_with(" as i128") {
        return format!("{} is too large", tick(what));
    }
    if what.starts_with("integer ") || what.starts_with("floating point ") || what.starts_with("boolean ") {
        return format!("{} is not that", tick(what));
    }
    match what {
        "unit value" => "the value is empty".into(),
        "map" => "a mapping (keys and values) is given".into(),
        "sequence" => "a list is given".into(),
        other => format!("{other} is given"),
    }
}

/// What serde expected (`usize`, `f64`, `struct TrainConfig`, `a boolean`), in plain words.
fn expected(what: &str) -> String {
    let what = what.trim();
    let plain = match what {
        "usize" | "u8" | "u16" | "u32" | "u64" | "u128" => "a whole number (0 or more)",
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" => "a whole number",
        "f32" | "f64" => "a number",
        "a boolean" | "bool" => "true or false",
        "a string" | "string" | "a borrowed string" => "text",
        "a sequence" | "sequence" => "a list",
        "option" => "a value or null",
        w if w.starts_with("struct ") || w.starts_with("a map") || w == "map" => {
            "a section of keys (`key: value` lines)"
        }
        w => return w.to_string(),
    };
    plain.to_string()
}

/// `msg` (serde's, without key path or position) in plain words.
pub(super) fn plain(msg: &str) -> String {
    for kind in ["invalid type: ", "invalid value: "] {
        if let Some(rest) = msg.strip_prefix(kind) {
            if let Some((what, want)) = rest.rsplit_once(", expected ") {
                let mut f = found(what);
                let word = f.split('`').nth(1).unwrap_or("").to_ascii_lowercase();
                let number_word = matches!(word.trim_start_matches(['+', '-']), "inf" | "infinity" | "nan");
                if number_word && expected(want) == "a number" {
                    f.push_str(" (YAML writes infinity and not-a-number as .inf, -.inf and .nan)");
                }
                let f = f
                    .strip_suffix(" is not that")
                    .map_or(f.clone(), |n| format!("{n} is not {}", expected(want)));
                return if f.contains(" is not ") {
                    f
                } else {
                    format!("{f}, expected {}", expected(want))
                };
            }
        }
    }
    msg.to_string()
}

#[cfg(test)]
mod tests {
    use super::plain;

    #[test]
    fn rust_type_names_never_reach_the_user() {
        let cases = [
            (
                r#"invalid type: string "abc", expected usize"#,
                "`abc` is text, expected a whole number (0 or more)",
            ),
            (
                "invalid type: integer `-1`, expected usize",
                "-1 is not a whole number (0 or more)",
            ),
            (
                "invalid type: floating point `1.5`, expected usize",
                "1.5 is not a whole number (0 or more)",
            ),
            (
                "invalid type: integer `99999999999999999999999` as u128, expected usize",
                "99999999999999999999999 is too large, expected a whole number (0 or more)",
            ),
            (
                "invalid type: unit value, expected usize",
                "the value is empty, expected a whole number (0 or more)",
            ),
            (
                "invalid type: integer `3`, expected struct FreezeConfig",
                "3 is not a section of keys (`key: value` lines)",
            ),
            (
                r#"invalid type: string "inf", expected f64"#,
                "`inf` is text (YAML writes infinity and not-a-number as .inf, -.inf and .nan), expected a number",
            ),
            ("unknown field `epoch`", "unknown field `epoch`"),
        ];
        for (serde, want) in cases {
            assert_eq!(plain(serde), want);
        }
    }
}
