//! Writing JSON string literals by hand, byte for byte as `serde_json` writes them: the JWT
//! (header and claims), the canonical capability, error bodies and policy substitutions are
//! all built this way, without an intermediate `Value`.

/// Append `s` as a JSON string literal (quotes included).
pub fn push_string(out: &mut String, s: &str) {
    out.push('"');
    push_escaped(out, s);
    out.push('"');
}

/// Append the escaped body of a JSON string literal (no quotes): `"` `\` and the control
/// characters escaped exactly as `serde_json` escapes them; everything else as it is.
pub fn push_escaped(out: &mut String, s: &str) {
    // Writing to a `String` cannot fail.
    let _ = write_escaped(out, s, false);
}

/// Write the escaped body of a JSON string literal to `out`, as [`push_escaped`] does; with
/// `escape_del`, DEL (0x7f) is written `\u007f` too (log lines, read on terminals).
pub fn write_escaped<W: std::fmt::Write + ?Sized>(out: &mut W, s: &str, escape_del: bool) -> std::fmt::Result {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let short = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0x00..=0x1f => "",
            0x7f if escape_del => "",
            _ => continue,
        };
        // `b` is ASCII, so `i` is a char boundary.
        out.write_str(&s[start..i])?;
        if short.is_empty() {
            out.write_str("\\u00")?;
            out.write_char(char::from(HEX[usize::from(b >> 4)]))?;
            out.write_char(char::from(HEX[usize::from(b & 0xf)]))?;
        } else {
            out.write_str(short)?;
        }
        start = i + 1;
    }
    out.write_str(&s[start..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_matches_serde_json() {
        for s in [
            "plain",
            "q\"uote",
            "back\\slash",
            "ctl\u{1}\u{1f}\n\t\r\u{8}\u{c}",
            "\u{0}\u{1}\u{8}\u{c}\n\r\t\u{1f}\u{7f}x",
            "uni ✓ \u{7f}",
            "</script>",
        ] {
            let mut out = String::new();
            push_string(&mut out, s);
            assert_eq!(out, serde_json::to_string(s).unwrap());
        }
    }
}
