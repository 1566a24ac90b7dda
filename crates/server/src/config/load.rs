//! Loading: serde defaults ← TOML file ← `SIGNAL_MANAGER_<SECTION>_<KEY>` environment
//! variables, through figment, with errors that name the key and its source.
//!
//! The file is extracted strictly on its own first, so a wrong type there is an error.
//! Environment values are kept as the raw strings they are (only arrays and tables are
//! parsed, figment-style) and the merged result is extracted with figment's lossy
//! interpreter, which turns `"9000"` into a number where a number is wanted. So a numeric
//! or boolean-looking value still reaches a string key intact: `SIGNAL_MANAGER_AUTH_TOKEN_SECRET=1.50`
//! is the secret `"1.50"`, not the float `1.5`.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use figment::error::{Actual, Kind};
use figment::providers::{Format, Toml};
use figment::value::{Dict, Map, Tag, Value};
use figment::{Figment, Metadata, Profile, Provider};

use super::Config;
use super::error::{ConfigError, ConfigIssue};

/// Prefix of the environment variables read as overrides.
pub const ENV_PREFIX: &str = "SIGNAL_MANAGER_";

/// The name of the environment provider's metadata, to recognize it in errors.
const ENV_SOURCE: &str = "environment variable";

/// Keys whose values must never appear in error messages.
const SECRET_KEYS: [&str; 7] = [
    "auth.token_secret",
    "cloudflare.app_secret",
    "cloudflare.turn_key_api_token",
    "database.url",
    "events.webhook_secret",
    "webrtc.turn_secret",
    "webrtc.turn_credential",
];

/// See [`Config::load_with_env`].
pub(crate) fn load(
    path: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigError> {
    let file = path.map(TomlFile::read).transpose()?;
    let env = EnvOverrides::parse(env)?;

    let mut figment = Figment::new();
    if let Some(file) = file {
        figment = figment.merge(file);
        figment
            .extract::<Config>()
            .map_err(|error| load_error(&figment, error))?;
    }
    let figment = figment.merge(env);
    figment
        .extract_lossy::<Config>()
        .map_err(|error| load_error(&figment, error))
}

// === TomlFile ===

/// A config file read once, up front, so a missing file is an error of its own.
struct TomlFile {
    path: PathBuf,
    contents: String,
}

impl TomlFile {
    fn read(path: &Path) -> Result<Self, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(contents) => Ok(Self {
                path: path.to_owned(),
                contents,
            }),
            Err(source) => Err(ConfigError::Read {
                path: path.to_owned(),
                source,
            }),
        }
    }
}

impl Provider for TomlFile {
    fn metadata(&self) -> Metadata {
        Metadata::from("TOML file", self.path.as_path())
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Toml::string(&self.contents).data()
    }
}

// === EnvOverrides ===

/// One `SIGNAL_MANAGER_<SECTION>_<KEY>` variable.
struct EnvVar {
    name: String,
    section: String,
    key: String,
    value: Value,
}

/// The prefixed environment variables, as a figment provider.
struct EnvOverrides {
    vars: Vec<EnvVar>,
}

impl EnvOverrides {
    /// Picks out the prefixed variables (prefix matched case-insensitively, as figment's
    /// `Env` does) and maps the first `_` after the prefix to `.`: `SERVER_MAX_CONNECTIONS`
    /// is `server.max_connections`.
    fn parse(env: impl IntoIterator<Item = (String, String)>) -> Result<Self, ConfigError> {
        let mut issues = Vec::new();
        let mut seen: BTreeMap<String, String> = BTreeMap::new();
        let mut vars = Vec::new();
        for (name, raw) in env {
            let Some(rest) = strip_prefix_ignore_case(name.trim(), ENV_PREFIX) else {
                continue;
            };
            let Some((section, key)) = rest
                .split_once('_')
                .filter(|(s, k)| !s.is_empty() && !k.is_empty() && !rest.contains('.'))
            else {
                issues.push(ConfigIssue {
                    key: String::new(),
                    origin: Some(format!("{ENV_SOURCE} {name}")),
                    message: format!(
                        "not a config override: expected {ENV_PREFIX}<SECTION>_<KEY>, \
                         e.g. {ENV_PREFIX}SERVER_PORT"
                    ),
                });
                continue;
            };
            let (section, key) = (section.to_ascii_lowercase(), key.to_ascii_lowercase());
            let dotted = format!("{section}.{key}");
            match seen.entry(dotted) {
                Entry::Occupied(first) => {
                    issues.push(ConfigIssue {
                        key: first.key().clone(),
                        origin: Some(format!("{ENV_SOURCE} {name}")),
                        message: format!("also set by {ENV_SOURCE} {}", first.get()),
                    });
                    continue;
                }
                Entry::Vacant(slot) => {
                    slot.insert(name.clone());
                }
            }
            vars.push(EnvVar {
                name,
                section,
                key,
                value: env_value(&raw),
            });
        }
        if issues.is_empty() {
            Ok(Self { vars })
        } else {
            Err(ConfigError::Load { issues })
        }
    }
}

