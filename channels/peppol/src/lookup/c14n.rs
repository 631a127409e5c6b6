//! Exclusive XML Canonicalization 1.0 without comments
//! (`http://www.w3.org/2001/10/xml-exc-c14n#`), of an element's subtree or of the whole
//! document, optionally leaving one subtree out (the enveloped signature), over a `roxmltree`
//! document.
//!
//! Written here, not taken from a crate: the pure-Rust XML security crates found
//! (`xml-sec`, `bergshamra`) bring a second crypto stack (RustCrypto, optionally AWS-LC) and
//! need a newer Rust than the workspace's 1.89, and `xml_c14n`/`xmlsec`/`samael` bind libxml2
//! or OpenSSL. What an SMP signs is small and plain, and this is checked against lxml's
//! exclusive canonicalization (through `signxml`) in the tests.

use std::collections::BTreeMap;

use roxmltree::{Node, NodeId, NodeType};

/// The canonical form of `apex` (an element, or the document's root node for the whole
/// document), without the subtree `omit`; the prefixes of `inclusive` (an
/// `InclusiveNamespaces PrefixList`, `#default` for the default namespace) are declared as the
/// inclusive algorithm would.
pub fn canonicalize(apex: Node<'_, '_>, omit: Option<NodeId>, inclusive: &[String]) -> String {
    let mut out = String::new();
    let c = Canonicalizer { omit, inclusive };
    if apex.node_type() == NodeType::Root {
        // The document: the root element, with the processing instructions around it each on
        // its own line; comments are left out.
        let mut seen_element = false;
        for child in apex.children() {
            match child.node_type() {
                NodeType::Element => {
                    c.element(child, &BTreeMap::new(), &mut out);
                    seen_element = true;
                }
                NodeType::PI if Some(child.id()) != omit => {
                    if seen_element {
                        out.push('\n');
                    }
                    pi(child, &mut out);
                    if !seen_element {
                        out.push('\n');
                    }
                }
                _ => {}
            }
        }
    } else {
        c.node(apex, &BTreeMap::new(), &mut out);
    }
    out
}

struct Canonicalizer<'i> {
    omit: Option<NodeId>,
    inclusive: &'i [String],
}

impl Canonicalizer<'_> {
    fn node(&self, node: Node<'_, '_>, rendered: &BTreeMap<String, String>, out: &mut String) {
        if Some(node.id()) == self.omit {
            return;
        }
        match node.node_type() {
            NodeType::Element => self.element(node, rendered, out),
            NodeType::Text => text(node.text().unwrap_or_default(), out),
            NodeType::PI => pi(node, out),
            NodeType::Comment | NodeType::Root => {}
        }
    }

    fn element(&self, node: Node<'_, '_>, rendered: &BTreeMap<String, String>, out: &mut String) {
        if Some(node.id()) == self.omit {
            return;
        }
        let qname = element_qname(node);
        // The namespaces this element visibly uses: its own prefix and its attributes'.
        let mut used: Vec<String> = vec![prefix_of(qname).to_owned()];
        for attribute in node.attributes() {
            let prefix = prefix_of(attribute_qname(node, &attribute));
            if !prefix.is_empty() && prefix != "xml" {
                used.push(prefix.to_owned());
            }
        }
        for prefix in self.inclusive {
            let prefix = if prefix == "#default" { "" } else { prefix };
            let in_scope = node
                .lookup_namespace_uri((!prefix.is_empty()).then_some(prefix))
                .is_some();
            if in_scope {
                used.push(prefix.to_owned());
            }
        }
        let mut now = rendered.clone();
        let mut declarations = BTreeMap::new();
        for prefix in used {
            let uri = node
                .lookup_namespace_uri((!prefix.is_empty()).then_some(prefix.as_str()))
                .unwrap_or_default()
                .to_owned();
            let before = rendered
                .get(&prefix)
                .map(String::as_str)
                .unwrap_or_default();
            if before != uri {
                declarations.insert(prefix.clone(), uri.clone());
                now.insert(prefix, uri);
            }
        }
        out.push('<');
        out.push_str(qname);
        for (prefix, uri) in &declarations {
            if prefix.is_empty() {
                out.push_str(" xmlns=\"");
            } else {
                out.push_str(" xmlns:");
                out.push_str(prefix);
                out.push_str("=\"");
            }
            attribute_value(uri, out);
            out.push('"');
        }
        let mut attributes: Vec<_> = node
            .attributes()
            .map(|a| {
                (
                    a.namespace().unwrap_or_default(),
                    a.name(),
                    attribute_qname(node, &a),
                    a.value(),
                )
            })
            .collect();
        attributes.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        for (_, _, qname, value) in attributes {
            out.push(' ');
            out.push_str(qname);
            out.push_str("=\"");
            attribute_value(value, out);
            out.push('"');
        }
        out.push('>');
        for child in node.children() {
            self.node(child, &now, out);
        }
        out.push_str("</");
        out.push_str(qname);
        out.push('>');
    }
}

