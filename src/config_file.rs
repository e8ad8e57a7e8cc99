//! The `--config` file (TOML), `--print-config` and the example file.
//!
//! Owns: turning a TOML file into the same flags the command line takes,
//! the precedence between the two, the effective configuration as TOML,
//! and the commented example (`ringmq.example.toml`). It never defines a
//! setting of its own: every key is a long flag of [`Config`], found
//! through clap's introspection of the one derive, so a new flag is a new
//! key, with its `--help` text in the example, without touching this file.
//!
//! Invariants: a key's value is checked by the same clap value parser and
//! [`Config::validate`] as its flag, and every error about the file names
//! the key and its line. A flag given on the command line replaces the
//! file's value entirely (a repeatable flag's list included), and the file
//! beats an environment variable (`RUST_LOG` for `log`) and the defaults.
//! Nothing here panics on any file content.

use std::any::TypeId;
use std::ffi::OsString;
use std::fmt;
use std::ops::Range;
use std::path::Path;

use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Command, CommandFactory, FromArgMatches};

use crate::config::Config;

/// Flags that are not keys: they say where the file is and what to do
/// with it.
const NOT_KEYS: [&str; 2] = ["config", "print-config"];

/// Keys a SIGHUP applies to the running broker; every other changed key
/// needs a restart (the TLS, password and ACL files' *contents* are read
/// again on SIGHUP whatever the file says). Besides `log`, these are the
/// session policy's limits that apply to new connections, sessions and
/// decisions without going back on what a connected client was told
/// ([`ringmq::Broker::apply_live`]); `max-qos`, `topic-alias-maximum`,
/// `max-packet-size` and `keepalive-backoff` are not among them.
pub const LIVE_KEYS: [&str; 18] = [
    "log",
    "server-keepalive",
    "max-keepalive",
    "min-keepalive",
    "refuse-low-keepalive",
    "allow-zero-keepalive",
    "session-expiry-default-secs",
    "max-session-expiry-secs",
    "receive-maximum",
    "max-inflight-out",
    "max-queued-messages",
    "max-queued-bytes",
    "max-subscriptions",
    "max-topic-levels",
    "max-topic-aliases-out",
    "max-topic-alias-bytes",
    "client-id-pattern",
    "takeover-same-user-only",
];

