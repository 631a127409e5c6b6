//! The SMP's XML signature (XMLDSig), verified as the Peppol SMP specification signs it: one
//! enveloped `ds:Signature`, a child of the document element, with one `Reference URI=""`
//! whose transforms are the enveloped-signature transform and Exclusive XML Canonicalization,
//! SHA-256 digests, `rsa-sha256` (or `ecdsa-sha256`) over the exclusively canonicalized
//! `SignedInfo`, and a signer certificate in `KeyInfo/X509Data` that chains to a CA the
//! deployment trusts and is valid now.
//!
//! The chain and the signature are checked by `rustls-webpki` (ring), the workspace's one
//! certificate verifier; canonicalization is the private `c14n` module. Anything else (another
//! algorithm, several signatures, a reference to part of the document) is refused rather than
//! half-understood: what the signature does not cover must not be read.

use base64::Engine as _;
use roxmltree::{Document, Node};
use rustls_pki_types::{CertificateDer, TrustAnchor, UnixTime};
use sha2::{Digest as _, Sha256};
use webpki::{EndEntityCert, KeyPurposeIdIter};

use super::c14n;

/// The XMLDSig namespace.
pub const DSIG: &str = "http://www.w3.org/2000/09/xmldsig#";
/// Exclusive XML Canonicalization 1.0 (omits comments).
pub const EXC_C14N: &str = "http://www.w3.org/2001/10/xml-exc-c14n#";
/// The enveloped-signature transform.
pub const ENVELOPED: &str = "http://www.w3.org/2000/09/xmldsig#enveloped-signature";
/// SHA-256 as a digest method.
pub const SHA256: &str = "http://www.w3.org/2001/04/xmlenc#sha256";
/// RSA PKCS#1 v1.5 with SHA-256.
pub const RSA_SHA256: &str = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256";
/// ECDSA with SHA-256 (P-256).
pub const ECDSA_SHA256: &str = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256";

/// The CA certificates whose certificates may sign SMP answers.
#[derive(Debug, Clone)]
pub struct Trust {
    anchors: Vec<TrustAnchor<'static>>,
}

impl Trust {
    /// The CA certificates of a PEM text; an error when there is none or one does not parse.
    pub fn from_pem(pem: &[u8]) -> Result<Self, String> {
        use rustls_pki_types::pem::PemObject as _;
        let mut anchors = Vec::new();
        for certificate in CertificateDer::pem_slice_iter(pem) {
            let certificate =
                certificate.map_err(|e| format!("a certificate does not parse: {e}"))?;
            let anchor = webpki::anchor_from_trusted_cert(&certificate)
                .map_err(|e| format!("a CA certificate is not usable as a trust anchor: {e}"))?;
            anchors.push(anchor.to_owned());
        }
        if anchors.is_empty() {
            return Err("no CERTIFICATE in the PEM".into());
        }
        Ok(Self { anchors })
    }
}

/// Who signed a document that verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signer {
    /// The signer's certificate (DER).
    pub certificate: Vec<u8>,
}

