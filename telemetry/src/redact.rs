//! Secret redaction for everything the process says about itself.
//!
//! API keys and the worker token live in the environment; code that handles
//! them may still end up formatting a URL, a header or an error body that
//! contains one. Instead of trusting every call site, the process registers
//! each secret value here once ([`register_secret`], [`register_env_secrets`])
//! and two choke points replace any registered value with [`REDACTED`]:
//!
//! - the log writer ([`RedactingMakeWriter`]) rewrites each formatted log line
//!   (human or JSON) before it reaches stderr;
//! - the span exporter wrapper in `otlp.rs` rewrites span names, attribute
//!   values, event names and attributes, link attributes and status messages
//!   before a batch leaves the process.
//!
//! Besides the raw value, the forms a formatter may produce from it are
//! registered too (JSON-escaped and Rust-`Debug`-escaped), so a secret with a
//! quote or a backslash in it is caught inside a JSON log line as well.

use std::borrow::Cow;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::RwLock;

use tracing_subscriber::fmt::MakeWriter;

/// What a secret is replaced with.
pub const REDACTED: &str = "[redacted]";

/// Values shorter than this are not registered: redacting every `abc` of every
/// log line would destroy the logs while protecting nothing real (API keys
/// and tokens are far longer).
pub const MIN_SECRET_LEN: usize = 6;

/// Environment variables whose values are secret in every role, whether or
/// not a spec names them: the usual provider key variables and the worker
/// token. Specs add their own `api_key_env` names at load time.
pub const DEFAULT_SECRET_ENV_VARS: &[&str] = &[
    "MORALSWEEP_TOKEN",
    "OPENAI_API_KEY",
    "ANTHROPIC_API_KEY",
    "GEMINI_API_KEY",
    "GOOGLE_API_KEY",
    "OPENROUTER_API_KEY",
    "TOGETHER_API_KEY",
    "MISTRAL_API_KEY",
    "DEEPSEEK_API_KEY",
    "XAI_API_KEY",
    // Amazon Bedrock: the AWS secret key (the session token ends in _TOKEN)
    // and Bedrock's own API key.
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_BEARER_TOKEN_BEDROCK",
    // Azure OpenAI: an Entra ID app's client secret.
    "AZURE_CLIENT_SECRET",
];

/// The registered secret forms, longest first so that a secret containing
/// another is replaced whole.
static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());
/// Fast path: no lock and no scan while nothing is registered.
static ANY: AtomicBool = AtomicBool::new(false);

/// Registers a secret value; every later log line and exported span has it
/// replaced by [`REDACTED`]. Returns whether it was registered (values shorter
/// than [`MIN_SECRET_LEN`] are not).
pub fn register_secret(value: &str) -> bool {
    let value = value.trim();
    if value.chars().count() < MIN_SECRET_LEN {
        return false;
    }
    let mut forms = vec![value.to_string()];
    // JSON-escaped form (as inside a JSON log line), without the quotes.
    let json = serde_json::to_string(value).unwrap_or_default();
    if json.len() >= 2 {
        forms.push(json[1..json.len() - 1].to_string());
    }
    // Rust Debug form (what `?field` and `{:?}` print), without the quotes.
    let debug = format!("{value:?}");
    forms.push(debug[1..debug.len() - 1].to_string());

    let mut secrets = SECRETS.write().unwrap_or_else(|e| e.into_inner());
    for f in forms {
        if !secrets.contains(&f) {
            secrets.push(f);
        }
    }
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    ANY.store(true, Ordering::Release);
    true
}

/// Registers the values of the named environment variables that are set.
/// Returns how many values were registered.
pub fn register_env_secrets<I, S>(names: I) -> usize
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    names
        .into_iter()
        .filter_map(|n| std::env::var(n.as_ref()).ok())
        .filter(|v| register_secret(v))
        .count()
}

/// Registers the values of [`DEFAULT_SECRET_ENV_VARS`] and of every variable
/// whose name ends in `_API_KEY`, `_TOKEN` or `_SECRET`.
pub fn register_default_secrets() -> usize {
    let mut n = register_env_secrets(DEFAULT_SECRET_ENV_VARS);
    for (name, value) in std::env::vars() {
        let upper = name.to_ascii_uppercase();
        if (upper.ends_with("_API_KEY") || upper.ends_with("_TOKEN") || upper.ends_with("_SECRET"))
            && register_secret(&value)
        {
            n += 1;
        }
    }
    n
}

/// Whether any secret is registered.
pub fn has_secrets() -> bool {
    ANY.load(Ordering::Acquire)
}

/// `text` with every registered secret replaced by [`REDACTED`]; borrowed
/// (no copy) when it contains none.
pub fn redact(text: &str) -> Cow<'_, str> {
    if !has_secrets() {
        return Cow::Borrowed(text);
    }
    let secrets = SECRETS.read().unwrap_or_else(|e| e.into_inner());
    let mut out: Cow<'_, str> = Cow::Borrowed(text);
    for s in secrets.iter() {
        if out.contains(s.as_str()) {
            out = Cow::Owned(out.replace(s.as_str(), REDACTED));
        }
    }
    out
}

/// Like [`redact`], and `extra` replaced too even when it is too short to
/// have been registered (a provider's own key in its error messages).
pub fn redact_with<'a>(text: &'a str, extra: &str) -> Cow<'a, str> {
    let out = redact(text);
    if extra.is_empty() || !out.contains(extra) {
        return out;
    }
    Cow::Owned(out.replace(extra, REDACTED))
}

/// A URL with the credentials of its authority hidden
/// (`redis://user:pass@host` becomes `redis://***@host`), for URLs shown in
/// messages before any secret of theirs is registered.
pub fn redact_url_credentials(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***@{}", &url[..s], &url[at + 1..]),
        _ => url.to_string(),
    }
}

