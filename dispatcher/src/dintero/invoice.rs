//! A Dintero transaction as the invoice channels deliver: the one place where Dintero's wire
//! shape meets the channel SDK's [`Invoice`].

use postbud_channel::{Customer, Invoice, InvoiceLine, Pdf, locale_for_country};

use super::model::{Address, Transaction};

/// The invoice of an eligible transaction, with its fetched PDF; `invoice_number` is the one
/// eligibility found (`kravia:invoice_number`).
pub fn invoice_of(tx: &Transaction, invoice_number: &str, pdf: Pdf) -> Invoice {
    let billing = tx.billing_address.clone().unwrap_or_default();
    let kravia_date = |key: &str| tx.kravia_event_value(key).and_then(|d| d.parse().ok());
    let mut invoice = Invoice::new(&tx.id, invoice_number, &tx.currency, pdf);
    // The shipping option is a line of the invoice as it is of the capture: without it the
    // lines would not add up to the amount the customer owes.
    invoice.lines = tx
        .items
        .iter()
        .chain(tx.shipping_option.iter())
        .map(|item| {
            let mut line =
                InvoiceLine::new(item.description.clone().unwrap_or_default(), item.amount);
            line.line_id = item.line_id.clone();
            line.id = item.id.clone();
            line.quantity = item.quantity.unwrap_or(1.0);
            line.vat_amount = item.vat_amount.unwrap_or(0);
            line.vat = item.vat.unwrap_or(0.0);
            line
        })
        .collect();
    invoice.product_type = tx.payment_product_type.clone();
    invoice.merchant_reference = tx.merchant_reference.clone();
    invoice.merchant_name = tx.metadata_str("merchant_name").map(str::to_owned);
    invoice.amount = tx.amount;
    invoice.vat_amount = invoice.lines.iter().map(|l| l.vat_amount).sum();
    invoice.invoice_date = kravia_date("kravia:invoice_date");
    invoice.due_date = kravia_date("kravia:invoice_due_date");
    invoice.locale = locale_for_country(billing.country.as_deref()).to_owned();
    invoice.customer = customer_of(&billing, tx);
    invoice
}

/// The customer from the billing address, with the transaction's customer contact details where
/// the address has none.
fn customer_of(a: &Address, tx: &Transaction) -> Customer {
    let contact = tx.customer.as_ref();
    let mut customer = Customer::default();
    customer.name = [a.first_name.as_deref(), a.last_name.as_deref()]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
    customer.business_name = a.business_name.clone();
    customer.organization_number = a.organization_number.clone();
    customer.email = a
        .email
        .clone()
        .or_else(|| contact.and_then(|c| c.email.clone()));
    customer.phone = a
        .phone_number
        .clone()
        .or_else(|| contact.and_then(|c| c.phone_number.clone()));
    customer.address_line = a.address_line.clone();
    customer.postal_code = a.postal_code.clone();
    customer.postal_place = a.postal_place.clone();
    customer.country = a.country.clone();
    customer.customer_reference = a.customer_reference.clone();
    customer
}