/// Verifies the enveloped signature of `document` (the whole parsed answer) at `now`; the error
/// says what failed.
pub fn verify(document: &Document<'_>, trust: &Trust, now: UnixTime) -> Result<Signer, String> {
    let root = document.root_element();
    let signatures: Vec<Node<'_, '_>> = document
        .descendants()
        .filter(|n| n.has_tag_name((DSIG, "Signature")))
        .collect();
    let signature = match signatures[..] {
        [] => return Err("the answer is not signed (no ds:Signature)".into()),
        [one] if one.parent_element() == Some(root) => one,
        [_] => return Err("the ds:Signature is not a child of the document element".into()),
        _ => {
            return Err(format!(
                "{} ds:Signature elements; one is expected",
                signatures.len()
            ));
        }
    };
    let signed_info = only_child(signature, "SignedInfo")?;
    let method = algorithm(only_child(signed_info, "CanonicalizationMethod")?)?;
    if method != EXC_C14N {
        return Err(format!(
            "SignedInfo is canonicalized with `{method}`, not exclusive C14N"
        ));
    }
    let signature_method = algorithm(only_child(signed_info, "SignatureMethod")?)?;
    let references: Vec<_> = ds_children(signed_info, "Reference").collect();
    let [reference] = references[..] else {
        return Err(format!(
            "{} References; one (URI=\"\") is expected",
            references.len()
        ));
    };
    if reference.attribute("URI") != Some("") {
        return Err(format!(
            "the Reference URI is {:?}; only the whole document (URI=\"\") is accepted",
            reference.attribute("URI")
        ));
    }
    let inclusive = check_transforms(reference)?;
    let digest_method = algorithm(only_child(reference, "DigestMethod")?)?;
    if digest_method != SHA256 {
        return Err(format!(
            "the digest method is `{digest_method}`, not SHA-256"
        ));
    }
    let expected = base64_of(only_child(reference, "DigestValue")?, "DigestValue")?;
    let canonical = c14n::canonicalize(document.root(), Some(signature.id()), &inclusive);
    if Sha256::digest(canonical.as_bytes()).as_slice() != expected.as_slice() {
        return Err("the digest does not match: the signed document was changed".into());
    }

    let value = base64_of(only_child(signature, "SignatureValue")?, "SignatureValue")?;
    let info_inclusive = inclusive_prefixes(only_child(signed_info, "CanonicalizationMethod")?);
    let signed = c14n::canonicalize(signed_info, None, &info_inclusive);
    let mut certificates = Vec::new();
    let key_info = only_child(signature, "KeyInfo")?;
    for data in ds_children(key_info, "X509Data") {
        for certificate in ds_children(data, "X509Certificate") {
            certificates.push(base64_of(certificate, "X509Certificate")?);
        }
    }
    let Some((signer, others)) = certificates.split_first() else {
        return Err("KeyInfo carries no X509Certificate".into());
    };
    let signer_der = CertificateDer::from(signer.as_slice());
    let intermediates: Vec<CertificateDer<'_>> = others
        .iter()
        .map(|c| CertificateDer::from(c.as_slice()))
        .collect();
    let certificate = EndEntityCert::try_from(&signer_der)
        .map_err(|e| format!("the signer's certificate does not parse: {e}"))?;
    certificate
        .verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &trust.anchors,
            &intermediates,
            now,
            AnyPurpose,
            None,
            None,
        )
        .map_err(|e| format!("the signer's certificate is not trusted: {e}"))?;
    let result = match signature_method.as_str() {
        RSA_SHA256 => certificate.verify_signature(
            webpki::ring::RSA_PKCS1_2048_8192_SHA256,
            signed.as_bytes(),
            &value,
        ),
        ECDSA_SHA256 => certificate.verify_signature(
            webpki::ring::ECDSA_P256_SHA256,
            signed.as_bytes(),
            &ecdsa_der(&value)?,
        ),
        other => return Err(format!("the signature method `{other}` is not accepted")),
    };
    result.map_err(|e| format!("the signature does not verify with the signer's key: {e}"))?;
    Ok(Signer {
        certificate: signer.clone(),
    })
}

/// The Peppol SMP certificates' purposes are set by OpenPeppol's PKI, not by an EKU this code
/// could require: the chain to the configured SMP CA is the check.
struct AnyPurpose;

impl webpki::ExtendedKeyUsageValidator for AnyPurpose {
    fn validate(&self, iter: KeyPurposeIdIter<'_, '_>) -> Result<(), webpki::Error> {
        for purpose in iter {
            purpose?;
        }
        Ok(())
    }
}

