//! Source kind `stun`: a STUN Binding request (RFC 8489, formerly 5389) over UDP; the server
//! answers with the address and port it saw the request come from.
//!
//! The codec is small and hand-written: a 20-byte header (type, length, magic cookie
//! `0x2112A442`, 96-bit random transaction id) and, in the answer, TLV attributes of which only
//! XOR-MAPPED-ADDRESS (or, from old servers, MAPPED-ADDRESS) is read. It is pure and tested on
//! byte tables; [`StunResolver`] adds the socket.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::{udp, Resolver, SourceError};
use crate::http_failure::resolve_reason;
use crate::net::Family;

/// The fixed value in every RFC 5389/8489 message header.
pub const MAGIC_COOKIE: u32 = 0x2112_A442;
/// Message type of a Binding request.
pub const BINDING_REQUEST: u16 = 0x0001;
/// Message type of a Binding success response.
pub const BINDING_SUCCESS: u16 = 0x0101;
/// Message type of a Binding error response.
pub const BINDING_ERROR: u16 = 0x0111;
/// Attribute MAPPED-ADDRESS (plain; RFC 3489 servers).
pub const ATTR_MAPPED_ADDRESS: u16 = 0x0001;
/// Attribute ERROR-CODE.
pub const ATTR_ERROR_CODE: u16 = 0x0009;
/// Attribute XOR-MAPPED-ADDRESS.
pub const ATTR_XOR_MAPPED_ADDRESS: u16 = 0x0020;
/// Header length.
pub const HEADER_LEN: usize = 20;
/// Largest answer read; a Binding response is well under 100 bytes.
pub const ANSWER_CAP: usize = 1024;

/// A 96-bit transaction id.
pub type TransactionId = [u8; 12];

/// Asks one STUN server for our address.
pub struct StunResolver {
    server: String,
    family: Family,
    label: String,
}

impl StunResolver {
    /// A source asking `server` (`host:port`) over `family`. A host name is resolved at each
    /// lookup (`/etc/hosts`, then the DNS servers of `/etc/resolv.conf`), and only its addresses
    /// of `family` are used.
    pub fn new(server: String, family: Family) -> Self {
        let label = format!("stun {server}");
        StunResolver {
            server,
            family,
            label,
        }
    }

    async fn server_addr(&self) -> Result<SocketAddr, SourceError> {
        let addrs =
            super::names::lookup_host(&self.server)
                .await
                .map_err(|e| SourceError::Transport {
                    message: format!("cannot resolve {}: {}", self.server, resolve_reason(&e)),
                })?;
        addrs
            .into_iter()
            .find(|a| Family::of(a.ip()) == self.family)
            .ok_or_else(|| SourceError::Transport {
                message: format!(
                    "{} has no {} address",
                    self.server,
                    super::family_name(self.family)
                ),
            })
    }
}

#[async_trait::async_trait]
impl Resolver for StunResolver {
    fn label(&self) -> &str {
        &self.label
    }

    fn family(&self) -> Family {
        self.family
    }

    async fn lookup(&self) -> Result<IpAddr, SourceError> {
        let server = self.server_addr().await?;
        let tid: TransactionId = rand::random();
        let socket = udp::bind(self.family).await?;
        let mut buf = [0u8; ANSWER_CAP];
        let n = udp::exchange(&socket, server, &binding_request(&tid), &mut buf).await?;
        parse_binding_response(&buf[..n], &tid).map(|a| a.ip())
    }
}

/// A Binding request with transaction id `tid` and no attributes.
pub fn binding_request(tid: &TransactionId) -> [u8; HEADER_LEN] {
    let mut m = [0u8; HEADER_LEN];
    m[0..2].copy_from_slice(&BINDING_REQUEST.to_be_bytes());
    // Length 0: no attributes.
    m[4..8].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
    m[8..20].copy_from_slice(tid);
    m
}

