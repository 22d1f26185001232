//! Kafka's listener settings: `listeners`, `advertised.listeners`,
//! `listener.security.protocol.map` and `inter.broker.listener.name`, read
//! into the list of listeners the broker binds and advertises.
//!
//! A listener is `NAME://host:port`; its name is free, and its security
//! protocol is what `listener.security.protocol.map` maps the name to (by
//! default PLAINTEXT, SSL, SASL_PLAINTEXT and SASL_SSL map to themselves).
//! Without `listeners`, the `listen` key (`--listen`) is the shorthand for
//! one listener `PLAINTEXT://<listen>`, advertised at `advertised.listener`.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::SecurityProtocol;

/// Kafka's default `listener.security.protocol.map`.
pub const DEFAULT_PROTOCOL_MAP: &str =
    "PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL";

/// One listener as configured: where it binds and what clients are told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerSpec {
    /// Upper case, as Kafka normalises listener names.
    pub name: String,
    pub protocol: SecurityProtocol,
    /// Where it binds, `host:port` (IPv6 in brackets; resolved when bound).
    pub bind: String,
    pub advertised_host: String,
    pub advertised_port: u16,
}

/// A listener's advertised address, as a broker registers it with the
/// controller quorum.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListenerEndpoint {
    pub name: String,
    pub host: String,
    pub port: u16,
}

impl ListenerSpec {
    pub fn endpoint(&self) -> ListenerEndpoint {
        ListenerEndpoint {
            name: self.name.clone(),
            host: self.advertised_host.clone(),
            port: self.advertised_port,
        }
    }
}

/// `NAME://host:port` (host may be empty, a name, an IPv4 address or a
/// bracketed IPv6 address) as (NAME upper case, host, port).
pub fn parse_uri(item: &str) -> Result<(String, String, u16), String> {
    let (name, rest) = item
        .split_once("://")
        .ok_or_else(|| format!("listener '{item}' is not NAME://host:port"))?;
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(format!("listener '{item}': invalid listener name '{name}'"));
    }
    let (host, port) = rest
        .rsplit_once(':')
        .ok_or_else(|| format!("listener '{item}' has no port"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("listener '{item}': invalid port '{port}'"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Ok((name.to_ascii_uppercase(), host.to_string(), port))
}

/// Parses `listener.security.protocol.map` (`NAME:PROTOCOL,...`).
pub fn parse_protocol_map(text: &str) -> Result<BTreeMap<String, SecurityProtocol>, String> {
    let mut out = BTreeMap::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (name, proto) = item.split_once(':').ok_or_else(|| {
            format!("listener.security.protocol.map: '{item}' is not NAME:PROTOCOL")
        })?;
        let protocol = SecurityProtocol::parse(proto.trim()).ok_or_else(|| {
            format!("listener.security.protocol.map: unknown security protocol '{proto}'")
        })?;
        let name = name.trim().to_ascii_uppercase();
        if out.insert(name.clone(), protocol).is_some() {
            return Err(format!(
                "listener.security.protocol.map: '{name}' is mapped twice"
            ));
        }
    }
    Ok(out)
}

/// What the listener keys say, before they are checked together.
pub struct ListenerKeys<'a> {
    pub listeners: Option<&'a str>,
    pub advertised_listeners: Option<&'a str>,
    pub protocol_map: &'a str,
    pub inter_broker_listener_name: Option<&'a str>,
    /// The `listen` shorthand and its `advertised.listener`.
    pub listen: SocketAddr,
    pub advertised_listener: Option<&'a str>,
}