/// Why [`load`] gave no configuration.
#[derive(Debug)]
pub enum LoadError {
    /// The command line itself is wrong, or asked for `--help` or
    /// `--version`: clap's own error, to print and exit with
    /// ([`clap::Error::exit`]).
    Args(clap::Error),
    /// The config file, or a value (from it or the command line), is
    /// invalid; the message names the file, line and key, or the flag.
    Invalid(String),
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Args(e) => write!(f, "{e}"),
            LoadError::Invalid(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for LoadError {}

/// A validated configuration with the effective value of every key, as
/// TOML, for `--print-config` and for comparing two loads on SIGHUP.
#[derive(Clone, Debug)]
pub struct Loaded {
    /// The configuration the broker runs with.
    pub config: Config,
    /// Each key (in `--help` order) and its value as TOML; `None` when an
    /// optional flag without a default is unset.
    values: Vec<(String, Option<String>)>,
}

impl Loaded {
    /// Keys whose effective value differs in `new`, in `--help` order.
    pub fn changed_keys(&self, new: &Loaded) -> Vec<String> {
        self.values
            .iter()
            .zip(&new.values)
            .filter(|(old, new)| old != new)
            .map(|((key, _), _)| key.clone())
            .collect()
    }

    /// Takes the values of the [`LIVE_KEYS`] from `new` (once they are
    /// applied), so the next comparison is against what runs.
    pub fn adopt_live(&mut self, new: &Loaded) {
        for ((key, old), (_, value)) in self.values.iter_mut().zip(&new.values) {
            if LIVE_KEYS.contains(&key.as_str()) {
                old.clone_from(value);
            }
        }
        let (c, n) = (&mut self.config, &new.config);
        c.log.clone_from(&n.log);
        c.server_keepalive = n.server_keepalive;
        c.max_keepalive = n.max_keepalive;
        c.min_keepalive = n.min_keepalive;
        c.refuse_low_keepalive = n.refuse_low_keepalive;
        c.allow_zero_keepalive = n.allow_zero_keepalive;
        c.session_expiry_default_secs = n.session_expiry_default_secs;
        c.max_session_expiry_secs = n.max_session_expiry_secs;
        c.receive_maximum = n.receive_maximum;
        c.max_inflight_out = n.max_inflight_out;
        c.max_queued_messages = n.max_queued_messages;
        c.max_queued_bytes = n.max_queued_bytes;
        c.max_subscriptions = n.max_subscriptions;
        c.max_topic_levels = n.max_topic_levels;
        c.max_topic_aliases_out = n.max_topic_aliases_out;
        c.max_topic_alias_bytes = n.max_topic_alias_bytes;
        c.client_id_patterns.clone_from(&n.client_id_patterns);
        c.takeover_same_user_only = n.takeover_same_user_only;
    }
}

/// Parses `args` (the first item is the program name) and, with
/// `--config FILE`, the file; validates the result.
///
/// Precedence, highest first: the command line, the file, an environment
/// variable (`RUST_LOG`), the default.
pub fn load<I, T>(args: I) -> Result<Loaded, LoadError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let keys = keys();
    let cli = command()
        .try_get_matches_from(&args)
        .map_err(LoadError::Args)?;
    let cli_config = Config::from_arg_matches(&cli).map_err(LoadError::Args)?;

    let mut file_keys = Vec::new();
    let mut argv = args.iter().take(1).cloned().collect::<Vec<_>>();
    if let Some(path) = &cli_config.config {
        let from_cli = |key: &Key| cli.value_source(&key.id) == Some(ValueSource::CommandLine);
        for Setting { key, line, words } in read_file(path, &keys)? {
            if !from_cli(key) {
                argv.extend(words.into_iter().map(OsString::from));
                file_keys.push((key.name.clone(), line));
            }
        }
    }
    argv.extend(args.iter().skip(1).cloned());
    let matches = command()
        .try_get_matches_from(&argv)
        .map_err(|e| LoadError::Invalid(first_line(&e)))?;
    let config =
        Config::from_arg_matches(&matches).map_err(|e| LoadError::Invalid(first_line(&e)))?;

    // Errors that name a flag set by the file name its key and line.
    let path = cli_config.config.as_deref();
    // `detail` follows the key: ": why" or " (why)".
    let in_file = |flag: &str, detail: &str| {
        let (path, line) = file_keys
            .iter()
            .find(|(name, _)| name == flag)
            .and_then(|(_, line)| Some((path?, *line)))?;
        Some(at(
            path,
            line,
            &format!("invalid value for key \"{flag}\"{detail}"),
        ))
    };
    if let Err(e) = config.validate() {
        let message = e.to_string();
        let named = message
            .strip_prefix("invalid --")
            .and_then(|rest| rest.split_once(": "))
            .and_then(|(flag, why)| in_file(flag, &format!(": {why}")));
        // Or a file key the message names as the other side of the check
        // ("86400 is above --max-session-expiry-secs 60").
        let other = || {
            file_keys.iter().find_map(|(name, _)| {
                let flag = format!("--{name}");
                let named = message.match_indices(&flag).any(|(i, _)| {
                    let next = message[i + flag.len()..].chars().next();
                    !next.is_some_and(|c| c.is_ascii_alphanumeric() || c == '-')
                });
                let detail = format!(" ({message})");
                named.then(|| in_file(name, &detail)).flatten()
            })
        };
        return Err(LoadError::Invalid(named.or_else(other).unwrap_or(message)));
    }
    if let Err(e) = tracing_subscriber::EnvFilter::try_new(&config.log) {
        let why = format!(": {:?}: {e}", config.log);
        return Err(LoadError::Invalid(in_file("log", &why).unwrap_or_else(
            || format!("invalid --log filter {:?}: {e}", config.log),
        )));
    }

    let values = keys
        .iter()
        .map(|key| (key.name.clone(), effective(key, &matches)))
        .collect();
    Ok(Loaded { config, values })
}

/// The effective configuration as a TOML file that `--config` loads back
/// to the same configuration (`--print-config`). An unset optional key is
/// a comment, so the output still lists it.
pub fn print(loaded: &Loaded) -> String {
    let mut out = String::from(
        "# ringmq --print-config: the effective configuration (file, command line and\n\
         # defaults). `ringmq --config FILE` loads it back unchanged; a commented-out\n\
         # key is unset. ringmq.example.toml documents every key.\n\n",
    );
    let keys = keys();
    for (key, (_, value)) in keys.iter().zip(&loaded.values) {
        match value {
            Some(v) => out.push_str(&format!("{} = {v}\n", key.name)),
            None => out.push_str(&format!("# {} = {}\n", key.name, key.placeholder())),
        }
    }
    out
}

/// The commented example file (`ringmq.example.toml`): every key with its
/// `--help` text and, commented out, its default. Generated from the flag
/// definitions (`ringmq --print-example-config`), so it cannot drift from
/// `--help`; the environment plays no part.
pub fn example() -> String {
    let mut out = String::from(
        "# ringmq example configuration: every key, with its `ringmq --help` text.\n\
         #\n\
         # Generated from the flag definitions by `ringmq --print-example-config >\n\
         # ringmq.example.toml` (a test fails when this file is out of date). Every\n\
         # key has the name of its command-line flag and is shown commented out at\n\
         # its default: uncomment what you change and run `ringmq --config FILE`.\n\
         # Flags on the command line override the file; a repeatable flag given\n\
         # there replaces the file's whole list. `ringmq --print-config` prints\n\
         # the effective configuration.\n",
    );
    for key in keys() {
        out.push('\n');
        // clap drops the full stop of a one-paragraph help; a comment keeps it.
        let mut help = key.help.trim_end().to_string();
        if !help.ends_with(['.', '!', '?', ':']) {
            help.push('.');
        }
        for line in help.lines() {
            wrap_comment(&mut out, line, 78);
        }
        let value = if key.defaults.is_empty() && key.kind != Kind::Switch {
            key.placeholder()
        } else if key.repeatable {
            let items = key.defaults.iter().map(|d| value(key.kind, d));
            toml_edit::Value::Array(items.collect()).to_string()
        } else {
            let default = key.defaults.first().map_or("false", String::as_str);
            value(key.kind, default).to_string()
        };
        out.push_str(&format!("# {} = {value}\n", key.name));
    }
    out
}

/// What a key's TOML value must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// A flag without a value (`--require-certificate`): `true` gives it,
    /// `false` does not.
    Switch,
    /// A flag that takes `true` or `false` (`--allow-anonymous BOOL`).
    Bool,
    /// An integer.
    Int,
    /// A number (an integer is taken too).
    Float,
    /// A string (paths, addresses, filters, ...).
    Str,
}

