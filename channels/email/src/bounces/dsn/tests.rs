//! Real bounces: Postfix's own (made by the Postfix the integration tests run), an Exim bounce
//! without `multipart/report`, a Gmail-style one; and hostile input.

use super::*;

const POSTFIX_FAILED: &[u8] = include_bytes!("../../../tests/bounces/postfix-dsn.eml");
const POSTFIX_DELAYED: &[u8] = include_bytes!("../../../tests/bounces/postfix-delayed.eml");
const EXIM_FAILED: &[u8] = include_bytes!("../../../tests/bounces/exim-failed.eml");
const GMAIL_FAILED: &[u8] = include_bytes!("../../../tests/bounces/gmail-failed.eml");

fn reader() -> Reader {
    Reader {
        return_path: ReturnPath::parse("bounces@merchant.example").expect("valid"),
        bcc: vec!["archive@merchant.example".into()],
    }
}

fn one(raw: &[u8]) -> Evidence {
    let mut evidence = reader().evidence(raw);
    assert_eq!(evidence.len(), 1, "{evidence:?}");
    evidence.remove(0)
}

/// `raw` with every line starting with `prefix` (and its folded continuation) removed.
fn without(raw: &[u8], prefix: &str) -> Vec<u8> {
    let text = String::from_utf8_lossy(raw);
    let mut out = String::new();
    let mut skipping = false;
    for line in text.split_inclusive('\n') {
        if line.starts_with(prefix) {
            skipping = true;
            continue;
        }
        if skipping && line.starts_with([' ', '\t']) {
            continue;
        }
        skipping = false;
        out.push_str(line);
    }
    out.into_bytes()
}

fn replaced(raw: &[u8], from: &str, to: &str) -> Vec<u8> {
    let text = String::from_utf8_lossy(raw);
    assert!(text.contains(from), "the sample has `{from}`");
    text.replace(from, to).into_bytes()
}

#[test]
fn a_postfix_dsn_is_a_bounce_of_the_delivery_its_envid_names() {
    let evidence = one(POSTFIX_FAILED);
    assert_eq!(evidence.about, Correlation::Delivery("dlv-abc123".into()));
    assert_eq!(evidence.state, EvidenceState::Bounced);
    assert_eq!(
        evidence.reason,
        "550 5.1.1 <kari@gone.example> User doesn't exist: kari@gone.example (from 127.0.0.1)"
    );
    assert_eq!(evidence.reporter, "mx.postbud.test (DSN)");
    assert_eq!(
        evidence.event_id,
        "<20261206073355.62E8A98C1F6@mx.postbud.test>"
    );
    assert_eq!(&evidence.payload[..], POSTFIX_FAILED);
    assert_eq!(
        evidence.at.map(|t| t.to_string()),
        Some("2026-12-06T07:33:55Z".into())
    );
}

#[test]
fn without_envid_the_return_path_names_the_delivery_and_without_both_the_returned_message_id() {
    let no_envid = without(POSTFIX_FAILED, "Original-Envelope-Id:");
    assert_eq!(
        one(&no_envid).about,
        Correlation::Delivery("dlv-abc123".into())
    );
    let forwarded = without(
        &without(&without(&no_envid, "Delivered-To:"), "To: bounces+"),
        "X-Postfix-Sender:",
    );
    let forwarded = replaced(
        &forwarded,
        "Return-Path: <bounces+dlv-abc123@merchant.example>",
        "Return-Path: <someone@merchant.example>",
    );
    assert_eq!(
        one(&forwarded).about,
        Correlation::Reference("<dlv-abc123@merchant.example>".into())
    );
}

#[test]
fn an_envid_that_is_not_a_delivery_id_is_not_taken_as_one() {
    let odd = replaced(
        POSTFIX_FAILED,
        "Original-Envelope-Id: dlv-abc123",
        "Original-Envelope-Id: ../../etc/passwd",
    );
    // The return path still names it.
    assert_eq!(one(&odd).about, Correlation::Delivery("dlv-abc123".into()));
}

#[test]
fn a_postfix_delay_warning_is_delayed() {
    let evidence = one(POSTFIX_DELAYED);
    assert_eq!(evidence.about, Correlation::Delivery("dlv-def456".into()));
    assert_eq!(evidence.state, EvidenceState::Delayed);
    assert!(evidence.reason.starts_with("4.4.1"), "{}", evidence.reason);
    assert!(
        evidence.reason.contains("Connection refused"),
        "{}",
        evidence.reason
    );
}

