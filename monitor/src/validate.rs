//! From the policy file's TOML to typed values, with errors that name the place:
//! `FILE:LINE:COLUMN: KEY: MESSAGE`, e.g.
//! `policy.toml:12:9: rules.unexpected_listen.allow[2].port: port 70000 out of range 1-65535`.
//!
//! Input types (`*Input`) are the file's shape: serde structs with `deny_unknown_fields`, every
//! key optional, and [`toml::Spanned`] on whatever is validated later. The validators here turn
//! them into [`crate::matcher`] values; a key left out takes its value from a base (the embedded
//! default policy) through [`or_base`]. Every section of the policy (the shared keys in
//! [`crate::policy`], each rule's in its own file under [`crate::rules`]) is built with them.

use std::{fmt, fmt::Write as _, ops::Range};

use serde::{Deserialize, Deserializer, Serialize, Serializer, de};
use toml::Spanned;

use crate::{
    matcher::{Exception, ExeGlob, PortRange, RuleSettings},
    netrange::Cidr,
    record::Severity,
};

/// A policy that cannot be read or does not validate.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("{path}: cannot read policy: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// A policy file the daemon does not trust (`crate::trust`).
    #[error("{path}: refused: {reason}")]
    Untrusted {
        path: String,
        reason: crate::trust::Untrusted,
    },
    /// `FILE:LINE:COLUMN: KEY: MESSAGE` (position and key left out when unknown).
    #[error("{}", display_invalid(.file, .position.as_ref(), .key.as_ref(), .message))]
    Invalid {
        file: String,
        /// 1-based line and column (in characters).
        position: Option<(usize, usize)>,
        /// Dotted key path such as `rules.unexpected_listen.allow[2].port`.
        key: Option<String>,
        message: String,
    },
}

fn display_invalid(
    file: &str,
    position: Option<&(usize, usize)>,
    key: Option<&String>,
    message: &str,
) -> String {
    let mut out = file.to_owned();
    if let Some((line, col)) = position {
        let _ = write!(out, ":{line}:{col}");
    }
    if let Some(key) = key {
        out.push_str(": ");
        out.push_str(key);
    }
    out.push_str(": ");
    out.push_str(message);
    out
}

/// An `allowed_ports` / exception `port` value: `8080` or `"8000-8100"`.
#[derive(Clone, Debug)]
pub enum PortInput {
    Number(i64),
    Text(String),
}

impl<'de> Deserialize<'de> for PortInput {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PortVisitor;
        impl de::Visitor<'_> for PortVisitor {
            type Value = PortInput;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a port number or a \"low-high\" range string")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<PortInput, E> {
                Ok(PortInput::Number(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<PortInput, E> {
                Ok(PortInput::Number(i64::try_from(v).unwrap_or(i64::MAX)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<PortInput, E> {
                Ok(PortInput::Text(v.to_owned()))
            }
        }
        deserializer.deserialize_any(PortVisitor)
    }
}

impl Serialize for PortInput {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Number(n) => serializer.serialize_i64(*n),
            Self::Text(t) => serializer.serialize_str(t),
        }
    }
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExceptionInput {
    #[serde(skip_serializing_if = "Option::is_none")]
    exe: Option<Spanned<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    argv_prefix: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ancestor_exe: Option<Spanned<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    destination: Option<Spanned<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    port: Option<Spanned<PortInput>>,
}

/// A value we built ourselves (the effective policy), with no position in any file.
pub fn unspanned<T>(value: T) -> Spanned<T> {
    Spanned::new(0..0, value)
}

/// The input that validates back to `r`.
pub fn port_input(r: PortRange) -> PortInput {
    if r.lo == r.hi {
        PortInput::Number(i64::from(r.lo))
    } else {
        PortInput::Text(r.to_string())
    }
}

/// The inputs that validate back to `list`.
pub fn exception_inputs(list: &[Exception]) -> Vec<Spanned<ExceptionInput>> {
    list.iter()
        .map(|e| {
            unspanned(ExceptionInput {
                exe: e.exe.as_ref().map(|g| unspanned(g.as_str().to_owned())),
                argv_prefix: e.argv_prefix.clone(),
                ancestor_exe: e
                    .ancestor_exe
                    .as_ref()
                    .map(|g| unspanned(g.as_str().to_owned())),
                destination: e.destination.map(|c| unspanned(c.to_string())),
                port: e.port.map(|r| unspanned(port_input(r))),
            })
        })
        .collect()
}

/// The text being validated, for turning byte spans into positions.
pub struct Source<'a> {
    pub name: &'a str,
    pub text: &'a str,
}

impl Source<'_> {
    pub fn position(&self, span: &Range<usize>) -> Option<(usize, usize)> {
        // Spans of values we built ourselves (effective policy) are 0..0 and meaningless; a
        // parsed value always has a non-empty span.
        if span.is_empty() && span.start == 0 {
            return None;
        }
        let mut start = span.start.min(self.text.len());
        while !self.text.is_char_boundary(start) {
            start -= 1;
        }
        let before = &self.text[..start];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = self.text[line_start..start].chars().count() + 1;
        Some((line, column))
    }

    pub fn error(
        &self,
        span: Option<&Range<usize>>,
        key: &str,
        message: impl Into<String>,
    ) -> PolicyError {
        PolicyError::Invalid {
            file: self.name.to_owned(),
            position: span.and_then(|s| self.position(s)),
            key: (!key.is_empty()).then(|| key.to_owned()),
            message: message.into(),
        }
    }

    /// The whole text as `T` (the file's shape); a syntax error, an unknown key or a value of the
    /// wrong type names its position and key path.
    pub fn deserialize<T: de::DeserializeOwned>(&self) -> Result<T, PolicyError> {
        serde_path_to_error::deserialize(toml::Deserializer::new(self.text)).map_err(|e| {
            let key = key_path(e.path());
            let inner = e.inner();
            // One line per error: toml's messages sometimes add an "expected ..." line.
            let message = inner.message().trim_end().replace('\n', "; ");
            self.error(inner.span().as_ref(), &key, message)
        })
    }
}