impl Kind {
    fn of(arg: &Arg) -> Kind {
        if matches!(arg.get_action(), ArgAction::SetTrue) {
            return Kind::Switch;
        }
        let t = arg.get_value_parser().type_id();
        let ints = [
            TypeId::of::<u8>(),
            TypeId::of::<u16>(),
            TypeId::of::<u32>(),
            TypeId::of::<u64>(),
            TypeId::of::<usize>(),
        ];
        if ints.iter().any(|i| t == *i) {
            Kind::Int
        } else if t == TypeId::of::<f64>() {
            Kind::Float
        } else if t == TypeId::of::<bool>() {
            Kind::Bool
        } else {
            Kind::Str
        }
    }

    fn expected(self) -> &'static str {
        match self {
            Kind::Switch | Kind::Bool => "true or false",
            Kind::Int => "an integer",
            Kind::Float => "a number",
            Kind::Str => "a string",
        }
    }
}

/// One key of the file: a long flag of [`Config`].
#[derive(Clone, Debug)]
struct Key {
    /// clap's id (the field name).
    id: String,
    /// The long flag, which is the key.
    name: String,
    kind: Kind,
    /// Takes a list (the flag is repeatable).
    repeatable: bool,
    /// `--help` text (the long one when there is one).
    help: String,
    /// What `--help` shows as the value (`PATH`, `N`, ...).
    value_name: String,
    /// Default values, as clap holds them.
    defaults: Vec<String>,
}

