//! Source kind `dns`: a "whoami" name asked directly of one DNS server, over UDP.
//!
//! Some DNS operators answer a special name with the address the question came from: OpenDNS
//! `myip.opendns.com` (A or AAAA, at its resolvers), Cloudflare `whoami.cloudflare` (TXT in class
//! CH, at 1.1.1.1), Google `o-o.myaddr.l.google.com` (TXT, at its authoritative servers such as
//! ns1.google.com). The server is an address, never a name, so no other DNS lookup comes first;
//! messages are built and parsed with `hickory-proto`, and only the exact answer to our question
//! is accepted.

use std::net::IpAddr;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, RecordType};

use super::{parse_one_address_bytes, snippet, snippet_of, udp, Resolver, SourceError};
use crate::config::{DnsClass, DnsRecord, DnsSource};
use crate::net::Family;

/// CNAME records followed at most within one answer (resolvers follow up to 8 or so; a whoami
/// name is rarely an alias at all).
const MAX_ALIASES: usize = 8;

/// Largest answer read. Without EDNS a server sends at most 512 bytes over UDP; a larger
/// datagram is refused.
pub const ANSWER_CAP: usize = 1232;

/// Asks one DNS server for one record holding our address.
///
/// Accepted only: an answer with our transaction id and our question, RCODE `NOERROR`, not
/// truncated, holding exactly one record of the type, class and name asked (or of the name it is
/// an alias of, following the CNAME records in the answer); for TXT, that record holds exactly
/// one string, which is exactly one address.
pub struct DnsResolver {
    spec: DnsSource,
    name: Name,
    family: Family,
    label: String,
}

impl DnsResolver {
    /// A source asking `spec` over `family` (the socket is bound to that family's wildcard
    /// address). Fails when the name is not a DNS name.
    pub fn new(spec: DnsSource, family: Family) -> Result<Self, String> {
        let mut name = Name::from_ascii(&spec.name)
            .map_err(|e| format!("{:?} is not a DNS name: {e}", spec.name))?;
        name.set_fqdn(true);
        let label = format!("dns {spec}");
        Ok(DnsResolver {
            spec,
            name,
            family,
            label,
        })
    }
}

#[async_trait::async_trait]
impl Resolver for DnsResolver {
    fn label(&self) -> &str {
        &self.label
    }

    fn family(&self) -> Family {
        self.family
    }

    async fn lookup(&self) -> Result<IpAddr, SourceError> {
        let question = question(&self.name, self.spec.record, self.spec.class);
        let id: u16 = rand::random();
        let request = build_query(id, &question)?;
        let socket = udp::bind(self.family).await?;
        let mut buf = [0u8; ANSWER_CAP];
        let n = udp::exchange(&socket, self.spec.server, &request, &mut buf).await?;
        parse_answer(&buf[..n], id, &question)
    }
}

/// The question for `name`, `record`, `class`.
pub(crate) fn question(name: &Name, record: DnsRecord, class: DnsClass) -> Query {
    let mut q = Query::query(name.clone(), record_type(record));
    q.set_query_class(match class {
        DnsClass::In => DNSClass::IN,
        DnsClass::Ch => DNSClass::CH,
    });
    q
}

fn record_type(record: DnsRecord) -> RecordType {
    match record {
        DnsRecord::A => RecordType::A,
        DnsRecord::Aaaa => RecordType::AAAA,
        DnsRecord::Txt => RecordType::TXT,
    }
}

/// A recursion-desired query with transaction `id` for `question`, in wire format.
pub(crate) fn build_query(id: u16, question: &Query) -> Result<Vec<u8>, SourceError> {
    let mut msg = Message::new();
    msg.set_id(id)
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(true)
        .add_query(question.clone());
    msg.to_vec()
        .map_err(|e| protocol(format!("cannot build the query: {e}")))
}

