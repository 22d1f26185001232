//! The principal of a TLS client that presented a certificate: the
//! certificate's subject as an RFC 2253 distinguished name (the form Kafka
//! uses, e.g. `CN=alice,OU=billing,O=Example`), mapped by
//! `ssl.principal.mapping.rules`.
//!
//! The subject is read straight from the certificate's DER: only the few
//! structures on the way to it are parsed.
//!
//! Rules (Kafka's syntax): a comma- or newline-separated list of
//! `RULE:pattern/replacement/` with an optional `L` or `U` after the last
//! slash (lower or upper case the result), and `DEFAULT` (the name as it
//! is). The first rule whose pattern matches the whole name gives the
//! principal's name; when none does, the connection is refused.

use regex::Regex;

/// DER tags met on the way to the subject.
const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;
const VERSION_TAG: u8 = 0xa0;

/// One TLV: (tag, content, rest after it).
fn tlv(input: &[u8]) -> Result<(u8, &[u8], &[u8]), String> {
    let (&tag, rest) = input.split_first().ok_or("truncated certificate")?;
    let (&first, rest) = rest.split_first().ok_or("truncated certificate")?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return Err("bad length in certificate".into());
        }
        let len = rest[..n].iter().fold(0usize, |a, &b| (a << 8) | b as usize);
        (len, &rest[n..])
    };
    if rest.len() < len {
        return Err("truncated certificate".into());
    }
    Ok((tag, &rest[..len], &rest[len..]))
}

fn expect(input: &[u8], want: u8) -> Result<(&[u8], &[u8]), String> {
    let (tag, content, rest) = tlv(input)?;
    if tag != want {
        return Err(format!("unexpected tag {tag:#04x} in certificate"));
    }
    Ok((content, rest))
}

/// The short names Java's RFC 2253 form uses; other attributes appear as
/// their dotted OID with the value's DER in hex.
fn keyword(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.4.3" => "CN",
        "2.5.4.6" => "C",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "2.5.4.9" => "STREET",
        "0.9.2342.19200300.100.1.25" => "DC",
        "0.9.2342.19200300.100.1.1" => "UID",
        _ => return None,
    })
}

fn oid_text(bytes: &[u8]) -> Result<String, String> {
    let (&first, rest) = bytes.split_first().ok_or("empty OID")?;
    let mut parts = vec![(first / 40) as u64, (first % 40) as u64];
    let mut acc: u64 = 0;
    for &b in rest {
        acc = acc.checked_mul(128).ok_or("OID component too large")? | (b & 0x7f) as u64;
        if b & 0x80 == 0 {
            parts.push(acc);
            acc = 0;
        }
    }
    Ok(parts
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join("."))
}

/// A directory string's text, for the string types certificates use.
fn string_value(tag: u8, content: &[u8]) -> Option<String> {
    match tag {
        // UTF8String, PrintableString, IA5String, NumericString, VisibleString
        0x0c | 0x13 | 0x16 | 0x12 | 0x1a => std::str::from_utf8(content).ok().map(String::from),
        // TeletexString: read as Latin-1
        0x14 => Some(content.iter().map(|&b| b as char).collect()),
        // BMPString: UTF-16BE
        0x1e => {
            let units: Vec<u16> = content
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            String::from_utf16(&units).ok()
        }
        _ => None,
    }
}

