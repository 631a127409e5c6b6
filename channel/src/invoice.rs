//! What a channel delivers.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// One Kravia invoice, ready to deliver: identity, amounts, customer, lines and the PDF.
///
/// Every attempt and every channel sees the same value, rebuilt from the store, so the bytes
/// a customer receives by email are the bytes an ERP receives by SFTP.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Invoice {
    /// Dintero transaction id.
    pub transaction_id: String,
    /// `kravia:invoice_number`.
    pub invoice_number: String,
    /// `kravia.invoice_b2b`, `kravia.invoice_b2c`, ...
    pub product_type: String,
    /// The merchant's order reference.
    pub merchant_reference: Option<String>,
    /// The merchant's name as Dintero knows it (`metadata.merchant_name`).
    pub merchant_name: Option<String>,
    /// Total in minor units (øre, cents), VAT included.
    pub amount: i64,
    /// VAT in minor units, summed over the lines.
    pub vat_amount: i64,
    /// ISO 4217.
    pub currency: String,
    /// `kravia:invoice_date`, when Dintero gave it.
    pub invoice_date: Option<jiff::civil::Date>,
    /// `kravia:invoice_due_date`, when Dintero gave it.
    pub due_date: Option<jiff::civil::Date>,
    /// Who pays.
    pub customer: Customer,
    /// The order lines.
    pub lines: Vec<InvoiceLine>,
    /// Language for messages: `nb`, `sv`, `fi` or `en`, from the billing country.
    pub locale: String,
    /// The PDF.
    pub pdf: Pdf,
    /// A signed, expiring link to the PDF served by `postbud serve`, when a public URL is set.
    pub link: Option<String>,
}

/// The invoice's customer, from the billing address.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Customer {
    /// First and last name.
    pub name: String,
    /// Company name (B2B).
    pub business_name: Option<String>,
    /// Company registration number (B2B).
    pub organization_number: Option<String>,
    /// Where an email goes.
    pub email: Option<String>,
    /// Where an SMS goes, as Dintero has it (E.123, often with `+`).
    pub phone: Option<String>,
    /// Street address.
    pub address_line: Option<String>,
    /// Postal code.
    pub postal_code: Option<String>,
    /// City.
    pub postal_place: Option<String>,
    /// ISO 3166 alpha-2.
    pub country: Option<String>,
    /// The buyer's own reference (B2B).
    pub customer_reference: Option<String>,
}

/// One order line.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct InvoiceLine {
    /// Unique per order.
    pub line_id: Option<String>,
    /// SKU.
    pub id: Option<String>,
    /// What was sold.
    pub description: String,
    /// How many.
    pub quantity: f64,
    /// Line total in minor units, VAT included.
    pub amount: i64,
    /// VAT in minor units.
    pub vat_amount: i64,
    /// VAT rate in percent.
    pub vat: f64,
}

/// The invoice document.
#[derive(Clone, Serialize, Deserialize)]
pub struct Pdf {
    /// File name to present (`<invoice number>.pdf`).
    pub file_name: String,
    /// Lowercase hex sha256 of [`Pdf::bytes`].
    pub sha256: String,
    /// The PDF itself; not serialised with the invoice, the store keeps it once.
    #[serde(skip)]
    pub bytes: Bytes,
}

impl std::fmt::Debug for Pdf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pdf")
            .field("file_name", &self.file_name)
            .field("sha256", &self.sha256)
            .field("size", &self.bytes.len())
            .finish()
    }
}

impl Pdf {
    /// Wraps bytes, computing their checksum; the file name goes through
    /// [`crate::file_name::pdf`], whoever made it (a merchant's own `Dispatcher::document`).
    pub fn new(file_name: impl Into<String>, bytes: Bytes) -> Self {
        Self {
            file_name: crate::file_name::pdf(&file_name.into()),
            sha256: sha256_hex(&bytes),
            bytes,
        }
    }
}

/// Lowercase hex sha256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The locale a customer in `country` reads.
pub fn locale_for_country(country: Option<&str>) -> &'static str {
    match country.map(str::to_ascii_uppercase).as_deref() {
        Some("NO") => "nb",
        Some("SE") => "sv",
        Some("FI") => "fi",
        _ => "en",
    }
}

impl Invoice {
    /// The invoice `invoice_number` of transaction `transaction_id` with its PDF; every other
    /// field empty (an amount of 0, no customer details, no lines, locale `en`) for the caller
    /// to set.
    pub fn new(
        transaction_id: impl Into<String>,
        invoice_number: impl Into<String>,
        currency: impl Into<String>,
        pdf: Pdf,
    ) -> Self {
        Self {
            transaction_id: transaction_id.into(),
            invoice_number: invoice_number.into(),
            product_type: String::new(),
            merchant_reference: None,
            merchant_name: None,
            amount: 0,
            vat_amount: 0,
            currency: currency.into(),
            invoice_date: None,
            due_date: None,
            customer: Customer::default(),
            lines: Vec::new(),
            locale: "en".into(),
            pdf,
            link: None,
        }
    }
}

impl InvoiceLine {
    /// A line `description` of `amount` minor units, VAT included; quantity 1, no VAT, no ids.
    pub fn new(description: impl Into<String>, amount: i64) -> Self {
        Self {
            line_id: None,
            id: None,
            description: description.into(),
            quantity: 1.0,
            amount,
            vat_amount: 0,
            vat: 0.0,
        }
    }
}
