//! The SML's answer: the U-NAPTR `Meta:SMP` record of a participant's SML name (RFC 4848, as
//! the Peppol SML 1.3 and BDXL publish it), read with one DNS query over UDP.
//!
//! Chosen: `hickory-proto` for the DNS messages (a maintained codec) and a forty-line exchange
//! here, rather than `hickory-resolver`: the lookup has to tell NXDOMAIN ("not registered", an
//! answer) from SERVFAIL or silence (temporary, an error), and to see the record's TTL, while
//! the resolver folds these into its own retries over several servers, search domains and its
//! own cache. `asx-rs` (its `peppol` feature does BDXL and SMP signatures) was not taken: it
//! brings OpenSSL, which `deny.toml` bans (one TLS stack: rustls with ring).

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    time::Duration,
};

use hickory_proto::{
    op::{Message, MessageType, Query, ResponseCode},
    rr::{Name, RData, RecordType},
};
use postbud_channel::ChannelError;

/// The U-NAPTR service that names a participant's SMP.
pub const META_SMP: &str = "Meta:SMP";

/// Longest a "not registered" answer is kept when the SML's answer carries no SOA to say.
const DEFAULT_NEGATIVE_TTL: Duration = Duration::from_secs(300);

/// What the SML says about one name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The SMP's base URL (`https://smp.example.org/smp`, no trailing slash), and the record's
    /// time to live.
    Smp {
        /// The SMP's base URL.
        url: url::Url,
        /// The NAPTR record's TTL.
        ttl: Duration,
    },
    /// No SMP: NXDOMAIN, or the name has no `U`/`Meta:SMP` record.
    None {
        /// Why, for the history.
        reason: String,
        /// The negative answer's TTL (the SOA's, when the server sent one).
        ttl: Duration,
    },
}

/// The DNS server to ask when the settings name none: the first `nameserver` of
/// `/etc/resolv.conf` (read with `resolv-conf`, as hickory's own resolver reads it).
pub fn system_server() -> Result<SocketAddr, String> {
    let text = std::fs::read("/etc/resolv.conf")
        .map_err(|e| format!("cannot read /etc/resolv.conf for the DNS server: {e}"))?;
    let config = resolv_conf::Config::parse(&text)
        .map_err(|e| format!("/etc/resolv.conf does not parse: {e}"))?;
    let ip: IpAddr = config
        .nameservers
        .first()
        .ok_or("/etc/resolv.conf names no nameserver; set the lookup's `dns`")?
        .into();
    Ok(SocketAddr::new(ip, 53))
}

/// Asks `server` for the NAPTR records of `name` and picks the SMP, within `timeout`.
pub async fn find_smp(
    server: SocketAddr,
    name: &str,
    timeout: Duration,
) -> Result<Answer, ChannelError> {
    let response = match tokio::time::timeout(timeout, exchange(server, name)).await {
        Ok(answer) => answer?,
        Err(_) => {
            return Err(ChannelError::timed_out(format!(
                "the DNS server {server} did not answer the NAPTR query for `{name}` within {timeout:?}"
            )));
        }
    };
    read_answer(&response, name)
}