/// This machine's host name: what a listener bound to every interface
/// (an empty host) advertises, as Kafka does.
fn local_host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// The listeners the keys describe, in the order of `listeners`, with
/// Kafka's checks: every name mapped to a protocol, no name or port twice,
/// every advertised name a listener, `inter.broker.listener.name` one of
/// them.
pub fn listeners(keys: &ListenerKeys) -> Result<Vec<ListenerSpec>, String> {
    let map = parse_protocol_map(keys.protocol_map)?;
    let Some(text) = keys.listeners.filter(|t| !t.trim().is_empty()) else {
        if let Some(name) = keys.inter_broker_listener_name
            && !name.eq_ignore_ascii_case("PLAINTEXT")
        {
            return Err(format!(
                "inter.broker.listener.name '{name}' is not a listener (the only one is PLAINTEXT, from listen)"
            ));
        }
        let (host, port) = match keys.advertised_listener {
            Some(adv) => {
                let (host, port) = adv
                    .rsplit_once(':')
                    .and_then(|(h, p)| Some((h, p.parse::<u16>().ok()?)))
                    .ok_or_else(|| format!("advertised.listener '{adv}' is not host:port"))?;
                (host.trim_matches(['[', ']']).to_string(), port)
            }
            None => (keys.listen.ip().to_string(), keys.listen.port()),
        };
        return Ok(vec![ListenerSpec {
            name: "PLAINTEXT".into(),
            protocol: SecurityProtocol::Plaintext,
            bind: keys.listen.to_string(),
            advertised_host: host,
            advertised_port: port,
        }]);
    };
    if keys.advertised_listener.is_some() {
        return Err(
            "advertised.listener is the shorthand for the listen key; with listeners, set advertised.listeners".into(),
        );
    }
    let mut out: Vec<ListenerSpec> = Vec::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (name, host, port) = parse_uri(item)?;
        let protocol = *map.get(&name).ok_or_else(|| {
            format!(
                "listener '{item}': no security protocol for '{name}' in listener.security.protocol.map"
            )
        })?;
        if out.iter().any(|l| l.name == name) {
            return Err(format!("listeners: '{name}' is listed twice"));
        }
        if port != 0 && out.iter().any(|l| l.bind.ends_with(&format!(":{port}"))) {
            return Err(format!("listeners: port {port} is used twice"));
        }
        let bind = if host.is_empty() {
            format!("0.0.0.0:{port}")
        } else if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let advertised_host = if host.is_empty() {
            local_host_name()
        } else {
            host
        };
        out.push(ListenerSpec {
            name,
            protocol,
            bind,
            advertised_host,
            advertised_port: port,
        });
    }
    if out.is_empty() {
        return Err("listeners is empty".into());
    }
    if let Some(text) = keys.advertised_listeners.filter(|t| !t.trim().is_empty()) {
        let mut seen = Vec::new();
        for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (name, host, port) = parse_uri(item)?;
            let l = out.iter_mut().find(|l| l.name == name).ok_or_else(|| {
                format!("advertised.listeners: '{name}' is not one of the listeners")
            })?;
            if seen.contains(&name) {
                return Err(format!("advertised.listeners: '{name}' is listed twice"));
            }
            if !host.is_empty() {
                l.advertised_host = host;
            }
            l.advertised_port = port;
            seen.push(name);
        }
    }
    if let Some(name) = keys.inter_broker_listener_name
        && !out.iter().any(|l| l.name.eq_ignore_ascii_case(name))
    {
        return Err(format!(
            "inter.broker.listener.name '{name}' is not one of the listeners"
        ));
    }
    Ok(out)
}