/// Like [`redact`], for bytes that should be UTF-8 (a formatted log line).
/// Invalid UTF-8 is scanned lossily so that a secret next to a bad byte is
/// still caught.
pub fn redact_bytes(bytes: &[u8]) -> Cow<'_, [u8]> {
    if !has_secrets() {
        return Cow::Borrowed(bytes);
    }
    let text = String::from_utf8_lossy(bytes);
    match redact(&text) {
        Cow::Borrowed(_) => Cow::Borrowed(bytes),
        Cow::Owned(s) => Cow::Owned(s.into_bytes()),
    }
}

/// A [`MakeWriter`] that redacts each log record before it reaches the
/// wrapped writer. The formatter writes one record per writer it makes, so a
/// record is buffered whole and redacted at once (a secret can never be split
/// across two writes).
#[derive(Debug, Clone)]
pub struct RedactingMakeWriter<M> {
    inner: M,
}

impl<M> RedactingMakeWriter<M> {
    pub fn new(inner: M) -> Self {
        Self { inner }
    }
}

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for RedactingMakeWriter<M> {
    type Writer = RedactingWriter<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        RedactingWriter {
            inner: self.inner.make_writer(),
            buf: Vec::new(),
        }
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Self::Writer {
        RedactingWriter {
            inner: self.inner.make_writer_for(meta),
            buf: Vec::new(),
        }
    }
}

/// The writer of one log record: buffers, then redacts and writes on flush or
/// drop.
pub struct RedactingWriter<W: Write> {
    inner: W,
    buf: Vec<u8>,
}

impl<W: Write> RedactingWriter<W> {
    fn write_out(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let buf = std::mem::take(&mut self.buf);
        self.inner.write_all(&redact_bytes(&buf))
    }
}

impl<W: Write> Write for RedactingWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.write_out()?;
        self.inner.flush()
    }
}

impl<W: Write> Drop for RedactingWriter<W> {
    fn drop(&mut self) {
        let _ = self.write_out();
        let _ = self.inner.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_credentials_are_hidden() {
        assert_eq!(
            redact_url_credentials("redis://u:secret@h:6379/0"),
            "redis://***@h:6379/0"
        );
        assert_eq!(redact_url_credentials("redis://h:6379"), "redis://h:6379");
    }

    #[test]
    fn a_short_extra_secret_is_replaced_too() {
        assert_eq!(redact_with("key=abc;", "abc"), "key=[redacted];");
        assert_eq!(redact_with("nothing", ""), "nothing");
    }
    use std::sync::{Arc, Mutex};

    // The registry is process-global: each test uses its own secret values.

    #[test]
    fn replaces_registered_values_everywhere() {
        assert!(register_secret("sk-test-AAAA1111"));
        let s = redact("url=https://x/v1?key=sk-test-AAAA1111&b=sk-test-AAAA1111");
        assert_eq!(s, "url=https://x/v1?key=[redacted]&b=[redacted]");
        assert!(matches!(redact("nothing secret here"), Cow::Borrowed(_)));
    }

    #[test]
    fn short_values_are_not_registered() {
        assert!(!register_secret("abc"));
        assert!(!register_secret("   "));
        assert_eq!(redact("abc def"), "abc def");
    }

    #[test]
    fn escaped_forms_are_caught() {
        assert!(register_secret("tok\"en\\BBBB2222"));
        let json = serde_json::json!({ "msg": "token tok\"en\\BBBB2222 here" }).to_string();
        assert!(!redact(&json).contains("BBBB2222"), "{}", redact(&json));
        let debug = format!("{:?}", "tok\"en\\BBBB2222");
        assert!(!redact(&debug).contains("BBBB2222"));
    }

    #[test]
    fn longer_secret_containing_a_shorter_one_is_replaced_whole() {
        register_secret("CCCC3333");
        register_secret("prefix-CCCC3333-suffix");
        assert_eq!(redact("a prefix-CCCC3333-suffix b"), "a [redacted] b");
    }

    #[test]
    fn env_values_are_registered() {
        std::env::set_var("MORALSWEEP_TEST_REDACT_KEY_ENV", "env-secret-DDDD4444");
        assert_eq!(
            register_env_secrets([
                "MORALSWEEP_TEST_REDACT_KEY_ENV",
                "MORALSWEEP_TEST_SURELY_UNSET_X"
            ]),
            1
        );
        assert_eq!(redact("k=env-secret-DDDD4444"), "k=[redacted]");
    }

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl Write for Sink {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn log_lines_are_redacted_even_when_written_in_pieces() {
        register_secret("EEEE5555-split-secret");
        let sink = Sink::default();
        let make = RedactingMakeWriter::new({
            let s = sink.clone();
            move || s.clone()
        });
        {
            let mut w = make.make_writer();
            w.write_all(b"calling with key EEEE5555-").unwrap();
            w.write_all(b"split-secret done\n").unwrap();
        }
        let out = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        assert_eq!(out, "calling with key [redacted] done\n");
    }

    #[test]
    fn tracing_output_is_redacted() {
        register_secret("FFFF6666-in-a-field");
        let sink = Sink::default();
        let make = RedactingMakeWriter::new({
            let s = sink.clone();
            move || s.clone()
        });
        let subscriber = tracing_subscriber::fmt().json().with_writer(make).finish();
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("call", header = "Bearer FFFF6666-in-a-field");
            let _e = span.enter();
            tracing::warn!(url = ?"https://h/?key=FFFF6666-in-a-field", "failed with FFFF6666-in-a-field");
        });
        let out = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        assert!(out.contains("[redacted]"), "{out}");
        assert!(!out.contains("FFFF6666"), "{out}");
    }
}