/// The mapped address in the Binding response `bytes` to the request with `tid`.
///
/// Refused: a message shorter than its header or whose length field disagrees with its size, a
/// missing magic cookie, another transaction id, an error response (with its code and reason) or
/// any type but a Binding success, a truncated attribute or address, an unknown address family,
/// and an answer without a mapped address. XOR-MAPPED-ADDRESS wins over MAPPED-ADDRESS; of
/// repeated attributes the first counts.
pub fn parse_binding_response(
    bytes: &[u8],
    tid: &TransactionId,
) -> Result<SocketAddr, SourceError> {
    if bytes.len() < HEADER_LEN {
        return Err(bad(format!(
            "{} bytes, shorter than a STUN header",
            bytes.len()
        )));
    }
    let msg_type = u16::from_be_bytes([bytes[0], bytes[1]]);
    let length = usize::from(u16::from_be_bytes([bytes[2], bytes[3]]));
    let cookie = u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
    if msg_type & 0xC000 != 0 || cookie != MAGIC_COOKIE {
        return Err(bad("not a STUN message (no magic cookie)".into()));
    }
    if &bytes[8..20] != tid {
        return Err(bad("the transaction id is not the request's".into()));
    }
    if length % 4 != 0 || HEADER_LEN + length != bytes.len() {
        return Err(bad(format!(
            "the header announces {length} bytes of attributes, the message holds {}",
            bytes.len() - HEADER_LEN
        )));
    }
    let attrs = attributes(&bytes[HEADER_LEN..])?;
    match msg_type {
        BINDING_SUCCESS => {}
        BINDING_ERROR => {
            let why = attrs
                .iter()
                .find(|(t, _)| *t == ATTR_ERROR_CODE)
                .map_or_else(|| "no error code".to_string(), |(_, v)| error_code(v));
            return Err(bad(format!("error response: {why}")));
        }
        other => {
            return Err(bad(format!(
                "message type {other:#06x}, not a Binding success"
            )))
        }
    }
    let find = |t: u16| attrs.iter().find(|(at, _)| *at == t).map(|(_, v)| *v);
    if let Some(v) = find(ATTR_XOR_MAPPED_ADDRESS) {
        return address(v, Some(tid));
    }
    if let Some(v) = find(ATTR_MAPPED_ADDRESS) {
        return address(v, None);
    }
    Err(bad("no (XOR-)MAPPED-ADDRESS in the answer".into()))
}

/// Splits the attribute section into (type, value) pairs; each value is padded to 4 bytes.
fn attributes(mut rest: &[u8]) -> Result<Vec<(u16, &[u8])>, SourceError> {
    let mut out = Vec::new();
    while !rest.is_empty() {
        if rest.len() < 4 {
            return Err(bad("truncated attribute header".into()));
        }
        let t = u16::from_be_bytes([rest[0], rest[1]]);
        let len = usize::from(u16::from_be_bytes([rest[2], rest[3]]));
        let padded = len.div_ceil(4) * 4;
        if rest.len() < 4 + padded {
            return Err(bad(format!("truncated attribute {t:#06x}")));
        }
        out.push((t, &rest[4..4 + len]));
        rest = &rest[4 + padded..];
    }
    Ok(out)
}