/// `listeners` with `addr` as the address of its first PLAINTEXT listener:
/// what `--listen` means when the file has `listeners`. Err when none is
/// PLAINTEXT.
pub fn with_plaintext_address(
    listeners: &str,
    protocol_map: &str,
    addr: SocketAddr,
) -> Result<String, String> {
    let map = parse_protocol_map(protocol_map)?;
    let mut items: Vec<String> = listeners
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    for item in items.iter_mut() {
        let (name, _, _) = parse_uri(item)?;
        if map.get(&name) == Some(&SecurityProtocol::Plaintext) {
            *item = format!("{name}://{addr}");
            return Ok(items.join(","));
        }
    }
    Err("--listen sets the address of a PLAINTEXT listener, and listeners has none".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(listeners: Option<&'static str>) -> ListenerKeys<'static> {
        ListenerKeys {
            listeners,
            advertised_listeners: None,
            protocol_map: DEFAULT_PROTOCOL_MAP,
            inter_broker_listener_name: None,
            listen: "127.0.0.1:9092".parse().unwrap(),
            advertised_listener: None,
        }
    }

    #[test]
    fn listen_is_one_plaintext_listener() {
        let l = listeners(&keys(None)).unwrap();
        assert_eq!(l.len(), 1);
        assert_eq!(l[0].name, "PLAINTEXT");
        assert_eq!(l[0].protocol, SecurityProtocol::Plaintext);
        assert_eq!(
            (l[0].advertised_host.as_str(), l[0].advertised_port),
            ("127.0.0.1", 9092)
        );
        let mut k = keys(None);
        k.advertised_listener = Some("broker.example:19092");
        let l = listeners(&k).unwrap();
        assert_eq!(
            (l[0].advertised_host.as_str(), l[0].advertised_port),
            ("broker.example", 19092)
        );
    }

    #[test]
    fn several_listeners_with_names_mapped_to_protocols() {
        let mut k = keys(Some(
            "PLAINTEXT://127.0.0.1:9092, SSL://127.0.0.1:9093,internal://[::1]:9094",
        ));
        k.protocol_map = "PLAINTEXT:PLAINTEXT,SSL:SSL,INTERNAL:SASL_SSL";
        k.advertised_listeners = Some("SSL://broker1.example:19093");
        k.inter_broker_listener_name = Some("ssl");
        let l = listeners(&k).unwrap();
        assert_eq!(
            l.iter()
                .map(|l| (l.name.as_str(), l.protocol))
                .collect::<Vec<_>>(),
            [
                ("PLAINTEXT", SecurityProtocol::Plaintext),
                ("SSL", SecurityProtocol::Ssl),
                ("INTERNAL", SecurityProtocol::SaslSsl)
            ]
        );
        assert_eq!(l[1].endpoint().host, "broker1.example");
        assert_eq!(l[1].endpoint().port, 19093);
        assert_eq!(l[0].endpoint().host, "127.0.0.1");
        assert_eq!(l[2].bind, "[::1]:9094");
        assert_eq!(l[2].advertised_host, "::1");
    }

    #[test]
    fn bad_listener_settings_are_refused() {
        for (listeners_text, adv, ibl) in [
            (
                "PLAINTEXT://127.0.0.1:9092,PLAINTEXT://127.0.0.1:9093",
                None,
                None,
            ),
            (
                "PLAINTEXT://127.0.0.1:9092,SSL://127.0.0.1:9092",
                None,
                None,
            ),
            ("CLIENT://127.0.0.1:9092", None, None),
            ("PLAINTEXT:127.0.0.1:9092", None, None),
            ("PLAINTEXT://127.0.0.1", None, None),
            ("PLAINTEXT://127.0.0.1:99999", None, None),
            ("PLAINTEXT://127.0.0.1:9092", Some("SSL://a:1"), None),
            ("PLAINTEXT://127.0.0.1:9092", None, Some("SSL")),
            ("", None, None),
        ] {
            let mut k = keys(Some(listeners_text));
            k.advertised_listeners = adv;
            k.inter_broker_listener_name = ibl;
            if listeners_text.is_empty() {
                k.listeners = Some(" ");
                k.inter_broker_listener_name = Some("SSL");
            }
            assert!(listeners(&k).is_err(), "{listeners_text} {adv:?} {ibl:?}");
        }
        let mut k = keys(Some("PLAINTEXT://127.0.0.1:9092"));
        k.protocol_map = "PLAINTEXT:TLS";
        assert!(listeners(&k).is_err());
        k.protocol_map = DEFAULT_PROTOCOL_MAP;
        k.advertised_listener = Some("a:1");
        assert!(
            listeners(&k).is_err(),
            "advertised.listener goes with listen only"
        );
    }

    #[test]
    fn the_listen_flag_moves_the_first_plaintext_listener() {
        let addr = "127.0.0.1:1234".parse().unwrap();
        assert_eq!(
            with_plaintext_address("SSL://:9093,PLAINTEXT://:9092", DEFAULT_PROTOCOL_MAP, addr)
                .unwrap(),
            "SSL://:9093,PLAINTEXT://127.0.0.1:1234"
        );
        assert!(with_plaintext_address("SSL://:9093", DEFAULT_PROTOCOL_MAP, addr).is_err());
    }
}
