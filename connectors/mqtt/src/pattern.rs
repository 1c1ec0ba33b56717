//! MQTT topic → named variables: a pattern of levels such as
//! `devices/{device}/{kind}` (a `{name}` takes one whole level, `+` any
//! level unnamed, a last `#` the rest), and templates (`iot-{kind}`)
//! filled from them. It owns the matching only.

/// One level of a pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Level {
    Literal(String),
    Named(String),
    Any,
    Rest,
}

/// A pattern naming the levels of MQTT topics (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicPattern {
    text: String,
    levels: Vec<Level>,
}

impl TopicPattern {
    /// Parses `devices/{device}/{kind}`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let parts: Vec<&str> = text.split('/').collect();
        let mut levels = Vec::with_capacity(parts.len());
        for (i, p) in parts.iter().enumerate() {
            let level = if let Some(name) = p.strip_prefix('{').and_then(|n| n.strip_suffix('}')) {
                if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    return Err(format!("topic-pattern '{text}': '{p}' is not a name in braces such as {{device}}"));
                }
                Level::Named(name.to_owned())
            } else if *p == "+" {
                Level::Any
            } else if *p == "#" && i + 1 == parts.len() {
                Level::Rest
            } else if p.contains(['{', '}', '+', '#']) {
                return Err(format!("topic-pattern '{text}': level '{p}' mixes text with a name or wildcard"));
            } else {
                Level::Literal((*p).to_owned())
            };
            levels.push(level);
        }
        Ok(Self { text: text.to_owned(), levels })
    }

    /// The names it gives.
    pub fn names(&self) -> Vec<&str> {
        self.levels
            .iter()
            .filter_map(|l| match l {
                Level::Named(n) => Some(n.as_str()),
                _ => None,
            })
            .collect()
    }

    /// The variables of `topic`, or none when it does not fit.
    pub fn vars(&self, topic: &str) -> Option<Vec<(String, String)>> {
        let parts: Vec<&str> = topic.split('/').collect();
        let mut out = Vec::new();
        for (i, level) in self.levels.iter().enumerate() {
            match level {
                Level::Rest => return Some(out),
                _ if i >= parts.len() => return None,
                Level::Literal(l) if l != parts[i] => return None,
                Level::Named(n) => out.push((n.clone(), parts[i].to_owned())),
                _ => {}
            }
        }
        (parts.len() == self.levels.len()).then_some(out)
    }
}

impl std::fmt::Display for TopicPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// Every `{name}` of `template` is one of `names`.
pub(crate) fn check_template(template: &str, names: &[&str]) -> Result<(), String> {
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let close = rest[open..].find('}').ok_or_else(|| format!("'{template}': a {{ without its }}"))?;
        let name = &rest[open + 1..open + close];
        if !names.contains(&name) {
            return Err(format!(
                "'{template}' names {{{name}}}, which topic-pattern does not give (it gives: {})",
                names.join(", ")
            ));
        }
        rest = &rest[open + close + 1..];
    }
    Ok(())
}

/// `template` with `{name}`s filled in.
pub fn fill(template: &str, vars: &[(String, String)]) -> String {
    let mut out = template.to_owned();
    for (k, v) in vars {
        out = out.replace(&format!("{{{k}}}"), v);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(p: &str, topic: &str) -> Option<Vec<(String, String)>> {
        TopicPattern::parse(p).unwrap().vars(topic)
    }

    #[test]
    fn levels_become_names() {
        let got = vars("devices/{device}/{kind}", "devices/d42/telemetry").unwrap();
        assert_eq!(got, [("device".to_owned(), "d42".to_owned()), ("kind".to_owned(), "telemetry".to_owned())]);
        assert_eq!(fill("iot-{kind}", &got), "iot-telemetry");
        assert!(vars("devices/{device}/{kind}", "devices/d42").is_none());
        assert!(vars("devices/{device}/{kind}", "devices/d42/a/b").is_none());
        assert!(vars("devices/{device}/{kind}", "sensors/d42/a").is_none());
        assert_eq!(vars("site/+/{device}/#", "site/x/d1/a/b/c").unwrap(), [("device".to_owned(), "d1".to_owned())]);
        assert!(vars("site/+/{device}/#", "site/x").is_none());
    }

    #[test]
    fn mistakes_are_named() {
        assert!(TopicPattern::parse("devices/{}/x").unwrap_err().contains("'{}' is not a name"));
        assert!(TopicPattern::parse("devices/d{id}").unwrap_err().contains("mixes text"));
        assert!(TopicPattern::parse("a/#/b").unwrap_err().contains("mixes text"));
        let e = check_template("{device}-{room}", &["device"]).unwrap_err();
        assert!(e.contains("names {room}, which topic-pattern does not give (it gives: device)"), "{e}");
        assert!(check_template("{device", &["device"]).unwrap_err().contains("without its"));
    }
}
