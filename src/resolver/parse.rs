//! Reading an answer strictly (exactly one address, nothing around it but whitespace), and
//! quoting a piece of it in an error, escaped.

use std::net::IpAddr;

use super::SourceError;

/// Longest snippet of a source's answer quoted in an error: enough to recognise an HTML page or a
/// captive portal, too short to leak anything of substance into logs.
pub(super) const SNIPPET_CHARS: usize = 40;

/// Parses an answer that must be exactly one address, surrounded by nothing but ASCII whitespace.
pub(super) fn parse_one_address(text: &str) -> Result<IpAddr, SourceError> {
    text.trim_ascii()
        .parse()
        .map_err(|_| SourceError::NotOneAddress {
            snippet: snippet(text.as_bytes()),
        })
}

/// Like [`parse_one_address`] for bytes that should be UTF-8 text.
pub(super) fn parse_one_address_bytes(bytes: &[u8]) -> Result<IpAddr, SourceError> {
    let text = std::str::from_utf8(bytes).map_err(|_| SourceError::NotOneAddress {
        snippet: snippet(bytes),
    })?;
    parse_one_address(text)
}

/// At most [`SNIPPET_CHARS`] characters of an answer, for error messages, escaped: see
/// [`snippet_of`].
pub(super) fn snippet(bytes: &[u8]) -> String {
    snippet_of(bytes, SNIPPET_CHARS)
}

/// `bytes` (surrounding ASCII whitespace trimmed) escaped the way Rust writes a string literal,
/// at most `chars` characters of it: line breaks and tabs as `\n`, `\r`, `\t`, other ASCII
/// control characters and bytes that are not UTF-8 as `\xNN`, other invisible characters as
/// `\u{…}`, double quotes and backslashes with a backslash. A cut is marked with `…`. The result
/// prints on one line, is readable (`81.2.69.160\n93.184.216.34` shows both lines), and can
/// neither forge a log line nor drive a terminal.
pub(super) fn snippet_of(bytes: &[u8], chars: usize) -> String {
    let mut pieces: Vec<String> = Vec::new();
    for chunk in bytes.trim_ascii().utf8_chunks() {
        pieces.extend(chunk.valid().chars().take(chars + 1).map(|c| match c {
            '\'' => c.to_string(),
            '\n' | '\r' | '\t' => c.escape_debug().to_string(),
            c if c.is_ascii_control() => format!("\\x{:02x}", u32::from(c)),
            c => c.escape_debug().to_string(),
        }));
        pieces.extend(
            chunk
                .invalid()
                .iter()
                .take(chars + 1)
                .map(|b| format!("\\x{b:02x}")),
        );
        if pieces.len() > chars {
            // Enough to fill the snippet; the rest is never shown.
            break;
        }
    }
    let mut out = String::new();
    let mut used = 0;
    for piece in &pieces {
        let n = piece.chars().count();
        if used + n > chars {
            out.push('…');
            break;
        }
        out.push_str(piece);
        used += n;
    }
    out
}
