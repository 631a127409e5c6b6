//! Every shape of UBL Postbud makes passes the official Peppol BIS Billing 3.0 rules (OpenPeppol's
//! and CEN's Schematrons, as an access point runs them) with no fatal finding: sellers and buyers
//! in Norway, Sweden, Finland and Denmark, four VAT rates, and the CreditNote. A consumer's UBL
//! fails only the Peppol rule that has no email address (EN 16931 allows it). And the oracle
//! bites: a seller number that fails mod 11 is fatal.

use postbud_channel::{Customer, Invoice, InvoiceLine, Pdf};
use postbud_sandbox::peppol_rules::{self, Findings};
use postbud_ubl::{Seller, SellerAddress, credit_note, invoice};

/// A seller in `country` with a valid registration and VAT number.
fn seller(country: &str) -> Seller {
    let (number, vat, city, postal) = match country {
        "NO" => ("745707327", "NO745707327MVA", "Oslo", "0150"),
        "SE" => ("556036-0793", "SE556036079301", "Stockholm", "11122"),
        "FI" => ("0112038-9", "FI01120389", "Helsinki", "00100"),
        "DK" => ("24256790", "DK24256790", "København", "1050"),
        other => panic!("no seller for {other}"),
    };
    Seller {
        name: format!("Postbud Test {country} AS"),
        organization_number: number.into(),
        vat_number: Some(vat.into()),
        address: SellerAddress {
            line: "Storgata 1".into(),
            postal_code: postal.into(),
            city: city.into(),
            country: country.into(),
        },
        foretaksregisteret: true,
    }
}

/// A business buyer in `country` with a valid (fictional) registration number.
fn business(country: &str) -> Customer {
    let number = match country {
        "NO" => "987654325",
        "SE" => "5566778899",
        "FI" => "1234567-1",
        "DK" => "12345674",
        other => panic!("no buyer for {other}"),
    };
    let mut customer = Customer::default();
    customer.name = "Kari Nordmann".into();
    customer.business_name = Some(format!("Kjøper {country} & Co <AS>"));
    customer.organization_number = Some(number.into());
    customer.email = Some("ap@example.com".into());
    customer.address_line = Some("Kundeveien 2".into());
    customer.postal_code = Some("5003".into());
    customer.postal_place = Some("Bergen".into());
    customer.country = Some(country.into());
    customer.customer_reference = Some("PO-4711".into());
    customer
}

fn consumer() -> Customer {
    let mut customer = Customer::default();
    customer.name = "Ola Nordmann".into();
    customer.email = Some("ola@example.com".into());
    customer.country = Some("NO".into());
    customer
}

/// A line of `net` minor units at `rate` percent, as Dintero gives it (VAT included).
fn line(description: &str, net: i64, rate: f64) -> InvoiceLine {
    let vat = (net as f64 * rate / 100.0).round() as i64;
    let mut line = InvoiceLine::new(description, net + vat);
    line.vat = rate;
    line.vat_amount = vat;
    line
}

fn document(customer: Customer, lines: Vec<InvoiceLine>) -> Invoice {
    let mut invoice = Invoice::new(
        "T11223344.abc",
        "INV-1001",
        "NOK",
        Pdf::new("INV-1001", b"%PDF-1.4 fake".to_vec().into()),
    );
    invoice.invoice_date = Some(jiff::civil::date(2026, 3, 1));
    invoice.due_date = Some(jiff::civil::date(2026, 3, 15));
    invoice.amount = lines.iter().map(|l| l.amount).sum();
    invoice.vat_amount = lines.iter().map(|l| l.vat_amount).sum();
    invoice.lines = lines;
    invoice.customer = customer;
    invoice
}

fn chair() -> Vec<InvoiceLine> {
    vec![line("Chair", 40_000, 25.0)]
}

/// The oracle's findings, or `None` when it cannot run here (the test has said so).
fn check(what: &str, xml: &str) -> Option<Findings> {
    let findings = peppol_rules::check(xml.as_bytes())?;
    eprintln!("{what}: {:?}", findings.ids());
    Some(findings)
}

fn assert_no_fatal(what: &str, xml: &str) {
    if let Some(findings) = check(what, xml) {
        assert!(
            findings.fatal().is_empty(),
            "{what}: the official rules refuse it:\n{findings}\n{xml}"
        );
    }
}

#[test]
fn every_seller_and_buyer_country_passes_the_official_rules() {
    let started = std::time::Instant::now();
    for seller_country in ["NO", "SE", "FI", "DK"] {
        for buyer_country in ["NO", "SE", "FI", "DK"] {
            let xml = invoice(
                &seller(seller_country),
                &document(business(buyer_country), chair()),
            )
            .expect("builds");
            assert_no_fatal(&format!("{seller_country} → {buyer_country}"), &xml);
        }
    }
    eprintln!("16 documents checked in {:?}", started.elapsed());
}

