//! Fake DNS and STUN servers on loopback UDP for resolver tests, with faults to inject.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use hickory_proto::op::{Message, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, TXT};
use hickory_proto::rr::{RData, Record, RecordType};
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

use super::stun::{
    TransactionId, ATTR_ERROR_CODE, ATTR_MAPPED_ADDRESS, ATTR_XOR_MAPPED_ADDRESS, BINDING_ERROR,
    BINDING_SUCCESS, HEADER_LEN, MAGIC_COOKIE,
};

/// Bookkeeping shared by the fake servers and their tests.
#[derive(Default)]
struct Seen {
    hits: AtomicUsize,
    /// Requests to ignore before answering (to exercise retransmission).
    drop_first: AtomicUsize,
    questions: Mutex<Vec<Query>>,
}

/// A UDP server on loopback answering every datagram with `reply(request)`.
struct Udp {
    addr: SocketAddr,
    seen: Arc<Seen>,
    task: JoinHandle<()>,
}

impl Udp {
    async fn start(
        bind: &str,
        reply: impl Fn(&[u8], &Seen) -> Option<Vec<u8>> + Send + 'static,
    ) -> Udp {
        let socket = UdpSocket::bind(bind).await.unwrap();
        let addr = socket.local_addr().unwrap();
        let seen = Arc::new(Seen::default());
        let shared = seen.clone();
        let task = tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            while let Ok((n, from)) = socket.recv_from(&mut buf).await {
                shared.hits.fetch_add(1, Ordering::SeqCst);
                let skip = shared
                    .drop_first
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |d| d.checked_sub(1))
                    .is_ok();
                if skip {
                    continue;
                }
                if let Some(answer) = reply(&buf[..n], &shared) {
                    let _ = socket.send_to(&answer, from).await;
                }
            }
        });
        Udp { addr, seen, task }
    }
}

impl Drop for Udp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// How the fake DNS server answers.
#[derive(Clone, Debug)]
pub(super) enum DnsReply {
    /// One record per entry, of the type and class asked: the address for A and AAAA, the text
    /// as one string for TXT.
    Records(Vec<String>),
    /// RCODE NXDOMAIN, no records.
    NxDomain,
    /// A correct single-record answer, but with another transaction id.
    WrongId(String),
    /// Bytes that are no DNS message.
    Garbage,
}

/// A fake DNS server on UDP.
pub(super) struct FakeDns {
    udp: Udp,
}

impl FakeDns {
    /// Binds `bind` (`127.0.0.1:0` or `[::1]:0`) and answers every query as `reply` says.
    pub(super) async fn start(bind: &str, reply: DnsReply) -> FakeDns {
        let udp = Udp::start(bind, move |request, seen| {
            let query = Message::from_vec(request).ok()?;
            let q = query.queries().first()?.clone();
            seen.questions.lock().unwrap().push(q.clone());
            let mut id = query.id();
            let mut msg = Message::error_msg(id, OpCode::Query, ResponseCode::NoError);
            msg.set_recursion_desired(query.recursion_desired())
                .add_query(q.clone());
            let records = match &reply {
                DnsReply::Garbage => return Some(b"\xde\xad garbage, not DNS".to_vec()),
                DnsReply::NxDomain => {
                    msg.set_response_code(ResponseCode::NXDomain);
                    vec![]
                }
                DnsReply::WrongId(one) => {
                    id = id.wrapping_add(1);
                    vec![one.clone()]
                }
                DnsReply::Records(all) => all.clone(),
            };
            msg.set_id(id);
            for r in records {
                let data = match q.query_type() {
                    RecordType::A => RData::A(A(r.parse().ok()?)),
                    RecordType::AAAA => RData::AAAA(AAAA(r.parse().ok()?)),
                    _ => RData::TXT(TXT::new(vec![r])),
                };
                let mut record = Record::from_rdata(q.name().clone(), 60, data);
                record.set_dns_class(q.query_class());
                msg.add_answer(record);
            }
            msg.to_vec().ok()
        })
        .await;
        FakeDns { udp }
    }

    /// Ignores the first `n` queries (a lost datagram).
    pub(super) fn drop_first(self, n: usize) -> FakeDns {
        self.udp.seen.drop_first.store(n, Ordering::SeqCst);
        self
    }

    pub(super) fn addr(&self) -> SocketAddr {
        self.udp.addr
    }

    /// Datagrams received so far.
    pub(super) fn hits(&self) -> usize {
        self.udp.seen.hits.load(Ordering::SeqCst)
    }