/// Decodes a (XOR-)MAPPED-ADDRESS value; `xor` holds the transaction id for the XOR form.
fn address(v: &[u8], xor: Option<&TransactionId>) -> Result<SocketAddr, SourceError> {
    let truncated = || bad("truncated mapped address".into());
    if v.len() < 4 {
        return Err(truncated());
    }
    let family = v[1];
    let mut port = u16::from_be_bytes([v[2], v[3]]);
    let cookie = MAGIC_COOKIE.to_be_bytes();
    let mut key = [0u8; 16];
    key[..4].copy_from_slice(&cookie);
    if let Some(tid) = xor {
        port ^= (MAGIC_COOKIE >> 16) as u16;
        key[4..].copy_from_slice(tid);
    }
    let xored = |raw: &[u8], n: usize| -> Vec<u8> {
        raw.iter()
            .take(n)
            .zip(key.iter())
            .map(|(b, k)| if xor.is_some() { b ^ k } else { *b })
            .collect()
    };
    let ip = match family {
        0x01 => {
            let raw = v.get(4..8).ok_or_else(truncated)?;
            let b = xored(raw, 4);
            IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
        }
        0x02 => {
            let raw = v.get(4..20).ok_or_else(truncated)?;
            let mut b = [0u8; 16];
            b.copy_from_slice(&xored(raw, 16));
            IpAddr::V6(Ipv6Addr::from(b))
        }
        other => return Err(bad(format!("unknown address family {other:#04x}"))),
    };
    Ok(SocketAddr::new(ip, port))
}

/// "401 Unauthorized" from an ERROR-CODE value (class in bits 8–10, number in the last byte).
fn error_code(v: &[u8]) -> String {
    if v.len() < 4 {
        return "malformed error code".to_string();
    }
    let code = u16::from(v[2] & 0x07) * 100 + u16::from(v[3]);
    let reason = super::snippet(&v[4..]);
    format!("{code} {reason}").trim_end().to_string()
}

