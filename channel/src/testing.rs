//! For a channel crate's own tests: an example invoice and a delivery context, so `deliver` is
//! exercised against a local receiver without an engine, a store or a Dintero sandbox.
//!
//! ```
//! use postbud_channel::testing;
//!
//! let invoice = testing::invoice();
//! let ctx = testing::context("archive");
//! assert_eq!(invoice.pdf.bytes.len(), testing::PDF.len());
//! assert_eq!(ctx.delivery_id, postbud_channel::ids::delivery_id(&invoice.transaction_id, "archive"));
//! ```

use bytes::Bytes;

/// The runtime [`Receiver`] runs on, for a channel crate's async tests without a `tokio` of
/// its own. Its test attribute generates code that names the crate, so say where it is:
///
/// ```
/// # use postbud_channel::testing;
/// #[testing::tokio::test(crate = "postbud_channel::testing::tokio")]
/// async fn answers() {
///     let receiver = testing::Receiver::start(vec![]).await;
///     assert!(receiver.requests().is_empty());
/// }
/// ```
pub use tokio;

use crate::{Customer, DeliveryContext, Invoice, InvoiceLine, Pdf, ids};

/// The example invoice's transaction id.
pub const TRANSACTION_ID: &str = "T12345678.3Xmpl3Inv01ce";

/// A small valid PDF (one empty page).
pub const PDF: &[u8] = b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj\n3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 595 842]>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n";

/// A Norwegian B2C invoice of 1 250,00 kr in two lines, to Kari Nordmann with email and phone,
/// due 2026-12-08, with a signed link and [`PDF`] as its document.
pub fn invoice() -> Invoice {
    let mut invoice = Invoice::new(
        TRANSACTION_ID,
        "SBX123-000042",
        "NOK",
        Pdf::new("SBX123-000042.pdf", Bytes::from_static(PDF)),
    );
    invoice.product_type = "kravia.invoice_b2c".into();
    invoice.merchant_reference = Some("order-42".into());
    invoice.merchant_name = Some("Nordlys Sykler AS".into());
    invoice.invoice_date = Some(jiff::civil::date(2026, 11, 24));
    invoice.due_date = Some(jiff::civil::date(2026, 12, 8));
    invoice.locale = "nb".into();
    invoice.customer = Customer {
        name: "Kari Nordmann".into(),
        email: Some("kari@example.no".into()),
        phone: Some("+4791234567".into()),
        address_line: Some("Storgata 1".into()),
        postal_code: Some("0155".into()),
        postal_place: Some("Oslo".into()),
        country: Some("NO".into()),
        ..Customer::default()
    };
    let mut bike = InvoiceLine::new("Sykkelservice", 100_000);
    bike.line_id = Some("1".into());
    bike.vat_amount = 20_000;
    bike.vat = 25.0;
    let mut lock = InvoiceLine::new("Sykkellås", 25_000);
    lock.line_id = Some("2".into());
    lock.vat_amount = 5_000;
    lock.vat = 25.0;
    invoice.lines = vec![bike, lock];
    invoice.amount = invoice.lines.iter().map(|l| l.amount).sum();
    invoice.vat_amount = invoice.lines.iter().map(|l| l.vat_amount).sum();
    invoice.link = Some(format!(
        "https://invoices.merchant.example/invoices/{TRANSACTION_ID}.pdf?expires=1&signature=00"
    ));
    invoice
}

/// The first attempt of the example invoice's delivery through the instance `channel`, with
/// the delivery id the engine would give it.
pub fn context(channel: &str) -> DeliveryContext {
    DeliveryContext::new(ids::delivery_id(TRANSACTION_ID, channel), channel)
}

/// One request a [`Receiver`] took.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Request {
    /// `POST`, `PUT`, ...
    pub method: String,
    /// Path and query.
    pub target: String,
    /// Header names in lower case, in the order sent.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Request {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A local HTTP/1.1 receiver on a loopback port, standing in for a provider: it records every
/// request and answers each with the next of its scripted responses (the last one repeats).
#[derive(Debug)]
pub struct Receiver {
    url: String,
    requests: std::sync::Arc<std::sync::Mutex<Vec<Request>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Receiver {
    /// Starts answering with `responses`, each a status and its extra headers
    /// (`(429, vec![("retry-after", "7")])`); an empty script answers 200.
    pub async fn start(responses: Vec<(u16, Vec<(&'static str, &'static str)>)>) -> Self {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let url = format!("http://{}/", listener.local_addr().expect("its address"));
        let requests = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = requests.clone();
        let task = tokio::spawn(async move {
            let mut served = 0usize;
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut buffer = Vec::new();
                let mut chunk = [0u8; 8192];
                let head_end = loop {
                    match socket.read(&mut chunk).await {
                        Ok(0) | Err(_) => break None,
                        Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                    }
                    if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                        break Some(at + 4);
                    }
                };
                let Some(head_end) = head_end else { continue };
                let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
                let mut lines = head.split("\r\n");
                let mut start = lines.next().unwrap_or_default().split(' ');
                let method = start.next().unwrap_or_default().to_owned();
                let target = start.next().unwrap_or_default().to_owned();
                let headers: Vec<(String, String)> = lines
                    .filter_map(|l| l.split_once(':'))
                    .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
                    .collect();
                let length: usize = headers
                    .iter()
                    .find(|(n, _)| n == "content-length")
                    .and_then(|(_, v)| v.parse().ok())
                    .unwrap_or(0);
                while buffer.len() < head_end + length {
                    match socket.read(&mut chunk).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                    }
                }
                let body = buffer[head_end..].to_vec();
                seen.lock().expect("requests").push(Request {
                    method,
                    target,
                    headers,
                    body,
                });
                let (status, extra) = responses
                    .get(served.min(responses.len().saturating_sub(1)))
                    .cloned()
                    .unwrap_or((200, Vec::new()));
                served += 1;
                let mut answer = format!(
                    "HTTP/1.1 {status} Scripted\r\ncontent-length: 2\r\nconnection: close\r\n"
                );
                for (name, value) in extra {
                    answer.push_str(&format!("{name}: {value}\r\n"));
                }
                answer.push_str("\r\nok");
                let _ = socket.write_all(answer.as_bytes()).await;
                let _ = socket.shutdown().await;
            }
        });
        Self {
            url,
            requests,
            task,
        }
    }

    /// `http://127.0.0.1:<port>/`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Every request taken so far.
    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().expect("requests").clone()
    }
}
