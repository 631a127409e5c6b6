//! EHF 3.0 / Peppol BIS Billing 3.0 for Postbud's channels: the UBL Invoice with the PDF
//! embedded and the CreditNote that cancels it ([`invoice`], [`credit_note`]), and the checks of
//! the Nordic business identifiers a Peppol participant is found by ([`identifiers`]).
//!
//! The SFTP channel drops this UBL in an ERP's folder; the Peppol channel sends it through an
//! access point. Both build it here so both carry the same, valid document.

mod document;
pub mod identifiers;

pub use document::{Seller, SellerAddress, SellerError, credit_note, invoice};
