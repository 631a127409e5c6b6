//! The channel alone, through its public face: built by its factory from a table, delivering the
//! SDK's example invoice to a local receiver. No engine, store or sandbox: milliseconds.

use std::time::Duration;

use figment::{Figment, providers::Format as _};
use postbud_channel::{BuildContext, Channel, testing};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn channel(url: &str) -> Box<dyn Channel> {
    let figment = Figment::from(figment::providers::Toml::string(&format!(
        "[channels.platform]\nkind = \"webhook\"\nurl = \"{url}\"\nsecret = \"{SECRET}\"\npdf = \"inline\"\n"
    )));
    (postbud_webhook::FACTORY.build)(BuildContext::new(&figment, "platform", "webhook"))
        .expect("the table builds")
}

#[tokio::test]
async fn posts_the_invoice_signed_under_its_delivery_id() {
    let receiver = testing::Receiver::start(vec![]).await;
    let invoice = testing::invoice();
    let ctx = testing::context("platform");
    let receipt = channel(receiver.url())
        .deliver(&invoice, &ctx)
        .await
        .expect("delivered");
    assert!(receipt.detail.starts_with("HTTP 200"), "{receipt:?}");
    let requests = receiver.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.header("webhook-id"), Some(ctx.delivery_id.as_str()));
    assert!(
        request
            .header("webhook-signature")
            .is_some_and(|s| s.starts_with("v1,")),
        "{request:?}"
    );
    let body: serde_json::Value = serde_json::from_slice(&request.body).expect("JSON");
    assert_eq!(body["type"], "invoice.ready");
    assert_eq!(body["data"]["invoice_number"], invoice.invoice_number);
}

#[tokio::test]
async fn refusals_are_classified_and_retry_after_is_honoured_in_both_forms() {
    let in_a_minute = httpdate_in(Duration::from_secs(60));
    let in_a_minute: &'static str = Box::leak(in_a_minute.into_boxed_str());
    let receiver = testing::Receiver::start(vec![
        (429, vec![("retry-after", "7")]),
        (503, vec![("retry-after", in_a_minute)]),
        (410, vec![]),
    ])
    .await;
    let channel = channel(receiver.url());
    let (invoice, ctx) = (testing::invoice(), testing::context("platform"));

    let throttled = channel.deliver(&invoice, &ctx).await.expect_err("429");
    assert!(throttled.is_temporary(), "{throttled}");
    assert_eq!(throttled.retry_after(), Some(Duration::from_secs(7)));

    let down = channel.deliver(&invoice, &ctx).await.expect_err("503");
    assert!(down.is_temporary(), "{down}");
    let wait = down.retry_after().expect("an HTTP-date is read");
    assert!(
        wait > Duration::from_secs(50) && wait <= Duration::from_secs(60),
        "{wait:?}"
    );

    let gone = channel.deliver(&invoice, &ctx).await.expect_err("410");
    assert!(!gone.is_temporary(), "{gone}");
    assert!(gone.message().contains("410"), "{gone}");
}

fn httpdate_in(delay: Duration) -> String {
    let when = jiff::Timestamp::now() + jiff::SignedDuration::try_from(delay).expect("delay");
    when.strftime("%a, %d %b %Y %H:%M:%S GMT").to_string()
}
