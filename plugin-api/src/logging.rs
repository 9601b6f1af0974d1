//! Forwarding a plugin's `tracing` events to the host.
//!
//! A plugin library has its own copy of `tracing`'s global state, so events
//! it emits would reach no subscriber. At load, the host hands the plugin a
//! [`HostLoggerBox`]; [`install`] sets a small subscriber as the plugin's
//! global default that formats each event (message plus fields) and passes
//! level, target and text to the host, which re-emits it into its own log.
//! Spans are not forwarded: only events carry text across.

use std::fmt::{self, Write as _};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::OnceLock;

use abi_stable::std_types::RStr;
use tracing_core::{
    field::{Field, Visit},
    span, Event, Interest, Level, LevelFilter, Metadata, Subscriber,
};

use crate::abi::{HostLoggerBox, LogLevel};

static LOGGER: OnceLock<HostLoggerBox> = OnceLock::new();
static MAX_LEVEL: AtomicU8 = AtomicU8::new(LogLevel::Warn as u8);

/// Install the forwarding subscriber (once per library).
pub fn install(logger: HostLoggerBox, max_level: LogLevel) {
    MAX_LEVEL.store(max_level as u8, Ordering::Relaxed);
    if LOGGER.set(logger).is_ok() {
        // Fails only if the plugin installed a subscriber of its own; then it keeps it.
        let _ = tracing::subscriber::set_global_default(Forwarder);
    }
    tracing_core::callsite::rebuild_interest_cache();
}

/// Whether [`install`] gave this library the host's logger.
pub fn is_installed() -> bool {
    LOGGER.get().is_some()
}

/// Change the maximum level forwarded.
pub fn set_max_level(max_level: LogLevel) {
    MAX_LEVEL.store(max_level as u8, Ordering::Relaxed);
    tracing_core::callsite::rebuild_interest_cache();
}

/// Map a `tracing` level to the boundary's level.
pub fn level_to_abi(level: &Level) -> LogLevel {
    match *level {
        Level::ERROR => LogLevel::Error,
        Level::WARN => LogLevel::Warn,
        Level::INFO => LogLevel::Info,
        Level::DEBUG => LogLevel::Debug,
        _ => LogLevel::Trace,
    }
}

fn max_level() -> LogLevel {
    match MAX_LEVEL.load(Ordering::Relaxed) {
        1 => LogLevel::Error,
        2 => LogLevel::Warn,
        3 => LogLevel::Info,
        4 => LogLevel::Debug,
        _ => LogLevel::Trace,
    }
}

struct Forwarder;

impl Subscriber for Forwarder {
    fn register_callsite(&self, meta: &'static Metadata<'static>) -> Interest {
        if self.enabled(meta) {
            Interest::always()
        } else {
            Interest::never()
        }
    }

    fn enabled(&self, meta: &Metadata<'_>) -> bool {
        level_to_abi(meta.level()) <= max_level()
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(match max_level() {
            LogLevel::Error => LevelFilter::ERROR,
            LogLevel::Warn => LevelFilter::WARN,
            LogLevel::Info => LevelFilter::INFO,
            LogLevel::Debug => LevelFilter::DEBUG,
            LogLevel::Trace => LevelFilter::TRACE,
        })
    }

    fn new_span(&self, _: &span::Attributes<'_>) -> span::Id {
        span::Id::from_u64(1)
    }

    fn record(&self, _: &span::Id, _: &span::Record<'_>) {}

    fn record_follows_from(&self, _: &span::Id, _: &span::Id) {}

    fn event(&self, event: &Event<'_>) {
        let Some(logger) = LOGGER.get() else { return };
        let mut text = TextVisitor::default();
        event.record(&mut text);
        let meta = event.metadata();
        logger.log(
            level_to_abi(meta.level()),
            RStr::from_str(meta.target()),
            RStr::from_str(&text.finish()),
        );
    }

    fn enter(&self, _: &span::Id) {}

    fn exit(&self, _: &span::Id) {}
}

/// Collects an event's message and fields as `message key=value ...`
/// (used on both sides of the boundary, so log lines look alike).
#[derive(Default)]
pub struct TextVisitor {
    message: String,
    fields: String,
}

impl TextVisitor {
    /// The message alone (the fields if there is no message).
    pub fn message(&self) -> &str {
        if self.message.is_empty() {
            self.fields.trim_start()
        } else {
            &self.message
        }
    }

    /// The collected text.
    pub fn finish(self) -> String {
        if self.fields.is_empty() {
            self.message
        } else if self.message.is_empty() {
            self.fields.trim_start().to_string()
        } else {
            format!("{}{}", self.message, self.fields)
        }
    }
}

impl Visit for TextVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.fields, " {}={:?}", field.name(), value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.fields, " {}={:?}", field.name(), value);
        }
    }
}
