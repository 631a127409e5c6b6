//! The sandbox's certificates, made fresh at start with `rcgen` (ring), so none expires in the
//! repository: a TLS CA and the SMP's TLS certificate for 127.0.0.1, an "SMP CA" whose
//! certificate the tests trust (`smp_trust`) and the SMP's signing certificate it issued, a
//! second CA nobody trusts with its own certificate for the same key, and an expired one.

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, date_time_ymd,
};

/// The SMP's signing key (RSA 2048, PKCS#8; a throw-away key made for these tests, public so
/// that an independent signer such as `signxml` can sign with it too).
pub const SIGNING_KEY: &str = include_str!("smp-signing.key");

/// Everything made at start.
pub(crate) struct Pki {
    pub(crate) tls_ca: String,
    pub(crate) tls_certificate: String,
    pub(crate) tls_key: String,
    pub(crate) smp_ca: String,
    pub(crate) signer: Vec<u8>,
    pub(crate) signer_pem: String,
    pub(crate) untrusted_signer: Vec<u8>,
    pub(crate) expired_signer: Vec<u8>,
}

fn ca(name: &str) -> Result<(Certificate, Issuer<'static, KeyPair>), rcgen::Error> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    valid_this_week(&mut params);
    let certificate = params.self_signed(&key)?;
    Ok((certificate, Issuer::new(params, key)))
}

/// Valid from yesterday to a week on (whole days: rcgen's own date helper makes its type).
fn valid_this_week(params: &mut CertificateParams) {
    let day = |offset: i64| {
        let d = jiff::Timestamp::now()
            .to_zoned(jiff::tz::TimeZone::UTC)
            .date()
            .checked_add(jiff::Span::new().days(offset))
            .expect("a date");
        date_time_ymd(d.year().into(), d.month() as u8, d.day() as u8)
    };
    params.not_before = day(-1);
    params.not_after = day(7);
}

impl Pki {
    pub(crate) fn new() -> Result<Self, rcgen::Error> {
        let (tls_ca, tls_issuer) = ca("Postbud Sandbox SMP TLS CA")?;
        let tls_key = KeyPair::generate()?;
        let mut params = CertificateParams::new(vec!["localhost".to_owned()])?;
        params
            .subject_alt_names
            .push(SanType::IpAddress([127, 0, 0, 1].into()));
        params
            .distinguished_name
            .push(DnType::CommonName, "127.0.0.1");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        valid_this_week(&mut params);
        let tls_certificate = params.signed_by(&tls_key, &tls_issuer)?;

        let signing_key = KeyPair::from_pem(SIGNING_KEY)?;
        let (smp_ca, smp_issuer) = ca("Postbud Sandbox SMP CA")?;
        let (_, other_issuer) = ca("Postbud Sandbox Untrusted CA")?;
        let signer_params = || -> Result<CertificateParams, rcgen::Error> {
            let mut params = CertificateParams::new(Vec::<String>::new())?;
            params
                .distinguished_name
                .push(DnType::CommonName, "Postbud Sandbox SMP signer");
            params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            // RFC 5280 profiles (cryptography's, which signxml checks with) want the issuer's
            // key identifier in a certificate a CA issued.
            params.use_authority_key_identifier_extension = true;
            valid_this_week(&mut params);
            Ok(params)
        };
        let signer = signer_params()?.signed_by(&signing_key, &smp_issuer)?;
        let untrusted = signer_params()?.signed_by(&signing_key, &other_issuer)?;
        let mut expired = signer_params()?;
        expired.not_before = date_time_ymd(2020, 1, 1);
        expired.not_after = date_time_ymd(2021, 1, 1);
        let expired = expired.signed_by(&signing_key, &smp_issuer)?;
        Ok(Self {
            tls_ca: tls_ca.pem(),
            tls_certificate: tls_certificate.pem(),
            tls_key: tls_key.serialize_pem(),
            smp_ca: smp_ca.pem(),
            signer: signer.der().to_vec(),
            signer_pem: signer.pem(),
            untrusted_signer: untrusted.der().to_vec(),
            expired_signer: expired.der().to_vec(),
        })
    }
}