/// `rules.unexpected_listen.allow[2].port`, without the private segments that
/// [`toml::Spanned`] adds.
pub fn key_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for segment in path {
        match segment {
            Segment::Seq { index } => {
                out.push('[');
                out.push_str(&index.to_string());
                out.push(']');
            }
            Segment::Map { key } if key.starts_with("$__serde_spanned_private") => {}
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Segment::Unknown => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push('?');
            }
        }
    }
    out
}

/// `value`, else the base's; an error only for the embedded default itself (no base), which
/// must set every key.
pub fn or_base<T>(
    value: Option<T>,
    base: Option<T>,
    src: &Source<'_>,
    key: &str,
) -> Result<T, PolicyError> {
    value.or(base).ok_or_else(|| {
        src.error(
            None,
            key,
            "missing (the embedded default policy must set every key)",
        )
    })
}

/// Which exception conditions a rule accepts besides the process ones.
#[derive(Clone, Copy)]
pub struct ExceptionKinds {
    pub port: bool,
    pub destination: bool,
}

/// The common keys of a rule section (`enabled`, `severity`, `exceptions`), validated against
/// the kinds of exception the rule accepts; `key` is the section's (`rules.webserver_shell`).
pub fn settings(
    enabled: Option<bool>,
    severity: Option<Severity>,
    exceptions: Option<Vec<Spanned<ExceptionInput>>>,
    base: Option<&RuleSettings>,
    key: &str,
    kinds: ExceptionKinds,
    src: &Source<'_>,
) -> Result<RuleSettings, PolicyError> {
    let exceptions = match exceptions {
        Some(list) => Some(
            list.iter()
                .enumerate()
                .map(|(i, e)| exception(e, &format!("{key}.exceptions[{i}]"), kinds, src))
                .collect::<Result<Vec<_>, _>>()?,
        ),
        None => None,
    };
    Ok(RuleSettings {
        enabled: or_base(
            enabled,
            base.map(|b| b.enabled),
            src,
            &format!("{key}.enabled"),
        )?,
        severity: or_base(
            severity,
            base.map(|b| b.severity),
            src,
            &format!("{key}.severity"),
        )?,
        exceptions: or_base(
            exceptions,
            base.map(|b| b.exceptions.clone()),
            src,
            &format!("{key}.exceptions"),
        )?,
    })
}

/// A rule section with only the common keys (`enabled`, `severity`, `exceptions`).
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CommonInput {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub severity: Option<Severity>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exceptions: Option<Vec<Spanned<ExceptionInput>>>,
}

impl CommonInput {
    pub fn validate(
        self,
        base: Option<&RuleSettings>,
        key: &str,
        kinds: ExceptionKinds,
        src: &Source<'_>,
    ) -> Result<RuleSettings, PolicyError> {
        settings(
            self.enabled,
            self.severity,
            self.exceptions,
            base,
            key,
            kinds,
            src,
        )
    }

    pub fn of(s: &RuleSettings) -> Self {
        let (enabled, severity, exceptions) = settings_input(s);
        Self {
            enabled,
            severity,
            exceptions,
        }
    }
}

/// The common keys' inputs that validate back to `s`.
pub fn settings_input(
    s: &RuleSettings,
) -> (
    Option<bool>,
    Option<Severity>,
    Option<Vec<Spanned<ExceptionInput>>>,
) {
    (
        Some(s.enabled),
        Some(s.severity),
        Some(exception_inputs(&s.exceptions)),
    )
}

