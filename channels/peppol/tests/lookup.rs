//! The Peppol lookup against the sandbox's SML (DNS over UDP) and SMP (https, signed metadata),
//! through `Lookup` only; and the signatures checked both ways with PyPI `signxml`.

use std::{
    io::Write as _,
    process::{Command, Stdio},
    time::Duration,
};

use postbud_channel::ErrorKind;
use postbud_peppol::lookup::{Found, Lookup, LookupSettings};
use postbud_sandbox::peppol::{Fault, Peppol, ZONE};
use postbud_ubl::identifiers::ParticipantId;

const BUYER: &str = "0192:745707327";
const ENDPOINT: &str = "https://ap.buyer.example/as4";

fn settings(peppol: &Peppol) -> LookupSettings {
    let mut settings = LookupSettings::new(peppol.trust_pem());
    settings.sml_zone = ZONE.into();
    settings.dns = Some(peppol.dns_addr());
    settings.smp_ca_file = Some(peppol.ca_file());
    settings.timeout = Duration::from_secs(2);
    // The sandbox's SMP is on loopback, which an SMP address from DNS may reach only when named.
    settings.allow = vec!["127.0.0.1".into()];
    settings
}

async fn start() -> (Peppol, Lookup) {
    let peppol = Peppol::start().await.expect("the sandbox starts");
    let lookup = Lookup::new(settings(&peppol)).expect("the lookup");
    (peppol, lookup)
}

fn buyer() -> ParticipantId {
    BUYER.parse().expect("a valid id")
}

#[tokio::test]
async fn a_registered_buyer_has_its_access_points_endpoint() {
    let (peppol, lookup) = start().await;
    peppol.register(BUYER, ENDPOINT);
    let found = lookup.find(&buyer()).await.expect("an answer");
    assert_eq!(
        found,
        Found::Registered {
            smp: peppol.smp_url().to_owned(),
            endpoint: ENDPOINT.into(),
            ttl: Duration::from_secs(300),
        }
    );
}

