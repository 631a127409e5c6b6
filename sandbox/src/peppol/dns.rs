//! The SML: a UDP DNS server on 127.0.0.1 for the zone [`super::ZONE`]. A registered
//! participant's name (`base32(sha256(lowercase(id)))`, computed here with `data-encoding`)
//! has one NAPTR record `100 10 "U" "Meta:SMP" "!^.*$!<smp>!" .` with the participant's TTL;
//! any other name under the zone is NXDOMAIN with the zone's SOA; a name outside the zone is
//! REFUSED, as an authoritative server refuses.

use std::net::SocketAddr;

use hickory_proto::{
    op::{Message, MessageType, OpCode, ResponseCode},
    rr::{
        Name, RData, Record, RecordType,
        rdata::{NAPTR, SOA},
    },
};
use sha2::{Digest as _, Sha256};

use super::{Shared, ZONE, lock};

/// The SML label of a participant id, the sandbox's own way.
pub(crate) fn label(participant: &str) -> String {
    let digest = Sha256::digest(participant.to_lowercase().as_bytes());
    data_encoding::BASE32_NOPAD
        .encode(&digest)
        .to_ascii_lowercase()
}

pub(crate) async fn start(
    registry: Shared,
    smp_url: String,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
    let addr = socket.local_addr()?;
    let task = tokio::spawn(async move {
        let mut buffer = vec![0u8; 4096];
        loop {
            let Ok((n, peer)) = socket.recv_from(&mut buffer).await else {
                continue;
            };
            let Ok(query) = Message::from_vec(&buffer[..n]) else {
                continue;
            };
            if let Some(answer) = answer(&registry, &smp_url, &query)
                && let Ok(bytes) = answer.to_vec()
            {
                let _ = socket.send_to(&bytes, peer).await;
            }
        }
    });
    Ok((addr, task))
}

/// The answer to `query`, or `None` to stay silent.
fn answer(registry: &Shared, smp_url: &str, query: &Message) -> Option<Message> {
    let id = query.metadata.id;
    let [question] = &query.queries[..] else {
        return Some(Message::error_msg(id, OpCode::Query, ResponseCode::FormErr));
    };
    if query.metadata.message_type != MessageType::Query {
        return None;
    }
    let mut response = Message::response(id, OpCode::Query);
    response.metadata.authoritative = true;
    response.metadata.recursion_desired = query.metadata.recursion_desired;
    response.add_query(question.clone());
    let name = question.name().to_ascii().to_lowercase();
    let name = name.trim_end_matches('.');
    let suffix = format!(".iso6523-actorid-upis.{ZONE}");
    let Some(label) = name.strip_suffix(&suffix) else {
        response.metadata.response_code = ResponseCode::Refused;
        return Some(response);
    };
    let mut registry = lock(registry);
    *registry.dns_queries.entry(label.to_owned()).or_default() += 1;
    let found = registry
        .participants
        .values()
        .find(|p| self::label(&p.id) == label)
        .cloned();
    let Some(participant) = found else {
        response.metadata.response_code = ResponseCode::NXDomain;
        let zone = Name::from_ascii(format!("{ZONE}.")).ok()?;
        let soa = SOA::new(
            Name::from_ascii(format!("ns.{ZONE}.")).ok()?,
            Name::from_ascii(format!("hostmaster.{ZONE}.")).ok()?,
            1,
            3600,
            600,
            86400,
            60,
        );
        response.add_authority(Record::from_rdata(zone, 60, RData::SOA(soa)));
        return Some(response);
    };
    drop(registry);
    match participant.fault {
        Some(super::Fault::DnsSilent) => return None,
        Some(super::Fault::DnsServfail) => {
            response.metadata.response_code = ResponseCode::ServFail;
            return Some(response);
        }
        _ => {}
    }
    if question.query_type() == RecordType::NAPTR {
        let naptr = NAPTR::new(
            100,
            10,
            b"U".to_vec().into(),
            b"Meta:SMP".to_vec().into(),
            format!("!^.*$!{smp_url}!").into_bytes().into(),
            Name::root(),
        );
        response.add_answer(Record::from_rdata(
            question.name().clone(),
            participant.ttl,
            RData::NAPTR(naptr),
        ));
    }
    Some(response)
}
