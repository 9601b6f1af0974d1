//! Filter hooks and JSON hooks run by the host: the `repository-data`
//! filters every repository object passes through ([`HookFilter`], the
//! engine's [`ObjectFilter`]), and the `repository-open` hook that unlocks
//! an encrypted repository.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use obnam_repository::object::{
    DecodeError, Encoded, FilterBuffer, FilterOutput, ObjectFilter, UnlockRequest, Unlocked,
};
use plugin_api::abi::{layout_of, FailureKind, Filtered, HookKind, HostServices, PayloadPtr};
use plugin_api::payloads::REPOSITORY_OPEN;
use plugin_api::types::{RSlice, RStr, RString, RVec};
use plugin_api::Error;

use super::{describe_callback_failure, describe_failure, describe_third_party_failure, Host};
use crate::registry::hooks::{FilterEntry, HookDef};

/// The name of the filter hook every repository object passes through.
pub const DATA_FILTER_HOOK: &str = plugin_api::payloads::REPOSITORY_DATA;

impl Host {
    fn filter_hook(&self, name: &str) -> Result<&HookDef, Error> {
        let def =
            self.registry.hooks.by_name(name).ok_or_else(|| {
                Error::msg(format!("no loaded plugin creates filter hook '{name}'"))
            })?;
        if def.kind != HookKind::Filter {
            return Err(Error::msg(format!("hook '{name}' is not a filter hook")));
        }
        Ok(def)
    }

    /// Whether any plugin adds a filter to a filter hook.
    pub fn has_filters(&self, hook: &str) -> bool {
        self.registry
            .hooks
            .by_name(hook)
            .is_some_and(|h| !h.filters.is_empty())
    }

    /// Run data through a filter hook's write side (ascending priority),
    /// leaving out the filter tagged `skip`.
    pub fn run_filter_write(
        &self,
        hook: &str,
        context: &str,
        data: RVec<u8>,
        skip: Option<&str>,
    ) -> Result<Filtered, Error> {
        let (changed, tags) = self.run_filter_write_borrowed(hook, context, &data, skip)?;
        Ok(Filtered {
            data: changed.unwrap_or(data),
            tags,
        })
    }

    /// [`run_filter_write`](Self::run_filter_write) on borrowed data: the
    /// bytes the filters made, or `None` if none changed the data, and
    /// the tags of those that did.
    pub fn run_filter_write_borrowed(
        &self,
        hook: &str,
        context: &str,
        data: &[u8],
        skip: Option<&str>,
    ) -> Result<(Option<RVec<u8>>, RVec<RString>), Error> {
        let def = self.filter_hook(hook)?;
        let mut changed: Option<RVec<u8>> = None;
        let mut tags = RVec::new();
        for f in def.filters.iter().filter(|f| Some(f.tag.as_str()) != skip) {
            let input = changed.as_ref().map_or(data, |c| c.as_slice());
            if let Some(out) = self.encode_with(f, context, RSlice::from_slice(input))? {
                changed = Some(out);
                tags.push(f.tag.as_str().into());
            }
        }
        Ok((changed, tags))
    }

    /// Run data through one filter of a filter hook, the one tagged `tag`.
    pub fn run_one_filter(
        &self,
        hook: &str,
        tag: &str,
        context: &str,
        data: &[u8],
    ) -> Result<Option<RVec<u8>>, Error> {
        let def = self.filter_hook(hook)?;
        let f = def.filters.iter().find(|f| f.tag == tag).ok_or_else(|| {
            Error::msg(obnam_repository::object::missing_filter_message(
                &format!("object {context}"),
                tag,
            ))
        })?;
        self.encode_with(f, context, RSlice::from_slice(data))
    }