/// The address in the answer `bytes` to the query `id` for `question`, or why there is none.
pub(crate) fn parse_answer(bytes: &[u8], id: u16, question: &Query) -> Result<IpAddr, SourceError> {
    let msg = Message::from_vec(bytes).map_err(|e| {
        protocol(format!(
            "not a DNS message ({}): \"{}\"",
            snippet_of(e.to_string().as_bytes(), 80),
            snippet(bytes)
        ))
    })?;
    if msg.id() != id {
        return Err(protocol(format!(
            "answer id {:#06x} does not match the query's {id:#06x}",
            msg.id()
        )));
    }
    if msg.message_type() != MessageType::Response || msg.op_code() != OpCode::Query {
        return Err(protocol("not an answer to a standard query".into()));
    }
    if msg.truncated() {
        return Err(protocol(
            "the answer is truncated (TC); it is not asked again over TCP".into(),
        ));
    }
    if msg.queries().len() != 1 || !same_question(&msg.queries()[0], question) {
        return Err(protocol("the answer is for another question".into()));
    }
    if msg.response_code() != ResponseCode::NoError {
        return Err(SourceError::Dns {
            rcode: format!("{:?}", msg.response_code()),
        });
    }
    let rtype = question.query_type();
    let chain = alias_chain(&msg, question);
    let name = chain.last().unwrap_or(question.name());
    let records: Vec<_> = msg
        .answers()
        .iter()
        .filter(|r| {
            r.record_type() == rtype && r.dns_class() == question.query_class() && r.name() == name
        })
        .collect();
    let [record] = records.as_slice() else {
        if chain.is_empty() {
            return Err(SourceError::RecordCount {
                record: rtype_name(rtype),
                count: records.len(),
            });
        }
        let names: Vec<String> = std::iter::once(question.name())
            .chain(&chain)
            .map(|n| n.to_string().trim_end_matches('.').to_string())
            .collect();
        return Err(SourceError::AliasRecordCount {
            chain: names.join(" → "),
            record: rtype_name(rtype),
            count: records.len(),
        });
    };
    match record.data() {
        RData::A(a) => Ok(IpAddr::V4(a.0)),
        RData::AAAA(a) => Ok(IpAddr::V6(a.0)),
        RData::TXT(txt) => match txt.txt_data() {
            [one] => parse_one_address_bytes(one),
            several => Err(SourceError::NotOneAddress {
                snippet: snippet(&several.join(&b' ')),
            }),
        },
        _ => Err(protocol(format!(
            "unexpected {} record data",
            rtype_name(rtype)
        ))),
    }
}

/// The names the question's name is an alias of, in order, following the CNAME records of the
/// answer itself (as a resolver includes them): `myip.example` → `a.example` → `b.example` gives
/// `[a.example, b.example]`. Empty when the name is no alias. At most [`MAX_ALIASES`] steps, and
/// a loop ends the chain.
fn alias_chain(msg: &Message, question: &Query) -> Vec<Name> {
    let mut chain: Vec<Name> = Vec::new();
    let mut name = question.name();
    while chain.len() < MAX_ALIASES {
        let target = msg.answers().iter().find_map(|r| match r.data() {
            RData::CNAME(cname) if r.dns_class() == question.query_class() && r.name() == name => {
                Some(&cname.0)
            }
            _ => None,
        });
        match target {
            Some(t) if t != question.name() && !chain.contains(t) => {
                chain.push(t.clone());
                name = t;
            }
            _ => break,
        }
    }
    chain
}

fn same_question(a: &Query, b: &Query) -> bool {
    a.name() == b.name() && a.query_type() == b.query_type() && a.query_class() == b.query_class()
}

fn rtype_name(t: RecordType) -> &'static str {
    match t {
        RecordType::A => "A",
        RecordType::AAAA => "AAAA",
        RecordType::TXT => "TXT",
        _ => "other",
    }
}

