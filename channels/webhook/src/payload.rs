//! The JSON body: `{"type", "timestamp", "data"}`.

use base64::{Engine as _, engine::general_purpose::STANDARD};
use postbud_channel::Invoice;
use serde::Deserialize;
use serde_json::json;

/// How the PDF travels.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    Deserialize,
    serde::Serialize,
    postbud_channel::keys::JsonSchema,
)]
#[schemars(crate = "postbud_channel::keys::schemars")]
#[serde(rename_all = "lowercase")]
pub enum PdfMode {
    /// A signed, expiring URL served by `postbud serve`.
    #[default]
    Link,
    /// Base64 in the body as well (keep an eye on the receiver's body limit).
    Inline,
}

/// The serialised body of one attempt.
pub fn body(
    invoice: &Invoice,
    event: &str,
    now: jiff::Timestamp,
    pdf: PdfMode,
) -> Result<Vec<u8>, String> {
    if pdf == PdfMode::Link && invoice.link.is_none() && event == "invoice.ready" {
        return Err(
            "no signed link for the PDF: set server.public_url, or pdf = \"inline\"".into(),
        );
    }
    let mut document = json!({
        "filename": postbud_channel::file_name::pdf(&invoice.pdf.file_name),
        "sha256": invoice.pdf.sha256,
        "size": invoice.pdf.bytes.len(),
        "url": invoice.link,
    });
    if pdf == PdfMode::Inline {
        document["content_base64"] = json!(STANDARD.encode(&invoice.pdf.bytes));
    }
    let body = json!({
        "type": event,
        "timestamp": now.to_string(),
        "data": {
            "transaction_id": invoice.transaction_id,
            "invoice_number": invoice.invoice_number,
            "merchant_reference": invoice.merchant_reference,
            "amount": invoice.amount,
            "vat_amount": invoice.vat_amount,
            "currency": invoice.currency,
            "invoice_date": invoice.invoice_date,
            "due_date": invoice.due_date,
            "customer": invoice.customer,
            "lines": invoice.lines,
            "pdf": document,
        }
    });
    serde_json::to_vec(&body).map_err(|e| e.to_string())
}