    /// The write side of one filter; `None` if it left the data alone.
    fn encode_with(
        &self,
        f: &FilterEntry,
        context: &str,
        data: RSlice<'_, u8>,
    ) -> Result<Option<RVec<u8>>, Error> {
        let encoded = f
            .filter
            .encode(self.as_abi(), RStr::from_str(context), data)
            .into_result()
            .map_err(|e| {
                // A third party's error names it, as its decode's does.
                Error::msg(describe_third_party_failure(
                    e,
                    &f.plugin,
                    self.is_bundled(&f.plugin),
                    &format!("filter '{}' writing {context}", f.tag),
                ))
            })?;
        Ok(encoded.into_option())
    }

    /// The tags of a filter hook's filters that do not say their
    /// `decode` errors are damage to the data (and so do not vouch for
    /// what they give back): a third party's, by default.
    pub fn unvouched_filters(&self, hook: &str) -> Vec<String> {
        self.registry
            .hooks
            .by_name(hook)
            .map_or_else(Vec::new, |h| {
                h.filters
                    .iter()
                    .filter(|f| !f.filter.decode_errors_are_damage())
                    .map(|f| f.tag.clone())
                    .collect()
            })
    }

    /// The plugin that adds the filter tagged `tag` to a filter hook.
    pub fn filter_plugin(&self, hook: &str, tag: &str) -> Option<String> {
        let def = self.registry.hooks.by_name(hook)?;
        let f = def.filters.iter().find(|f| f.tag == tag)?;
        Some(f.plugin.clone())
    }

    /// Whether a filter hook has a filter tagged `tag`.
    /// The filters of `hook` among `tags` that do not say their decode
    /// errors are about the data (and so do not vouch for what their
    /// decode gives), in words; `None` if there is none.
    pub fn unvouched_among(&self, hook: &str, tags: &[String]) -> Option<String> {
        let def = self.registry.hooks.by_name(hook)?;
        let unvouched: Vec<String> = tags
            .iter()
            .filter_map(|tag| def.filters.iter().find(|f| &f.tag == tag))
            .filter(|f| !f.filter.decode_errors_are_damage())
            .map(|f| format!("the filter '{}' of plugin '{}'", f.tag, f.plugin))
            .collect();
        (!unvouched.is_empty()).then(|| unvouched.join(" and "))
    }

    /// The tags of the filters on filter hook `hook`.
    pub fn filter_tags(&self, hook: &str) -> Vec<String> {
        self.registry
            .hooks
            .by_name(hook)
            .map(|h| h.filters.iter().map(|f| f.tag.clone()).collect())
            .unwrap_or_default()
    }

    /// Whether a filter tagged `tag` is on filter hook `hook`.
    pub fn has_filter(&self, hook: &str, tag: &str) -> bool {
        self.registry
            .hooks
            .by_name(hook)
            .is_some_and(|h| h.filters.iter().any(|f| f.tag == tag))
    }

    /// Call a plain hook whose payload is JSON, from the host; returns the
    /// document as the callbacks left it.
    pub fn call_json_hook(
        &self,
        name: &str,
        value: serde_json::Value,
    ) -> Result<serde_json::Value, Error> {
        let layout = layout_of::<plugin_api::JsonPayload>();
        let id = self
            .registry
            .hooks
            .resolve(name, layout)
            .map_err(Error::msg)?;
        let mut payload = plugin_api::JsonPayload {
            json: value.to_string().into(),
        };
        let ptr = PayloadPtr::from_mut(&mut payload);
        self.call_hook(id, ptr)
            .into_result()
            .map_err(|f| Error::msg(f.message))?;
        serde_json::from_str(&payload.json).map_err(|e| {
            Error::msg(format!(
                "hook {name}: a callback left a payload that is not JSON: {e}"
            ))
        })
    }

