//! Random identifiers and secrets in the shapes the real services use.

use rand::Rng;

/// A random version-4 UUID in its hyphenated form (Neutron and Nova ids, Salt uuids).
pub(crate) fn uuid4() -> String {
    let mut rng = rand::rng();
    let a: u32 = rng.random();
    let b: u16 = rng.random();
    let c: u16 = rng.random();
    let d: u16 = rng.random();
    let e: u64 = rng.random::<u64>() & 0xffff_ffff_ffff;
    format!(
        "{a:08x}-{b:04x}-{:04x}-{:04x}-{e:012x}",
        (c & 0x0fff) | 0x4000,
        (d & 0x3fff) | 0x8000
    )
}

/// 32 lowercase hex digits (Keystone ids: projects, users, endpoints, application credentials).
pub(crate) fn hex32() -> String {
    let mut rng = rand::rng();
    format!("{:016x}{:016x}", rng.random::<u64>(), rng.random::<u64>())
}

/// `prefix` followed by `len` random characters of the URL-safe base64 alphabet.
pub(crate) fn urlsafe(prefix: &str, len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut rng = rand::rng();
    let mut out = String::with_capacity(prefix.len() + len);
    out.push_str(prefix);
    out.extend((0..len).map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())])));
    out
}

/// An OpenStack request id, `req-<uuid>`.
pub(crate) fn request_id() -> String {
    format!("req-{}", uuid4())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        let u = uuid4();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert!(matches!(&u[19..20], "8" | "9" | "a" | "b"), "{u}");
        let h = hex32();
        assert_eq!(h.len(), 32);
        assert!(h
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        let t = urlsafe("gAAAAAB", 20);
        assert!(t.starts_with("gAAAAAB") && t.len() == 27);
        assert!(t
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert!(request_id().starts_with("req-"));
        assert_ne!(uuid4(), uuid4());
    }
}