impl Provider for EnvOverrides {
    fn metadata(&self) -> Metadata {
        let names: Arc<BTreeMap<String, String>> = Arc::new(
            self.vars
                .iter()
                .map(|v| (format!("{}.{}", v.section, v.key), v.name.clone()))
                .collect(),
        );
        // A key names its variable; a section, every variable that writes into it.
        Metadata::named(ENV_SOURCE).interpolater(move |_: &Profile, keys: &[&str]| {
            let key = keys.join(".");
            if let Some(name) = names.get(&key) {
                return name.clone();
            }
            let within: Vec<&str> = names
                .iter()
                .filter(|(k, _)| k.strip_prefix(&key).is_some_and(|r| r.starts_with('.')))
                .map(|(_, name)| name.as_str())
                .collect();
            if within.is_empty() {
                format!("{ENV_PREFIX}{}", keys.join("_").to_ascii_uppercase())
            } else {
                within.join(", ")
            }
        })
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let mut sections: BTreeMap<String, Dict> = BTreeMap::new();
        for var in &self.vars {
            sections
                .entry(var.section.clone())
                .or_default()
                .insert(var.key.clone(), var.value.clone());
        }
        let dict = sections
            .into_iter()
            .map(|(section, keys)| (section, Value::Dict(Tag::Default, keys)))
            .collect();
        Ok(Profile::Default.collect(dict))
    }
}

fn strip_prefix_ignore_case<'a>(name: &'a str, prefix: &str) -> Option<&'a str> {
    let head = name.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &name[prefix.len()..])
}

/// Arrays and tables are parsed the way figment's `Env` parses them (`["a:b","c:d"]`); a
/// quoted string loses its quotes; anything else stays the raw string, for the lossy
/// extraction to read as a number or boolean where the key wants one.
fn env_value(raw: &str) -> Value {
    let Ok(parsed) = raw.parse::<Value>();
    match parsed {
        Value::Array(..) | Value::Dict(..) | Value::String(..) => parsed,
        _ => Value::from(raw),
    }
}

// === errors ===

fn load_error(figment: &Figment, error: figment::Error) -> ConfigError {
    let issues = error.into_iter().map(|e| issue(figment, e)).collect();
    ConfigError::Load { issues }
}

fn issue(figment: &Figment, error: figment::Error) -> ConfigIssue {
    // The path includes the offending field of an unknown-key error.
    let path = &error.path;
    // For an unknown key the error's own metadata is that of the enclosing table, which
    // may come from another source; the key's own value says where it was written.
    let metadata = (!path.is_empty())
        .then(|| figment.find_metadata(&path.join(".")))
        .flatten()
        .or(error.metadata.as_ref());
    let origin = metadata.map(|md| describe_source(md, path));
    let key = display_key(path);
    let message = match &error.kind {
        Kind::UnknownField(_, expected) => {
            let what = if path.len() <= 1 { "section" } else { "key" };
            format!("unknown {what}; expected one of: {}", expected.join(", "))
        }
        Kind::UnknownVariant(found, expected) => {
            format!(
                "unknown value {found:?}; expected one of: {}",
                expected.join(", ")
            )
        }
        Kind::InvalidType(actual, expected) if is_secret(&key) => {
            format!(
                "invalid type: found {}, expected {expected}",
                kind_of(actual)
            )
        }
        Kind::InvalidValue(actual, expected) if is_secret(&key) => {
            format!(
                "invalid value: found {}, expected {expected}",
                kind_of(actual)
            )
        }
        Kind::Message(message) => without_source_excerpt(message),
        kind => kind.to_string(),
    };
    ConfigIssue {
        key,
        origin,
        message,
    }
}

/// `["auth", "api_keys", "1"]` → `auth.api_keys[1]`.
fn display_key(path: &[String]) -> String {
    let mut key = String::new();
    for segment in path {
        if !key.is_empty() && segment.bytes().all(|b| b.is_ascii_digit()) {
            key.push_str(&format!("[{segment}]"));
        } else {
            if !key.is_empty() {
                key.push('.');
            }
            key.push_str(segment);
        }
    }
    key
}

fn describe_source(md: &Metadata, path: &[String]) -> String {
    if md.name == ENV_SOURCE && !path.is_empty() {
        return format!("{ENV_SOURCE} {}", md.interpolate(&Profile::Default, path));
    }
    match &md.source {
        Some(figment::Source::File(file)) => format!("{} {}", md.name, file.display()),
        _ => md.name.to_string(),
    }
}

fn is_secret(key: &str) -> bool {
    SECRET_KEYS.contains(&key)
}

/// The kind of a value without the value itself.
fn kind_of(actual: &Actual) -> &'static str {
    match actual {
        Actual::Bool(_) => "a boolean",
        Actual::Unsigned(_) | Actual::Signed(_) => "an integer",
        Actual::Float(_) => "a float",
        Actual::Char(_) | Actual::Str(_) => "a string",
        Actual::Bytes(_) => "bytes",
        Actual::Seq => "an array",
        Actual::Map => "a table",
        _ => "another type",
    }
}

/// The TOML parser quotes the offending source line (which may hold a secret) between
/// `|`-prefixed lines; keep the position and the explanation, on one line.
fn without_source_excerpt(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .filter(|line| {
            let gutter = line
                .trim_start_matches(|c: char| c.is_ascii_digit())
                .trim_start();
            !gutter.starts_with('|')
        })
        .collect::<Vec<_>>()
        .join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_values_keep_scalars_raw() {
        assert_eq!(env_value("9000"), Value::from("9000"));
        assert_eq!(env_value("1.50"), Value::from("1.50"));
        assert_eq!(env_value("\"quoted\""), Value::from("quoted"));
        assert_eq!(
            env_value("[\"a:b\",\"c:d\"]"),
            Value::from(vec!["a:b", "c:d"])
        );
    }

    #[test]
    fn excerpt_is_dropped() {
        let message = "TOML parse error at line 1, column 16\n  |\n1 | token_secret = hunter2\n  |                ^\ninvalid string\nexpected `\"`, `'`\n";
        let cleaned = without_source_excerpt(message);
        assert!(!cleaned.contains("hunter2"), "{cleaned}");
        assert!(cleaned.contains("line 1, column 16"), "{cleaned}");
        assert!(cleaned.contains("invalid string"), "{cleaned}");
    }
}