impl Key {
    /// What an unset key shows instead of a value, in a comment.
    fn placeholder(&self) -> String {
        let name = format!("<{}>", self.value_name);
        let one = if self.kind == Kind::Str {
            format!("\"{name}\"")
        } else {
            name
        };
        if self.repeatable {
            format!("[{one}]")
        } else {
            one
        }
    }
}

/// [`Config`]'s command, built so defaults and actions are final.
fn command() -> Command {
    let mut cmd = Config::command();
    cmd.build();
    cmd
}

/// Every key, in `--help` order.
fn keys() -> Vec<Key> {
    command()
        .get_arguments()
        .filter(|a| {
            !matches!(
                a.get_action(),
                ArgAction::Help | ArgAction::HelpShort | ArgAction::HelpLong | ArgAction::Version
            )
        })
        .filter_map(|a| {
            let name = a.get_long()?.to_string();
            if NOT_KEYS.contains(&name.as_str()) {
                return None;
            }
            let help = a.get_long_help().or(a.get_help());
            Some(Key {
                id: a.get_id().to_string(),
                kind: Kind::of(a),
                repeatable: matches!(a.get_action(), ArgAction::Append),
                help: help.map(|h| h.to_string()).unwrap_or_default(),
                value_name: a
                    .get_value_names()
                    .and_then(|n| n.first())
                    .map_or_else(|| "VALUE".to_string(), |n| n.to_string()),
                defaults: a
                    .get_default_values()
                    .iter()
                    .map(|d| d.to_string_lossy().into_owned())
                    .collect(),
                name,
            })
        })
        .collect()
}

/// A key set in the file.
struct Setting<'k> {
    key: &'k Key,
    /// Its line (1-based).
    line: usize,
    /// The flag words it stands for (`--name=value`, ...).
    words: Vec<String>,
}

/// Reads and checks the file: each key set, in file order.
fn read_file<'k>(path: &Path, keys: &'k [Key]) -> Result<Vec<Setting<'k>>, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        LoadError::Invalid(format!(
            "config file {}: cannot read it: {e}",
            path.display()
        ))
    })?;
    let doc = toml_edit::Document::parse(text.as_str()).map_err(|e| {
        let line = e.span().map(|s| line_of(&text, &s));
        let mut message = e.message().trim().replace('\n', "; ");
        if message == "duplicate key" {
            if let Some(span) = e.span() {
                message = format!("duplicate key \"{}\"", text.get(span).unwrap_or("").trim());
            }
        } else {
            // Name the key of the line, when the line starts with one.
            let key = line
                .and_then(|n| text.lines().nth(n - 1))
                .and_then(|l| l.split_once('='))
                .map(|(k, _)| k.trim())
                .filter(|k| {
                    !k.is_empty()
                        && k.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                });
            message = match key {
                Some(key) => format!("not valid TOML at key \"{key}\": {message}"),
                None => format!("not valid TOML: {message}"),
            };
        }
        LoadError::Invalid(match line {
            Some(line) => at(path, line, &message),
            None => format!("config file {}: {message}", path.display()),
        })
    })?;
    let table = doc.as_table();
    let mut found = Vec::new();
    for (name, item) in table.iter() {
        let key_span = table.get_key_value(name).and_then(|(k, _)| k.span());
        let line = key_span
            .or_else(|| item.span())
            .map_or(1, |s| line_of(&text, &s));
        let fail = |line: usize, why: String| LoadError::Invalid(at(path, line, &why));
        if NOT_KEYS.contains(&name) {
            return Err(fail(line, format!("key \"{name}\" is not allowed in a config file (it is a command-line flag only)")));
        }
        let Some(key) = keys.iter().find(|k| k.name == name) else {
            let hint = suggest(name, keys)
                .map(|s| format!(" (did you mean \"{s}\"?)"))
                .unwrap_or_default();
            return Err(fail(line, format!("unknown key \"{name}\"{hint}")));
        };
        let invalid = |line: usize, why: String| {
            fail(line, format!("invalid value for key \"{name}\": {why}"))
        };
        let values: Vec<(&toml_edit::Value, usize)> = match (item, key.repeatable) {
            (toml_edit::Item::Value(toml_edit::Value::Array(list)), true) => {
                if list.is_empty() {
                    return Err(invalid(
                        line,
                        "an empty list (leave the key out for the default)".into(),
                    ));
                }
                list.iter()
                    .map(|v| (v, v.span().map_or(line, |s| line_of(&text, &s))))
                    .collect()
            }
            (toml_edit::Item::Value(v), true) => {
                return Err(invalid(
                    line,
                    format!(
                        "expected a list of {}, found {}",
                        plural(key.kind),
                        type_name(v)
                    ),
                ))
            }
            (toml_edit::Item::Value(v), false) => vec![(v, line)],
            (_, _) => {
                return Err(invalid(
                    line,
                    format!("expected {}, found a table", key.kind.expected()),
                ))
            }
        };
        let mut words = Vec::new();
        for (v, line) in values {
            let word = scalar(key.kind, v).ok_or_else(|| {
                invalid(
                    line,
                    format!("expected {}, found {}", key.kind.expected(), type_name(v)),
                )
            })?;
            let word = match key.kind {
                Kind::Switch if word == "true" => format!("--{name}"),
                Kind::Switch => continue,
                _ => format!("--{name}={word}"),
            };
            // The flag's own parser checks the value, alone, so its error
            // belongs to this key (and this line of a list).
            if let Err(e) = command().try_get_matches_from(["ringmq", word.as_str()]) {
                let why =
                    std::error::Error::source(&e).map_or_else(|| first_line(&e), |s| s.to_string());
                // Show the value at fault unless the message already does.
                let why = match e.get(clap::error::ContextKind::InvalidValue) {
                    Some(clap::error::ContextValue::String(v)) if !why.contains(v.as_str()) => {
                        format!("{}: {why}", value(key.kind, v))
                    }
                    _ => why,
                };
                return Err(invalid(line, why));
            }
            words.push(word);
        }
        found.push(Setting { key, line, words });
    }
    Ok(found)
}