    /// The questions received so far.
    pub(super) fn questions(&self) -> Vec<Query> {
        self.udp.seen.questions.lock().unwrap().clone()
    }
}

/// How the fake STUN server answers (and what [`stun_response`] encodes).
#[derive(Clone, Copy, Debug)]
pub(super) enum StunReply {
    /// Binding success with XOR-MAPPED-ADDRESS.
    Xor(SocketAddr),
    /// Binding success with a plain MAPPED-ADDRESS only (an RFC 3489 server).
    Plain(SocketAddr),
    /// Both, with different addresses.
    Both { xor: SocketAddr, plain: SocketAddr },
    /// A success for another transaction.
    WrongTid(SocketAddr),
    /// Binding error response with this code.
    Error(u16),
    /// A success without attributes.
    Empty,
    /// Bytes that are no STUN message.
    Garbage,
}

/// A fake STUN server on UDP.
pub(super) struct FakeStun {
    udp: Udp,
}

impl FakeStun {
    /// Binds `bind` and answers every Binding request as `reply` says.
    pub(super) async fn start(bind: &str, reply: StunReply) -> FakeStun {
        let udp = Udp::start(bind, move |request, _| {
            let tid: TransactionId = request.get(8..HEADER_LEN)?.try_into().ok()?;
            Some(stun_response(&reply, &tid))
        })
        .await;
        FakeStun { udp }
    }

    pub(super) fn addr(&self) -> SocketAddr {
        self.udp.addr
    }
}

/// Encodes `reply` as the answer to a request with `tid`, independently of the codec under test.
pub(super) fn stun_response(reply: &StunReply, tid: &TransactionId) -> Vec<u8> {
    let mut attrs = Vec::new();
    let mut msg_type = BINDING_SUCCESS;
    let mut tid = *tid;
    match *reply {
        StunReply::Garbage => return b"HTTP/1.1 400 Bad Request\r\n\r\n".to_vec(),
        StunReply::Xor(a) => attrs.push((ATTR_XOR_MAPPED_ADDRESS, addr_value(a, Some(&tid)))),
        StunReply::Plain(a) => attrs.push((ATTR_MAPPED_ADDRESS, addr_value(a, None))),
        StunReply::Both { xor, plain } => {
            attrs.push((ATTR_MAPPED_ADDRESS, addr_value(plain, None)));
            attrs.push((ATTR_XOR_MAPPED_ADDRESS, addr_value(xor, Some(&tid))));
        }
        StunReply::WrongTid(a) => {
            tid[0] ^= 0xff;
            attrs.push((ATTR_XOR_MAPPED_ADDRESS, addr_value(a, Some(&tid))));
        }
        StunReply::Error(code) => {
            msg_type = BINDING_ERROR;
            let mut v = vec![0, 0, (code / 100) as u8, (code % 100) as u8];
            v.extend_from_slice(b"Unauthorized");
            attrs.push((ATTR_ERROR_CODE, v));
        }
        StunReply::Empty => {}
    }
    let mut body = Vec::new();
    for (t, v) in attrs {
        body.extend_from_slice(&t.to_be_bytes());
        body.extend_from_slice(&(v.len() as u16).to_be_bytes());
        body.extend_from_slice(&v);
        while body.len() % 4 != 0 {
            body.push(0);
        }
    }
    let mut m = Vec::new();
    m.extend_from_slice(&msg_type.to_be_bytes());
    m.extend_from_slice(&(body.len() as u16).to_be_bytes());
    m.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
    m.extend_from_slice(&tid);
    m.extend_from_slice(&body);
    m
}

fn addr_value(a: SocketAddr, xor: Option<&TransactionId>) -> Vec<u8> {
    let mut key = MAGIC_COOKIE.to_be_bytes().to_vec();
    key.extend_from_slice(xor.map_or(&[0u8; 12], |t| t));
    let x = |i: usize, b: u8| if xor.is_some() { b ^ key[i] } else { b };
    let port = if xor.is_some() {
        a.port() ^ (MAGIC_COOKIE >> 16) as u16
    } else {
        a.port()
    };
    let (family, octets): (u8, Vec<u8>) = match a {
        SocketAddr::V4(v4) => (1, v4.ip().octets().to_vec()),
        SocketAddr::V6(v6) => (2, v6.ip().octets().to_vec()),
    };
    let mut v = vec![0, family];
    v.extend_from_slice(&port.to_be_bytes());
    v.extend(octets.iter().enumerate().map(|(i, b)| x(i, *b)));
    v
}
