//! Test certificates, made by rcgen for each run (never committed): a
//! certificate authority and the certificates it signs.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};

/// A test certificate authority.
pub struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

/// A certificate (PEM) and its key (PEM).
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

impl Ca {
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        params.distinguished_name = dn;
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Self { cert, key }
    }

    /// A certificate for `dn` and the names `sans`, good for `usages`.
    pub fn issue_for(
        &self,
        dn: &[(DnType, &str)],
        sans: &[&str],
        usages: Vec<ExtendedKeyUsagePurpose>,
    ) -> Issued {
        let mut params =
            CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        let mut name = DistinguishedName::new();
        for (t, v) in dn {
            name.push(t.clone(), *v);
        }
        params.distinguished_name = name;
        params.extended_key_usages = usages;
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    /// A client (or else server) certificate.
    pub fn issue(&self, dn: &[(DnType, &str)], sans: &[&str], client: bool) -> Issued {
        let usage = if client {
            ExtendedKeyUsagePurpose::ClientAuth
        } else {
            ExtendedKeyUsagePurpose::ServerAuth
        };
        self.issue_for(dn, sans, vec![usage])
    }

    /// A broker certificate (PEM chain, PEM key) for 127.0.0.1 and
    /// localhost, for server and client authentication.
    pub fn broker(&self, cn: &str) -> (String, String) {
        let c = self.issue_for(
            &[(DnType::CommonName, cn)],
            &["localhost", "127.0.0.1"],
            vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
        );
        (c.cert_pem, c.key_pem)
    }

    pub fn pem(&self) -> String {
        self.cert.pem()
    }
}