/// The text of a TOML value, as the flag would get it; `None` when its
/// type does not fit `kind`.
fn scalar(kind: Kind, v: &toml_edit::Value) -> Option<String> {
    use toml_edit::Value as V;
    match (kind, v) {
        (Kind::Int | Kind::Float, V::Integer(i)) => Some(i.value().to_string()),
        // TOML integers stop at 2^63 - 1; larger ones are written as strings.
        (Kind::Int, V::String(s))
            if s.value().parse::<u64>().is_ok_and(|n| n > i64::MAX as u64) =>
        {
            Some(s.value().clone())
        }
        (Kind::Float, V::Float(f)) => Some(f.value().to_string()),
        (Kind::Switch | Kind::Bool, V::Boolean(b)) => Some(b.value().to_string()),
        (Kind::Str, V::String(s)) => Some(s.value().clone()),
        _ => None,
    }
}

/// A TOML value with the type `kind` gives the flag's text `raw`.
fn value(kind: Kind, raw: &str) -> toml_edit::Value {
    let parsed = match kind {
        Kind::Int => raw.parse::<i64>().ok().map(toml_edit::Value::from),
        Kind::Float => raw.parse::<f64>().ok().map(toml_edit::Value::from),
        Kind::Switch | Kind::Bool => raw.parse::<bool>().ok().map(toml_edit::Value::from),
        Kind::Str => None,
    };
    parsed.unwrap_or_else(|| toml_edit::Value::from(raw))
}

/// The effective value of `key` in `matches`, as TOML.
fn effective(key: &Key, matches: &ArgMatches) -> Option<String> {
    let raw: Vec<String> = matches
        .try_get_raw(&key.id)
        .ok()
        .flatten()?
        .map(|v| v.to_string_lossy().into_owned())
        .collect();
    if key.repeatable {
        let items = raw.iter().map(|r| value(key.kind, r));
        Some(toml_edit::Value::Array(items.collect()).to_string())
    } else {
        raw.last().map(|r| value(key.kind, r).to_string())
    }
}

fn type_name(v: &toml_edit::Value) -> &'static str {
    use toml_edit::Value as V;
    match v {
        V::String(_) => "a string",
        V::Integer(_) => "an integer",
        V::Float(_) => "a float",
        V::Boolean(_) => "a boolean",
        V::Datetime(_) => "a date-time",
        V::Array(_) => "a list",
        V::InlineTable(_) => "a table",
    }
}

