//! The sandbox's invoice PDFs are real PDFs: an independent parser reads them and finds the text.

#[test]
fn the_invoice_pdf_parses_and_carries_its_text() {
    let bytes = postbud_sandbox::pdf::invoice_pdf(&[
        "Invoice number: SBX-000042".into(),
        "Amount: 500.00 NOK (æøå)".into(),
    ]);
    let document = lopdf::Document::load_mem(&bytes).expect("lopdf parses the PDF, xref included");
    let pages = document.get_pages();
    assert_eq!(pages.len(), 1);
    let text = document.extract_text(&[1]).expect("text");
    assert!(text.contains("SBX-000042"), "{text}");
}

#[tokio::test]
async fn seeded_transactions_follow_the_documented_shape() {
    let sandbox = postbud_sandbox::Sandbox::start(Default::default())
        .await
        .expect("start");
    let id = sandbox.seed(Default::default());
    let tx = sandbox.transaction(&id).expect("stored");
    assert!(id.starts_with("T12345678."), "{id}");
    assert_eq!(tx["payment_product"], "kravia");
    assert_eq!(tx["status"], "AUTHORIZED");
    assert!(tx["metadata"]["kravia:invoice_number"].is_string());
    assert!(
        tx["metadata"]["kravia:invoice_url"]
            .as_str()
            .expect("url")
            .contains("/v1/files/f-")
    );
    let pdf = sandbox.pdf(&id).expect("pdf");
    lopdf::Document::load_mem(&pdf).expect("a real PDF per invoice");
}