#[test]
fn delivered_is_delivered_and_relayed_is_nothing() {
    let delivered = replaced(POSTFIX_FAILED, "Action: failed", "Action: delivered");
    let delivered = replaced(&delivered, "Status: 5.1.1", "Status: 2.0.0");
    assert_eq!(one(&delivered).state, EvidenceState::Delivered);
    let relayed = replaced(POSTFIX_FAILED, "Action: failed", "Action: relayed");
    assert!(reader().evidence(&relayed).is_empty());
    // No action: the status class decides.
    let no_action = without(POSTFIX_FAILED, "Action:");
    assert_eq!(one(&no_action).state, EvidenceState::Bounced);
}

#[test]
fn an_exim_bounce_without_a_report_is_correlated_by_its_return_path() {
    let evidence = one(EXIM_FAILED);
    assert_eq!(
        evidence.about,
        Correlation::Delivery("dlv-5f1e2d3c4b5a69788796a5b4".into())
    );
    assert_eq!(evidence.state, EvidenceState::Bounced);
    assert!(
        evidence
            .reason
            .starts_with("550 5.1.1 <kari@gone.example>: Recipient address rejected"),
        "{}",
        evidence.reason
    );
    assert_eq!(
        evidence.reporter,
        "mailer-daemon@mail.merchant.example (bounce)"
    );
    assert_eq!(
        evidence.event_id,
        "<E1tXyZa-0001Ab-Cd@mail.merchant.example>"
    );
}

#[test]
fn a_non_standard_bounce_without_the_return_path_is_correlated_by_the_copied_message_id() {
    let moved = without(&without(EXIM_FAILED, "Envelope-to:"), "To: bounces+");
    let moved = replaced(
        &moved,
        "for bounces+dlv-5f1e2d3c4b5a69788796a5b4@merchant.example;",
        "for someone@merchant.example;",
    );
    let moved = replaced(
        &moved,
        "Return-path: <bounces+dlv-5f1e2d3c4b5a69788796a5b4@merchant.example>",
        "Return-path: <someone@merchant.example>",
    );
    assert_eq!(
        one(&moved).about,
        Correlation::Reference("<dlv-5f1e2d3c4b5a69788796a5b4@merchant.example>".into())
    );
}

#[test]
fn a_temporary_code_in_a_non_standard_bounce_is_delayed_and_the_copy_is_not_read() {
    let delayed = replaced(
        EXIM_FAILED,
        "550 5.1.1 <kari@gone.example>: Recipient address rejected: User unknown in virtual mailbox table",
        "451 4.7.1 <kari@gone.example>: greylisted, try again later",
    );
    let evidence = one(&delayed);
    assert_eq!(evidence.state, EvidenceState::Delayed, "{evidence:?}");
    assert!(evidence.reason.contains("greylisted"));
}

#[test]
fn a_gmail_style_bounce_is_read_from_its_text() {
    let evidence = one(GMAIL_FAILED);
    assert_eq!(
        evidence.about,
        Correlation::Delivery("dlv-77aa88bb99cc00dd11ee22ff".into())
    );
    assert_eq!(evidence.state, EvidenceState::Bounced);
    assert!(
        evidence
            .reason
            .starts_with("550 5.1.1 The email account that you tried to reach does not exist"),
        "{}",
        evidence.reason
    );
    assert_eq!(evidence.reporter, "mailer-daemon@googlemail.com (bounce)");
}

#[test]
fn a_clear_bounce_without_a_code_is_a_bounce_but_a_reply_or_an_auto_reply_is_nothing() {
    let no_code = replaced(
        EXIM_FAILED,
        "    550 5.1.1 <kari@gone.example>: Recipient address rejected: User unknown in virtual mailbox table\n",
        "    the mailbox is gone\n",
    );
    assert_eq!(one(&no_code).state, EvidenceState::Bounced);

    let reply = b"From: Kari <kari@customer.example>\nTo: bounces+dlv-abc123@merchant.example\nSubject: Re: Faktura\nMessage-ID: <r1@customer.example>\n\nThanks, I will pay on Friday.\n";
    assert!(reader().evidence(reply).is_empty());
    let vacation = b"From: Kari <kari@customer.example>\nTo: bounces+dlv-abc123@merchant.example\nAuto-Submitted: auto-replied\nSubject: Out of office: Faktura\nMessage-ID: <r2@customer.example>\n\nBack on the 5th. 550 is my room number.\n";
    assert!(reader().evidence(vacation).is_empty());
}

#[test]
fn a_bounce_that_names_no_delivery_of_ours_is_nothing() {
    let theirs = b"From: MAILER-DAEMON@mx.example\nTo: newsletter@other.example\nSubject: Undelivered Mail Returned to Sender\nMessage-ID: <b1@mx.example>\n\n550 5.1.1 no such user\n";
    assert!(reader().evidence(theirs).is_empty());
}

