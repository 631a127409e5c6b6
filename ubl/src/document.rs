//! EHF 3.0 / Peppol BIS Billing 3.0 UBL: an Invoice with the PDF embedded, and the CreditNote
//! that cancels it. Amounts are computed so the EN 16931 totals rules hold: line nets from
//! Dintero's lines, VAT per rate from the taxable amount, totals from those.

use std::{collections::BTreeMap, fmt::Write as _};

use base64::{Engine as _, engine::general_purpose::STANDARD};
use postbud_channel::Invoice;
use serde::Deserialize;

use crate::identifiers::{ParticipantId, Scheme};

/// `[channels.<name>.seller]`: what the UBL needs about the merchant.
#[derive(Debug, Clone, Deserialize, postbud_channel::keys::JsonSchema)]
#[schemars(crate = "postbud_channel::keys::schemars")]
#[serde(deny_unknown_fields)]
pub struct Seller {
    /// Legal name.
    pub name: String,
    // Checked at start-up under the scheme of the address's country: Norway 9 digits (mod 11,
    // ICD 0192), Sweden 10 (Luhn, 0007), Finland the business id (`1234567-1`, OVT 0216),
    // Denmark the CVR number (0184).
    /// Organisation number, checked for its country (NO, SE, FI, DK): the Peppol endpoint.
    pub organization_number: String,
    /// VAT number; a Norwegian seller's is NO, the organisation number and MVA (`NO745707327MVA`).
    #[serde(default)]
    pub vat_number: Option<String>,
    /// Postal address.
    pub address: SellerAddress,
    // Said on the invoice of a Norwegian seller only (NO-R-002).
    /// Registered in Foretaksregisteret (Norwegian companies: true).
    #[serde(default = "yes")]
    pub foretaksregisteret: bool,
}

/// Why a `[seller]` table cannot make a valid EHF document: the key inside the table
/// (`organization_number`, `vat_number`, `address.country`) and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SellerError {
    /// The key inside the seller table.
    pub key: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

impl std::fmt::Display for SellerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "seller.{}: {}", self.key, self.reason)
    }
}

impl std::error::Error for SellerError {}

impl Seller {
    /// The seller's checked Peppol participant id: the organisation number under the scheme of
    /// the address's country (`0192:745707327` for a Norwegian seller).
    pub fn participant(&self) -> Result<ParticipantId, SellerError> {
        let scheme = Scheme::of_country(&self.address.country).ok_or_else(|| SellerError {
            key: "address.country",
            reason: format!(
                "`{}`: Postbud makes EHF / Peppol BIS documents for sellers in NO, SE, FI and DK",
                self.address.country.escape_debug()
            ),
        })?;
        ParticipantId::new(scheme, &self.organization_number).map_err(|e| SellerError {
            key: "organization_number",
            reason: e.to_string(),
        })
    }

    /// Everything the Peppol rules check about the seller, checked when the configuration is
    /// read: the organisation number (`PEPPOL-COMMON-R040`…`R050`) and, for a Norwegian seller,
    /// the VAT number `NO` + that organisation number + `MVA` (`NO-R-001`).
    pub fn check(&self) -> Result<ParticipantId, SellerError> {
        let id = self.participant()?;
        if let Some(vat) = &self.vat_number {
            let compact: String = vat.chars().filter(|c| !c.is_whitespace()).collect();
            let country = self.address.country.to_ascii_uppercase();
            if compact.len() < 3 || !compact.is_char_boundary(2) {
                return Err(SellerError {
                    key: "vat_number",
                    reason: format!("`{}` is not a VAT number", vat.escape_debug()),
                });
            }
            if !compact[..2].eq_ignore_ascii_case(&country) {
                return Err(SellerError {
                    key: "vat_number",
                    reason: format!(
                        "`{}` must start with the seller's country code `{country}`",
                        vat.escape_debug()
                    ),
                });
            }
            if id.scheme() == Scheme::NoOrg && compact != format!("NO{}MVA", id.value()) {
                return Err(SellerError {
                    key: "vat_number",
                    reason: format!(
                        "`{}`: a Norwegian VAT number is NO, the organisation number and MVA: `NO{}MVA`",
                        vat.escape_debug(),
                        id.value()
                    ),
                });
            }
        }
        Ok(id)
    }
}