/// RFC 2253 escaping of an attribute value.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && (c == '#' || c == ' '))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The subject of a DER certificate as an RFC 2253 name: RDNs from the last
/// to the first, as Java's `X500Principal.getName()` writes them.
pub fn subject_dn(cert_der: &[u8]) -> Result<String, String> {
    let (cert, _) = expect(cert_der, SEQUENCE)?;
    let (tbs, _) = expect(cert, SEQUENCE)?;
    let mut rest = tbs;
    if rest.first() == Some(&VERSION_TAG) {
        rest = tlv(rest)?.2;
    }
    rest = tlv(rest)?.2; // serial number
    rest = expect(rest, SEQUENCE)?.1; // signature algorithm
    rest = expect(rest, SEQUENCE)?.1; // issuer
    rest = expect(rest, SEQUENCE)?.1; // validity
    let (mut subject, _) = expect(rest, SEQUENCE)?;
    let mut rdns = Vec::new();
    while !subject.is_empty() {
        let (mut set, after) = expect(subject, SET)?;
        subject = after;
        let mut attrs = Vec::new();
        while !set.is_empty() {
            let (mut atv, after) = expect(set, SEQUENCE)?;
            set = after;
            let (oid, after) = expect(atv, OID)?;
            atv = after;
            let oid = oid_text(oid)?;
            let (tag, content, _) = tlv(atv)?;
            let text = match (keyword(&oid), string_value(tag, content)) {
                (Some(k), Some(v)) => format!("{k}={}", escape(&v)),
                _ => {
                    let der = &atv[..atv.len() - tlv(atv)?.2.len()];
                    let hex: String = der.iter().map(|b| format!("{b:02x}")).collect();
                    format!("{}=#{hex}", keyword(&oid).unwrap_or(&oid))
                }
            };
            attrs.push(text);
        }
        rdns.push(attrs.join("+"));
    }
    rdns.reverse();
    Ok(rdns.join(","))
}

/// One of `ssl.principal.mapping.rules`.
#[derive(Debug, Clone)]
pub enum Rule {
    Default,
    Rule {
        /// The pattern anchored at both ends: does it match the whole name.
        whole: Regex,
        pattern: Regex,
        /// In the regex crate's syntax (`${1}`, `$$`).
        replacement: String,
        case: Case,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Case {
    Keep,
    Lower,
    Upper,
}

/// Reads up to the next unescaped `/`: (text, rest after the slash).
fn until_slash(s: &str) -> Option<(&str, &str)> {
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'/' => return Some((&s[..i], &s[i + 1..])),
            _ => i += 1,
        }
    }
    None
}

/// A replacement in Java's syntax (`$1`, `\$`) in the regex crate's.
fn replacement(java: &str) -> String {
    let mut out = String::new();
    let mut chars = java.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('$') => out.push_str("$$"),
                Some(other) => out.push(other),
                None => {}
            },
            '$' => {
                let mut digits = String::new();
                while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                    digits.push(*d);
                    chars.next();
                }
                if digits.is_empty() {
                    out.push_str("$$");
                } else {
                    out.push_str(&format!("${{{digits}}}"));
                }
            }
            other => out.push(other),
        }
    }
    out
}

/// Parses `ssl.principal.mapping.rules`.
pub fn parse_rules(text: &str) -> Result<Vec<Rule>, String> {
    let bad = |why: &str| format!("ssl.principal.mapping.rules: {why} in '{text}'");
    let mut out = Vec::new();
    let mut rest = text.trim_start_matches([' ', '\t', '\n', '\r', ',']);
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("DEFAULT") {
            out.push(Rule::Default);
            rest = after;
        } else if let Some(after) = rest.strip_prefix("RULE:") {
            let (pattern, after) = until_slash(after).ok_or_else(|| bad("a rule lacks its '/'"))?;
            let (repl, after) =
                until_slash(after).ok_or_else(|| bad("a rule lacks its last '/'"))?;
            let (case, after) = match after.as_bytes().first() {
                Some(b'L') => (Case::Lower, &after[1..]),
                Some(b'U') => (Case::Upper, &after[1..]),
                _ => (Case::Keep, after),
            };
            let pattern = pattern.replace("\\/", "/");
            let compile = |p: &str| Regex::new(p).map_err(|e| bad(&format!("bad pattern: {e}")));
            out.push(Rule::Rule {
                whole: compile(&format!("^(?:{pattern})$"))?,
                pattern: compile(&pattern)?,
                replacement: replacement(&repl.replace("\\/", "/")),
                case,
            });
            rest = after;
        } else {
            return Err(bad("expected RULE: or DEFAULT"));
        }
        let trimmed = rest.trim_start_matches([' ', '\t']);
        rest = match trimmed.chars().next() {
            None => "",
            Some(',' | '\n' | '\r') => trimmed.trim_start_matches([' ', '\t', '\n', '\r', ',']),
            Some(_) => return Err(bad("rules must be separated by commas")),
        };
    }
    if out.is_empty() {
        return Err(bad("no rule"));
    }
    Ok(out)
}