/// One query, one answer with the same id and question (others are ignored: a late answer to
/// an earlier query, or a spoofed one).
async fn exchange(server: SocketAddr, name: &str) -> Result<Message, ChannelError> {
    let mut fqdn = Name::from_ascii(name)
        .map_err(|e| ChannelError::permanent(format!("`{name}` is not a DNS name: {e}")))?;
    fqdn.set_fqdn(true);
    let mut query = Message::query();
    query.metadata.recursion_desired = true;
    query.add_query(Query::query(fqdn.clone(), RecordType::NAPTR));
    let id = query.metadata.id;
    let bytes = query
        .to_vec()
        .map_err(|e| ChannelError::permanent(format!("encoding the DNS query failed: {e}")))?;
    let local: SocketAddr = match server {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let unavailable = |what: &str, e: std::io::Error| {
        ChannelError::unavailable(format!("DNS {what} with {server} failed: {e}"))
    };
    let socket = tokio::net::UdpSocket::bind(local)
        .await
        .map_err(|e| unavailable("socket", e))?;
    socket
        .connect(server)
        .await
        .map_err(|e| unavailable("connect", e))?;
    socket
        .send(&bytes)
        .await
        .map_err(|e| unavailable("send", e))?;
    let mut buffer = vec![0u8; 4096];
    loop {
        let n = socket
            .recv(&mut buffer)
            .await
            .map_err(|e| unavailable("receive", e))?;
        let Ok(answer) = Message::from_vec(&buffer[..n]) else {
            continue;
        };
        let same_question = answer.queries.len() == 1
            && answer.queries[0].name().eq_case(&fqdn)
            && answer.queries[0].query_type() == RecordType::NAPTR;
        if answer.metadata.id == id
            && answer.metadata.message_type == MessageType::Response
            && same_question
        {
            return Ok(answer);
        }
    }
}

/// The SMP of an answer, or why there is none.
fn read_answer(response: &Message, name: &str) -> Result<Answer, ChannelError> {
    let code = response.metadata.response_code;
    if code == ResponseCode::NXDomain {
        return Ok(Answer::None {
            reason: format!("the SML has no `{name}` (NXDOMAIN): not registered in Peppol"),
            ttl: negative_ttl(response),
        });
    }
    if code != ResponseCode::NoError {
        return Err(ChannelError::unavailable(format!(
            "the DNS server answered {code} (rcode {}) for the NAPTR records of `{name}`",
            u16::from(code)
        )));
    }
    if response.metadata.truncation {
        return Err(ChannelError::unavailable(format!(
            "the DNS answer for `{name}` was truncated (TC) and TCP is not tried"
        )));
    }
    let mut candidates: Vec<(u16, u16, &[u8], u32)> = response
        .answers
        .iter()
        .filter_map(|record| match &record.data {
            RData::NAPTR(naptr)
                if naptr.flags.eq_ignore_ascii_case(b"u")
                    && naptr.services.eq_ignore_ascii_case(META_SMP.as_bytes()) =>
            {
                Some((naptr.order, naptr.preference, &naptr.regexp[..], record.ttl))
            }
            _ => None,
        })
        .collect();
    if candidates.is_empty() {
        return Ok(Answer::None {
            reason: format!(
                "`{name}` has no U-NAPTR `{META_SMP}` record: not registered in Peppol"
            ),
            ttl: negative_ttl(response),
        });
    }
    candidates.sort_by_key(|(order, preference, ..)| (*order, *preference));
    let mut refused = Vec::new();
    for (_, _, regexp, ttl) in candidates {
        match smp_url(regexp) {
            Ok(url) => {
                return Ok(Answer::Smp {
                    url,
                    ttl: Duration::from_secs(ttl.into()),
                });
            }
            Err(why) => refused.push(why),
        }
    }
    Err(ChannelError::refused(format!(
        "no usable `{META_SMP}` record for `{name}`: {}",
        refused.join("; ")
    ))
    .with_retry_class(postbud_channel::RetryClass::Temporary))
}

/// The SOA's negative TTL (the smaller of its TTL and its `minimum`, RFC 2308), else a default.
fn negative_ttl(response: &Message) -> Duration {
    response
        .authorities
        .iter()
        .find_map(|record| match &record.data {
            RData::SOA(soa) => Some(record.ttl.min(soa.minimum)),
            _ => None,
        })
        .map_or(DEFAULT_NEGATIVE_TTL, |s| Duration::from_secs(s.into()))
}

/// The URI of a U-NAPTR regexp `!^.*$!https://smp.example.org!`: the delimiter is the first
/// character; the pattern must match any string (`^.*$`, `.*`), since U-NAPTR's replacement is
/// the whole URI; the replacement is literal (RFC 4848 forbids backreferences) and https.
pub fn smp_url(regexp: &[u8]) -> Result<url::Url, String> {
    let text = std::str::from_utf8(regexp).map_err(|_| "a regexp that is not UTF-8".to_owned())?;
    let delimiter = text
        .chars()
        .next()
        .ok_or_else(|| "an empty regexp".to_owned())?;
    if delimiter.is_alphanumeric() || delimiter == '\\' {
        return Err(format!(
            "regexp `{text}`: `{delimiter}` cannot be the delimiter"
        ));
    }
    let parts: Vec<&str> = text[delimiter.len_utf8()..].split(delimiter).collect();
    let [pattern, replacement, flags] = parts[..] else {
        return Err(format!(
            "regexp `{text}` is not `!pattern!replacement!flags`"
        ));
    };
    if !["^.*$", ".*", "^.*", ".*$"].contains(&pattern) {
        return Err(format!(
            "regexp `{text}`: U-NAPTR's pattern must match the whole string (`^.*$`)"
        ));
    }
    if !flags.is_empty() && flags != "i" {
        return Err(format!("regexp `{text}`: unknown flags `{flags}`"));
    }
    if replacement.contains('\\') {
        return Err(format!(
            "regexp `{text}`: the replacement has an escape or a backreference (RFC 4848 forbids them)"
        ));
    }
    if replacement.chars().any(char::is_control) {
        return Err(format!("regexp {text:?}: control characters in the URI"));
    }
    let url = url::Url::parse(replacement)
        .map_err(|e| format!("regexp `{text}`: `{replacement}` is not a URI: {e}"))?;
    if url.scheme() != "https" {
        return Err(format!(
            "regexp `{text}`: the SMP must be https (Peppol SMP 1.4), not `{}`",
            url.scheme()
        ));
    }
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return Err(format!(
            "regexp `{text}`: an SMP URI has no user, query or fragment"
        ));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::{Record, rdata::NAPTR};

    #[test]
    fn the_regexp_gives_a_literal_https_uri() {
        let url = smp_url(b"!^.*$!https://smp.example.org/smp!").expect("valid");
        assert_eq!(url.as_str(), "https://smp.example.org/smp");
        assert!(smp_url(b"!.*!https://smp.example.org!").is_ok());
        for (bad, why) in [
            (&b"!^.*$!http://smp.example.org!"[..], "https"),
            (b"!^.*$!https://\\1.example.org!", "backreference"),
            (b"!^B-.*$!https://smp.example.org!", "whole string"),
            (b"!^.*$!https://smp.example.org", "pattern!replacement"),
            (b"", "empty"),
            (b"!^.*$!https://smp.example.org/?x=1!", "query"),
            (b"!^.*$!https://smp.example.org/\x07!", "control"),
        ] {
            let error = smp_url(bad).expect_err("refused");
            assert!(error.contains(why), "{error}");
        }
    }

    fn response(records: Vec<(u16, u16, &str, &str, &str, u32)>) -> Message {
        let mut message = Message::response(1, hickory_proto::op::OpCode::Query);
        for (order, preference, flags, services, regexp, ttl) in records {
            message.add_answer(Record::from_rdata(
                Name::from_ascii("x.example.").expect("name"),
                ttl,
                RData::NAPTR(NAPTR::new(
                    order,
                    preference,
                    flags.as_bytes().into(),
                    services.as_bytes().into(),
                    regexp.as_bytes().into(),
                    Name::root(),
                )),
            ));
        }
        message
    }

    #[test]
    fn only_u_meta_smp_records_count_in_order_then_preference() {
        let message = response(vec![
            (100, 10, "U", "Meta:SMP", "!^.*$!https://third.example!", 60),
            (10, 20, "U", "meta:smp", "!^.*$!https://second.example!", 70),
            (10, 10, "S", "Meta:SMP", "!^.*$!https://not-u.example!", 80),
            (1, 1, "U", "Meta:Other", "!^.*$!https://other.example!", 80),
            (10, 15, "u", "META:SMP", "!^.*$!http://plain.example!", 90),
        ]);
        let answer = read_answer(&message, "x.example").expect("an answer");
        assert_eq!(
            answer,
            Answer::Smp {
                url: "https://second.example".parse().expect("url"),
                ttl: Duration::from_secs(70)
            }
        );
        let none = read_answer(
            &response(vec![(
                1,
                1,
                "U",
                "Meta:Other",
                "!^.*$!https://o.example!",
                5,
            )]),
            "x.example",
        )
        .expect("an answer");
        assert!(matches!(none, Answer::None { .. }), "{none:?}");
        let unusable = read_answer(
            &response(vec![(1, 1, "U", "Meta:SMP", "!^.*$!http://o.example!", 5)]),
            "x.example",
        )
        .expect_err("http only");
        assert!(unusable.is_temporary() && unusable.message().contains("https"));
    }

    #[test]
    fn nxdomain_is_an_answer_and_servfail_an_error() {
        let mut message = Message::response(1, hickory_proto::op::OpCode::Query);
        message.metadata.response_code = ResponseCode::NXDomain;
        assert!(matches!(
            read_answer(&message, "x.example"),
            Ok(Answer::None { ttl, .. }) if ttl == DEFAULT_NEGATIVE_TTL
        ));
        message.metadata.response_code = ResponseCode::ServFail;
        let error = read_answer(&message, "x.example").expect_err("servfail");
        assert!(error.is_temporary(), "{error}");
    }
}