fn plural(kind: Kind) -> &'static str {
    match kind {
        Kind::Switch | Kind::Bool => "booleans",
        Kind::Int => "integers",
        Kind::Float => "numbers",
        Kind::Str => "strings",
    }
}

/// "config file F line N: why".
fn at(path: &Path, line: usize, why: &str) -> String {
    format!("config file {} line {line}: {why}", path.display())
}

/// The 1-based line of a byte offset.
fn line_of(text: &str, span: &Range<usize>) -> usize {
    let end = span.start.min(text.len());
    1 + text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
}

/// The first line of a clap error, without its "error: " prefix.
fn first_line(e: &clap::Error) -> String {
    let text = e.to_string();
    let line = text.lines().next().unwrap_or("").trim();
    line.strip_prefix("error: ").unwrap_or(line).to_string()
}

/// The key meant by a misspelt one: the same with `-` for `_`, or the
/// nearest within a few edits.
fn suggest<'k>(name: &str, keys: &'k [Key]) -> Option<&'k str> {
    let normal = name.to_ascii_lowercase().replace('_', "-");
    if let Some(k) = keys.iter().find(|k| k.name == normal) {
        return Some(&k.name);
    }
    keys.iter()
        .map(|k| (edit_distance(&normal, &k.name), k))
        .filter(|(d, k)| *d <= 3.min(k.name.len() / 3 + 1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k.name.as_str())
}

/// Levenshtein distance over chars.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let next = (diagonal + usize::from(ca != cb))
                .min(row[j] + 1)
                .min(row[j + 1] + 1);
            diagonal = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