/// The principal name of a distinguished name; None when no rule matches.
pub fn apply_rules(rules: &[Rule], dn: &str) -> Option<String> {
    for rule in rules {
        match rule {
            Rule::Default => return Some(dn.to_string()),
            Rule::Rule {
                whole,
                pattern,
                replacement,
                case,
            } => {
                if !whole.is_match(dn) {
                    continue;
                }
                let name = pattern.replace_all(dn, replacement.as_str()).into_owned();
                return Some(match case {
                    Case::Keep => name,
                    Case::Lower => name.to_lowercase(),
                    Case::Upper => name.to_uppercase(),
                });
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(rules: &str, dn: &str) -> Option<String> {
        apply_rules(&parse_rules(rules).unwrap(), dn)
    }

    #[test]
    fn kafka_documented_rules() {
        let rules = "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/,\
                     RULE:^CN=(.*?),OU=(.*?),O=(.*?),L=(.*?),ST=(.*?),C=(.*?)$/$1@$2/L,\
                     RULE:^.*[Cc][Nn]=([a-zA-Z0-9.]*).*$/$1/L,\
                     DEFAULT";
        assert_eq!(
            map(
                rules,
                "CN=serviceuser,OU=ServiceUsers,O=Unknown,L=Unknown,ST=Unknown,C=Unknown"
            )
            .as_deref(),
            Some("serviceuser")
        );
        assert_eq!(
            map(
                rules,
                "CN=adminUser,OU=Admin,O=Unknown,L=Unknown,ST=Unknown,C=Unknown"
            )
            .as_deref(),
            Some("adminuser@admin")
        );
        assert_eq!(
            map(rules, "OU=x,cn=Bob.Smith,O=y").as_deref(),
            Some("bob.smith")
        );
        assert_eq!(map(rules, "O=nothing").as_deref(), Some("O=nothing"));
        assert_eq!(map("DEFAULT", "CN=a,O=b").as_deref(), Some("CN=a,O=b"));
    }

    #[test]
    fn no_matching_rule_is_none_and_case_flags_apply() {
        assert_eq!(map("RULE:^CN=(.*)$/$1/", "O=x"), None);
        assert_eq!(
            map("RULE:^CN=(.*)$/$1/U", "CN=alice").as_deref(),
            Some("ALICE")
        );
        assert_eq!(
            map("RULE:^CN=([^,]*),.*$/user-$1-x/", "CN=alice,O=b").as_deref(),
            Some("user-alice-x"),
            "a digit group followed by text is the group, then the text"
        );
        assert_eq!(
            map("RULE:^CN=(.*)$/a\\/b$1/", "CN=c").as_deref(),
            Some("a/bc"),
            "an escaped slash is a slash"
        );
        assert_eq!(
            map("\n  RULE:^CN=(.*)$/$1/L\n  DEFAULT\n", "CN=ALICE").as_deref(),
            Some("alice"),
            "newline-separated, as in a properties file"
        );
    }

    #[test]
    fn bad_rules_are_refused() {
        for bad in [
            "",
            "RULE:abc",
            "RULE:a/b",
            "RULE:(/x/",
            "DEFAULTX",
            "BOGUS",
            "RULE:a/b/ DEFAULT",
        ] {
            assert!(parse_rules(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn subject_of_a_generated_certificate() {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(rcgen::DnType::CountryName, "DE");
        dn.push(rcgen::DnType::OrganizationName, "Example, Inc.");
        dn.push(rcgen::DnType::OrganizationalUnitName, "billing");
        dn.push(rcgen::DnType::CommonName, "alice");
        params.distinguished_name = dn;
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(
            subject_dn(cert.der()).unwrap(),
            "CN=alice,OU=billing,O=Example\\, Inc.,C=DE"
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bad in [
            &b""[..],
            b"\x30",
            b"\x30\x84\xff\xff\xff\xff",
            b"\x30\x03\x30\x01",
            b"\x04\x00",
        ] {
            assert!(subject_dn(bad).is_err());
        }
        // Every truncation of a real certificate.
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["x".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let der = cert.der().to_vec();
        for cut in 0..der.len() {
            let _ = subject_dn(&der[..cut]);
        }
    }
}