fn bad(message: String) -> SourceError {
    SourceError::Protocol { message }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::testfakes::{stun_response, FakeStun, StunReply};
    use super::*;

    const TID: TransactionId = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12];

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// RFC 5769 §2.2, the IPv4 sample response (its SOFTWARE, MESSAGE-INTEGRITY and FINGERPRINT
    /// attributes are not checked and are skipped).
    const RFC5769_V4: &str = "0101003c 2112a442 b7e7a701 bc34d686 fa87dfae \
        8022000b 74657374 20766563 746f7220 \
        00200008 0001a147 e112a643 \
        00080014 2b91f599 fd9e90c3 8c7489f9 2af9ba53 f06be7d7 \
        80280004 c07d4c96";
    const RFC5769_TID: &str = "b7e7a701bc34d686fa87dfae";
    /// RFC 5769 §2.3, the IPv6 sample response.
    const RFC5769_V6: &str = "01010048 2112a442 b7e7a701 bc34d686 fa87dfae \
        8022000b 74657374 20766563 746f7220 \
        00200014 0002a147 0113a9fa a5d3f179 bc25f4b5 bed2b9d9 \
        00080014 a382954e 4be67bf1 1784c97c 8292c275 bfe3ed41 \
        80280004 c8fb0b4c";

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn tid_of(s: &str) -> TransactionId {
        hex(s).try_into().unwrap()
    }

    #[test]
    fn the_request_is_a_bare_binding_request() {
        let r = binding_request(&TID);
        assert_eq!(&r[..8], &[0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42]);
        assert_eq!(&r[8..], &TID);
    }

    #[test]
    fn the_rfc_5769_samples_decode() {
        let tid = tid_of(RFC5769_TID);
        assert_eq!(
            parse_binding_response(&hex(RFC5769_V4), &tid),
            Ok(sa("192.0.2.1:32853"))
        );
        assert_eq!(
            parse_binding_response(&hex(RFC5769_V6), &tid),
            Ok(sa("[2001:db8:1234:5678:11:2233:4455:6677]:32853"))
        );
    }

    #[test]
    fn responses_table() {
        let v4 = sa("81.2.69.160:40000");
        let v6 = sa("[2a00:1450:4001:80b::200e]:40000");
        let ok = |reply: StunReply| parse_binding_response(&stun_response(&reply, &TID), &TID);
        assert_eq!(ok(StunReply::Xor(v4)), Ok(v4));
        assert_eq!(ok(StunReply::Xor(v6)), Ok(v6));
        assert_eq!(ok(StunReply::Plain(v4)), Ok(v4));
        assert_eq!(ok(StunReply::Plain(v6)), Ok(v6));
        // XOR-MAPPED-ADDRESS wins over a (possibly rewritten by a NAT) MAPPED-ADDRESS.
        assert_eq!(
            ok(StunReply::Both {
                xor: v4,
                plain: sa("10.0.0.1:1")
            }),
            Ok(v4)
        );

        let refused = |bytes: Vec<u8>, want: &str| match parse_binding_response(&bytes, &TID) {
            Err(SourceError::Protocol { message }) => {
                assert!(message.contains(want), "{message:?} lacks {want:?}")
            }
            other => panic!("expected {want:?}, got {other:?}"),
        };
        let good = stun_response(&StunReply::Xor(v4), &TID);
        refused(
            stun_response(&StunReply::WrongTid(v4), &TID),
            "transaction id",
        );
        refused(
            stun_response(&StunReply::Error(401), &TID),
            "error response: 401",
        );
        refused(stun_response(&StunReply::Garbage, &TID), "");
        refused(
            stun_response(&StunReply::Empty, &TID),
            "no (XOR-)MAPPED-ADDRESS",
        );
        refused(good[..19].to_vec(), "shorter than a STUN header");
        refused(Vec::new(), "shorter than a STUN header");
        // The length field says more than was received: the last attribute was cut.
        let mut cut = good.clone();
        cut.truncate(good.len() - 4);
        refused(cut.clone(), "announces");
        // ... and when the header is fixed up, the attribute itself is truncated.
        let len = (cut.len() - HEADER_LEN) as u16;
        cut[2..4].copy_from_slice(&len.to_be_bytes());
        refused(cut, "truncated");
        let mut no_cookie = good.clone();
        no_cookie[4] ^= 0xff;
        refused(no_cookie, "magic cookie");
        let mut request_type = good.clone();
        request_type[0..2].copy_from_slice(&BINDING_REQUEST.to_be_bytes());
        refused(request_type, "not a Binding success");
        let mut family = good.clone();
        family[HEADER_LEN + 5] = 0x03;
        refused(family, "unknown address family");
        // An IPv6 family with an IPv4-sized value.
        let mut short = good;
        short[HEADER_LEN + 5] = 0x02;
        refused(short, "truncated mapped address");
    }

    async fn lookup(server: &FakeStun) -> Result<IpAddr, SourceError> {
        let family = Family::of(server.addr().ip());
        let r = StunResolver::new(server.addr().to_string(), family);
        tokio::time::timeout(Duration::from_secs(2), r.lookup())
            .await
            .expect("the lookup ends by itself")
    }

    #[tokio::test]
    async fn a_fake_server_reports_the_mapped_address() {
        let me = sa("81.2.69.160:5000");
        let server = FakeStun::start("127.0.0.1:0", StunReply::Xor(me)).await;
        assert_eq!(lookup(&server).await, Ok(me.ip()));
        let me6 = sa("[2a00:1450:4001:80b::200e]:5000");
        let server6 = FakeStun::start("[::1]:0", StunReply::Xor(me6)).await;
        assert_eq!(lookup(&server6).await, Ok(me6.ip()));
    }

    #[tokio::test]
    async fn a_fake_server_with_a_wrong_transaction_id_or_garbage_is_refused() {
        let me = sa("81.2.69.160:5000");
        for reply in [StunReply::WrongTid(me), StunReply::Garbage] {
            let server = FakeStun::start("127.0.0.1:0", reply).await;
            assert!(
                matches!(lookup(&server).await, Err(SourceError::Protocol { .. })),
                "{:?}",
                lookup(&server).await
            );
        }
    }

    #[tokio::test]
    async fn only_addresses_of_the_family_are_dialled() {
        let r = StunResolver::new("127.0.0.1:3478".into(), Family::Ipv6);
        match r.lookup().await {
            Err(SourceError::Transport { message }) => {
                assert!(message.contains("has no IPv6 address"), "{message}")
            }
            other => panic!("{other:?}"),
        }
    }
}