pub fn glob(value: &Spanned<String>, key: &str, src: &Source<'_>) -> Result<ExeGlob, PolicyError> {
    ExeGlob::new(value.get_ref()).map_err(|msg| src.error(Some(&value.span()), key, msg))
}

pub fn globs(
    list: &[Spanned<String>],
    key: &str,
    src: &Source<'_>,
) -> Result<Vec<ExeGlob>, PolicyError> {
    list.iter()
        .enumerate()
        .map(|(i, v)| glob(v, &format!("{key}[{i}]"), src))
        .collect()
}

pub fn port_number(
    n: i64,
    span: &Range<usize>,
    key: &str,
    src: &Source<'_>,
) -> Result<u16, PolicyError> {
    u16::try_from(n)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| src.error(Some(span), key, format!("port {n} out of range 1-65535")))
}

/// `"8000-8100"` or `"8080"`.
pub fn port_range_text(
    text: &str,
    span: &Range<usize>,
    key: &str,
    src: &Source<'_>,
) -> Result<PortRange, PolicyError> {
    let number = |part: &str| -> Result<u16, PolicyError> {
        let part = part.trim();
        let n: i64 = part.parse().map_err(|_| {
            src.error(
                Some(span),
                key,
                format!("`{text}` is not a port or a \"low-high\" range"),
            )
        })?;
        port_number(n, span, key, src)
    };
    let (lo, hi) = if let Some((lo, hi)) = text.split_once('-') {
        (number(lo)?, number(hi)?)
    } else {
        let p = number(text)?;
        (p, p)
    };
    if lo > hi {
        return Err(src.error(
            Some(span),
            key,
            format!("range `{text}` has low {lo} above high {hi}"),
        ));
    }
    Ok(PortRange { lo, hi })
}

pub fn port_value(
    p: &Spanned<PortInput>,
    key: &str,
    src: &Source<'_>,
) -> Result<PortRange, PolicyError> {
    match p.get_ref() {
        PortInput::Number(n) => {
            port_number(*n, &p.span(), key, src).map(|p| PortRange { lo: p, hi: p })
        }
        PortInput::Text(t) => port_range_text(t, &p.span(), key, src),
    }
}

pub fn cidr(c: &Spanned<String>, key: &str, src: &Source<'_>) -> Result<Cidr, PolicyError> {
    c.get_ref().parse().map_err(|e| {
        src.error(
            Some(&c.span()),
            key,
            format!("bad CIDR `{}`: {e}", c.get_ref()),
        )
    })
}

pub fn exception(
    entry: &Spanned<ExceptionInput>,
    key: &str,
    kinds: ExceptionKinds,
    src: &Source<'_>,
) -> Result<Exception, PolicyError> {
    let raw = entry.get_ref();
    let exe = match &raw.exe {
        Some(e) => Some(glob(e, &format!("{key}.exe"), src)?),
        None => None,
    };
    let ancestor_exe = match &raw.ancestor_exe {
        Some(e) => Some(glob(e, &format!("{key}.ancestor_exe"), src)?),
        None => None,
    };
    let destination = match &raw.destination {
        Some(d) if !kinds.destination => {
            return Err(src.error(
                Some(&d.span()),
                &format!("{key}.destination"),
                "`destination` applies only to the exceptions of rules about a destination \
                 (webserver_egress, egress_listed_ip)",
            ));
        }
        Some(d) => Some(cidr(d, &format!("{key}.destination"), src)?),
        None => None,
    };
    let port = match &raw.port {
        Some(p) if !kinds.port => {
            return Err(src.error(
                Some(&p.span()),
                &format!("{key}.port"),
                "`port` applies only to the exceptions of rules about a port (unexpected_listen, \
                 webserver_egress, egress_listed_ip, inbound_tor)",
            ));
        }
        Some(p) => Some(port_value(p, &format!("{key}.port"), src)?),
        None => None,
    };
    if let Some(prefix) = &raw.argv_prefix
        && prefix.is_empty()
    {
        return Err(src.error(
            Some(&entry.span()),
            &format!("{key}.argv_prefix"),
            "an empty argv_prefix would match every process",
        ));
    }
    let exception = Exception {
        exe,
        argv_prefix: raw.argv_prefix.clone(),
        ancestor_exe,
        destination,
        port,
    };
    if exception == Exception::default() {
        return Err(src.error(
            Some(&entry.span()),
            key,
            "an exception needs at least one condition (exe, argv_prefix, ancestor_exe, destination, port)",
        ));
    }
    Ok(exception)
}