#[test]
fn a_bounce_of_the_blind_copy_is_not_about_the_customer() {
    let archive = replaced(
        POSTFIX_FAILED,
        "Final-Recipient: rfc822; kari@gone.example",
        "Final-Recipient: rfc822; ARCHIVE@merchant.example",
    );
    assert!(reader().evidence(&archive).is_empty());
}

#[test]
fn a_report_about_two_recipients_is_two_events() {
    let block = "Final-Recipient: rfc822; kari@gone.example\nOriginal-Recipient: rfc822;kari@gone.example\nAction: failed\nStatus: 5.1.1\n";
    let two = replaced(
        POSTFIX_FAILED,
        block,
        &format!(
            "{block}\nFinal-Recipient: rfc822; ola@gone.example\nAction: delayed\nStatus: 4.2.2\n\n{block}"
        ),
    );
    let evidence = reader().evidence(&two);
    assert_eq!(evidence.len(), 3, "{evidence:?}");
    let ids: std::collections::BTreeSet<_> = evidence.iter().map(|e| &e.event_id).collect();
    assert_eq!(
        ids.len(),
        2,
        "the same recipient's report twice is one event"
    );
    assert_eq!(evidence[1].state, EvidenceState::Delayed);
}

#[test]
fn control_characters_and_long_diagnostics_are_cleaned() {
    let hostile = replaced(
        POSTFIX_FAILED,
        "Diagnostic-Code: smtp; 550 5.1.1 <kari@gone.example> User doesn't exist:",
        &format!(
            "Diagnostic-Code: smtp; 550 5.1.1 \x1b[31mred\x07 {}",
            "x".repeat(5000)
        ),
    );
    let evidence = one(&hostile);
    assert!(
        !evidence.reason.chars().any(char::is_control),
        "{}",
        evidence.reason
    );
    assert!(evidence.reason.chars().count() <= MAX_REASON + 1);
    assert!(!evidence.reporter.chars().any(char::is_control));
}

#[test]
fn hostile_input_never_panics() {
    let mut inputs: Vec<Vec<u8>> = vec![
        Vec::new(),
        b"\0\0\0".to_vec(),
        b"\r\n\r\n".to_vec(),
        (0..=255u8).cycle().take(100_000).collect(),
        // A report with no delivery-status part, and one whose part is empty.
        without(POSTFIX_FAILED, "Content-Type: message/delivery-status"),
        replaced(
            POSTFIX_FAILED,
            "Reporting-MTA: dns; mx.postbud.test",
            "",
        ),
        // Cut anywhere.
        POSTFIX_FAILED[..POSTFIX_FAILED.len() / 2].to_vec(),
        EXIM_FAILED[..300].to_vec(),
        // Broken boundaries, a boundary-only body.
        replaced(
            POSTFIX_FAILED,
            "--54C3A98C1C3.1796542435/mx.postbud.test--",
            "--54C3A98C1C3.1796542435/mx.",
        ),
        b"Content-Type: multipart/report; boundary=x\n\n--x\n--x\n--x--\n".to_vec(),
        b"Content-Type: message/delivery-status\n\nAction: failed\n".to_vec(),
        // Status and codes at the very end of the text.
        b"From: mailer-daemon@x\nTo: bounces+dlv-1a@merchant.example\n\n5".to_vec(),
        b"From: mailer-daemon@x\nTo: bounces+dlv-1a@merchant.example\n\n5.1.".to_vec(),
        b"From: mailer-daemon@x\nTo: bounces+dlv-1a@merchant.example\n\n55".to_vec(),
        "From: mailer-daemon@x\nTo: bounces+dlv-1a@merchant.example\nSubject: =?utf-8?b?w6bDuMOl?=\n\n\u{e6}5.1.1\u{f8}"
            .as_bytes()
            .to_vec(),
    ];
    // Deeply nested multiparts.
    let mut nested = String::new();
    for depth in 0..2000 {
        nested.push_str(&format!(
            "Content-Type: multipart/mixed; boundary=b{depth}\n\n--b{depth}\n"
        ));
    }
    inputs.push(nested.into_bytes());
    // Huge: 20 MiB, over what is parsed; the payload stays bounded.
    let mut huge = POSTFIX_FAILED.to_vec();
    huge.extend(std::iter::repeat_n(b'A', 20 * 1024 * 1024));
    let evidence = reader().evidence(&huge);
    assert!(evidence.iter().all(|e| e.payload.len() <= MAX_PAYLOAD));
    assert_eq!(
        evidence.len(),
        1,
        "the report before the junk is still read"
    );
    for input in inputs {
        let _ = reader().evidence(&input);
    }
}
