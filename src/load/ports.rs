//! Port specifications: parsed into Compose's long form and checked the way Compose checks
//! them (the rules of Docker's port-spec parser), so that a bad port is refused while loading,
//! before `apply` creates a network or stops a container, and not by the engine half-way.

use std::net::IpAddr;

use serde_json::{json, Map, Value};

const PROTOCOLS: [&str; 3] = ["tcp", "udp", "sctp"];

const PORT_RULE: &str = "a port is a number up to 65535, a range `start-end` ascends";

/// The pieces of a short port spec `[[ip:]published:]target[/protocol]`.
struct Short<'a> {
    host_ip: Option<&'a str>,
    published: Option<&'a str>,
    target: &'a str,
    protocol: String,
}

fn split(spec: &str) -> Short<'_> {
    let (rest, protocol) = match spec.rsplit_once('/') {
        Some((r, p)) => (r, p.to_ascii_lowercase()),
        None => (spec, "tcp".to_string()),
    };
    let (host_ip, published, target) = match rest.rfind(':') {
        None => (None, None, rest),
        Some(i) => {
            let target = &rest[i + 1..];
            let before = &rest[..i];
            // An IPv6 host ip comes in brackets (`[::1]:80:80`) or bare (`::1:80:80`).
            match before.rfind(':') {
                Some(j) if !before[..j].is_empty() || before.starts_with('[') => {
                    let ip = before[..j].trim_start_matches('[').trim_end_matches(']');
                    (Some(ip), Some(&before[j + 1..]), target)
                }
                Some(j) => (None, Some(&before[j + 1..]), target),
                None => (None, Some(before), target),
            }
        }
    };
    Short {
        host_ip: host_ip.filter(|s| !s.is_empty()),
        published: published.filter(|s| !s.is_empty()),
        target,
        protocol,
    }
}

/// `80` or `8000-8010` as an ascending, inclusive range; `None` when it is neither.
pub(crate) fn port_range(s: &str) -> Option<Range> {
    let num = |x: &str| {
        (!x.is_empty() && x.bytes().all(|c| c.is_ascii_digit()))
            .then(|| x.parse::<u16>().ok())
            .flatten()
    };
    match s.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (num(a)?, num(b)?);
            (a <= b).then_some((a, b))
        }
        None => num(s).map(|p| (p, p)),
    }
}

pub(crate) fn check_protocol(p: &str) -> Result<(), String> {
    if PROTOCOLS.contains(&p.to_ascii_lowercase().as_str()) {
        Ok(())
    } else {
        Err(format!(
            "invalid proto: {p}: the protocol must be tcp, udp or sctp"
        ))
    }
}

pub(crate) fn check_host_ip(ip: &str) -> Result<(), String> {
    match ip.parse::<IpAddr>() {
        Ok(_) => Ok(()),
        Err(_) => Err(format!(
            "invalid IP address: {ip}: the host IP must be an IPv4 or IPv6 address"
        )),
    }
}

/// An inclusive port range, `(80, 80)` for a single port.
type Range = (u16, u16);

/// Checks a short spec as Compose does; returns the target and published ranges.
fn check(s: &Short) -> Result<(Range, Option<Range>), String> {
    check_protocol(&s.protocol)?;
    if let Some(ip) = s.host_ip {
        check_host_ip(ip)?;
    }
    let target = port_range(s.target)
        .ok_or_else(|| format!("invalid containerPort: {}: {PORT_RULE}", s.target))?;
    if target.0 == 0 {
        return Err("is missing a target port: the container port must be 1 to 65535".into());
    }
    let published = match s.published {
        None => None,
        Some(h) => {
            Some(port_range(h).ok_or_else(|| format!("invalid hostPort: {h}: {PORT_RULE}"))?)
        }
    };
    if let Some(p) = published {
        if target.0 != target.1 && target.1 - target.0 != p.1 - p.0 {
            return Err(format!(
                "invalid ranges specified for container and host Ports: {} and {}: \
                 a host range must be as long as the container range",
                s.target,
                s.published.unwrap_or_default()
            ));
        }
    }
    Ok((target, published))
}

/// Short port syntax into Compose's long form, one entry per container port of a range.
pub fn parse_port(spec: &str) -> Result<Vec<Value>, String> {
    let s = split(spec);
    let ((t0, t1), pub_range) = check(&s)?;
    let mut out = Vec::new();
    for (n, t) in (t0..=t1).enumerate() {
        let mut o = Map::new();
        o.insert("mode".into(), json!("ingress"));
        if let Some(ip) = s.host_ip {
            o.insert("host_ip".into(), json!(ip));
        }
        o.insert("target".into(), json!(t));
        if let Some((p0, p1)) = pub_range {
            let published = if t0 == t1 && p0 != p1 {
                format!("{p0}-{p1}")
            } else if p0 == p1 && t0 != t1 {
                p0.to_string()
            } else {
                (u32::from(p0) + n as u32).to_string()
            };
            o.insert("published".into(), json!(published));
        }
        o.insert("protocol".into(), json!(s.protocol));
        out.push(Value::Object(o));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_ports() {
        assert_eq!(
            parse_port("127.0.0.1:8080:80/udp").unwrap(),
            vec![
                json!({"mode":"ingress","host_ip":"127.0.0.1","target":80,"published":"8080","protocol":"udp"})
            ]
        );
        assert_eq!(
            parse_port("80").unwrap(),
            vec![json!({"mode":"ingress","target":80,"protocol":"tcp"})]
        );
        let r = parse_port("8000-8001:80-81").unwrap();
        assert_eq!(r[1]["published"], json!("8001"));
        assert_eq!(r[1]["target"], json!(81));
        assert_eq!(parse_port("::1:80:80").unwrap()[0]["host_ip"], json!("::1"));
        assert_eq!(parse_port("80/UDP").unwrap()[0]["protocol"], json!("udp"));
        assert_eq!(
            parse_port("8080-8081:80").unwrap()[0]["published"],
            json!("8080-8081")
        );
        assert!(parse_port("0:80").is_ok(), "host port 0 picks a free port");
    }

    #[test]
    fn refuses_what_compose_refuses() {
        for (spec, msg) in [
            ("9000-8000:80-90", "invalid hostPort: 9000-8000"),
            ("8080:70000", "invalid containerPort: 70000"),
            ("70000:80", "invalid hostPort: 70000"),
            ("1.2.3.4.5:80:80", "invalid IP address: 1.2.3.4.5"),
            ("300.1.1.1:80:80", "invalid IP address: 300.1.1.1"),
            ("8080:80/xyz", "invalid proto: xyz"),
            (
                "80-81:90-92",
                "invalid ranges specified for container and host Ports: 90-92",
            ),
            ("8080:80-81", "invalid ranges specified"),
            ("8080:0", "is missing a target port"),
            ("a:80", "invalid hostPort: a"),
            ("+80:80", "invalid hostPort: +80"),
        ] {
            let e = parse_port(spec).unwrap_err();
            assert!(e.starts_with(msg), "{spec}: {e}");
        }
    }
}