fn protocol(message: String) -> SourceError {
    SourceError::Protocol { message }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::{Duration, Instant};

    use hickory_proto::rr::rdata::{A, AAAA, CNAME, TXT};
    use hickory_proto::rr::Record;

    use super::super::testfakes::{DnsReply, FakeDns};
    use super::*;

    const ME: &str = "81.2.69.160";

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn spec(server: SocketAddr, name: &str, record: DnsRecord, class: DnsClass) -> DnsSource {
        DnsSource {
            server,
            name: name.into(),
            record,
            class,
        }
    }

    fn fqdn(s: &str) -> Name {
        let mut n = Name::from_ascii(s).unwrap();
        n.set_fqdn(true);
        n
    }

    /// An answer to `q` with `id`, built by the same crate, then edited by `edit`.
    fn answer(id: u16, q: &Query, data: Vec<RData>, edit: impl FnOnce(&mut Message)) -> Vec<u8> {
        let mut msg = Message::error_msg(id, OpCode::Query, ResponseCode::NoError);
        msg.add_query(q.clone());
        for d in data {
            let mut r = Record::from_rdata(q.name().clone(), 60, d);
            r.set_dns_class(q.query_class());
            msg.add_answer(r);
        }
        edit(&mut msg);
        msg.to_vec().unwrap()
    }

    #[test]
    fn answers_are_checked_strictly() {
        let qa = question(&fqdn("myip.opendns.com"), DnsRecord::A, DnsClass::In);
        let qt = question(&fqdn("whoami.cloudflare"), DnsRecord::Txt, DnsClass::Ch);
        let a = |s: &str| RData::A(A(s.parse().unwrap()));
        let txt =
            |parts: &[&str]| RData::TXT(TXT::new(parts.iter().map(|s| s.to_string()).collect()));
        let ok = |_: &mut Message| {};
        let v6 = RData::AAAA(AAAA("2a00:1450:4001:80b::200e".parse().unwrap()));

        assert_eq!(
            parse_answer(&answer(7, &qa, vec![a(ME)], ok), 7, &qa),
            Ok(ip(ME))
        );
        assert_eq!(
            parse_answer(&answer(7, &qt, vec![txt(&[ME])], ok), 7, &qt),
            Ok(ip(ME))
        );
        let qaaaa = question(&fqdn("myip.opendns.com"), DnsRecord::Aaaa, DnsClass::In);
        assert_eq!(
            parse_answer(&answer(7, &qaaaa, vec![v6], ok), 7, &qaaaa),
            Ok(ip("2a00:1450:4001:80b::200e"))
        );

        let protocol_error =
            |bytes: Vec<u8>, q: &Query, want: &str| match parse_answer(&bytes, 7, q) {
                Err(SourceError::Protocol { message }) => {
                    assert!(message.contains(want), "{message:?} lacks {want:?}")
                }
                other => panic!("expected a protocol error with {want:?}, got {other:?}"),
            };
        protocol_error(answer(8, &qa, vec![a(ME)], ok), &qa, "does not match");
        protocol_error(
            answer(7, &qa, vec![a(ME)], |m| {
                m.set_truncated(true);
            }),
            &qa,
            "truncated",
        );
        protocol_error(
            answer(7, &qa, vec![a(ME)], |m| {
                m.set_message_type(MessageType::Query);
            }),
            &qa,
            "not an answer",
        );
        let other = question(&fqdn("example.com"), DnsRecord::A, DnsClass::In);
        protocol_error(answer(7, &other, vec![a(ME)], ok), &qa, "another question");
        // The same name in class IN is not the CH question.
        let qt_in = question(&fqdn("whoami.cloudflare"), DnsRecord::Txt, DnsClass::In);
        protocol_error(
            answer(7, &qt_in, vec![txt(&[ME])], ok),
            &qt,
            "another question",
        );
        protocol_error(b"\x00\x07garbage".to_vec(), &qa, "not a DNS message");
        protocol_error(Vec::new(), &qa, "not a DNS message");

        assert_eq!(
            parse_answer(
                &answer(7, &qa, vec![], |m| {
                    m.set_response_code(ResponseCode::NXDomain);
                }),
                7,
                &qa
            ),
            Err(SourceError::Dns {
                rcode: "NXDomain".into()
            })
        );
        assert_eq!(
            parse_answer(&answer(7, &qa, vec![a(ME), a("81.2.69.161")], ok), 7, &qa),
            Err(SourceError::RecordCount {
                record: "A",
                count: 2
            })
        );
        assert_eq!(
            parse_answer(&answer(7, &qa, vec![], ok), 7, &qa),
            Err(SourceError::RecordCount {
                record: "A",
                count: 0
            })
        );
        // A record for another name does not count.
        let elsewhere = answer(7, &qa, vec![], |m| {
            m.add_answer(Record::from_rdata(fqdn("evil.example"), 60, a(ME)));
        });
        assert_eq!(
            parse_answer(&elsewhere, 7, &qa),
            Err(SourceError::RecordCount {
                record: "A",
                count: 0
            })
        );
        for bad in [vec![ME, ME], vec!["ip=81.2.69.160"], vec![""]] {
            assert!(
                matches!(
                    parse_answer(&answer(7, &qt, vec![txt(&bad)], ok), 7, &qt),
                    Err(SourceError::NotOneAddress { .. })
                ),
                "{bad:?}"
            );
        }
        assert!(matches!(
            parse_answer(&answer(7, &qt, vec![txt(&[ME]), txt(&[ME])], ok), 7, &qt),
            Err(SourceError::RecordCount { count: 2, .. })
        ));
    }

    #[test]
    fn a_cname_chain_in_the_answer_is_followed_and_reported() {
        let qa = question(&fqdn("myip.example.net"), DnsRecord::A, DnsClass::In);
        let cname = |from: &str, to: &str| {
            Record::from_rdata(fqdn(from), 60, RData::CNAME(CNAME(fqdn(to))))
        };
        let a = |name: &str, ip: &str| {
            Record::from_rdata(fqdn(name), 60, RData::A(A(ip.parse().unwrap())))
        };
        let with = |records: Vec<Record>| {
            answer(7, &qa, vec![], move |m| {
                for r in records {
                    m.add_answer(r);
                }
            })
        };
        // Followed to its end: the address there is the answer.
        let bytes = with(vec![
            cname("myip.example.net", "edge.example.net"),
            cname("edge.example.net", "pop3.example.org"),
            a("pop3.example.org", ME),
        ]);
        assert_eq!(parse_answer(&bytes, 7, &qa), Ok(ip(ME)));
        // A chain that ends without the record says what it found, not "got 0 A records".
        let bytes = with(vec![
            cname("myip.example.net", "edge.example.net"),
            a("elsewhere.example", ME),
        ]);
        let e = parse_answer(&bytes, 7, &qa).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the name is an alias (myip.example.net → edge.example.net); expected exactly one A \
             record at its end, got 0"
        );
        // A loop ends the chain.
        let bytes = with(vec![
            cname("myip.example.net", "b.example"),
            cname("b.example", "myip.example.net"),
        ]);
        assert!(matches!(
            parse_answer(&bytes, 7, &qa),
            Err(SourceError::AliasRecordCount { count: 0, .. })
        ));
    }

    #[test]
    fn queries_ask_for_recursion_and_carry_the_question() {
        let q = question(&fqdn("whoami.cloudflare"), DnsRecord::Txt, DnsClass::Ch);
        let bytes = build_query(0x1234, &q).unwrap();
        let msg = Message::from_vec(&bytes).unwrap();
        assert_eq!(msg.id(), 0x1234);
        assert!(msg.recursion_desired());
        assert_eq!(msg.message_type(), MessageType::Query);
        assert_eq!(msg.queries(), [q]);
        assert!(msg.answers().is_empty() && msg.additionals().is_empty());
    }

    async fn lookup(
        server: &FakeDns,
        record: DnsRecord,
        class: DnsClass,
    ) -> Result<IpAddr, SourceError> {
        let family = Family::of(server.addr().ip());
        let r = DnsResolver::new(
            spec(server.addr(), "myip.opendns.com", record, class),
            family,
        )
        .unwrap();
        tokio::time::timeout(Duration::from_secs(2), r.lookup())
            .await
            .expect("the lookup ends by itself")
    }

    #[tokio::test]
    async fn a_fake_server_answers_a_and_txt_in_class_ch() {
        let server = FakeDns::start("127.0.0.1:0", DnsReply::Records(vec![ME.into()])).await;
        assert_eq!(
            lookup(&server, DnsRecord::A, DnsClass::In).await,
            Ok(ip(ME))
        );
        assert_eq!(
            lookup(&server, DnsRecord::Txt, DnsClass::Ch).await,
            Ok(ip(ME))
        );
        assert_eq!(server.hits(), 2);
        let seen = server.questions();
        assert_eq!(seen[1].query_class(), DNSClass::CH);
        assert_eq!(seen[1].query_type(), RecordType::TXT);
    }

    #[tokio::test]
    async fn a_fake_server_answers_aaaa_over_ipv6() {
        let v6 = "2a00:1450:4001:80b::200e";
        let server = FakeDns::start("[::1]:0", DnsReply::Records(vec![v6.into()])).await;
        assert_eq!(
            lookup(&server, DnsRecord::Aaaa, DnsClass::In).await,
            Ok(ip(v6))
        );
    }

    #[tokio::test]
    async fn errors_from_a_fake_server() {
        let nx = FakeDns::start("127.0.0.1:0", DnsReply::NxDomain).await;
        assert_eq!(
            lookup(&nx, DnsRecord::A, DnsClass::In).await,
            Err(SourceError::Dns {
                rcode: "NXDomain".into()
            })
        );
        let two = FakeDns::start(
            "127.0.0.1:0",
            DnsReply::Records(vec![ME.into(), "81.2.69.161".into()]),
        )
        .await;
        assert_eq!(
            lookup(&two, DnsRecord::A, DnsClass::In).await,
            Err(SourceError::RecordCount {
                record: "A",
                count: 2
            })
        );
        let wrong_id = FakeDns::start("127.0.0.1:0", DnsReply::WrongId(ME.into())).await;
        assert!(matches!(
            lookup(&wrong_id, DnsRecord::A, DnsClass::In).await,
            Err(SourceError::Protocol { message }) if message.contains("does not match")
        ));
        let garbage = FakeDns::start("127.0.0.1:0", DnsReply::Garbage).await;
        assert!(matches!(
            lookup(&garbage, DnsRecord::A, DnsClass::In).await,
            Err(SourceError::Protocol { message }) if message.contains("not a DNS message")
        ));
    }

    #[tokio::test]
    async fn a_lost_datagram_is_sent_again() {
        let server = FakeDns::start("127.0.0.1:0", DnsReply::Records(vec![ME.into()]))
            .await
            .drop_first(1);
        let start = Instant::now();
        assert_eq!(
            lookup(&server, DnsRecord::A, DnsClass::In).await,
            Ok(ip(ME))
        );
        assert!(
            start.elapsed() >= udp::FIRST_RETRANSMIT,
            "{:?}",
            start.elapsed()
        );
        assert_eq!(server.hits(), 2);
    }

    #[tokio::test]
    async fn a_closed_port_is_a_transport_error() {
        let port = {
            let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            s.local_addr().unwrap().port()
        };
        let r = DnsResolver::new(
            spec(
                SocketAddr::from(([127, 0, 0, 1], port)),
                "myip.opendns.com",
                DnsRecord::A,
                DnsClass::In,
            ),
            Family::Ipv4,
        )
        .unwrap();
        let got = tokio::time::timeout(Duration::from_secs(2), r.lookup()).await;
        assert!(
            matches!(got, Ok(Err(SourceError::Transport { .. }))),
            "{got:?}"
        );
    }

    #[test]
    fn labels_name_the_question_and_the_server() {
        let r = DnsResolver::new(
            spec(
                "1.1.1.1:53".parse().unwrap(),
                "whoami.cloudflare",
                DnsRecord::Txt,
                DnsClass::Ch,
            ),
            Family::Ipv4,
        )
        .unwrap();
        assert_eq!(r.label(), "dns whoami.cloudflare TXT/CH @1.1.1.1:53");
        assert!(DnsResolver::new(
            spec(
                "1.1.1.1:53".parse().unwrap(),
                "a..b",
                DnsRecord::A,
                DnsClass::In
            ),
            Family::Ipv4
        )
        .is_err());
    }
}
