//! Turns a parsed `SubjectName` into the X.501 `Name` written into
//! certificates and requests, keeping the order the administrator wrote.

use der::Tag;
use der::asn1::{Any, SetOfVec};
use der::oid::ObjectIdentifier;
use postern_model::{DnAttribute, SubjectName};
use x509_cert::attr::AttributeTypeAndValue;
use x509_cert::name::{Name, RdnSequence, RelativeDistinguishedName};

use super::CertError;

fn oid_and_tag(attr: DnAttribute) -> (ObjectIdentifier, Tag) {
    let (oid, tag) = match attr {
        DnAttribute::Country => ("2.5.4.6", Tag::PrintableString),
        DnAttribute::State => ("2.5.4.8", Tag::Utf8String),
        DnAttribute::Locality => ("2.5.4.7", Tag::Utf8String),
        DnAttribute::Organization => ("2.5.4.10", Tag::Utf8String),
        DnAttribute::OrganizationalUnit => ("2.5.4.11", Tag::Utf8String),
        DnAttribute::CommonName => ("2.5.4.3", Tag::Utf8String),
        DnAttribute::DomainComponent => ("0.9.2342.19200300.100.1.25", Tag::Ia5String),
        DnAttribute::Email => ("1.2.840.113549.1.9.1", Tag::Ia5String),
    };
    (ObjectIdentifier::new_unwrap(oid), tag)
}

/// The X.501 name for `subject`: one RDN per component, in written order.
pub(crate) fn to_x509_name(subject: &SubjectName) -> Result<Name, CertError> {
    let mut rdns = Vec::with_capacity(subject.components.len());
    for (attr, value) in &subject.components {
        let (oid, tag) = oid_and_tag(*attr);
        if tag != Tag::Utf8String && !value.is_ascii() {
            return Err(CertError::Build(format!(
                "{} must be ASCII, got {value:?}",
                attr.short_name()
            )));
        }
        let value = Any::new(tag, value.as_bytes()).map_err(|e| CertError::Build(e.to_string()))?;
        let mut set = SetOfVec::new();
        set.insert(AttributeTypeAndValue { oid, value })
            .map_err(|e| CertError::Build(e.to_string()))?;
        rdns.push(RelativeDistinguishedName(set));
    }
    Ok(RdnSequence(rdns))
}