fn yes() -> bool {
    true
}

/// The seller's postal address.
#[derive(Debug, Clone, Deserialize, postbud_channel::keys::JsonSchema)]
#[schemars(crate = "postbud_channel::keys::schemars")]
#[serde(deny_unknown_fields)]
pub struct SellerAddress {
    /// Street.
    pub line: String,
    /// Postal code.
    pub postal_code: String,
    /// City.
    pub city: String,
    /// ISO 3166 alpha-2.
    pub country: String,
}

const CUSTOMIZATION: &str =
    "urn:cen.eu:en16931:2017#compliant#urn:fdc:peppol.eu:2017:poacc:billing:3.0";
const PROFILE: &str = "urn:fdc:peppol.eu:2017:poacc:billing:01:1.0";

/// Text as XML 1.0 character data: markup escaped, and the characters XML 1.0 cannot carry at
/// all (control characters but tab and line breaks, U+FFFE, U+FFFF) left out, so Dintero data
/// can never make the file not well-formed.
fn esc(text: &str) -> String {
    text.chars()
        .filter(|c| {
            matches!(c, '\t' | '\n' | '\r') || (*c >= ' ' && !matches!(c, '\u{FFFE}' | '\u{FFFF}'))
        })
        .collect::<String>()
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Largest amount, in minor units, an EHF document is made for: 10^13 (a hundred billion in
/// the currency). Every sum of such amounts fits an `i64`, so the totals cannot wrap.
const MAX_AMOUNT: i64 = 10_000_000_000_000;

/// Refuses amounts and rates no invoice has, before any arithmetic on them.
fn check_amounts(invoice: &Invoice) -> Result<(), String> {
    let amounts = std::iter::once(("the invoice amount", invoice.amount)).chain(
        invoice.lines.iter().flat_map(|l| {
            [
                ("a line amount", l.amount),
                ("a line's VAT amount", l.vat_amount),
            ]
        }),
    );
    for (what, amount) in amounts {
        if !(-MAX_AMOUNT..=MAX_AMOUNT).contains(&amount) {
            return Err(format!(
                "{what} ({amount} minor units) is out of the range an EHF invoice is made for (±{MAX_AMOUNT})"
            ));
        }
    }
    if invoice.lines.len() > 100_000 {
        return Err(format!(
            "{} lines are more than an EHF invoice is made for",
            invoice.lines.len()
        ));
    }
    if let Some(line) = invoice
        .lines
        .iter()
        .find(|l| !(0.0..=100.0).contains(&l.vat))
    {
        return Err(format!("a VAT rate of {} % is not a rate", line.vat));
    }
    Ok(())
}

/// Minor units as `123.45`.
fn money(minor: i64) -> String {
    let sign = if minor < 0 { "-" } else { "" };
    format!("{sign}{}.{:02}", minor.abs() / 100, minor.abs() % 100)
}

/// A decimal without trailing zeros (`2`, `0.5`, `133.333333`).
fn decimal(value: f64) -> String {
    let text = format!("{value:.6}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text.is_empty() || text == "-0" {
        "0".into()
    } else {
        text.to_owned()
    }
}

struct Line {
    id: String,
    name: String,
    quantity: f64,
    net: i64,
    rate: f64,
}

fn category(rate: f64) -> &'static str {
    if rate == 0.0 { "Z" } else { "S" }
}

fn lines(invoice: &Invoice) -> Vec<Line> {
    invoice
        .lines
        .iter()
        .enumerate()
        .map(|(index, line)| Line {
            id: line
                .line_id
                .clone()
                .unwrap_or_else(|| (index + 1).to_string()),
            name: if line.description.is_empty() {
                "Item".into()
            } else {
                line.description.clone()
            },
            quantity: if line.quantity > 0.0 {
                line.quantity
            } else {
                1.0
            },
            net: line.amount - line.vat_amount,
            rate: line.vat,
        })
        .collect()
}

/// (taxable, tax) per VAT rate, keyed by the rate in hundredths of a percent.
fn subtotals(lines: &[Line]) -> BTreeMap<i64, (i64, i64, f64)> {
    let mut groups: BTreeMap<i64, (i64, i64, f64)> = BTreeMap::new();
    for line in lines {
        let entry = groups
            .entry((line.rate * 100.0).round() as i64)
            .or_insert((0, 0, line.rate));
        entry.0 += line.net;
    }
    for (taxable, tax, rate) in groups.values_mut() {
        // BR-CO-17: the VAT of a category is its taxable amount times its rate, rounded.
        *tax = ((*taxable as f64) * *rate / 100.0).round() as i64;
    }
    groups
}

fn party_address(
    out: &mut String,
    line: Option<&str>,
    city: Option<&str>,
    zone: Option<&str>,
    country: &str,
) {
    out.push_str("<cac:PostalAddress>");
    if let Some(line) = line.filter(|l| !l.is_empty()) {
        let _ = write!(out, "<cbc:StreetName>{}</cbc:StreetName>", esc(line));
    }
    if let Some(city) = city.filter(|c| !c.is_empty()) {
        let _ = write!(out, "<cbc:CityName>{}</cbc:CityName>", esc(city));
    }
    if let Some(zone) = zone.filter(|z| !z.is_empty()) {
        let _ = write!(out, "<cbc:PostalZone>{}</cbc:PostalZone>", esc(zone));
    }
    let _ = write!(
        out,
        "<cac:Country><cbc:IdentificationCode>{}</cbc:IdentificationCode></cac:Country></cac:PostalAddress>",
        esc(country)
    );
}

/// How the buyer is found: its checked organisation number under its country's scheme, or
/// (a consumer, or a business abroad Postbud has no scheme for) its email address, EAS `EM`.
enum BuyerId {
    Business(ParticipantId),
    Email(String),
}

fn buyer_id(customer: &postbud_channel::Customer) -> Result<(BuyerId, Option<String>), String> {
    let country = customer.country.as_deref().unwrap_or("NO");
    let email = customer
        .email
        .as_deref()
        .map(str::trim)
        .filter(|e| !e.is_empty());
    match (
        customer.organization_number.as_deref().map(str::trim),
        email,
    ) {
        (Some(org), email) if !org.is_empty() => match Scheme::of_country(country) {
            Some(scheme) => ParticipantId::new(scheme, org)
                .map(|id| (BuyerId::Business(id), None))
                .map_err(|e| format!("the buyer's organisation number: {e}")),
            // Peppol has no scheme Postbud checks for the country: the number is stated as it
            // is, and the buyer is reached by email.
            None => match email {
                Some(email) => Ok((BuyerId::Email(email.to_owned()), Some(org.to_owned()))),
                None => Err(format!(
                    "the buyer in `{}` has an organisation number under no scheme Postbud checks (NO, SE, FI, DK) and no email for the Peppol EndpointID",
                    country.escape_debug()
                )),
            },
        },
        (_, Some(email)) => Ok((BuyerId::Email(email.to_owned()), None)),
        _ => Err(
            "the buyer has neither an organisation number nor an email for the Peppol EndpointID"
                .into(),
        ),
    }
}

fn parties(out: &mut String, seller: &Seller, invoice: &Invoice) -> Result<(), String> {
    let s = seller;
    let id = s.check().map_err(|e| e.to_string())?;
    let icd = id.scheme().icd();
    let _ = write!(
        out,
        "<cac:AccountingSupplierParty><cac:Party><cbc:EndpointID schemeID=\"{icd}\">{}</cbc:EndpointID>",
        esc(id.value())
    );
    let _ = write!(
        out,
        "<cac:PartyName><cbc:Name>{}</cbc:Name></cac:PartyName>",
        esc(&s.name)
    );
    party_address(
        out,
        Some(&s.address.line),
        Some(&s.address.city),
        Some(&s.address.postal_code),
        &s.address.country.to_ascii_uppercase(),
    );
    if let Some(vat) = &s.vat_number {
        let vat: String = vat.chars().filter(|c| !c.is_whitespace()).collect();
        let _ = write!(
            out,
            "<cac:PartyTaxScheme><cbc:CompanyID>{}</cbc:CompanyID><cac:TaxScheme><cbc:ID>VAT</cbc:ID></cac:TaxScheme></cac:PartyTaxScheme>",
            esc(&vat)
        );
    }
    // Foretaksregisteret is Norwegian law (NO-R-002); other countries' sellers do not state it.
    if s.foretaksregisteret && id.scheme() == Scheme::NoOrg {
        out.push_str("<cac:PartyTaxScheme><cbc:CompanyID>Foretaksregisteret</cbc:CompanyID><cac:TaxScheme><cbc:ID>TAX</cbc:ID></cac:TaxScheme></cac:PartyTaxScheme>");
    }
    let _ = write!(
        out,
        "<cac:PartyLegalEntity><cbc:RegistrationName>{}</cbc:RegistrationName><cbc:CompanyID schemeID=\"{icd}\">{}</cbc:CompanyID></cac:PartyLegalEntity></cac:Party></cac:AccountingSupplierParty>",
        esc(&s.name),
        esc(id.value())
    );

    let c = &invoice.customer;
    let (buyer, plain_number) = buyer_id(c)?;
    let endpoint = match &buyer {
        BuyerId::Business(id) => format!(
            "<cbc:EndpointID schemeID=\"{}\">{}</cbc:EndpointID>",
            id.scheme().icd(),
            esc(id.value())
        ),
        BuyerId::Email(email) => format!(
            "<cbc:EndpointID schemeID=\"EM\">{}</cbc:EndpointID>",
            esc(email)
        ),
    };
    let name = c
        .business_name
        .clone()
        .filter(|n| !n.trim().is_empty())
        .unwrap_or_else(|| c.name.clone());
    let _ = write!(
        out,
        "<cac:AccountingCustomerParty><cac:Party>{endpoint}<cac:PartyName><cbc:Name>{}</cbc:Name></cac:PartyName>",
        esc(&name)
    );
    party_address(
        out,
        c.address_line.as_deref(),
        c.postal_place.as_deref(),
        c.postal_code.as_deref(),
        &c.country.as_deref().unwrap_or("NO").to_ascii_uppercase(),
    );
    let _ = write!(
        out,
        "<cac:PartyLegalEntity><cbc:RegistrationName>{}</cbc:RegistrationName>",
        esc(&name)
    );
    match (&buyer, plain_number) {
        (BuyerId::Business(id), _) => {
            let _ = write!(
                out,
                "<cbc:CompanyID schemeID=\"{}\">{}</cbc:CompanyID>",
                id.scheme().icd(),
                esc(id.value())
            );
        }
        (BuyerId::Email(_), Some(number)) => {
            let _ = write!(out, "<cbc:CompanyID>{}</cbc:CompanyID>", esc(&number));
        }
        (BuyerId::Email(_), None) => {}
    }
    out.push_str("</cac:PartyLegalEntity></cac:Party></cac:AccountingCustomerParty>");
    Ok(())
}

fn tax_and_totals(out: &mut String, lines: &[Line], currency: &str) {
    let groups = subtotals(lines);
    let net: i64 = lines.iter().map(|l| l.net).sum();
    let tax: i64 = groups.values().map(|(_, t, _)| t).sum();
    let cur = esc(currency);
    let _ = write!(
        out,
        "<cac:TaxTotal><cbc:TaxAmount currencyID=\"{cur}\">{}</cbc:TaxAmount>",
        money(tax)
    );
    for (taxable, amount, rate) in groups.values() {
        let _ = write!(
            out,
            "<cac:TaxSubtotal><cbc:TaxableAmount currencyID=\"{cur}\">{}</cbc:TaxableAmount><cbc:TaxAmount currencyID=\"{cur}\">{}</cbc:TaxAmount><cac:TaxCategory><cbc:ID>{}</cbc:ID><cbc:Percent>{}</cbc:Percent><cac:TaxScheme><cbc:ID>VAT</cbc:ID></cac:TaxScheme></cac:TaxCategory></cac:TaxSubtotal>",
            money(*taxable),
            money(*amount),
            category(*rate),
            decimal(*rate)
        );
    }
    let _ = write!(
        out,
        "</cac:TaxTotal><cac:LegalMonetaryTotal><cbc:LineExtensionAmount currencyID=\"{cur}\">{net}</cbc:LineExtensionAmount><cbc:TaxExclusiveAmount currencyID=\"{cur}\">{net}</cbc:TaxExclusiveAmount><cbc:TaxInclusiveAmount currencyID=\"{cur}\">{gross}</cbc:TaxInclusiveAmount><cbc:PayableAmount currencyID=\"{cur}\">{gross}</cbc:PayableAmount></cac:LegalMonetaryTotal>",
        net = money(net),
        gross = money(net + tax)
    );
}

fn line_xml(out: &mut String, element: &str, quantity_element: &str, line: &Line, currency: &str) {
    let cur = esc(currency);
    let _ = write!(
        out,
        "<cac:{element}><cbc:ID>{}</cbc:ID><cbc:{quantity_element} unitCode=\"C62\">{}</cbc:{quantity_element}><cbc:LineExtensionAmount currencyID=\"{cur}\">{}</cbc:LineExtensionAmount><cac:Item><cbc:Name>{}</cbc:Name><cac:ClassifiedTaxCategory><cbc:ID>{}</cbc:ID><cbc:Percent>{}</cbc:Percent><cac:TaxScheme><cbc:ID>VAT</cbc:ID></cac:TaxScheme></cac:ClassifiedTaxCategory></cac:Item><cac:Price><cbc:PriceAmount currencyID=\"{cur}\">{}</cbc:PriceAmount></cac:Price></cac:{element}>",
        esc(&line.id),
        decimal(line.quantity),
        money(line.net),
        esc(&line.name),
        category(line.rate),
        decimal(line.rate),
        decimal(line.net as f64 / 100.0 / line.quantity)
    );
}

fn header(out: &mut String, root: &str, id: &str, issue: &str) {
    let _ = write!(
        out,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<{root} xmlns=\"urn:oasis:names:specification:ubl:schema:xsd:{root}-2\" xmlns:cac=\"urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2\" xmlns:cbc=\"urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2\"><cbc:CustomizationID>{CUSTOMIZATION}</cbc:CustomizationID><cbc:ProfileID>{PROFILE}</cbc:ProfileID><cbc:ID>{}</cbc:ID><cbc:IssueDate>{issue}</cbc:IssueDate>",
        esc(id)
    );
}

fn reference(invoice: &Invoice) -> String {
    invoice
        .customer
        .customer_reference
        .clone()
        .or_else(|| invoice.merchant_reference.clone())
        .unwrap_or_else(|| invoice.transaction_id.clone())
}

/// The Invoice, with the PDF as an `AdditionalDocumentReference`.
///
/// Refused, with the reason, when the seller fails [`Seller::check`] or the buyer's organisation
/// number fails its country's check. A business buyer in NO, SE, FI or DK is named by its
/// organisation number under that country's scheme; a consumer (or a business abroad) by email,
/// EAS `EM`: EN 16931 allows it, but Peppol BIS 3.0 has no `EM` (`PEPPOL-EN16931-CL008`), so such
/// a document suits an ERP's folder and can never be sent over Peppol.
pub fn invoice(seller: &Seller, invoice: &Invoice) -> Result<String, String> {
    check_amounts(invoice)?;
    let issue = invoice
        .invoice_date
        .unwrap_or_else(|| jiff::Zoned::now().date())
        .to_string();
    let lines = lines(invoice);
    let mut out = String::new();
    header(&mut out, "Invoice", &invoice.invoice_number, &issue);
    if let Some(due) = invoice.due_date {
        let _ = write!(out, "<cbc:DueDate>{due}</cbc:DueDate>");
    }
    let _ = write!(
        out,
        "<cbc:InvoiceTypeCode>380</cbc:InvoiceTypeCode><cbc:DocumentCurrencyCode>{}</cbc:DocumentCurrencyCode><cbc:BuyerReference>{}</cbc:BuyerReference>",
        esc(&invoice.currency),
        esc(&reference(invoice))
    );
    let _ = write!(
        out,
        "<cac:AdditionalDocumentReference><cbc:ID>{}</cbc:ID><cbc:DocumentDescription>Invoice PDF</cbc:DocumentDescription><cac:Attachment><cbc:EmbeddedDocumentBinaryObject mimeCode=\"application/pdf\" filename=\"{}\">{}</cbc:EmbeddedDocumentBinaryObject></cac:Attachment></cac:AdditionalDocumentReference>",
        esc(&invoice.invoice_number),
        esc(&invoice.pdf.file_name),
        STANDARD.encode(&invoice.pdf.bytes)
    );
    parties(&mut out, seller, invoice)?;
    tax_and_totals(&mut out, &lines, &invoice.currency);
    for line in &lines {
        line_xml(
            &mut out,
            "InvoiceLine",
            "InvoicedQuantity",
            line,
            &invoice.currency,
        );
    }
    out.push_str("</Invoice>\n");
    Ok(out)
}

/// The CreditNote that cancels the invoice in full.
pub fn credit_note(seller: &Seller, invoice: &Invoice) -> Result<String, String> {
    check_amounts(invoice)?;
    let issue = jiff::Zoned::now().date().to_string();
    let lines = lines(invoice);
    let mut out = String::new();
    header(
        &mut out,
        "CreditNote",
        &format!("{}-CN", invoice.invoice_number),
        &issue,
    );
    let _ = write!(
        out,
        "<cbc:CreditNoteTypeCode>381</cbc:CreditNoteTypeCode><cbc:DocumentCurrencyCode>{}</cbc:DocumentCurrencyCode><cbc:BuyerReference>{}</cbc:BuyerReference>",
        esc(&invoice.currency),
        esc(&reference(invoice))
    );
    let _ = write!(
        out,
        "<cac:BillingReference><cac:InvoiceDocumentReference><cbc:ID>{}</cbc:ID>",
        esc(&invoice.invoice_number)
    );
    if let Some(date) = invoice.invoice_date {
        let _ = write!(out, "<cbc:IssueDate>{date}</cbc:IssueDate>");
    }
    out.push_str("</cac:InvoiceDocumentReference></cac:BillingReference>");
    parties(&mut out, seller, invoice)?;
    tax_and_totals(&mut out, &lines, &invoice.currency);
    for line in &lines {
        line_xml(
            &mut out,
            "CreditNoteLine",
            "CreditedQuantity",
            line,
            &invoice.currency,
        );
    }
    out.push_str("</CreditNote>\n");
    Ok(out)
}

#[cfg(test)]
mod tests {
    use postbud_channel::{InvoiceLine, Pdf};

    use super::*;

    /// Dintero's amounts are int32, so no transaction brings such sums; a channel crate is
    /// given invoices by other code too, and the totals must never wrap.
    #[test]
    fn amounts_that_would_wrap_the_totals_are_refused_with_the_reason() {
        let mut invoice =
            Invoice::new("T1.a", "INV-1", "NOK", Pdf::new("INV-1", Vec::new().into()));
        invoice.amount = 9_223_372_036_854_775_000;
        let mut line = InvoiceLine::new("Everything", 9_223_372_036_854_775_000);
        line.vat_amount = -9_223_372_036_854_775_000;
        invoice.lines = vec![line];
        let refused = check_amounts(&invoice).expect_err("refused");
        assert!(refused.contains("out of the range"), "{refused}");
        invoice.amount = 50_000;
        invoice.lines = vec![InvoiceLine::new("Chair", 50_000)];
        assert!(check_amounts(&invoice).is_ok());
    }
}