    /// Call a plain hook whose payload is JSON, as
    /// [`call_json_hook`](Self::call_json_hook) does, where each of the
    /// fields `answers` is one plugin's answer: a callback that changes a
    /// field another plugin's callback set (or removes it, or replaces the
    /// whole document) is refused, naming both, before anything is done
    /// with the answers. For `repository-open`: two plugins that each
    /// seal a new repository, or one that drops another's seal, left a
    /// repository no later run could read (the seal that lost had already
    /// encrypted every object, under a key never stored), with exit 0.
    pub fn call_json_hook_owned(
        &self,
        name: &str,
        value: serde_json::Value,
        answers: &[&str],
    ) -> Result<serde_json::Value, Error> {
        let layout = layout_of::<plugin_api::JsonPayload>();
        let id = self
            .registry
            .hooks
            .resolve(name, layout)
            .map_err(Error::msg)?;
        let def = self
            .registry
            .hooks
            .get(id)
            .ok_or_else(|| Error::msg(format!("no hook {name}")))?;
        let _depth = super::HookDepth::enter()
            .ok_or_else(|| Error::msg(format!("hook '{name}' was called too many calls deep")))?;
        // What the host gave is no callback's to change: a later callback
        // (the one that seals) reads it.
        let given: Vec<String> = value
            .as_object()
            .map(|o| {
                o.keys()
                    .filter(|k| !answers.contains(&k.as_str()))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        let mut value = value;
        let mut owners: Vec<(&str, &str)> = Vec::new();
        for cb in &def.callbacks {
            let mut payload = plugin_api::JsonPayload {
                json: value.to_string().into(),
            };
            let ptr = PayloadPtr::from_mut(&mut payload);
            cb.callback
                .call(self.as_abi(), ptr)
                .into_result()
                .map_err(|f| {
                    Error::msg(describe_callback_failure(
                        f,
                        &cb.plugin,
                        self.is_bundled(&cb.plugin),
                        name,
                    ))
                })?;
            let after: serde_json::Value = serde_json::from_str(&payload.json).map_err(|e| {
                Error::msg(format!(
                    "hook {name}: plugin '{}' left a payload that is not JSON: {e}",
                    cb.plugin
                ))
            })?;
            if let Some(field) = given.iter().find(|f| value.get(f) != after.get(f)) {
                return Err(Error::msg(format!(
                    "hook {name}: plugin '{}' changed the '{field}' that obnam gave; a callback \
                     may only set its own answers",
                    cb.plugin
                )));
            }
            for field in answers {
                let (was, now) = (value.get(field), after.get(field));
                if was == now {
                    continue;
                }
                match owners.iter().find(|(f, _)| f == field) {
                    Some((_, owner)) if *owner != cb.plugin => {
                        return Err(Error::msg(format!(
                            "hook {name}: plugin '{}' changed the '{field}' that plugin '{owner}' \
                             answered; each answer must be one plugin's (two plugins that seal \
                             a repository, or one that edits another's answer, cannot be \
                             loaded together): load only one of them",
                            cb.plugin
                        )));
                    }
                    Some(_) => {}
                    None => owners.push((field, cb.plugin.as_str())),
                }
            }
            value = after;
        }
        Ok(value)
    }

    /// Undo a filter chain: the filters named by `tags`, last first.
    pub fn run_filter_read(
        &self,
        hook: &str,
        context: &str,
        data: RVec<u8>,
        tags: &[String],
    ) -> Result<RVec<u8>, Error> {
        if tags.is_empty() {
            return Ok(data);
        }
        self.run_filter_read_borrowed(hook, context, &data, tags)
            .map_err(Error::msg)
    }

    /// [`run_filter_read`](Self::run_filter_read) on borrowed data, with
    /// at least one filter to undo: the first reads the data where it is.
    /// A failure says whether it is damage to the data: an error of a
    /// filter whose errors are about the data
    /// ([`plugin_api::DataFilter::decode_errors_are_damage`]); never a
    /// panic, nor a filter that is not loaded.
    pub fn run_filter_read_borrowed(
        &self,
        hook: &str,
        context: &str,
        data: &[u8],
        tags: &[String],
    ) -> Result<RVec<u8>, DecodeError> {
        let def = self
            .filter_hook(hook)
            .map_err(|e| DecodeError::Failed(e.to_string()))?;
        let mut bytes: Option<RVec<u8>> = None;
        // The filters undone so far (the outer ones) that do not say
        // their errors are about the data: what they gave back is not
        // known to be what was written (a plugin's `decode` that does
        // not undo its `encode` gives wrong bytes, no error), so an
        // inner filter's damage is not taken for damage then.
        let mut outer: Vec<&FilterEntry> = Vec::new();
        for tag in tags.iter().rev() {
            let f = def.filters.iter().find(|f| &f.tag == tag).ok_or_else(|| {
                DecodeError::Failed(format!(
                    "object {context} needs the '{tag}' filter; no loaded plugin provides it"
                ))
            })?;
            let input = bytes.as_ref().map_or(data, |b| b.as_slice());
            let decoded = f
                .filter
                .decode(
                    self.as_abi(),
                    RStr::from_str(context),
                    RSlice::from_slice(input),
                )
                .into_result();
            bytes = Some(decoded.map_err(|e| {
                let place = format!("filter '{}' reading {context}", f.tag);
                if e.kind == FailureKind::Error
                    && f.filter.decode_errors_are_damage()
                    && !outer.is_empty()
                {
                    DecodeError::Failed(format!(
                        "{}, after {} undid its part: if that plugin's decode does not undo \
                         its encode, the object is sound; the run stops rather than take it \
                         for damaged",
                        describe_failure(e, &f.plugin, &place),
                        outer
                            .iter()
                            .map(|o| format!("the filter '{}' of plugin '{}'", o.tag, o.plugin))
                            .collect::<Vec<_>>()
                            .join(" and ")
                    ))
                } else if e.kind == FailureKind::Error && f.filter.decode_errors_are_damage() {
                    DecodeError::Damaged(describe_failure(e, &f.plugin, &place))
                } else if e.kind == FailureKind::Error {
                    // Not said to be about the data: the filter cannot
                    // work now, and the run stops rather than take the
                    // object for damaged.
                    DecodeError::Failed(format!(
                        "plugin '{}' failed in {place}: {}",
                        f.plugin, e.message
                    ))
                } else {
                    DecodeError::Failed(describe_failure(e, &f.plugin, &place))
                }
            })?);
            if !f.filter.decode_errors_are_damage() {
                outer.push(f);
            }
        }
        bytes.ok_or_else(|| DecodeError::Failed(format!("object {context}: no filter to undo")))
    }
}

/// A plugin's buffer, held as the engine's [`FilterOutput`] without a copy.
struct PluginBytes(RVec<u8>);

impl FilterBuffer for PluginBytes {
    fn bytes(&self) -> &[u8] {
        &self.0
    }
    fn into_vec(self: Box<Self>) -> Vec<u8> {
        self.0.into_vec()
    }
}

/// The data filters of the engine, run through the `repository-data` hook.
///
/// It holds the host weakly: the host holds the repository, which holds
/// this filter.
pub struct HookFilter {
    host: Weak<Host>,
    /// Objects encoded so far: which of them are read back (see
    /// [`HookFilter::checks`]).
    encoded: AtomicU64,
    /// The tags of the filters that do not vouch for their `decode`,
    /// found once (the filters are bound before any run).
    unvouched: std::sync::OnceLock<Vec<String>>,
}

/// Of the objects a run encodes, the first this many are decoded again
/// and compared, and then one in [`CHECK_ONE_IN`].
const CHECK_FIRST: u64 = 8;
const CHECK_ONE_IN: u64 = 256;

impl HookFilter {
    /// The data filters of `host`.
    pub fn new(host: Weak<Host>) -> Self {
        HookFilter {
            host,
            encoded: AtomicU64::new(0),
            unvouched: std::sync::OnceLock::new(),
        }
    }

    /// Whether the `n`th object encoded is read back: a filter whose
    /// `decode` does not undo its `encode` (a third party's bug) made
    /// every backup end well, exit 0, with nothing that could be read
    /// back, and later runs blamed the repository. Every object that
    /// passed through a filter that does not vouch for its errors being
    /// damage (`vouched` false: a third party's, by default) is read
    /// back, as a sample would let a checkpoint of bad objects be
    /// committed before the run stopped; of chains of filters that
    /// vouch (the bundled compressor and encryptor), the first objects
    /// of a run and a sample after them, a decode each, a fraction of a
    /// percent of the encoding.
    fn checks(n: u64, vouched: bool) -> bool {
        !vouched || n < CHECK_FIRST || n.is_multiple_of(CHECK_ONE_IN)
    }

    /// Decode `encoded` (through `tags`) and compare it with `data`;
    /// if it differs, find the filter that does not undo its own work
    /// and name it.
    fn check_round_trip(
        host: &Host,
        context: &str,
        data: &[u8],
        encoded: &[u8],
        tags: &[String],
    ) -> Result<(), String> {
        let back = host.run_filter_read_borrowed(DATA_FILTER_HOOK, context, encoded, tags);
        if back.as_ref().is_ok_and(|b| b.as_slice() == data) {
            return Ok(());
        }
        // One filter at a time, in the order they wrote.
        let mut input: Vec<u8> = data.to_vec();
        for tag in tags {
            let plugin = host
                .filter_plugin(DATA_FILTER_HOOK, tag)
                .unwrap_or_default();
            let out = host
                .run_one_filter(DATA_FILTER_HOOK, tag, context, &input)
                .map_err(|e| e.to_string())?;
            let Some(out) = out else { continue };
            let undone = host.run_filter_read_borrowed(
                DATA_FILTER_HOOK,
                context,
                &out,
                std::slice::from_ref(tag),
            );
            let problem = match undone {
                Ok(b) if b.as_slice() == input.as_slice() => None,
                Ok(b) => Some(format!(
                    "its decode gave back {} bytes that differ from the {} it encoded",
                    b.len(),
                    input.len()
                )),
                Err(e) => Some(format!("its decode failed: {e}")),
            };
            if let Some(problem) = problem {
                return Err(format!(
                    "plugin '{plugin}' adds the filter '{tag}' to hook '{DATA_FILTER_HOOK}', and \
                     it does not undo its own work: writing {context}, {problem}; nothing \
                     written through it could be read back, so the run stops"
                ));
            }
            input = out.into_vec();
        }
        Err(format!(
            "the filters of hook '{DATA_FILTER_HOOK}' ({}) do not give back what they were \
             given writing {context} (each alone does: one of them answers differently from \
             one call to the next); the run stops",
            tags.join(", ")
        ))
    }

    fn host(&self) -> Result<Arc<Host>, String> {
        self.host
            .upgrade()
            .ok_or_else(|| "the run has ended: no plugin filters are left".to_string())
    }
}

impl ObjectFilter for HookFilter {
    fn encode<'d>(
        &self,
        context: &str,
        data: &'d [u8],
        skip: Option<&str>,
    ) -> Result<(Encoded<'d>, Vec<String>), String> {
        let host = self.host()?;
        if !host.has_filters(DATA_FILTER_HOOK) {
            return Ok((Encoded::Unchanged(data), Vec::new()));
        }
        let (changed, tags) = host
            .run_filter_write_borrowed(DATA_FILTER_HOOK, context, data, skip)
            .map_err(|e| e.to_string())?;
        let tags: Vec<String> = tags.into_iter().map(RString::into_string).collect();
        if let Some(encoded) = &changed {
            let unvouched = self
                .unvouched
                .get_or_init(|| host.unvouched_filters(DATA_FILTER_HOOK));
            let vouched = !tags.iter().any(|t| unvouched.contains(t));
            // A record (a generation's, a client's, an index object) is
            // read back every time: one is all a run commits, and a
            // backup that names a generation no later run can read must
            // not end well. Chunks and trees are the many.
            let record = !(context.starts_with("chunk/") || context.starts_with("tree/"));
            if record || Self::checks(self.encoded.fetch_add(1, Ordering::Relaxed), vouched) {
                Self::check_round_trip(&host, context, data, encoded, &tags)?;
            }
        }
        Ok((
            // The plugin's buffer is kept, not copied into a `Vec`.
            changed.map_or(Encoded::Unchanged(data), |c| {
                Encoded::Changed(FilterOutput::new(PluginBytes(c)))
            }),
            tags,
        ))
    }

    fn encode_with(
        &self,
        tag: &str,
        context: &str,
        data: &[u8],
    ) -> Result<Option<FilterOutput>, String> {
        self.host()?
            .run_one_filter(DATA_FILTER_HOOK, tag, context, data)
            .map(|out| out.map(|c| FilterOutput::new(PluginBytes(c))))
            .map_err(|e| e.to_string())
    }

    fn decode(
        &self,
        context: &str,
        data: &[u8],
        tags: &[String],
    ) -> Result<FilterOutput, DecodeError> {
        self.host()
            .map_err(DecodeError::Failed)?
            .run_filter_read_borrowed(DATA_FILTER_HOOK, context, data, tags)
            .map(|out| FilterOutput::new(PluginBytes(out)))
    }

    fn provides(&self, tag: &str) -> bool {
        self.host
            .upgrade()
            .is_some_and(|host| host.has_filter(DATA_FILTER_HOOK, tag))
    }

    fn tags(&self) -> Vec<String> {
        self.host
            .upgrade()
            .map(|host| host.filter_tags(DATA_FILTER_HOOK))
            .unwrap_or_default()
    }

    fn unvouched(&self, tags: &[String]) -> Option<String> {
        let host = self.host.upgrade()?;
        host.unvouched_among(DATA_FILTER_HOOK, tags)
    }

    /// Ask the plugins on the `repository-open` hook (see
    /// [`plugin_api::payloads::REPOSITORY_OPEN`]).
    fn unlock(&self, request: &UnlockRequest) -> Result<Unlocked, String> {
        let slots: serde_json::Map<String, serde_json::Value> = request
            .key_slots
            .iter()
            .map(|(id, text)| (id.clone(), serde_json::Value::String(text.clone())))
            .collect();
        let mut payload = serde_json::json!({
            "url": request.url,
            "repository_id": request.repository_id,
            "creating": request.creating,
            "seal": request.seal,
            "key_slots": slots,
        });
        if request.pretending {
            payload["pretending"] = serde_json::Value::Bool(true);
        }
        let answer = self
            .host()?
            .call_json_hook_owned(
                REPOSITORY_OPEN,
                payload,
                &["seal", "new_key_slots", "token_key"],
            )
            .map_err(|e| e.to_string())?;
        let bad = |what: &str| format!("hook {REPOSITORY_OPEN}: {what}");
        let token_key = match answer.get("token_key") {
            None | Some(serde_json::Value::Null) => None,
            Some(v) => {
                let bytes = v
                    .as_str()
                    .and_then(|t| hex::decode(t).ok())
                    .and_then(|b| <[u8; 32]>::try_from(b).ok())
                    .ok_or_else(|| bad("token_key is not 64 hex digits"))?;
                Some(bytes)
            }
        };
        let seal = match answer.get("seal") {
            Some(v) if request.creating && !v.is_null() => Some(v.clone()),
            _ => None,
        };
        let mut new_key_slots = Vec::new();
        if let Some(v) = answer.get("new_key_slots").filter(|v| !v.is_null()) {
            let map = v
                .as_object()
                .ok_or_else(|| bad("new_key_slots is not an object"))?;
            for (id, text) in map {
                let text = text
                    .as_str()
                    .ok_or_else(|| bad("a new key slot is not text"))?;
                new_key_slots.push((id.clone(), text.to_string()));
            }
        }
        Ok(Unlocked {
            seal,
            new_key_slots,
            token_key,
        })
    }
}
