//! The `Received:` trace field (RFC 5321 §4.4) the server prepends to
//! every message it queues: who sent it (EHLO name and address literal),
//! who took it, by which protocol (RFC 3848 `SMTP`/`ESMTP`/`ESMTPS`), under
//! which id, the TLS parameters as a comment, and when.

use std::net::IpAddr;

use postern_model::Domain;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc2822;

use crate::smtp::HeloName;
use crate::tls::TlsInfo;

/// Everything one `Received:` field says.
#[derive(Clone, Copy, Debug)]
pub struct ReceivedStamp<'a> {
    /// The client's EHLO/HELO name.
    pub helo: &'a HeloName,
    /// Whether it said EHLO (ESMTP) rather than HELO.
    pub extended: bool,
    /// The client's address.
    pub remote: IpAddr,
    /// The client's reverse DNS name, when one was looked up.
    pub rdns: Option<&'a str>,
    /// Our FQDN.
    pub by: &'a Domain,
    /// The id under which the message was received.
    pub id: &'a str,
    /// The TLS parameters, when the message came over TLS.
    pub tls: Option<&'a TlsInfo>,
    /// When the message was received.
    pub date: OffsetDateTime,
}

impl ReceivedStamp<'_> {
    /// The RFC 3848 protocol name.
    pub fn protocol(&self) -> &'static str {
        match (self.extended, self.tls.is_some()) {
            // TLS is an ESMTP extension, whatever the client said after it.
            (_, true) => "ESMTPS",
            (true, false) => "ESMTP",
            (false, false) => "SMTP",
        }
    }

    /// The whole field, folded, ending with CRLF.
    pub fn to_field(&self) -> String {
        let literal = address_literal(self.remote);
        let tcp_info = match self.rdns {
            Some(name) => format!("{name} {literal}"),
            None => literal,
        };
        let mut field = format!(
            "Received: from {} ({tcp_info})\r\n\tby {} with {} id {}",
            self.helo,
            self.by,
            self.protocol(),
            self.id
        );
        if let Some(tls) = self.tls {
            field.push_str(&format!("\r\n\t(version={} cipher={})", tls.version, tls.cipher));
        }
        // Formatting fails only for years RFC 5322 cannot express.
        let date = self.date.format(&Rfc2822).unwrap_or_default();
        field.push_str(&format!(";\r\n\t{date}\r\n"));
        field
    }
}

/// `[192.0.2.1]` or `[IPv6:2001:db8::1]`; IPv4-mapped IPv6 addresses (from
/// a dual-stack listener) are shown as IPv4.
pub fn address_literal(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => format!("[{v4}]"),
        IpAddr::V6(v6) => format!("[IPv6:{v6}]"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn stamp<'a>(helo: &'a HeloName, by: &'a Domain, tls: Option<&'a TlsInfo>) -> ReceivedStamp<'a> {
        ReceivedStamp {
            helo,
            extended: true,
            remote: "192.0.2.7".parse().unwrap(),
            rdns: None,
            by,
            id: "00000000000000AB.1",
            tls,
            date: OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap(),
        }
    }

    #[test]
    fn plain_esmtp() {
        let helo = HeloName::parse("client.fabrikam.com").unwrap();
        let by = Domain::parse("mx.contoso.com").unwrap();
        assert_eq!(
            stamp(&helo, &by, None).to_field(),
            "Received: from client.fabrikam.com ([192.0.2.7])\r\n\tby mx.contoso.com with ESMTP id 00000000000000AB.1;\r\n\tTue, 14 Nov 2023 22:13:20 +0000\r\n"
        );
    }

    #[test]
    fn tls_helo_rdns_and_ipv6() {
        let helo = HeloName::parse("[IPv6:2001:db8::1]").unwrap();
        let by = Domain::parse("mx.contoso.com").unwrap();
        let tls = TlsInfo {
            version: "TLSv1.3".into(),
            cipher: "TLS13_AES_256_GCM_SHA384".into(),
            peer_chain: Vec::new(),
            resumed: false,
        };
        let mut s = stamp(&helo, &by, Some(&tls));
        s.extended = false;
        s.remote = "2001:db8::1".parse().unwrap();
        s.rdns = Some("client.fabrikam.com");
        let field = s.to_field();
        assert!(
            field.starts_with(
                "Received: from [IPv6:2001:db8::1] (client.fabrikam.com [IPv6:2001:db8::1])\r\n\tby mx.contoso.com with ESMTPS id "
            ),
            "{field}"
        );
        assert!(field.contains("\r\n\t(version=TLSv1.3 cipher=TLS13_AES_256_GCM_SHA384);\r\n\t"));
        s.tls = None;
        assert_eq!(s.protocol(), "SMTP");
    }

    #[test]
    fn mapped_ipv4_is_shown_as_ipv4() {
        assert_eq!(
            address_literal("::ffff:192.0.2.1".parse().unwrap()),
            "[192.0.2.1]"
        );
    }
}