/// Appends `text` as `# ` comment lines of at most `width` columns.
fn wrap_comment(out: &mut String, text: &str, width: usize) {
    let mut line = String::from("#");
    for word in text.split_whitespace() {
        if line.len() > 1 && line.len() + 1 + word.len() > width {
            out.push_str(&line);
            out.push('\n');
            line = String::from("#");
        }
        line.push(' ');
        line.push_str(word);
    }
    out.push_str(&line);
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file in a fresh temporary directory, removed on drop.
    struct TempFile(std::path::PathBuf);

    impl TempFile {
        fn new(text: &str) -> TempFile {
            static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            let path = std::env::temp_dir().join(format!(
                "ringmq-config-file-unit-{}-{}.toml",
                std::process::id(),
                NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            ));
            std::fs::write(&path, text).expect("write the temporary config file");
            TempFile(path)
        }

        fn arg(&self) -> String {
            self.0.to_string_lossy().into_owned()
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn load_file(text: &str, extra: &[&str]) -> Result<Loaded, String> {
        let file = TempFile::new(text);
        let mut args = vec!["ringmq".to_string(), "--config".into(), file.arg()];
        args.extend(extra.iter().map(|s| s.to_string()));
        load(args).map_err(|e| e.to_string())
    }

    /// Debug text of a configuration without the two flags that are not
    /// keys.
    fn settings(mut c: Config) -> String {
        c.config = None;
        c.print_config = false;
        format!("{c:?}")
    }

    #[test]
    fn every_flag_is_a_key_of_a_known_kind() {
        let keys = keys();
        let cmd = command();
        for arg in cmd.get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            if ["help", "version"].contains(&long) || NOT_KEYS.contains(&long) {
                continue;
            }
            assert!(keys.iter().any(|k| k.name == long), "--{long} is not a key");
            assert!(
                matches!(
                    arg.get_action(),
                    ArgAction::Set | ArgAction::Append | ArgAction::SetTrue
                ),
                "--{long}: action {:?} has no TOML form here",
                arg.get_action()
            );
            let t = arg.get_value_parser().type_id();
            let known = [
                TypeId::of::<u8>(),
                TypeId::of::<u16>(),
                TypeId::of::<u32>(),
                TypeId::of::<u64>(),
                TypeId::of::<usize>(),
                TypeId::of::<f64>(),
                TypeId::of::<bool>(),
                TypeId::of::<String>(),
                TypeId::of::<std::path::PathBuf>(),
                TypeId::of::<std::net::SocketAddr>(),
                TypeId::of::<crate::config::ListenUrl>(),
            ];
            assert!(
                known.iter().any(|k| t == *k),
                "--{long}: a value type this file does not know; give it a Kind"
            );
        }
        let kind = |name: &str| {
            keys.iter()
                .find(|k| k.name == name)
                .map(|k| (k.kind, k.repeatable))
        };
        assert_eq!(kind("listen"), Some((Kind::Str, true)));
        assert_eq!(kind("client-id-pattern"), Some((Kind::Str, true)));
        assert_eq!(kind("keepalive-tick-ms"), Some((Kind::Int, false)));
        assert_eq!(kind("keepalive-backoff"), Some((Kind::Float, false)));
        assert_eq!(kind("require-certificate"), Some((Kind::Switch, false)));
        assert_eq!(kind("allow-anonymous"), Some((Kind::Bool, false)));
        assert_eq!(kind("allow-zero-keepalive"), Some((Kind::Bool, false)));
        assert_eq!(kind("config"), None);
    }

    #[test]
    fn print_loads_back_to_the_same_configuration() {
        let a = load([
            "ringmq",
            "--listen",
            "127.0.0.1:1884",
            "--listen",
            "ws://127.0.0.1:8080/x",
            "--keepalive-backoff",
            "1",
            "--allow-anonymous",
            "true",
            "--client-id-pattern",
            "%u-*",
            "--log",
            "ringmq=debug,info",
            "--shards",
            "3",
        ])
        .expect("valid flags");
        let text = print(&a);
        assert!(text.contains("keepalive-backoff = 1.0\n"), "{text}");
        assert!(
            text.contains("listen = [\"127.0.0.1:1884\", \"ws://127.0.0.1:8080/x\"]\n"),
            "{text}"
        );
        assert!(text.contains("# password-file = \"<PATH>\"\n"), "{text}");
        let b = load_file(&text, &[]).expect("the printed file loads");
        assert_eq!(print(&b), text);
        assert_eq!(settings(b.config), settings(a.config));
    }

    #[test]
    fn the_command_line_beats_the_file_and_the_file_the_defaults() {
        let file = "keepalive-tick-ms = 50\nmax-connections = 7\nlisten = [\"127.0.0.1:1\", \"127.0.0.1:2\"]\n";
        let c = load_file(
            file,
            &["--keepalive-tick-ms", "20", "--listen", "127.0.0.1:3"],
        )
        .expect("valid")
        .config;
        assert_eq!(c.keepalive_tick_ms, 20);
        assert_eq!(c.max_connections, 7);
        let ports: Vec<u16> = c.listen.iter().map(|l| l.addr.port()).collect();
        assert_eq!(ports, [3], "a listen flag replaces the file's list");
        assert_eq!(c.max_keepalive, 65535);
        let c = load_file(file, &[]).expect("valid").config;
        let ports: Vec<u16> = c.listen.iter().map(|l| l.addr.port()).collect();
        assert_eq!(ports, [1, 2]);
    }

    #[test]
    fn switches_and_bools() {
        let c = load_file(
            "ws-allow-no-subprotocol = true\nallow-zero-keepalive = true\n",
            &[],
        )
        .expect("valid")
        .config;
        assert!(c.ws_allow_no_subprotocol);
        assert!(c.allow_zero_keepalive);
        let c = load_file("ws-allow-no-subprotocol = false\n", &[])
            .expect("valid")
            .config;
        assert!(!c.ws_allow_no_subprotocol);
    }

    #[test]
    fn errors_name_the_key_and_the_line() {
        for (file, want) in [
            ("\n\nkeepalive_tick_ms = 5\n", "line 3: unknown key \"keepalive_tick_ms\" (did you mean \"keepalive-tick-ms\"?)"),
            ("max-conections = 5\n", "line 1: unknown key \"max-conections\" (did you mean \"max-connections\"?)"),
            ("frobnicate = 1\n", "line 1: unknown key \"frobnicate\"\0"),
            ("# c\nkeepalive-tick-ms = \"100\"\n", "line 2: invalid value for key \"keepalive-tick-ms\": expected an integer, found a string"),
            ("keepalive-tick-ms = 1.5\n", "line 1: invalid value for key \"keepalive-tick-ms\": expected an integer, found a float"),
            ("listen = \"127.0.0.1:1\"\n", "line 1: invalid value for key \"listen\": expected a list of strings, found a string"),
            ("listen = [\n  \"127.0.0.1:1\",\n  7,\n]\n", "line 3: invalid value for key \"listen\": expected a string, found an integer"),
            ("listen = []\n", "line 1: invalid value for key \"listen\": an empty list"),
            ("listen = [\"nonsense\"]\n", "line 1: invalid value for key \"listen\": \"nonsense\": not HOST:PORT"),
            ("max-qos = 300\n", "line 1: invalid value for key \"max-qos\": 300 is not in 0..=255"),
            ("keepalive-tick-ms = -1\n", "line 1: invalid value for key \"keepalive-tick-ms\": -1: "),
            ("\nkeepalive-tick-ms = 0\n", "line 2: invalid value for key \"keepalive-tick-ms\": 0 is not in 1..=60000"),
            ("log = \"[[[\"\n", "line 1: invalid value for key \"log\": \"[[[\": "),
            ("[server]\nport = 1\n", "line 1: unknown key \"server\""),
            ("require-certificate = 1\n", "line 1: invalid value for key \"require-certificate\": expected true or false, found an integer"),
            ("config = \"x.toml\"\n", "line 1: key \"config\" is not allowed"),
            ("print-config = true\n", "line 1: key \"print-config\" is not allowed"),
            ("shards = 1\n\nshards = 2\n", "line 3: duplicate key \"shards\""),
            ("shards = \n", "line 1: not valid TOML at key \"shards\": "),
            ("listen = [\"127.0.0.1:1\"\n", "line 1: not valid TOML at key \"listen\": "),
        ] {
            let err = load_file(file, &[]).expect_err(file);
            let (want, exact_end) = match want.strip_suffix('\0') {
                Some(w) => (w, true),
                None => (want, false),
            };
            assert!(err.starts_with("config file "), "{file:?}: {err}");
            let found = if exact_end { err.ends_with(want) } else { err.contains(want) };
            assert!(found, "{file:?}: {err:?} should contain {want:?}");
        }
    }

    #[test]
    fn a_bad_value_overridden_on_the_command_line_names_the_flag() {
        let err = load_file("keepalive-tick-ms = 10\n", &["--keepalive-tick-ms", "0"]).unwrap_err();
        assert!(err.starts_with("invalid --keepalive-tick-ms: "), "{err}");
    }

    #[test]
    fn a_missing_file_is_an_error() {
        let err = load(["ringmq", "--config", "/nonexistent/ringmq.toml"]).unwrap_err();
        assert!(
            err.to_string()
                .contains("config file /nonexistent/ringmq.toml: cannot read it"),
            "{err}"
        );
    }

    #[test]
    fn changed_keys_and_live_adoption() {
        let mut a = load_file("log = \"info\"\nmax-connections = 1\n", &[]).expect("valid");
        let b = load_file("log = \"debug\"\nmax-connections = 2\n", &[]).expect("valid");
        assert_eq!(a.changed_keys(&b), ["max-connections", "log"]);
        a.adopt_live(&b);
        assert_eq!(a.config.log, "debug");
        assert_eq!(a.changed_keys(&b), ["max-connections"]);
        assert_eq!(a.config.max_connections, 1);
    }

    #[test]
    fn the_example_loads_to_the_defaults() {
        let example = example();
        for key in keys() {
            assert!(
                example.contains(&format!("\n# {} = ", key.name)),
                "{} missing",
                key.name
            );
        }
        let from_file = load_file(&example, &["--log", "info"]).expect("the example loads");
        let defaults = load(["ringmq", "--log", "info"]).expect("defaults");
        assert_eq!(print(&from_file), print(&defaults));
        // Its commented-out values are the defaults, in valid TOML.
        let uncommented: String = example
            .lines()
            .filter_map(|l| l.strip_prefix("# "))
            .filter(|l| {
                keys()
                    .iter()
                    .any(|k| l.starts_with(&format!("{} = ", k.name)))
            })
            .filter(|l| !l.contains('<'))
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(uncommented.lines().count() > 40, "{uncommented}");
        let set = load_file(&uncommented, &[]).expect("the example's values load");
        assert_eq!(settings(set.config), settings(defaults.config));
    }

    #[test]
    fn edit_distance_is_levenshtein() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("same", "same"), 0);
    }
}
