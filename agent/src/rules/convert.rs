//! Between the agent's types and Rhai's: an event as the map a rule sees,
//! a rule's returned map as a plan, a TOML parameter as a Rhai value.

use super::*;

pub(super) fn event_map(event: &Event) -> rhai::Map {
    let mut captures = rhai::Map::new();
    for (k, v) in &event.captures {
        captures.insert(k.as_str().into(), v.clone().into());
    }
    let mut ev = rhai::Map::new();
    ev.insert("signature".into(), event.signature.to_string().into());
    ev.insert("source".into(), event.source.to_string().into());
    ev.insert("captures".into(), captures.into());
    ev.insert("text".into(), event.text.clone().into());
    ev.insert("file".into(), event.file.display().to_string().into());
    ev.insert("offset".into(), (event.offset as i64).into());
    ev.insert("time_ms".into(), event.at.into());
    ev.insert("truncated".into(), event.truncated.into());
    ev
}

pub(super) fn plan_from_dynamic(out: Dynamic) -> Result<PlanSpec, String> {
    let type_name = out.type_name().to_string();
    let map = out.try_cast::<rhai::Map>().ok_or_else(|| format!("a {type_name}; expected a plan map or ()"))?;
    for key in map.keys() {
        if !["summary", "risk", "steps", "benign"].contains(&key.as_str()) {
            return Err(format!("a plan with unknown key `{key}` (expected summary, risk, steps, benign)"));
        }
    }
    let summary = map
        .get("summary")
        .cloned()
        .ok_or("a plan without `summary`")?
        .into_string()
        .map_err(|t| format!("a plan whose summary is a {t}"))?;
    let risk = match map.get("risk") {
        None => Risk::Safe,
        Some(d) => Risk::parse(&d.clone().into_string().map_err(|t| format!("a plan whose risk is a {t}"))?)
            .map_err(|e| e.to_string())?,
    };
    let benign = match map.get("benign") {
        None => false,
        Some(d) => d.as_bool().map_err(|t| format!("a plan whose benign is a {t}"))?,
    };
    let steps = match map.get("steps") {
        None => Vec::new(),
        Some(d) => d
            .clone()
            .into_array()
            .map_err(|t| format!("a plan whose steps is a {t}"))?
            .into_iter()
            .map(|s| {
                let t = s.type_name().to_string();
                s.try_cast::<StepSpec>().ok_or_else(|| {
                    format!("a step that is a {t}; build steps with hosts_entry(), service_restart(), …")
                })
            })
            .collect::<Result<_, _>>()?,
    };
    Ok(PlanSpec { summary, risk, benign, steps })
}

pub(super) fn toml_to_dynamic(value: &toml::Value) -> Dynamic {
    match value {
        toml::Value::String(s) => s.clone().into(),
        toml::Value::Integer(i) => (*i).into(),
        toml::Value::Float(f) => (*f).into(),
        toml::Value::Boolean(b) => (*b).into(),
        toml::Value::Datetime(d) => d.to_string().into(),
        toml::Value::Array(a) => a.iter().map(toml_to_dynamic).collect::<rhai::Array>().into(),
        toml::Value::Table(t) => {
            t.iter().map(|(k, v)| (k.as_str().into(), toml_to_dynamic(v))).collect::<rhai::Map>().into()
        }
    }
}