/// The element's qualified name as written (`ds:Signature`), read from the source text since
/// roxmltree keeps only the expanded name.
fn element_qname<'i>(node: Node<'_, 'i>) -> &'i str {
    let source = &node.document().input_text()[node.range()];
    let name = source.trim_start_matches('<');
    let end = name
        .find(|c: char| c.is_whitespace() || c == '/' || c == '>')
        .unwrap_or(name.len());
    &name[..end]
}

fn attribute_qname<'i>(node: Node<'_, 'i>, attribute: &roxmltree::Attribute<'_, 'i>) -> &'i str {
    &node.document().input_text()[attribute.range_qname()]
}

fn prefix_of(qname: &str) -> &str {
    qname.split_once(':').map_or("", |(prefix, _)| prefix)
}

fn pi(node: Node<'_, '_>, out: &mut String) {
    if let Some(pi) = node.pi() {
        out.push_str("<?");
        out.push_str(pi.target);
        if let Some(value) = pi.value.filter(|v| !v.is_empty()) {
            out.push(' ');
            out.push_str(value);
        }
        out.push_str("?>");
    }
}

fn text(value: &str, out: &mut String) {
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\r' => out.push_str("&#xD;"),
            c => out.push(c),
        }
    }
}

fn attribute_value(value: &str, out: &mut String) {
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '"' => out.push_str("&quot;"),
            '\t' => out.push_str("&#x9;"),
            '\n' => out.push_str("&#xA;"),
            '\r' => out.push_str("&#xD;"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c14n(xml: &str) -> String {
        let doc = roxmltree::Document::parse(xml).expect("xml");
        canonicalize(doc.root(), None, &[])
    }

    #[test]
    fn the_spec_rules() {
        // Empty elements open and close, attributes sort by namespace then name, declarations
        // by prefix, unused declarations go, the XML declaration and comments go, entities and
        // CDATA become text.
        assert_eq!(
            c14n(
                "<?xml version=\"1.0\"?>\n<!--c--><a:r xmlns:z=\"urn:z\" xmlns:a=\"urn:a\" xmlns=\"urn:d\" b=\"2\" z:c=\"3\" a=\"1\"><e/><![CDATA[x<y]]>&amp;&#x41;<!--no--></a:r>"
            ),
            "<a:r xmlns:a=\"urn:a\" xmlns:z=\"urn:z\" a=\"1\" b=\"2\" z:c=\"3\"><e xmlns=\"urn:d\"></e>x&lt;y&amp;A</a:r>"
        );
        // Attribute values keep a tab or newline written as a reference, and quote quotes.
        assert_eq!(
            c14n("<r a=\"&#9;&#10;&quot;'&lt;&gt;\">\r\n&gt;</r>"),
            "<r a=\"&#x9;&#xA;&quot;'&lt;>\">\n&gt;</r>"
        );
        // A default namespace is declared where it is first used, not again below.
        assert_eq!(
            c14n("<r xmlns=\"urn:d\"><s><t/></s></r>"),
            "<r xmlns=\"urn:d\"><s><t></t></s></r>"
        );
    }

    #[test]
    fn a_subtree_declares_what_it_uses_from_its_ancestors_and_the_omitted_part_goes() {
        let xml = "<r xmlns=\"urn:d\" xmlns:ds=\"urn:ds\" xmlns:x=\"urn:x\"><ds:S><ds:I x:a=\"1\"><ds:M/></ds:I></ds:S> <k/></r>";
        let doc = roxmltree::Document::parse(xml).expect("xml");
        let info = doc
            .descendants()
            .find(|n| n.has_tag_name(("urn:ds", "I")))
            .expect("I");
        assert_eq!(
            canonicalize(info, None, &[]),
            "<ds:I xmlns:ds=\"urn:ds\" xmlns:x=\"urn:x\" x:a=\"1\"><ds:M></ds:M></ds:I>"
        );
        let signature = doc
            .descendants()
            .find(|n| n.has_tag_name(("urn:ds", "S")))
            .expect("S");
        assert_eq!(
            canonicalize(doc.root(), Some(signature.id()), &[]),
            "<r xmlns=\"urn:d\"> <k></k></r>"
        );
        assert_eq!(
            canonicalize(info, None, &["#default".into()]),
            "<ds:I xmlns=\"urn:d\" xmlns:ds=\"urn:ds\" xmlns:x=\"urn:x\" x:a=\"1\"><ds:M></ds:M></ds:I>"
        );
    }

    #[test]
    fn an_undeclared_default_under_a_declared_one_is_reset() {
        assert_eq!(
            c14n("<r xmlns=\"urn:d\"><s xmlns=\"\"/></r>"),
            "<r xmlns=\"urn:d\"><s xmlns=\"\"></s></r>"
        );
        assert_eq!(c14n("<r><s xmlns=\"\"/></r>"), "<r><s></s></r>");
    }
}
