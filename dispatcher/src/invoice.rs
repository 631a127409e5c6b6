//! What a channel delivers.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::dintero::model::{Address, Transaction};

/// One Kravia invoice, ready to deliver: identity, amounts, customer, lines and the PDF.
///
/// Every attempt and every channel sees the same value, rebuilt from the store, so the bytes
/// a customer receives by email are the bytes an ERP receives by SFTP.
#[derive(Debug, Clone, Serialize, Deserialize)]
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
    /// Builds the invoice from an eligible transaction and its fetched PDF.
    ///
    /// `invoice_number` is the one eligibility found (`kravia:invoice_number`).
    pub fn from_transaction(tx: &Transaction, invoice_number: &str, pdf: Pdf) -> Self {
        let billing = tx.billing_address.clone().unwrap_or_default();
        let lines: Vec<InvoiceLine> = tx
            .items
            .iter()
            .map(|item| InvoiceLine {
                line_id: item.line_id.clone(),
                id: item.id.clone(),
                description: item.description.clone().unwrap_or_default(),
                quantity: item.quantity.unwrap_or(1.0),
                amount: item.amount,
                vat_amount: item.vat_amount.unwrap_or(0),
                vat: item.vat.unwrap_or(0.0),
            })
            .collect();
        let kravia_date = |key: &str| tx.kravia_event_value(key).and_then(|d| d.parse().ok());
        Self {
            transaction_id: tx.id.clone(),
            invoice_number: invoice_number.to_owned(),
            product_type: tx.payment_product_type.clone(),
            merchant_reference: tx.merchant_reference.clone(),
            merchant_name: tx.metadata_str("merchant_name").map(str::to_owned),
            amount: tx.amount,
            vat_amount: lines.iter().map(|l| l.vat_amount).sum(),
            currency: tx.currency.clone(),
            invoice_date: kravia_date("kravia:invoice_date"),
            due_date: kravia_date("kravia:invoice_due_date"),
            locale: locale_for_country(billing.country.as_deref()).to_owned(),
            customer: Customer::from_address(&billing, tx),
            lines,
            pdf,
            link: None,
        }
    }
}

impl Customer {
    fn from_address(a: &Address, tx: &Transaction) -> Self {
        let name = [a.first_name.as_deref(), a.last_name.as_deref()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" ");
        let customer = tx.customer.as_ref();
        Self {
            name,
            business_name: a.business_name.clone(),
            organization_number: a.organization_number.clone(),
            email: a
                .email
                .clone()
                .or_else(|| customer.and_then(|c| c.email.clone())),
            phone: a
                .phone_number
                .clone()
                .or_else(|| customer.and_then(|c| c.phone_number.clone())),
            address_line: a.address_line.clone(),
            postal_code: a.postal_code.clone(),
            postal_place: a.postal_place.clone(),
            country: a.country.clone(),
            customer_reference: a.customer_reference.clone(),
        }
    }
}
