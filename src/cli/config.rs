//! `composeops config`: the loaded project in Compose's canonical form.

use std::io::Write;

use super::args::{ConfigArgs, Format, Global};
use super::common;

pub(crate) fn run(global: &Global, a: &ConfigArgs) -> anyhow::Result<i32> {
    let project = common::load(global, a.path.as_ref())?;
    let mut out = std::io::stdout().lock();
    if a.services {
        for name in project.services.keys() {
            writeln!(out, "{name}")?;
        }
        return Ok(0);
    }
    if a.images {
        for svc in project.services.values() {
            if let Some(i) = &svc.image {
                writeln!(out, "{i}")?;
            }
        }
        return Ok(0);
    }
    let mut json = project.to_json();
    escape_dollars(&mut json);
    match a.format {
        Format::Json => writeln!(out, "{}", serde_json::to_string_pretty(&json)?)?,
        Format::Yaml => write!(out, "{}", serde_yaml::to_string(&json)?)?,
    }
    Ok(0)
}

/// `config` prints a literal `$` as `$$`, as Compose does, so its output loads back unchanged.
fn escape_dollars(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::String(s) if s.contains('$') => *s = s.replace('$', "$$"),
        serde_json::Value::Array(a) => a.iter_mut().for_each(escape_dollars),
        serde_json::Value::Object(o) => o.values_mut().for_each(escape_dollars),
        _ => {}
    }
}