#[test]
fn the_endpoint_scheme_follows_the_country() {
    let xml = invoice(&seller("SE"), &document(business("FI"), chair())).expect("builds");
    assert!(xml.contains(r#"<cbc:EndpointID schemeID="0007">5560360793</cbc:EndpointID>"#));
    assert!(xml.contains(r#"<cbc:EndpointID schemeID="0216">003712345671</cbc:EndpointID>"#));
    assert!(!xml.contains("Foretaksregisteret"), "a Swedish seller");
    let xml = invoice(&seller("DK"), &document(business("NO"), chair())).expect("builds");
    assert!(xml.contains(r#"<cbc:EndpointID schemeID="0184">24256790</cbc:EndpointID>"#));
    assert!(xml.contains(r#"<cbc:CompanyID schemeID="0192">987654325</cbc:CompanyID>"#));
}

/// Peppol has no electronic address for a consumer: BIS 3.0.19's EAS list (`PEPPOL-EN16931-CL008`)
/// has no `EM` (CEN's EN 16931 list has it). So a consumer's UBL names the buyer by email and is
/// valid EN 16931 for an ERP's SFTP folder, but cannot be sent over Peppol, and the one fatal
/// Peppol finding is exactly that.
fn assert_only_the_email_endpoint_is_refused(what: &str, xml: &str) {
    let Some(findings) = check(what, xml) else {
        return;
    };
    let fatal = findings.fatal();
    assert!(
        fatal.len() == 1
            && fatal[0].id == "PEPPOL-EN16931-CL008"
            && fatal[0]
                .location
                .ends_with("cac:AccountingCustomerParty[1]/cac:Party[1]/cbc:EndpointID[1]"),
        "{what}: expected only the EM endpoint refused:\n{findings}\n{xml}"
    );
}

#[test]
fn a_consumer_is_named_by_email_which_peppol_cannot_route() {
    let xml = invoice(&seller("NO"), &document(consumer(), chair())).expect("builds");
    assert!(xml.contains(r#"<cbc:EndpointID schemeID="EM">ola@example.com</cbc:EndpointID>"#));
    assert_only_the_email_endpoint_is_refused("a consumer", &xml);
    let xml = credit_note(&seller("NO"), &document(consumer(), chair())).expect("builds");
    assert_only_the_email_endpoint_is_refused("a consumer's credit note", &xml);
}

#[test]
fn several_vat_rates_and_the_credit_note_pass() {
    let lines = vec![
        line("Chair", 40_000, 25.0),
        line("Lunch", 19_900, 15.0),
        line("Taxi", 35_050, 12.0),
        line("Newspaper", 4_900, 0.0),
        {
            let mut l = line("Pens", 2_997, 25.0);
            l.quantity = 3.0;
            l
        },
    ];
    let doc = document(business("NO"), lines);
    let xml = invoice(&seller("NO"), &doc).expect("builds");
    for rate in ["25", "15", "12", "0"] {
        assert!(
            xml.contains(&format!("<cbc:Percent>{rate}</cbc:Percent>")),
            "{rate}"
        );
    }
    assert_no_fatal("four VAT rates", &xml);
    let xml = credit_note(&seller("NO"), &doc).expect("builds");
    assert!(xml.contains("<CreditNote "));
    assert_no_fatal("the credit note with four VAT rates", &xml);
    for country in ["SE", "FI", "DK"] {
        let xml =
            credit_note(&seller(country), &document(business(country), chair())).expect("builds");
        assert_no_fatal(&format!("a {country} credit note"), &xml);
    }
}

#[test]
fn the_oracle_refuses_a_seller_number_that_fails_mod_11() {
    // Built by hand: Postbud's builder refuses this seller (see below), an access point must too.
    let good = invoice(&seller("NO"), &document(business("NO"), chair())).expect("builds");
    let Some(findings) = check("valid", &good) else {
        return;
    };
    assert!(findings.fatal().is_empty(), "{findings}");
    let bad = good.replace("745707327", "987654321");
    let findings = check("seller 987654321", &bad).expect("the oracle ran just now");
    assert!(
        findings.has("PEPPOL-COMMON-R041", "fatal"),
        "the Peppol rules miss the mod-11 failure:\n{findings}"
    );
    assert!(
        findings.has("NO-R-001", "fatal"),
        "the Norwegian VAT rule misses it:\n{findings}"
    );
    let text = findings.to_string();
    assert!(text.contains("cbc:EndpointID"), "{text}");
    // Totals that do not add up are CEN's business rules.
    let bad = good.replace(
        "<cbc:PayableAmount currencyID=\"NOK\">500.00</cbc:PayableAmount>",
        "<cbc:PayableAmount currencyID=\"NOK\">499.00</cbc:PayableAmount>",
    );
    assert_ne!(bad, good);
    let findings = check("payable off by one", &bad).expect("ran");
    assert!(findings.has("BR-CO-16", "fatal"), "{findings}");
    let findings = check("not XML", "<Invoice").expect("ran");
    assert_eq!(findings.fatal().len(), 1, "{findings}");
}

#[test]
fn the_oracle_takes_a_danish_cvr_as_eight_digits_and_refuses_it_otherwise() {
    // BIS 3.0.19 takes `12345674` and `DK12345674` (the older compiled rules only the latter;
    // validate.py judges that finding by the 3.0.19 test, whichever rules run).
    let good = invoice(&seller("NO"), &document(business("DK"), chair())).expect("builds");
    let Some(findings) = check("a DK buyer", &good) else {
        return;
    };
    assert!(findings.fatal().is_empty(), "{findings}");
    let prefixed = good.replace(">12345674<", ">DK12345674<");
    assert_ne!(prefixed, good);
    let findings = check("DK-prefixed CVR", &prefixed).expect("ran");
    assert!(findings.fatal().is_empty(), "{findings}");
    for bad in [">1234567<", ">DK1234567<", ">SE12345674<", ">123456741<"] {
        let xml = good.replace(">12345674<", bad);
        let findings = check(bad, &xml).expect("ran");
        assert!(
            findings.has("PEPPOL-COMMON-R042", "fatal"),
            "{bad} passes:\n{findings}"
        );
    }
}

#[test]
fn the_builder_refuses_invalid_identifiers_with_the_reason() {
    let mut bad_seller = seller("NO");
    bad_seller.organization_number = "987654321".into();
    bad_seller.vat_number = Some("NO987654321MVA".into());
    let refused = invoice(&bad_seller, &document(business("NO"), chair())).expect_err("refused");
    assert!(
        refused.contains("seller.organization_number") && refused.contains("mod-11"),
        "{refused}"
    );

    let mut wrong_vat = seller("NO");
    wrong_vat.vat_number = Some("NO974760673MVA".into());
    let refused = wrong_vat.check().expect_err("refused");
    assert_eq!(refused.key, "vat_number");
    assert!(refused.reason.contains("NO745707327MVA"), "{refused}");
    let mut no_mva = seller("NO");
    no_mva.vat_number = Some("NO745707327".into());
    assert_eq!(no_mva.check().expect_err("refused").key, "vat_number");
    let mut foreign = seller("NO");
    foreign.address.country = "DE".into();
    assert_eq!(foreign.check().expect_err("refused").key, "address.country");
    assert_eq!(
        seller("NO").participant().expect("valid").to_string(),
        "0192:745707327"
    );

    let mut buyer = business("NO");
    buyer.organization_number = Some("912345678".into());
    let refused = invoice(&seller("NO"), &document(buyer, chair())).expect_err("refused");
    assert!(
        refused.contains("buyer's organisation number") && refused.contains("912345678"),
        "{refused}"
    );
    let mut buyer = business("SE");
    buyer.organization_number = Some("5566778898".into());
    let refused = credit_note(&seller("NO"), &document(buyer, chair())).expect_err("refused");
    assert!(refused.contains("Luhn"), "{refused}");
    let mut nobody = consumer();
    nobody.email = None;
    let refused = invoice(&seller("NO"), &document(nobody, chair())).expect_err("refused");
    assert!(refused.contains("neither"), "{refused}");
}

#[test]
fn a_business_abroad_without_a_known_scheme_is_named_by_email() {
    let mut buyer = business("NO");
    buyer.country = Some("DE".into());
    buyer.organization_number = Some("HRB 12345".into());
    let xml = invoice(&seller("NO"), &document(buyer, chair())).expect("builds");
    assert!(xml.contains(r#"schemeID="EM""#));
    assert!(xml.contains("<cbc:CompanyID>HRB 12345</cbc:CompanyID>"));
    assert_only_the_email_endpoint_is_refused("a German buyer", &xml);
}

#[test]
fn the_oracle_refuses_a_swedish_number_s_bad_luhn_digit_and_a_vat_scheme_without_its_number() {
    // Rules BIS 3.0.19 tightened or that its CEN rules added: whichever rules run, they bite.
    let good = invoice(&seller("SE"), &document(business("NO"), chair())).expect("builds");
    let Some(findings) = check("a Swedish seller", &good) else {
        return;
    };
    assert!(findings.fatal().is_empty(), "{findings}");
    let bad = good.replace(">5560360793<", ">5560360794<");
    assert_ne!(bad, good);
    let findings = check("Swedish number, bad Luhn digit", &bad).expect("ran");
    for id in ["PEPPOL-COMMON-R049", "SE-R-013"] {
        assert!(findings.has(id, "fatal"), "{id} misses it:\n{findings}");
    }
    let start = good.find("<cac:PartyTaxScheme>").expect("a VAT scheme");
    let company = good[start..].find("<cbc:CompanyID>").expect("its number") + start;
    let end = good[company..].find("</cbc:CompanyID>").expect("closed") + company + 16;
    let bad = format!("{}{}", &good[..company], &good[end..]);
    let findings = check("VAT scheme without its number", &bad).expect("ran");
    assert!(findings.has("UBL-SR-53", "fatal"), "{findings}");
}