/// The transforms must be enveloped-signature then exclusive C14N (which may name inclusive
/// prefixes); gives those prefixes.
fn check_transforms(reference: Node<'_, '_>) -> Result<Vec<String>, String> {
    let transforms = only_child(reference, "Transforms")?;
    let list: Vec<_> = ds_children(transforms, "Transform").collect();
    let names: Vec<String> = list
        .iter()
        .map(|t| algorithm(*t))
        .collect::<Result<_, _>>()?;
    match names.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        [ENVELOPED, EXC_C14N] => Ok(inclusive_prefixes(list[1])),
        _ => Err(format!(
            "the transforms are {names:?}; enveloped-signature then exclusive C14N are expected"
        )),
    }
}

fn inclusive_prefixes(method: Node<'_, '_>) -> Vec<String> {
    method
        .children()
        .find(|n| n.has_tag_name((EXC_C14N, "InclusiveNamespaces")))
        .and_then(|n| n.attribute("PrefixList"))
        .map(|list| list.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default()
}

fn ds_children<'a, 'i>(
    node: Node<'a, 'i>,
    name: &'static str,
) -> impl Iterator<Item = Node<'a, 'i>> + use<'a, 'i> {
    node.children()
        .filter(move |n| n.has_tag_name((DSIG, name)))
}

fn only_child<'a, 'i>(node: Node<'a, 'i>, name: &'static str) -> Result<Node<'a, 'i>, String> {
    let mut found = ds_children(node, name);
    match (found.next(), found.next()) {
        (Some(one), None) => Ok(one),
        (None, _) => Err(format!("ds:{} has no ds:{name}", node.tag_name().name())),
        (Some(_), Some(_)) => Err(format!(
            "ds:{} has more than one ds:{name}",
            node.tag_name().name()
        )),
    }
}

fn algorithm(node: Node<'_, '_>) -> Result<String, String> {
    node.attribute("Algorithm")
        .map(str::to_owned)
        .ok_or_else(|| format!("ds:{} has no Algorithm", node.tag_name().name()))
}

fn base64_of(node: Node<'_, '_>, what: &str) -> Result<Vec<u8>, String> {
    let text: String = node
        .text()
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| format!("ds:{what} is not base64: {e}"))
}

/// XMLDSig's ECDSA value is `r || s` (RFC 4050); webpki wants the DER `SEQUENCE { r, s }`.
fn ecdsa_der(raw: &[u8]) -> Result<Vec<u8>, String> {
    if raw.len() != 64 {
        return Err(format!(
            "an ECDSA P-256 signature is 64 bytes, not {}",
            raw.len()
        ));
    }
    let integer = |bytes: &[u8]| {
        let trimmed: Vec<u8> = bytes.iter().copied().skip_while(|b| *b == 0).collect();
        let mut value = if trimmed.first().is_some_and(|b| b & 0x80 != 0) || trimmed.is_empty() {
            vec![0]
        } else {
            Vec::new()
        };
        value.extend(trimmed);
        let mut out = vec![0x02, value.len() as u8];
        out.extend(value);
        out
    };
    let (r, s) = raw.split_at(32);
    let body = [integer(r), integer(s)].concat();
    let mut der = vec![0x30, body.len() as u8];
    der.extend(body);
    Ok(der)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ecdsa_value_becomes_der() {
        let mut raw = [0u8; 64];
        raw[31] = 1;
        raw[32] = 0x80;
        let der = ecdsa_der(&raw).expect("der");
        assert_eq!(der[..5], [0x30, 38, 0x02, 1, 1]);
        assert_eq!(der[5..8], [0x02, 33, 0x00]);
        assert!(ecdsa_der(&[0; 63]).is_err());
    }

    #[test]
    fn an_unsigned_document_is_refused() {
        let doc = Document::parse("<r/>").expect("xml");
        let trust = Trust {
            anchors: Vec::new(),
        };
        let error = verify(&doc, &trust, UnixTime::now()).expect_err("unsigned");
        assert!(error.contains("not signed"), "{error}");
    }
}