#[tokio::test]
async fn an_unknown_buyer_is_not_registered_and_says_why() {
    let (peppol, lookup) = start().await;
    peppol.register("0192:974760673", ENDPOINT);
    match lookup.find(&buyer()).await.expect("an answer") {
        Found::NotRegistered { reason, ttl } => {
            assert!(reason.contains("NXDOMAIN"), "{reason}");
            assert_eq!(ttl, Duration::from_secs(60), "the SOA's negative TTL");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn no_invoice_document_type_no_billing_process_or_an_expired_endpoint_is_not_registered() {
    let (peppol, lookup) = start().await;
    peppol.register(BUYER, ENDPOINT);
    for (fault, says) in [
        (Fault::MissingDocumentType, "404"),
        (Fault::OtherProcess, "billing process"),
        (Fault::ExpiredEndpoint, "expired"),
    ] {
        peppol.fault(BUYER, fault.clone());
        // A fresh lookup each time: answers are cached.
        let lookup = Lookup::new(settings(&peppol)).expect("lookup");
        match lookup.find(&buyer()).await {
            Ok(Found::NotRegistered { reason, .. }) => {
                assert!(reason.contains(says), "{fault:?}: {reason}");
            }
            other => panic!("{fault:?}: {other:?}"),
        }
    }
    drop(lookup);
}

#[tokio::test]
async fn broken_signatures_and_failing_servers_are_errors_never_not_registered() {
    let peppol = Peppol::start().await.expect("sandbox");
    peppol.register(BUYER, ENDPOINT);
    for (fault, kind, says) in [
        (
            Fault::TamperedEndpoint,
            ErrorKind::Refused,
            "digest does not match",
        ),
        (
            Fault::ResignedDigest,
            ErrorKind::Refused,
            "the signature does not verify",
        ),
        (
            Fault::CommentInValue,
            ErrorKind::Refused,
            "comment or processing instruction",
        ),
        (Fault::UntrustedSigner, ErrorKind::Refused, "not trusted"),
        (Fault::ExpiredSigner, ErrorKind::Refused, "not trusted"),
        (Fault::Unsigned, ErrorKind::Refused, "not signed"),
        (
            Fault::DoubleRedirect,
            ErrorKind::Refused,
            "one redirect at most",
        ),
        (Fault::ServerError, ErrorKind::Unavailable, "500"),
        (
            Fault::Slow(Duration::from_secs(5)),
            ErrorKind::TimedOut,
            "timed out",
        ),
        (Fault::DnsSilent, ErrorKind::TimedOut, "did not answer"),
        (
            Fault::DnsServfail,
            ErrorKind::Unavailable,
            "server failure (rcode 2)",
        ),
    ] {
        peppol.fault(BUYER, fault.clone());
        let lookup = Lookup::new(settings(&peppol)).expect("lookup");
        let error = lookup
            .find(&buyer())
            .await
            .expect_err(&format!("{fault:?} is an error"));
        assert_eq!(error.kind(), kind, "{fault:?}: {error}");
        assert!(error.is_temporary(), "{fault:?}: {error}");
        assert!(
            error
                .message()
                .to_lowercase()
                .contains(&says.to_lowercase()),
            "{fault:?}: {error}"
        );
    }
}

#[tokio::test]
async fn one_redirect_is_followed_and_its_answer_verified() {
    let (peppol, lookup) = start().await;
    peppol.register(BUYER, ENDPOINT);
    peppol.fault(BUYER, Fault::Redirect);
    let found = lookup.find(&buyer()).await.expect("an answer");
    assert!(
        matches!(&found, Found::Registered { endpoint, .. } if endpoint == ENDPOINT),
        "{found:?}"
    );
    assert_eq!(peppol.smp_requests(BUYER), 2, "the SMP and its redirect");
}

#[tokio::test]
async fn answers_are_cached_for_their_ttl_and_errors_are_not() {
    let (peppol, lookup) = start().await;
    peppol.register_with_ttl(BUYER, ENDPOINT, 1);
    for _ in 0..3 {
        assert!(matches!(
            lookup.find(&buyer()).await,
            Ok(Found::Registered { .. })
        ));
    }
    assert_eq!(peppol.dns_queries(BUYER), 1);
    assert_eq!(peppol.smp_requests(BUYER), 1);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    lookup.find(&buyer()).await.expect("an answer");
    assert_eq!(peppol.dns_queries(BUYER), 2, "asked again after the TTL");
    assert_eq!(peppol.smp_requests(BUYER), 2);

    // Not registered is an answer and is kept too; an error is not.
    let other: ParticipantId = "0192:974760673".parse().expect("id");
    for _ in 0..2 {
        assert!(matches!(
            lookup.find(&other).await,
            Ok(Found::NotRegistered { .. })
        ));
    }
    assert_eq!(
        peppol.dns_queries("0192:974760673"),
        1,
        "NXDOMAIN is kept for the SOA's TTL"
    );

    let (peppol, lookup) = start().await;
    peppol.register(BUYER, ENDPOINT);
    peppol.fault(BUYER, Fault::ServerError);
    for _ in 0..2 {
        lookup.find(&buyer()).await.expect_err("500");
    }
    assert_eq!(peppol.smp_requests(BUYER), 2, "an error is asked again");
    peppol.fault(BUYER, None);
    assert!(matches!(
        lookup.find(&buyer()).await,
        Ok(Found::Registered { .. })
    ));
}

#[tokio::test]
async fn concurrent_finds_all_get_the_answer() {
    let (peppol, lookup) = start().await;
    peppol.register(BUYER, ENDPOINT);
    let lookup = std::sync::Arc::new(lookup);
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let lookup = std::sync::Arc::clone(&lookup);
            tokio::spawn(async move { lookup.find(&buyer()).await })
        })
        .collect();
    for task in tasks {
        assert!(matches!(
            task.await.expect("task"),
            Ok(Found::Registered { .. })
        ));
    }
}

// ---- signxml, an independent XMLDSig implementation (lxml's exclusive C14N) ----

const SIGNXML: &str = r#"
import sys
from lxml import etree
from signxml import XMLSigner, XMLVerifier, methods
mode = sys.argv[1]
if mode == "sign":
    key, cert, participant, endpoint, tamper = sys.argv[2:7]
    xml = f'''<smp:SignedServiceMetadata xmlns:smp="http://busdox.org/serviceMetadata/publishing/1.0/" xmlns:id="http://busdox.org/transport/identifiers/1.0/" xmlns:wsa="http://www.w3.org/2005/08/addressing" xmlns:unused="urn:unused">
  <smp:ServiceMetadata>
    <smp:ServiceInformation>
      <id:ParticipantIdentifier scheme="iso6523-actorid-upis">{participant}</id:ParticipantIdentifier>
      <id:DocumentIdentifier scheme="busdox-docid-qns">urn:oasis:names:specification:ubl:schema:xsd:Invoice-2::Invoice##urn:cen.eu:en16931:2017#compliant#urn:fdc:peppol.eu:2017:poacc:billing:3.0::2.1</id:DocumentIdentifier>
      <smp:ProcessList>
        <smp:Process>
          <id:ProcessIdentifier scheme="cenbii-procid-ubl">urn:fdc:peppol.eu:2017:poacc:billing:01:1.0</id:ProcessIdentifier>
          <smp:ServiceEndpointList>
            <smp:Endpoint transportProfile="peppol-transport-as4-v2_0">
              <wsa:EndpointReference>
                <wsa:Address>{endpoint}</wsa:Address>
              </wsa:EndpointReference>
              <smp:RequireBusinessLevelSignature>false</smp:RequireBusinessLevelSignature>
              <smp:ServiceActivationDate>2020-01-01T00:00:00</smp:ServiceActivationDate>
              <smp:Certificate>MIIB</smp:Certificate>
              <smp:ServiceDescription>signed by signxml &amp; checked by Postbud</smp:ServiceDescription>
              <smp:TechnicalContactUrl>https://ap.example/contact</smp:TechnicalContactUrl>
            </smp:Endpoint>
          </smp:ServiceEndpointList>
        </smp:Process>
      </smp:ProcessList>
    </smp:ServiceInformation>
  </smp:ServiceMetadata>
</smp:SignedServiceMetadata>'''
    root = etree.fromstring(xml.encode())
    signer = XMLSigner(method=methods.enveloped, signature_algorithm="rsa-sha256",
                       digest_algorithm="sha256", c14n_algorithm="http://www.w3.org/2001/10/xml-exc-c14n#")
    signed = signer.sign(root, key=open(key, "rb").read(), cert=open(cert).read())
    out = etree.tostring(signed).decode()
    if tamper == "tamper":
        out = out.replace(endpoint, "https://ap.attacker.example/as4")
    sys.stdout.write(out)
else:
    data = sys.stdin.buffer.read()
    try:
        XMLVerifier().verify(data, ca_pem_file=sys.argv[2])
        print("VALID")
    except Exception as e:
        print("INVALID", type(e).__name__, e)
"#;

/// `python3` with signxml, or `None` after saying the test is skipped (a failure under
/// `POSTBUD_REQUIRE_SERVICES=1`).
fn python(test: &str) -> Option<&'static str> {
    let found = ["python3", "/usr/bin/python3"].into_iter().find(|p| {
        Command::new(p)
            .args(["-c", "import signxml, lxml"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    if found.is_none() {
        let why = "python3 with signxml not found (pip install signxml==5.2.0)";
        assert_ne!(
            std::env::var("POSTBUD_REQUIRE_SERVICES").as_deref(),
            Ok("1"),
            "{test}: {why}"
        );
        postbud_sandbox::skipped(&format!("{test}: {why}"));
    }
    found
}

fn signxml(python: &str, args: &[&str], stdin: &[u8]) -> String {
    let mut child = Command::new(python)
        .arg("-c")
        .arg(SIGNXML)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin)
        .expect("write");
    let output = child.wait_with_output().expect("python3 ends");
    assert!(
        output.status.success(),
        "signxml {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf8")
}

#[tokio::test]
async fn a_document_signed_by_signxml_verifies_and_one_tampered_after_signing_does_not() {
    let Some(python) = python("signxml signs, Postbud verifies") else {
        return;
    };
    let (peppol, _) = start().await;
    peppol.register(BUYER, ENDPOINT);
    let (cert, key) = peppol.signer_files();
    let (cert, key) = (cert.to_str().expect("path"), key.to_str().expect("path"));
    let signed = signxml(python, &["sign", key, cert, BUYER, ENDPOINT, "keep"], b"");
    assert!(signed.contains("ds:Signature"), "{signed}");
    peppol.fault(BUYER, Fault::Body(signed));
    let lookup = Lookup::new(settings(&peppol)).expect("lookup");
    let found = lookup
        .find(&buyer())
        .await
        .expect("signxml's signature verifies");
    assert!(
        matches!(&found, Found::Registered { endpoint, .. } if endpoint == ENDPOINT),
        "{found:?}"
    );

    let tampered = signxml(python, &["sign", key, cert, BUYER, ENDPOINT, "tamper"], b"");
    peppol.fault(BUYER, Fault::Body(tampered));
    let lookup = Lookup::new(settings(&peppol)).expect("lookup");
    let error = lookup.find(&buyer()).await.expect_err("tampered");
    assert!(error.message().contains("digest does not match"), "{error}");
}

#[tokio::test]
async fn the_sandboxs_signed_answers_verify_with_signxml_and_its_faults_do_not() {
    let Some(python) = python("the sandbox signs, signxml verifies") else {
        return;
    };
    let peppol = Peppol::start().await.expect("sandbox");
    peppol.register(BUYER, ENDPOINT);
    let trust = peppol.trust_pem();
    let trust = trust.to_str().expect("path");
    let good = peppol.signed_metadata(BUYER).expect("registered");
    assert_eq!(
        signxml(python, &["verify", trust], good.as_bytes()).trim(),
        "VALID"
    );
    peppol.fault(BUYER, Fault::Redirect);
    let redirect = peppol.signed_metadata(BUYER).expect("registered");
    assert!(redirect.contains("<Redirect "), "{redirect}");
    assert_eq!(
        signxml(python, &["verify", trust], redirect.as_bytes()).trim(),
        "VALID"
    );
    for fault in [
        Fault::TamperedEndpoint,
        Fault::UntrustedSigner,
        Fault::ExpiredSigner,
    ] {
        peppol.fault(BUYER, fault.clone());
        let bad = peppol.signed_metadata(BUYER).expect("registered");
        let verdict = signxml(python, &["verify", trust], bad.as_bytes());
        assert!(verdict.starts_with("INVALID"), "{fault:?}: {verdict}");
    }
}

#[tokio::test]
async fn an_smp_on_this_hosts_loopback_is_refused_unless_named_in_allow() {
    let peppol = Peppol::start().await.expect("the sandbox starts");
    peppol.register(BUYER, ENDPOINT);
    let mut unnamed = settings(&peppol);
    unnamed.allow.clear();
    let lookup = Lookup::new(unnamed).expect("the lookup");
    let e = lookup
        .find(&buyer())
        .await
        .expect_err("a DNS record pointing at loopback is not followed");
    assert!(
        e.to_string().contains("loopback") && e.to_string().contains("allow"),
        "{e}"
    );
    assert_eq!(e.retry_class(), postbud_channel::RetryClass::Temporary);
    assert_eq!(peppol.smp_requests(BUYER), 0, "nothing was asked of it");
}
